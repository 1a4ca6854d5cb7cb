//! The bytes of the namespace's keyspaces. Keys are big-endian so that a directory's
//! entries sort together under its inode number; values are little-endian.
//!
//! | keyspace | key | value |
//! | --- | --- | --- |
//! | `inodes` | inode (u64 BE) | [`INODE_RECORD`] bytes: see [`encode_inode`] |
//! | `dirents` | parent inode (u64 BE), name bytes | child inode (u64 LE), kind (u8) |
//! | `symlinks` | inode (u64 BE) | target bytes |
//! | `extent_pages` | inode (u64 BE), page (u64 BE): file offset / [`EXTENT_PAGE_SPAN`] | [`EXTENT_PAGE_VERSION`] (u8), count (u32), then per extent by offset: file offset (u64), length (u32), chunk offset (u32), chunk id (32 bytes); present only when the page holds an extent |
//! | `extents` | version 1 (read once, to convert): inode (u64 BE), file offset (u64 BE) | length (u32), chunk id (32 bytes), chunk offset (u32) |
//! | `inline` | inode (u64 BE) | the file's bytes from offset 0 (at most `MAX_INLINE`) |
//! | `xattrs` | inode (u64 BE), name | value |
//! | `volumes` | name | [`VOLUME_RECORD`] bytes: see [`encode_volume`] |
//! | `opens` | inode (u64 BE) | opens not yet released (u32 LE), present only when above 0 |
//! | `sessions` | session (u64 BE) | when it expires unless renewed (i64 ns LE), its ttl (i64 ns LE); 8-byte records written before the ttl are read with [`LEGACY_SESSION_TTL`] |
//! | `held` | session (u64 BE), inode (u64 BE) | opens the session holds (u32 LE), present only when above 0 |
//! | `objects` | object id (32 bytes) | [`OBJECT_VERSION`] (u8), length (u64), count (u32), then each chunk id (32 bytes): see [`encode_object`] |
//! | `quotas` | a volume's root inode (u64 BE) | [`QUOTA_RECORD`] bytes: used bytes, used inodes, most bytes, most inodes (u64 LE each; a most of 0 is no limit) |
//! | `reserves` | inode (u64 BE) | bytes of the file reserved by fallocate and not yet written (u64 LE), present only when above 0 |
//! | `meta` | `next_ino` | the next inode number to give (u64 LE); `quotas_counted`, present once every volume's usage was counted; `reserved`, the sum of every file's reserve (u64 LE); `applied`, the replicated log's stamp; `cluster_map`, the map authority's map (epoch u64 LE, then its bytes); `enrolled/ROLE`, the last id given to a role (u64 LE); `used_token/ID`, a join token used and its expiry (Unix seconds, u64 LE) |

use crate::constants::EXTENT_PAGE_SPAN;
use crate::types::{Attr, Extent, FileType, InodeId, Nanos, Usage};

/// Version of the inode record format written: 2 added the device number.
pub const INODE_VERSION: u8 = 2;
/// Bytes of an inode record.
pub const INODE_RECORD: usize = 80;
/// Bytes of a version 1 inode record (read, never written).
pub const INODE_RECORD_V1: usize = 72;
/// The `meta` key of the inode counter.
pub const NEXT_INO: &[u8] = b"next_ino";
/// The `meta` key present once every volume's usage has been counted (a namespace made
/// before quotas is counted once, at open).
pub const QUOTAS_COUNTED: &[u8] = b"quotas_counted";
/// The `meta` key of the sum of every file's reserve.
pub const RESERVED: &[u8] = b"reserved";
/// `meta` key: the replicated log's stamp of the last entry applied.
pub const APPLIED: &[u8] = b"applied";
/// `meta` key prefix: the last id given to a role (the prefix, then the role's
/// number; the id, u64 LE).
pub const ENROLLED: &[u8] = b"enrolled/";
/// `meta` key prefix: a join token used (the prefix, then its 16-byte id; its expiry,
/// Unix seconds, u64 LE).
pub const USED_TOKEN: &[u8] = b"used_token/";
/// `meta` key: the cluster map the group keeps (its epoch, u64 LE, then the map's
/// bytes).
pub const CLUSTER_MAP: &[u8] = b"cluster_map";
/// Bytes of a quota record.
pub const QUOTA_RECORD: usize = 32;

