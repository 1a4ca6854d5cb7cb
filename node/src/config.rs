//! The node's TOML configuration, checked at start with errors that name the key.
//!
//! ```toml
//! node_id = 3
//! listen = "127.0.0.1:7400"
//!
//! [store]
//! path = "store.img"        # a file (created by 'hive-node format') or a block device
//! size = "8GiB"             # for a file; a block device defaults to its whole size
//! segment_size = "64MiB"    # optional
//! cpu = 2                   # optional: pin the shard executor to this CPU
//!
//! [tls]
//! ca = "ca.pem"
//! cert = "node.pem"
//! key = "node.key"
//! revoked = "revoked"       # optional: the cluster's revocation list
//! ```
//!
//! Relative paths are relative to the configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    node_id: u64,
    listen: String,
    store: RawStore,
    tls: RawTls,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: PathBuf,
    size: Option<String>,
    segment_size: Option<String>,
    cpu: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    revoked: Option<PathBuf>,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_id: u64,
    pub listen: SocketAddr,
    pub store_path: PathBuf,
    pub store_size: Option<u64>,
    pub segment_size: Option<u32>,
    pub cpu: Option<usize>,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub revoked: Option<PathBuf>,
}

/// `8GiB`, `64MiB`, `512KiB`, `4096`.
fn bytes(key: &str, text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .with_context(|| format!("{key}: {text:?} is not a size like 8GiB or 64MiB"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => bail!("{key}: unknown unit {other:?}; use B, KiB, MiB, GiB or TiB"),
    };
    n.checked_mul(scale)
        .with_context(|| format!("{key}: {text:?} is too large"))
}

impl Config {
    /// Reads and checks the configuration at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration {}", path.display()))?;
        let raw: Raw = toml::from_str(&text)
            .with_context(|| format!("configuration {} is invalid", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let listen: SocketAddr = raw.listen.parse().with_context(|| {
            format!(
                "listen: {:?} is not an address like 127.0.0.1:7400",
                raw.listen
            )
        })?;
        let segment_size = raw
            .store
            .segment_size
            .as_deref()
            .map(|s| {
                let n = bytes("store.segment_size", s)?;
                u32::try_from(n).context("store.segment_size: at most 4 GiB")
            })
            .transpose()?;
        Ok(Self {
            node_id: raw.node_id,
            listen,
            store_path: resolve(&raw.store.path),
            store_size: raw
                .store
                .size
                .as_deref()
                .map(|s| bytes("store.size", s))
                .transpose()?,
            segment_size,
            cpu: raw.store.cpu,
            ca: resolve(&raw.tls.ca),
            cert: resolve(&raw.tls.cert),
            key: resolve(&raw.tls.key),
            revoked: raw.tls.revoked.as_deref().map(resolve),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config> {
        let dir = std::env::temp_dir().join(format!("hive-node-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.toml", text.len()));
        std::fs::write(&path, text)?;
        Config::load(&path)
    }

    const GOOD: &str = r#"
node_id = 3
listen = "127.0.0.1:0"
[store]
path = "store.img"
size = "64MiB"
[tls]
ca = "ca.pem"
cert = "node.pem"
key = "node.key"
"#;

    #[test]
    fn a_good_config_loads_with_paths_resolved() {
        let config = load(GOOD).expect("valid");
        assert_eq!(config.store_size, Some(64 << 20));
        assert!(
            config.store_path.is_absolute() || config.store_path.starts_with(std::env::temp_dir())
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (bad, key) in [
            (GOOD.replace("64MiB", "64 parsecs"), "store.size"),
            (GOOD.replace("127.0.0.1:0", "everywhere"), "listen"),
            (
                GOOD.replace("node_id = 3", "node_id = 3\ncolour = 1"),
                "colour",
            ),
            (GOOD.replace("key = \"node.key\"", ""), "key"),
        ] {
            let err = format!("{:#}", load(&bad).expect_err("invalid"));
            assert!(err.contains(key), "{key} not named in: {err}");
        }
    }
}
