//! Join tokens: single-use, short-lived permissions to enroll one node or client.
//!
//! A token is `hive1-` followed by hex of:
//!
//! | bytes | field |
//! | ---: | --- |
//! | 1 | format version, 1 |
//! | 16 | token id (random; the single-use key) |
//! | 32 | SHA-256 fingerprint of the cluster CA certificate (the joiner pins the CA with it) |
//! | 1 | role: 1 node, 2 client, 3 admin |
//! | 8 | expiry, Unix seconds, little-endian |
//! | 1 | volume name length (0: none) |
//! | n | volume name, UTF-8, at most 64 bytes |
//! | 32 | HMAC-SHA256 of everything before, keyed with the cluster's token key |

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::pki::{Fingerprint, Role};
use crate::{decode_hex, encode_hex};

/// Printed before every token, so a pasted token is recognisable and versioned.
pub const TOKEN_PREFIX: &str = "hive1-";
/// Default lifetime of a join token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// Longest volume name a token can carry.
pub const MAX_VOLUME_NAME: usize = 64;
/// Bytes before the volume name.
const FIXED: usize = 1 + 16 + 32 + 1 + 8 + 1;
const MAC: usize = 32;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token at all (cut short, mistyped, or another format).
    #[error("not a valid join token: {0}; copy it again from 'hive token create'")]
    Malformed(&'static str),
    /// The MAC does not match: the token was changed or made by someone else.
    #[error("join token refused: it was altered or not issued by this cluster")]
    Tampered,
    /// Issued for another cluster's CA.
    #[error("join token is for another cluster (CA {token_ca}, this cluster's CA is {ours})")]
    WrongCluster {
        /// The fingerprint in the token.
        token_ca: Fingerprint,
        /// This cluster's fingerprint.
        ours: Fingerprint,
    },
    /// Past its expiry.
    #[error("join token expired at {at}; create a new one with 'hive token create'")]
    Expired {
        /// When, in UTC.
        at: String,
    },
    /// Already used.
    #[error("join token was already used; create a new one with 'hive token create'")]
    Reused,
    /// Its use could not be recorded durably, so it was not accepted.
    #[error("join token not accepted: recording its use failed ({0}); try again")]
    Unrecorded(String),
}