/// A quota record: see the module's table.
pub fn encode_quota(u: &Usage) -> [u8; QUOTA_RECORD] {
    let mut out = [0u8; QUOTA_RECORD];
    for (i, v) in [u.bytes, u.files, u.max_bytes, u.max_files]
        .iter()
        .enumerate()
    {
        out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    out
}

/// Reads a quota record; `None` if the bytes are not one.
pub fn decode_quota(bytes: &[u8]) -> Option<Usage> {
    if bytes.len() != QUOTA_RECORD {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Some(Usage {
        bytes: word(0),
        files: word(1),
        max_bytes: word(2),
        max_files: word(3),
    })
}

/// What an inode counts against its volume's quota: its logical bytes (a file's or a
/// symlink's size) and one inode.
pub fn counted_bytes(attr: &Attr) -> u64 {
    match attr.kind {
        FileType::File | FileType::Symlink => attr.size,
        _ => 0,
    }
}

/// An inode record: the attributes and, for a directory, its parent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InodeRecord {
    /// The attributes.
    pub attr: Attr,
    /// The directory holding a directory (the root holds itself); 0 for others, which
    /// may have many names.
    pub parent: InodeId,
    /// The root of the volume the inode belongs to.
    pub volume: InodeId,
}

/// Bytes of a session record: when it expires unless renewed (i64 ns LE), and its
/// ttl (i64 ns LE).
pub const SESSION_RECORD: usize = 16;
/// The ttl of a session record written before records had one (8 bytes): the
/// mount's default lease.
pub const LEGACY_SESSION_TTL: i64 = 60_000_000_000;

/// A session record: see [`SESSION_RECORD`].
pub fn encode_session(until: i64, ttl: i64) -> [u8; SESSION_RECORD] {
    let mut out = [0u8; SESSION_RECORD];
    out[..8].copy_from_slice(&until.to_le_bytes());
    out[8..].copy_from_slice(&ttl.to_le_bytes());
    out
}

/// Reads a session record (when it expires, its ttl), or one written before records
/// had a ttl; `None` if the bytes are neither.
pub fn decode_session(bytes: &[u8]) -> Option<(i64, i64)> {
    let word = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_le_bytes)
    };
    match bytes.len() {
        8 => Some((word(0)?, LEGACY_SESSION_TTL)),
        SESSION_RECORD => Some((word(0)?, word(8)?)),
        _ => None,
    }
}

/// The key of a client session: its id (u64 BE).
pub fn session_key(session: u64) -> [u8; 8] {
    session.to_be_bytes()
}

/// The key of the opens a session holds of one file: session (u64 BE), inode (u64 BE).
pub fn held_key(session: u64, ino: InodeId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&session.to_be_bytes());
    key[8..].copy_from_slice(&ino.0.to_be_bytes());
    key
}

/// The key of an inode.
pub fn inode_key(ino: InodeId) -> [u8; 8] {
    ino.0.to_be_bytes()
}

/// The key of a directory entry or an xattr: inode (u64 BE), then the name.
pub fn named_key(parent: InodeId, name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + name.len());
    key.extend_from_slice(&parent.0.to_be_bytes());
    key.extend_from_slice(name);
    key
}

/// The key of a version 1 extent record (and of an extent page: the same layout).
pub fn extent_key(ino: InodeId, offset: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&ino.0.to_be_bytes());
    key[8..].copy_from_slice(&offset.to_be_bytes());
    key
}

/// The inode an extent page's key names (0 for a key too short to be one, which
/// [`decode_extent_page`] refuses).
pub fn extent_inode(key: &[u8]) -> InodeId {
    InodeId(
        key.get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_be_bytes),
    )
}

