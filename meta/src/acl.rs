//! POSIX ACLs as Linux stores them in the `system.posix_acl_access` and
//! `system.posix_acl_default` extended attributes, and the rules that tie them to an
//! inode's mode (what the kernel leaves to a FUSE filesystem that enforces ACLs).
//! Pure: no storage.
//!
//! The value is a header (version, u32 LE, = 2) and entries of 8 bytes: tag (u16 LE),
//! permissions (u16 LE, rwx in the low 3 bits), id (u32 LE, a uid or gid for the named
//! entries, unused for the others).

use crate::types::Errno;

/// The access ACL's attribute.
pub const ACCESS: &[u8] = b"system.posix_acl_access";
/// The default ACL's attribute (directories only: inherited by what they hold).
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

/// The version of the value format.
const VERSION: u32 = 2;
/// The owner.
pub const USER_OBJ: u16 = 0x01;
/// A named user.
pub const USER: u16 = 0x02;
/// The owning group.
pub const GROUP_OBJ: u16 = 0x04;
/// A named group.
pub const GROUP: u16 = 0x08;
/// The most that named entries and the owning group grant.
pub const MASK: u16 = 0x10;
/// Everyone else.
pub const OTHER: u16 = 0x20;
/// Entries an ACL may hold (the Linux limit for one xattr of 64 KiB is far higher;
/// this bounds what a caller can make the namespace parse).
pub const MAX_ENTRIES: usize = 1024;

/// One entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Entry {
    /// What it applies to.
    pub tag: u16,
    /// rwx bits.
    pub perm: u16,
    /// The uid or gid of a named entry.
    pub id: u32,
}

/// An ACL.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Acl {
    /// Its entries, as stored.
    pub entries: Vec<Entry>,
}

impl Acl {
    /// Reads and checks an ACL value: exactly one owner, owning group and other entry,
    /// a mask whenever there are named entries, no named id twice.
    pub fn parse(value: &[u8]) -> Result<Self, Errno> {
        let (header, body) = value.split_at_checked(4).ok_or(Errno::Inval)?;
        let version = u32::from_le_bytes(header.try_into().map_err(|_| Errno::Inval)?);
        if version != VERSION || body.len() % 8 != 0 || body.len() / 8 > MAX_ENTRIES {
            return Err(Errno::Inval);
        }
        let entries: Vec<Entry> = body
            .chunks_exact(8)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        let count = |tag| entries.iter().filter(|e| e.tag == tag).count();
        let named = count(USER) + count(GROUP);
        let valid_tags = entries
            .iter()
            .all(|e| matches!(e.tag, USER_OBJ | USER | GROUP_OBJ | GROUP | MASK | OTHER));
        let valid_perms = entries.iter().all(|e| e.perm & !0o7 == 0);
        let mut ids: Vec<(u16, u32)> = entries
            .iter()
            .filter(|e| e.tag == USER || e.tag == GROUP)
            .map(|e| (e.tag, e.id))
            .collect();
        ids.sort_unstable();
        let unique = ids.windows(2).all(|w| w[0] != w[1]);
        let shaped = count(USER_OBJ) == 1
            && count(GROUP_OBJ) == 1
            && count(OTHER) == 1
            && count(MASK) <= 1
            && (named == 0 || count(MASK) == 1);
        if !(valid_tags && valid_perms && unique && shaped) {
            return Err(Errno::Inval);
        }
        Ok(Self { entries })
    }