/// The secret that MACs tokens. Kept with the CA key, 0600, never logged.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .expect("invariant: the operating system's random source works");
        Self(key)
    }

    /// The key as hex, for its file.
    pub fn to_hex(&self) -> String {
        let mut s = String::new();
        encode_hex(&self.0, &mut s).expect("writing to a String cannot fail");
        s
    }

    /// A key read back from its file.
    pub fn from_hex(s: &str) -> Result<Self, TokenError> {
        let mut key = [0u8; 32];
        decode_hex(s.trim(), &mut key).map_err(|_| TokenError::Malformed("bad token key"))?;
        Ok(Self(key))
    }

    fn hmac(&self) -> ring::hmac::Key {
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0)
    }

    fn mac(&self, bytes: &[u8]) -> [u8; MAC] {
        let tag = ring::hmac::sign(&self.hmac(), bytes);
        let mut out = [0u8; MAC];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Constant-time check of `tag` over `bytes`.
    fn verify(&self, bytes: &[u8], tag: &[u8]) -> bool {
        ring::hmac::verify(&self.hmac(), bytes, tag).is_ok()
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Random id; a token is used once.
    pub id: [u8; 16],
    /// The cluster CA the joiner must find.
    pub ca: Fingerprint,
    /// The role the joiner will get.
    pub role: Role,
    /// For a client: the volume it may mount.
    pub volume: Option<String>,
    /// Expiry, Unix seconds.
    pub expires: u64,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `2026-11-23 12:04:05 UTC`.
pub fn utc(seconds: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).unwrap_or(i64::MAX))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl JoinToken {
    /// A new token for `role` on the cluster whose CA is `ca`, valid for `ttl`.
    pub fn new(ca: Fingerprint, role: Role, volume: Option<String>, ttl: Duration) -> Self {
        let mut id = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .expect("invariant: the operating system's random source works");
        Self {
            id,
            ca,
            role,
            volume,
            expires: unix(SystemTime::now() + ttl),
        }
    }

    fn payload(&self) -> Vec<u8> {
        let volume = self.volume.as_deref().unwrap_or("").as_bytes();
        assert!(
            volume.len() <= MAX_VOLUME_NAME,
            "volume names are at most 64 bytes"
        );
        let mut out = Vec::with_capacity(FIXED + volume.len() + MAC);
        out.push(1);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.ca.0);
        out.push(self.role.number());
        out.extend_from_slice(&self.expires.to_le_bytes());
        out.push(u8::try_from(volume.len()).expect("checked above"));
        out.extend_from_slice(volume);
        out
    }

    /// The printable token, MACed with `key`.
    pub fn seal(&self, key: &TokenKey) -> String {
        let mut bytes = self.payload();
        let mac = key.mac(&bytes);
        bytes.extend_from_slice(&mac);
        let mut out = String::from(TOKEN_PREFIX);
        encode_hex(&bytes, &mut out).expect("writing to a String cannot fail");
        out
    }

    /// Reads a token without checking its MAC: what a joiner does to learn the CA
    /// fingerprint and role. Only the cluster can check the MAC.
    pub fn parse(token: &str) -> Result<(Self, [u8; MAC], Vec<u8>), TokenError> {
        let hex = token
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenError::Malformed("it does not start with hive1-"))?;
        if hex.len() % 2 != 0 || hex.len() < 2 * (FIXED + MAC) {
            return Err(TokenError::Malformed("it is too short"));
        }
        let mut bytes = vec![0u8; hex.len() / 2];
        decode_hex(hex, &mut bytes).map_err(|_| TokenError::Malformed("it is not hex"))?;
        if bytes[0] != 1 {
            return Err(TokenError::Malformed("unknown token version"));
        }
        let volume_len = usize::from(bytes[FIXED - 1]);
        if volume_len > MAX_VOLUME_NAME || bytes.len() != FIXED + volume_len + MAC {
            return Err(TokenError::Malformed(
                "its length does not match its contents",
            ));
        }
        let (payload, mac) = bytes.split_at(FIXED + volume_len);
        let mut id = [0u8; 16];
        id.copy_from_slice(&payload[1..17]);
        let mut ca = [0u8; 32];
        ca.copy_from_slice(&payload[17..49]);
        let role = Role::from_number(payload[49]).ok_or(TokenError::Malformed("unknown role"))?;
        let mut expires = [0u8; 8];
        expires.copy_from_slice(&payload[50..58]);
        let volume = match volume_len {
            0 => None,
            _ => Some(
                String::from_utf8(payload[FIXED..].to_vec())
                    .map_err(|_| TokenError::Malformed("volume name is not UTF-8"))?,
            ),
        };
        let mut tag = [0u8; MAC];
        tag.copy_from_slice(mac);
        let token = Self {
            id,
            ca: Fingerprint(ca),
            role,
            volume,
            expires: u64::from_le_bytes(expires),
        };
        Ok((token, tag, payload.to_vec()))
    }

    /// The cluster's check: intact, for this CA, not expired. (Single use is the
    /// [`TokenLedger`]'s job.)
    pub fn verify(
        token: &str,
        key: &TokenKey,
        ca: Fingerprint,
        now: SystemTime,
    ) -> Result<Self, TokenError> {
        let (parsed, tag, payload) = Self::parse(token)?;
        if !key.verify(&payload, &tag) {
            return Err(TokenError::Tampered);
        }
        if parsed.ca != ca {
            return Err(TokenError::WrongCluster {
                token_ca: parsed.ca,
                ours: ca,
            });
        }
        if unix(now) >= parsed.expires {
            return Err(TokenError::Expired {
                at: utc(parsed.expires),
            });
        }
        Ok(parsed)
    }
}

/// Tokens already used, remembered until they expire (after which they are refused as
/// expired anyway). Bounded by the tokens issued within one TTL. A durable ledger
/// ([`TokenLedger::durable`]) records every use in its file before accepting it, so a
/// token stays single-use across restarts.
#[derive(Debug, Default)]
pub struct TokenLedger {
    used: Mutex<HashMap<[u8; 16], u64>>,
    file: Option<PathBuf>,
}

/// A line of a ledger file: the token id in hex, a space, its expiry (Unix seconds).
fn ledger_line(id: &[u8; 16], expires: u64) -> String {
    let mut hex = String::with_capacity(32);
    encode_hex(id, &mut hex).expect("invariant: writing to a String cannot fail");
    format!("{hex} {expires}\n")
}