/// An extent's value: length (u32), chunk id (32), chunk offset (u32).
pub fn extent_value(extent: &Extent) -> [u8; 40] {
    let mut value = [0u8; 40];
    value[..4].copy_from_slice(&extent.len.to_le_bytes());
    value[4..36].copy_from_slice(&extent.chunk);
    value[36..].copy_from_slice(&extent.chunk_offset.to_le_bytes());
    value
}

/// Version of the extent page format written. Version 1 kept one record per extent in
/// the `extents` keyspace; an open namespace converts them.
pub const EXTENT_PAGE_VERSION: u8 = 2;
/// Bytes before a page's extents: version (u8), count (u32).
const PAGE_HEADER: usize = 5;
/// Bytes of one extent in a page.
const PAGE_EXTENT: usize = 48;

/// The page of the file offset `offset`.
pub fn page_of(offset: u64) -> u64 {
    offset / EXTENT_PAGE_SPAN
}

/// The key of page `page` of file `ino`'s extents.
pub fn extent_page_key(ino: InodeId, page: u64) -> [u8; 16] {
    extent_key(ino, page)
}

/// A page's value: its extents, which lie inside the page, sorted and apart.
pub fn encode_extent_page(extents: &[Extent]) -> Vec<u8> {
    debug_assert!(extents.windows(2).all(|w| w[0].end() <= w[1].offset));
    let mut out = Vec::with_capacity(PAGE_HEADER + extents.len() * PAGE_EXTENT);
    out.push(EXTENT_PAGE_VERSION);
    out.extend_from_slice(
        &u32::try_from(extents.len())
            .expect("a page holds at most its span in extents")
            .to_le_bytes(),
    );
    for e in extents {
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
        out.extend_from_slice(&e.chunk_offset.to_le_bytes());
        out.extend_from_slice(&e.chunk);
    }
    out
}

/// Reads a page's extents, checking that each lies inside the page its key names, is not
/// empty, and follows the one before it.
pub fn decode_extent_page(key: &[u8], value: &[u8]) -> Option<(u64, Vec<Extent>)> {
    let page = u64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    if key.len() != 16 || value.len() < PAGE_HEADER || value[0] != EXTENT_PAGE_VERSION {
        return None;
    }
    let count = u32::from_le_bytes(value[1..5].try_into().ok()?) as usize;
    let body = &value[PAGE_HEADER..];
    if count == 0 || body.len() != count.checked_mul(PAGE_EXTENT)? {
        return None;
    }
    let start = page.checked_mul(EXTENT_PAGE_SPAN)?;
    let end = start.checked_add(EXTENT_PAGE_SPAN)?;
    let mut out = Vec::with_capacity(count);
    let mut floor = start;
    for bytes in body.chunks_exact(PAGE_EXTENT) {
        let mut chunk = [0u8; 32];
        chunk.copy_from_slice(&bytes[16..48]);
        let e = Extent {
            offset: u64::from_le_bytes(bytes[..8].try_into().ok()?),
            len: u32::from_le_bytes(bytes[8..12].try_into().ok()?),
            chunk_offset: u32::from_le_bytes(bytes[12..16].try_into().ok()?),
            chunk,
        };
        if e.len == 0 || e.offset < floor || e.offset.checked_add(u64::from(e.len))? > end {
            return None;
        }
        floor = e.end();
        out.push(e);
    }
    Some((page, out))
}

/// Reads a version 1 extent record from its key and value.
pub fn decode_extent(key: &[u8], value: &[u8]) -> Option<Extent> {
    if key.len() != 16 || value.len() != 40 {
        return None;
    }
    let mut chunk = [0u8; 32];
    chunk.copy_from_slice(&value[4..36]);
    Some(Extent {
        offset: u64::from_be_bytes(key[8..].try_into().ok()?),
        len: u32::from_le_bytes(value[..4].try_into().ok()?),
        chunk,
        chunk_offset: u32::from_le_bytes(value[36..].try_into().ok()?),
    })
}

