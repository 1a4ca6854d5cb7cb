//! Failure-domain labels: what an administrator says a node fails together with, as
//! `key=value` pairs broadest first, like `rack=r4,host=h3` (`hive node set --domain`).
//!
//! Placement spreads each group over distinct values of the **first** pair: at most
//! ceil(width / domains) shards of a group share it. The later pairs are for people
//! reading the map. A node that joins gets `host=<its IP address>`, so nodes on one
//! machine never hold more than their share of a group, until an administrator says
//! more.

use std::net::IpAddr;

use hive_wire::FailureDomain;
use twox_hash::XxHash3_64;

/// Longest label text a map carries for one node.
pub const MAX_LABELS_LEN: usize = 256;

/// Seed of the label hash, fixed forever: changing it moves shards.
const DOMAIN_SEED: u64 = 0x6869_7665_6673_0002;

/// Why a label text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// No pair at all.
    #[error("a failure domain needs at least one key=value pair, like rack=r1 or host=h3")]
    Empty,
    /// Too long.
    #[error("failure domain labels are {0} bytes; at most {MAX_LABELS_LEN}")]
    TooLong(usize),
    /// A pair that is not `key=value` with allowed characters.
    #[error(
        "{0:?} is not key=value: keys are lowercase letters, digits, '-' and '_'; values also allow uppercase, '.' and ':'"
    )]
    Pair(String),
    /// One key twice.
    #[error("key {0:?} appears twice")]
    Repeated(String),
}

/// The pairs of `text` (`key=value,key=value`), checked.
pub fn parse_labels(text: &str) -> Result<Vec<(&str, &str)>, LabelError> {
    if text.len() > MAX_LABELS_LEN {
        return Err(LabelError::TooLong(text.len()));
    }
    if text.trim().is_empty() {
        return Err(LabelError::Empty);
    }
    let key_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    let value_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for pair in text.split(',') {
        let bad = || LabelError::Pair(pair.to_string());
        let (key, value) = pair.split_once('=').ok_or_else(bad)?;
        if key.is_empty() || value.is_empty() || !key.chars().all(key_char) {
            return Err(bad());
        }
        if !value.chars().all(value_char) {
            return Err(bad());
        }
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(LabelError::Repeated(key.to_string()));
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// The failure domain placement uses for `text`: a hash of its first pair.
pub fn domain_of(text: &str) -> Result<FailureDomain, LabelError> {
    let pairs = parse_labels(text)?;
    Ok(hash_pair(pairs[0]))
}

fn hash_pair((key, value): (&str, &str)) -> FailureDomain {
    let first = format!("{key}={value}");
    let hash = XxHash3_64::oneshot_with_seed(DOMAIN_SEED, first.as_bytes());
    FailureDomain(hash as u32)
}

/// The labels a node gets when it joins, its host, and their domain.
pub fn host_labels(ip: IpAddr) -> (String, FailureDomain) {
    // An IP address prints with digits, letters, '.' and ':' only, which values allow.
    let value = ip.to_string();
    let domain = hash_pair(("host", &value));
    (format!("host={value}"), domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_pair_is_the_domain_and_bad_text_is_refused() {
        let rack = domain_of("rack=r1,host=h3").expect("valid");
        assert_eq!(
            domain_of("rack=r1,host=h4"),
            Ok(rack),
            "one rack, two hosts"
        );
        assert_ne!(domain_of("rack=r2,host=h3"), Ok(rack));
        assert_ne!(domain_of("host=r1"), Ok(rack), "the key counts too");
        let (host, domain) = host_labels("10.0.0.5".parse().expect("ip"));
        assert_eq!(host, "host=10.0.0.5");
        assert_eq!(domain_of(&host), Ok(domain));
        let (v6, domain) = host_labels("fe80::1".parse().expect("ip"));
        assert_eq!(domain_of(&v6), Ok(domain));
        for bad in [
            "",
            "rack",
            "rack=",
            "=r1",
            "Rack=r1",
            "rack=r 1",
            "rack=r1,,host=h",
        ] {
            assert!(domain_of(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            domain_of("rack=a,rack=b"),
            Err(LabelError::Repeated("rack".into()))
        );
        let long = format!("rack={}", "a".repeat(MAX_LABELS_LEN));
        assert!(matches!(domain_of(&long), Err(LabelError::TooLong(_))));
    }
}