    /// The value to store.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 * self.entries.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    fn perm(&self, tag: u16) -> u16 {
        self.entries
            .iter()
            .find(|e| e.tag == tag)
            .map_or(0, |e| e.perm)
    }

    /// The permission bits (0o777) the ACL stands for: owner, mask (or owning group
    /// when there is no mask), other.
    pub fn mode_bits(&self) -> u16 {
        let group = if self.entries.iter().any(|e| e.tag == MASK) {
            self.perm(MASK)
        } else {
            self.perm(GROUP_OBJ)
        };
        (self.perm(USER_OBJ) << 6) | (group << 3) | self.perm(OTHER)
    }

    /// Whether the permission bits say everything the ACL does (then it is not kept).
    pub fn is_minimal(&self) -> bool {
        self.entries
            .iter()
            .all(|e| matches!(e.tag, USER_OBJ | GROUP_OBJ | OTHER))
    }

    /// The ACL with the entries a mode speaks for — owner, mask (or owning group when
    /// there is no mask), other — combined with the mode's bits for them; named
    /// entries as they are.
    fn with_mode(&self, mode: u16, combine: impl Fn(u16, u16) -> u16) -> Self {
        let has_mask = self.entries.iter().any(|e| e.tag == MASK);
        let entries = self
            .entries
            .iter()
            .map(|e| {
                let bits = match e.tag {
                    USER_OBJ => Some((mode >> 6) & 0o7),
                    MASK => Some((mode >> 3) & 0o7),
                    GROUP_OBJ if !has_mask => Some((mode >> 3) & 0o7),
                    OTHER => Some(mode & 0o7),
                    _ => None,
                };
                Entry {
                    perm: bits.map_or(e.perm, |bits| combine(e.perm, bits)),
                    ..*e
                }
            })
            .collect();
        Self { entries }
    }

    /// The ACL after a chmod to `mode`: owner, mask (or owning group) and other take
    /// the new bits; named entries keep theirs.
    pub fn chmod(&self, mode: u16) -> Self {
        self.with_mode(mode, |_, bits| bits)
    }

    /// What a new inode created with `mode` under a directory with this default ACL
    /// gets: its access ACL (the default ACL limited by `mode`) and its mode. The
    /// caller's umask does not apply (POSIX).
    pub fn inherit(&self, mode: u16) -> (Self, u16) {
        let acl = self.with_mode(mode, |perm, bits| perm & bits);
        let mode = (mode & !0o777) | acl.mode_bits();
        (acl, mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Acl {
        Acl {
            entries: entries
                .iter()
                .map(|&(tag, perm, id)| Entry { tag, perm, id })
                .collect(),
        }
    }

    #[test]
    fn values_round_trip_and_malformed_ones_are_refused() {
        let full = acl(&[
            (USER_OBJ, 6, 0),
            (USER, 4, 1000),
            (GROUP_OBJ, 4, 0),
            (MASK, 4, 0),
            (OTHER, 0, 0),
        ]);
        assert_eq!(Acl::parse(&full.encode()), Ok(full.clone()));
        let mut bad_version = full.encode();
        bad_version[0] = 1;
        assert_eq!(Acl::parse(&bad_version), Err(Errno::Inval));
        let no_mask = acl(&[
            (USER_OBJ, 6, 0),
            (USER, 4, 1),
            (GROUP_OBJ, 4, 0),
            (OTHER, 0, 0),
        ]);
        assert_eq!(Acl::parse(&no_mask.encode()), Err(Errno::Inval));
        let twice = acl(&[
            (USER_OBJ, 6, 0),
            (USER, 4, 1),
            (USER, 2, 1),
            (GROUP_OBJ, 4, 0),
            (MASK, 4, 0),
            (OTHER, 0, 0),
        ]);
        assert_eq!(Acl::parse(&twice.encode()), Err(Errno::Inval));
        for n in 0..full.encode().len() {
            // Every truncation is refused, never a panic.
            let _ = Acl::parse(&full.encode()[..n]);
        }
    }

    #[test]
    fn the_mode_follows_the_mask_and_chmod_moves_it() {
        let full = acl(&[
            (USER_OBJ, 7, 0),
            (USER, 7, 1000),
            (GROUP_OBJ, 5, 0),
            (MASK, 6, 0),
            (OTHER, 1, 0),
        ]);
        assert_eq!(full.mode_bits(), 0o761);
        assert!(!full.is_minimal());
        let changed = full.chmod(0o540);
        assert_eq!(changed.mode_bits(), 0o540);
        assert_eq!(changed.perm(USER), 7, "named entries keep their bits");
        assert_eq!(
            changed.perm(GROUP_OBJ),
            5,
            "the owning group keeps its bits"
        );
        let minimal = acl(&[(USER_OBJ, 6, 0), (GROUP_OBJ, 4, 0), (OTHER, 4, 0)]);
        assert!(minimal.is_minimal());
        assert_eq!(minimal.chmod(0o640).mode_bits(), 0o640);
    }

    #[test]
    fn inheritance_limits_the_default_acl_by_the_requested_mode() {
        let default = acl(&[
            (USER_OBJ, 7, 0),
            (USER, 7, 1000),
            (GROUP_OBJ, 7, 0),
            (MASK, 7, 0),
            (OTHER, 5, 0),
        ]);
        let (access, mode) = default.inherit(0o100_644);
        assert_eq!(mode, 0o100_644);
        assert_eq!(
            access.perm(USER),
            7,
            "a named entry is limited by the mask only"
        );
        assert_eq!(access.perm(MASK), 4);
        assert_eq!(access.perm(OTHER), 4);
    }
}