/// A directory entry's value.
pub fn dirent_value(child: InodeId, kind: FileType) -> [u8; 9] {
    let mut value = [0u8; 9];
    value[..8].copy_from_slice(&child.0.to_le_bytes());
    value[8] = kind.code();
    value
}

/// Reads a directory entry's value.
pub fn decode_dirent(value: &[u8]) -> Option<(InodeId, FileType)> {
    let ino = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    let kind = FileType::from_code(*value.get(8)?)?;
    (value.len() == 9).then_some((InodeId(ino), kind))
}

/// An inode record: version (u8), kind (u8), mode (u16), uid (u32), gid (u32), nlink
/// (u32), size (u64), atime, mtime, ctime, btime (i64 nanoseconds each), parent (u64),
/// volume root (u64), device (u32), reserved (u32, zero); little-endian. Version 1
/// records end before the device (which reads as 0).
pub fn encode_inode(record: &InodeRecord) -> [u8; INODE_RECORD] {
    let a = &record.attr;
    let mut out = [0u8; INODE_RECORD];
    out[0] = INODE_VERSION;
    out[1] = a.kind.code();
    out[2..4].copy_from_slice(&a.mode.to_le_bytes());
    out[4..8].copy_from_slice(&a.uid.to_le_bytes());
    out[8..12].copy_from_slice(&a.gid.to_le_bytes());
    out[12..16].copy_from_slice(&a.nlink.to_le_bytes());
    out[16..24].copy_from_slice(&a.size.to_le_bytes());
    out[24..32].copy_from_slice(&a.atime.0.to_le_bytes());
    out[32..40].copy_from_slice(&a.mtime.0.to_le_bytes());
    out[40..48].copy_from_slice(&a.ctime.0.to_le_bytes());
    out[48..56].copy_from_slice(&a.btime.0.to_le_bytes());
    out[56..64].copy_from_slice(&record.parent.0.to_le_bytes());
    out[64..72].copy_from_slice(&record.volume.0.to_le_bytes());
    out[72..76].copy_from_slice(&a.rdev.to_le_bytes());
    out
}