impl TokenLedger {
    /// A ledger kept in `path` (created on first use): the uses it lists that have not
    /// expired are refused again. A file that is not a ledger is an error, never
    /// silently emptied.
    pub fn durable(path: PathBuf) -> std::io::Result<Self> {
        let mut used = HashMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let now = unix(SystemTime::now());
                for (n, line) in text.lines().enumerate() {
                    let bad = || {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{} line {}: not 'hex-id expiry'", path.display(), n + 1),
                        )
                    };
                    let (hex, expires) = line.split_once(' ').ok_or_else(bad)?;
                    let mut id = [0u8; 16];
                    decode_hex(hex, &mut id).map_err(|_| bad())?;
                    let expires: u64 = expires.parse().map_err(|_| bad())?;
                    if expires > now {
                        used.insert(id, expires);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Self {
            used: Mutex::new(used),
            file: Some(path),
        })
    }

    /// Marks `token` used; refuses it if it already was. A durable ledger has recorded
    /// the use when this returns `Ok`.
    pub fn consume(&self, token: &JoinToken, now: SystemTime) -> Result<(), TokenError> {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = unix(now);
        used.retain(|_, expires| *expires > now);
        if used.insert(token.id, token.expires).is_some() {
            return Err(TokenError::Reused);
        }
        if let Some(path) = &self.file {
            let text: String = used.iter().map(|(id, e)| ledger_line(id, *e)).collect();
            if let Err(err) = crate::files::replace(path, text.as_bytes()) {
                used.remove(&token.id);
                return Err(TokenError::Unrecorded(format!("{}: {err}", path.display())));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> Fingerprint {
        Fingerprint([7; 32])
    }

    #[test]
    fn a_durable_ledger_refuses_a_used_token_after_a_restart() {
        let dir = std::env::temp_dir().join(format!("hive-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("used-tokens");
        let _ = std::fs::remove_file(&path);
        let token = JoinToken::new(ca(), Role::Node, None, DEFAULT_TOKEN_TTL);
        let other = JoinToken::new(ca(), Role::Node, None, DEFAULT_TOKEN_TTL);
        let ledger = TokenLedger::durable(path.clone()).expect("new ledger");
        ledger
            .consume(&token, SystemTime::now())
            .expect("first use");
        drop(ledger);
        let again = TokenLedger::durable(path.clone()).expect("reopened");
        assert_eq!(
            again.consume(&token, SystemTime::now()),
            Err(TokenError::Reused)
        );
        again
            .consume(&other, SystemTime::now())
            .expect("another token");
        std::fs::write(&path, "not a ledger\n").expect("write");
        let err = TokenLedger::durable(path.clone()).expect_err("garbage refused");
        assert!(err.to_string().contains("line 1"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_sealed_token_verifies_once() {
        let key = TokenKey::generate();
        let token = JoinToken::new(ca(), Role::Client, Some("photos".into()), DEFAULT_TOKEN_TTL);
        let text = token.seal(&key);
        assert!(text.starts_with(TOKEN_PREFIX));
        let checked = JoinToken::verify(&text, &key, ca(), SystemTime::now()).expect("valid");
        assert_eq!(checked, token);
        let ledger = TokenLedger::default();
        ledger
            .consume(&checked, SystemTime::now())
            .expect("first use");
        assert_eq!(
            ledger.consume(&checked, SystemTime::now()),
            Err(TokenError::Reused)
        );
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let key = TokenKey::generate();
        let token = JoinToken::new(ca(), Role::Node, None, Duration::from_secs(60));
        let text = token.seal(&key);
        let later = SystemTime::now() + Duration::from_secs(3600);
        let err = JoinToken::verify(&text, &key, ca(), later).expect_err("expired");
        assert!(
            err.to_string().contains("expired at") && err.to_string().contains("UTC"),
            "{err}"
        );
        // Change the expiry: still a well-formed token, but the MAC no longer matches.
        let mut tampered = text.clone().into_bytes();
        let at = TOKEN_PREFIX.len() + 2 * 52;
        tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert_eq!(
            JoinToken::verify(&tampered, &key, ca(), SystemTime::now()),
            Err(TokenError::Tampered)
        );
        assert_eq!(
            JoinToken::verify(&text, &TokenKey::generate(), ca(), SystemTime::now()),
            Err(TokenError::Tampered)
        );
        assert!(matches!(
            JoinToken::verify(&text, &key, Fingerprint([8; 32]), SystemTime::now()),
            Err(TokenError::WrongCluster { .. })
        ));
        for junk in ["", "hive1-", "hive1-zz", "nope", &text[..text.len() - 2]] {
            assert!(
                matches!(JoinToken::parse(junk), Err(TokenError::Malformed(_))),
                "{junk}"
            );
        }
    }
}