/// Reads an inode record of inode `ino`; `None` if the bytes are not one.
pub fn decode_inode(ino: InodeId, bytes: &[u8]) -> Option<InodeRecord> {
    match (bytes.first(), bytes.len()) {
        (Some(1), INODE_RECORD_V1) | (Some(2), INODE_RECORD) => {}
        _ => return None,
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let nanos = |i: usize| Nanos(u64_at(i) as i64);
    Some(InodeRecord {
        attr: Attr {
            ino,
            kind: FileType::from_code(bytes[1])?,
            mode: u16_at(2),
            uid: u32_at(4),
            gid: u32_at(8),
            nlink: u32_at(12),
            size: u64_at(16),
            atime: nanos(24),
            mtime: nanos(32),
            ctime: nanos(40),
            btime: nanos(48),
            rdev: if bytes.len() == INODE_RECORD {
                u32_at(72)
            } else {
                0
            },
        },
        parent: InodeId(u64_at(56)),
        volume: InodeId(u64_at(64)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let record = InodeRecord {
            attr: Attr {
                ino: InodeId(42),
                kind: FileType::Dir,
                mode: 0o755,
                uid: 1000,
                gid: 100,
                size: 0,
                nlink: 3,
                atime: Nanos(-5),
                mtime: Nanos(7),
                ctime: Nanos(8),
                btime: Nanos(1),
                rdev: 0x0103,
            },
            parent: InodeId(1),
            volume: InodeId(1),
        };
        let bytes = encode_inode(&record);
        assert_eq!(decode_inode(InodeId(42), &bytes), Some(record));
        // A version 1 record (no device number) still reads.
        let mut v1 = bytes[..INODE_RECORD_V1].to_vec();
        v1[0] = 1;
        let old = decode_inode(InodeId(42), &v1).expect("a version 1 record");
        assert_eq!(old.attr.rdev, 0);
        assert_eq!(old.attr.mode, record.attr.mode);
        assert_eq!(decode_inode(InodeId(42), &bytes[..INODE_RECORD - 1]), None);
        let mut bad = bytes;
        bad[1] = 9;
        assert_eq!(decode_inode(InodeId(42), &bad), None);
        let usage = Usage {
            bytes: 1,
            files: 2,
            max_bytes: 3,
            max_files: 4,
        };
        assert_eq!(decode_quota(&encode_quota(&usage)), Some(usage));
        assert_eq!(decode_quota(&encode_quota(&usage)[1..]), None);
        let object = encode_object(9, &[[1; 32], [2; 32]]);
        assert_eq!(decode_object(&object), Some((9, vec![[1; 32], [2; 32]])));
        assert_eq!(decode_object(&object[..object.len() - 1]), None);
        let mut lying = object.clone();
        lying[9] = 0xff;
        assert_eq!(decode_object(&lying), None, "a count the bytes do not hold");
        let dirent = dirent_value(InodeId(7), FileType::Symlink);
        assert_eq!(
            decode_dirent(&dirent),
            Some((InodeId(7), FileType::Symlink))
        );
        assert_eq!(decode_dirent(&dirent[..8]), None);
        let key = extent_page_key(InodeId(42), 2);
        let start = 2 * EXTENT_PAGE_SPAN;
        let page = vec![
            Extent {
                offset: start,
                len: 10,
                chunk: [1; 32],
                chunk_offset: 5,
            },
            Extent {
                offset: start + EXTENT_PAGE_SPAN - 4,
                len: 4,
                chunk: [2; 32],
                chunk_offset: 0,
            },
        ];
        let value = encode_extent_page(&page);
        assert_eq!(decode_extent_page(&key, &value), Some((2, page.clone())));
        // Extents outside the page its key names, out of order, empty or cut short.
        assert_eq!(
            decode_extent_page(&extent_page_key(InodeId(42), 1), &value),
            None
        );
        assert_eq!(
            decode_extent_page(&extent_page_key(InodeId(42), 3), &value),
            None
        );
        let mut swapped = value.clone();
        swapped[PAGE_HEADER..].rotate_left(PAGE_EXTENT);
        assert_eq!(decode_extent_page(&key, &swapped), None);
        assert_eq!(decode_extent_page(&key, &encode_extent_page(&[])), None);
        assert_eq!(decode_extent_page(&key, &value[..value.len() - 1]), None);
        assert_eq!(decode_extent_page(&key[..15], &value), None);
        let mut zero = value.clone();
        zero[PAGE_HEADER + 8..PAGE_HEADER + 12].fill(0);
        assert_eq!(decode_extent_page(&key, &zero), None);
        let mut past = encode_extent_page(&page[1..]);
        past[PAGE_HEADER + 8] = 5;
        assert_eq!(decode_extent_page(&key, &past), None);
    }

    #[test]
    fn volume_records_of_both_versions_read_back() {
        let mut v = VolumeRecord {
            root: InodeId(7),
            k: 4,
            m: 2,
            from: Some((1, 2)),
            uid: 1,
            gid: 2,
            created: Nanos(3),
        };
        assert_eq!(decode_volume(&encode_volume(&v)), Some(v));
        v.from = None;
        let now = encode_volume(&v);
        assert_eq!(decode_volume(&now), Some(v));
        // A version 1 record: 28 bytes, no class re-encoded from.
        let mut old = now[..28].to_vec();
        old[0] = 1;
        assert_eq!(decode_volume(&old), Some(v));
        old.push(0);
        assert_eq!(decode_volume(&old), None, "a version 1 record of 29 bytes");
        let mut bad = now;
        bad[29] = 2;
        assert_eq!(decode_volume(&bad), None, "a class with k = 0");
    }
}

/// Version of the volume record format written: 2 added the class being re-encoded
/// from. Version 1 records (28 bytes, no such class) are read as they are.
pub const VOLUME_VERSION: u8 = 2;
/// Bytes of a volume record.
pub const VOLUME_RECORD: usize = 30;
/// Bytes of a version 1 volume record.
const VOLUME_RECORD_V1: usize = 28;

/// A volume: a named tree with its own root, owner and storage class.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VolumeRecord {
    /// Its root directory.
    pub root: InodeId,
    /// Data shards per chunk: the class its chunks are written in.
    pub k: u8,
    /// Parity shards per chunk.
    pub m: u8,
    /// While its chunks are re-encoded into (k, m): the class (k, m) they were
    /// written in before, which reads also look in and garbage collection keeps.
    pub from: Option<(u8, u8)>,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// When it was created.
    pub created: Nanos,
}

impl VolumeRecord {
    /// The classes its chunks may be stored in: the one written, then the one being
    /// re-encoded from.
    pub fn classes(&self) -> impl Iterator<Item = (u8, u8)> {
        std::iter::once((self.k, self.m)).chain(self.from)
    }
}

/// A volume record: version (u8), k (u8), m (u8), reserved (u8), root (u64), uid (u32),
/// gid (u32), created (i64 ns), then the class re-encoded from, k (u8) and m (u8), both
/// 0 for none; little-endian.
pub fn encode_volume(v: &VolumeRecord) -> [u8; VOLUME_RECORD] {
    let mut out = [0u8; VOLUME_RECORD];
    out[0] = VOLUME_VERSION;
    out[1] = v.k;
    out[2] = v.m;
    out[4..12].copy_from_slice(&v.root.0.to_le_bytes());
    out[12..16].copy_from_slice(&v.uid.to_le_bytes());
    out[16..20].copy_from_slice(&v.gid.to_le_bytes());
    out[20..28].copy_from_slice(&v.created.0.to_le_bytes());
    if let Some((k, m)) = v.from {
        out[28] = k;
        out[29] = m;
    }
    out
}

/// Reads a volume record (version 1 or 2); `None` if the bytes are not one.
pub fn decode_volume(bytes: &[u8]) -> Option<VolumeRecord> {
    let from = match (bytes.first(), bytes.len()) {
        (Some(1), VOLUME_RECORD_V1) => None,
        (Some(&VOLUME_VERSION), VOLUME_RECORD) => match (bytes[28], bytes[29]) {
            (0, 0) => None,
            (0, _) => return None,
            class => Some(class),
        },
        _ => return None,
    };
    Some(VolumeRecord {
        k: bytes[1],
        m: bytes[2],
        from,
        root: InodeId(u64::from_le_bytes(bytes[4..12].try_into().ok()?)),
        uid: u32::from_le_bytes(bytes[12..16].try_into().ok()?),
        gid: u32::from_le_bytes(bytes[16..20].try_into().ok()?),
        created: Nanos(i64::from_le_bytes(bytes[20..28].try_into().ok()?)),
    })
}

/// Version of the object record format written.
pub const OBJECT_VERSION: u8 = 1;
/// Bytes of an object record before its chunk ids.
const OBJECT_HEADER: usize = 13;

/// An object's record: its length and chunk ids.
pub fn encode_object(len: u64, chunks: &[[u8; 32]]) -> Vec<u8> {
    let count = u32::try_from(chunks.len()).expect("invariant: the caller bounds the chunks");
    let mut out = Vec::with_capacity(OBJECT_HEADER + 32 * chunks.len());
    out.push(OBJECT_VERSION);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    for chunk in chunks {
        out.extend_from_slice(chunk);
    }
    out
}

/// Reads an object record: its length and chunk ids; `None` if the bytes are not one.
pub fn decode_object(bytes: &[u8]) -> Option<(u64, Vec<[u8; 32]>)> {
    if bytes.len() < OBJECT_HEADER || bytes[0] != OBJECT_VERSION {
        return None;
    }
    let len = u64::from_le_bytes(bytes[1..9].try_into().ok()?);
    let count = u32::from_le_bytes(bytes[9..13].try_into().ok()?) as usize;
    let ids = &bytes[OBJECT_HEADER..];
    if ids.len() != count.checked_mul(32)? {
        return None;
    }
    let chunks = ids
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32-byte pieces"))
        .collect();
    Some((len, chunks))
}
