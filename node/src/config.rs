//! The node's TOML configuration, checked at start with errors that name the key.
//!
//! ```toml
//! node_id = 3              # optional: the id is the certificate's; if given, must match
//! listen = "127.0.0.1:7400"
//! network_threads = 2       # optional: tokio worker threads for networking (default 2)
//!
//! [[store]]                 # one or more: each is served by its own executor (core)
//! path = "store.img"        # a file (created by 'hive-node format') or a block device
//! size = "8GiB"             # for a file; a block device defaults to its whole size
//! segment_size = "64MiB"    # optional
//! cpu = 2                   # optional: pin this store's executor to this CPU
//!
//! [[store]]
//! path = "/dev/nvme1n1"
//! cpu = 3
//!
//! [tls]
//! ca = "ca.pem"
//! cert = "node.pem"
//! key = "node.key"
//! revoked = "revoked"       # optional: the cluster's revocation list
//!
//! [cluster]                 # optional: without it the node serves shards alone
//! authority = "127.0.0.1:7401"  # the map authority's address
//! authority_id = 1          # the map authority's node id
//! map = "map.toml"          # on the authority only: where it keeps the cluster map
//! pg_bits = 8               # on the authority only: 2^pg_bits placement groups
//! advertise = "10.0.0.3:7400"   # optional: the address others reach this node at
//! out_after = "10m"         # on the authority only: a node down this long is marked
//!                           #   out and its shards rebuilt elsewhere ("never": only
//!                           #   'hive node out' does it); default 10m
//! census_interval = "60s"   # optional: time between this node's census rounds
//!
//! [metrics]                 # optional: Prometheus metrics over HTTP at /metrics
//! listen = "127.0.0.1:9400"
//!
//! [scrub]                   # optional
//! period = "7d"             # a background pass over every stored shard takes this
//!                           #   long (at least 1 MiB/s); 'hive scrub' starts one now
//!
//! [reclaim]                 # optional: compacting segments that deletes emptied
//! threshold = 0.5           # compact a segment once less than this fraction is live
//!                           #   (at most 0.9)
//! rate = "32MiB"            # shard bytes rewritten per second per store ("0": no limit)
//! interval = "30s"          # time between looks for segments to compact
//!
//! [gc]                      # optional: garbage collection
//! grace = "1h"              # a chunk written or deduplicated against this recently is
//!                           #   never deleted (the stores remember touches this long;
//!                           #   give every node the same)
//! interval = "1h"           # time between rounds, on the node with [meta] ('hive gc'
//!                           #   starts one now)
//!
//! [enroll]                  # optional: host the enrollment endpoint (needs the CA key)
//! listen = "127.0.0.1:7500" # where joiners with a token connect
//! ca_key = "ca.key"         # the cluster CA's private key
//! token_key = "token.key"   # the key join tokens are MACed with
//! ids = "ids.toml"          # the last ids given, per role
//! used_tokens = "used-tokens"   # optional: join tokens already used (default: beside ids)
//!
//! [meta]                    # optional: host the metadata service (one node, or each
//!                           #   replica of the metadata group)
//! path = "meta"             # the namespace's directory (created if missing)
//! replicas = { 1 = "10.0.0.1:7000", 2 = "10.0.0.2:7000", 3 = "10.0.0.3:7000" }
//!                           # optional: the metadata group to form (node id = address,
//!                           # at most 5); the lowest id forms it once every replica
//!                           # answers. Without it, this node alone.
//! k = 4                     # storage class of the default volume, when the namespace
//! m = 2                     #   is made (default 4+2; later changes do nothing)
//! ```
//!
//! Relative paths are relative to the configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hive_actors::constants::MAX_RECLAIM_THRESHOLD;
use hive_actors::reclaim::SpaceArgs;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    node_id: Option<u64>,
    listen: String,
    network_threads: Option<usize>,
    #[serde(default)]
    store: Vec<RawStore>,
    tls: RawTls,
    cluster: Option<RawCluster>,
    enroll: Option<RawEnroll>,
    meta: Option<RawMeta>,
    scrub: Option<RawScrub>,
    reclaim: Option<RawReclaim>,
    gc: Option<RawGc>,
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGc {
    grace: Option<String>,
    interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReclaim {
    threshold: Option<f64>,
    rate: Option<String>,
    interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScrub {
    period: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    path: PathBuf,
    k: Option<u8>,
    m: Option<u8>,
    replicas: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnroll {
    listen: String,
    ca_key: PathBuf,
    token_key: PathBuf,
    ids: PathBuf,
    used_tokens: Option<PathBuf>,
}

/// The enrollment endpoint this node hosts.
#[derive(Debug, Clone)]
pub struct Enroll {
    pub listen: SocketAddr,
    pub ca_key: PathBuf,
    pub token_key: PathBuf,
    pub ids: PathBuf,
    /// The durable ledger of used join tokens.
    pub used_tokens: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    authority: String,
    authority_id: u64,
    map: Option<PathBuf>,
    pg_bits: Option<u8>,
    advertise: Option<String>,
    /// No longer read: refused with the way to set it.
    domain: Option<toml::Value>,
    /// No longer read: refused with the way to set it.
    weight: Option<toml::Value>,
    out_after: Option<String>,
    census_interval: Option<String>,
}

/// Where the node stands in a cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub authority: SocketAddr,
    pub authority_id: u64,
    /// Set on the authority only.
    pub map: Option<PathBuf>,
    pub pg_bits: u8,
    pub advertise: Option<SocketAddr>,
    /// On the authority: silence after which a down node is marked out (`None`: never).
    pub out_after: Option<Duration>,
    /// Time between this node's census rounds.
    pub census_interval: Duration,
}

/// A node down this long is marked out when `cluster.out_after` is not given: long
/// enough for a reboot or a short maintenance, short enough that a dead node's chunks
/// do not stay one failure from loss for hours (Ceph's default is the same).
const DEFAULT_OUT_AFTER: Duration = Duration::from_secs(600);

/// `[reclaim]` and `[gc]`, each setting defaulted alone.
fn space(reclaim: Option<RawReclaim>, gc: Option<RawGc>) -> Result<SpaceArgs> {
    let default = SpaceArgs::default();
    let reclaim = reclaim.unwrap_or_default();
    let threshold = reclaim.threshold.unwrap_or(default.threshold);
    if !(threshold > 0.0 && threshold <= MAX_RECLAIM_THRESHOLD) {
        bail!(
            "reclaim.threshold: {threshold} is not a fraction above 0 and at most \
             {MAX_RECLAIM_THRESHOLD} (higher, reclaim would keep rewriting the segments it \
             has just filled)"
        );
    }
    Ok(SpaceArgs {
        threshold,
        rate: reclaim
            .rate
            .map(|t| bytes("reclaim.rate", &t))
            .transpose()?
            .unwrap_or(default.rate),
        interval: positive("reclaim.interval", reclaim.interval, default.interval)?,
        grace: positive("gc.grace", gc.and_then(|g| g.grace), default.grace)?,
    })
}

/// The duration `key` gives, or `default`; never 0.
fn positive(key: &str, text: Option<String>, default: Duration) -> Result<Duration> {
    let value = text
        .map(|t| duration(key, &t))
        .transpose()?
        .unwrap_or(default);
    if value.is_zero() {
        bail!("{key}: must be longer than 0");
    }
    Ok(value)
}

/// `30s`, `15m`, `2h`, `7d`.
fn duration(key: &str, text: &str) -> Result<Duration> {
    hive_wire::units::parse_duration(text).with_context(|| key.to_string())
}

/// Tokio worker threads for networking when `network_threads` is not given: the shard
/// executor has its own thread, and two keep the network side off the critical path on
/// a small machine. Nodes sharing a machine (a local cluster) do better with one each.
const DEFAULT_NETWORK_THREADS: usize = 2;
/// Placement groups of a new map when `cluster.pg_bits` is not given: 2^8.
const DEFAULT_PG_BITS: u8 = 8;

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

/// One store of the node.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub size: Option<u64>,
    pub segment_size: Option<u32>,
    pub cpu: Option<usize>,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_id: Option<u64>,
    pub listen: SocketAddr,
    /// Tokio worker threads for networking.
    pub network_threads: usize,
    /// At least one; a chunk's shards go to the store `store_for` picks.
    pub stores: Vec<StoreConfig>,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub revoked: Option<PathBuf>,
    pub cluster: Option<Cluster>,
    pub enroll: Option<Enroll>,
    /// The metadata service, on the node that hosts it.
    pub meta: Option<MetaConfig>,
    /// How long a background scrub pass takes.
    pub scrub_period: Duration,
    /// How the stores get space back (`[reclaim]`, `[gc]`).
    pub space: SpaceArgs,
    /// Time between garbage collection rounds, on the node hosting the metadata
    /// service (`[gc] interval`).
    pub gc_interval: Duration,
    /// Where the Prometheus metrics are served over HTTP, if anywhere.
    pub metrics: Option<SocketAddr>,
}

/// `[meta]`: where the namespace lives and the default volume's storage class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaConfig {
    /// The namespace's directory.
    pub path: PathBuf,
    /// Data and parity shards of the default volume, used when the namespace is made.
    pub class: (u8, u8),
    /// The replicas of the metadata group to form (node id → address), if it was
    /// never formed; empty for a group of this node alone.
    pub replicas: std::collections::BTreeMap<u64, String>,
}

/// The most replicas a metadata group has: each change waits for a majority.
pub const MAX_META_REPLICAS: usize = 5;

fn meta_config(raw: &RawMeta, resolve: impl Fn(&Path) -> PathBuf) -> Result<MetaConfig> {
    let k = raw.k.unwrap_or(hive_meta::DEFAULT_K);
    let m = raw.m.unwrap_or(hive_meta::DEFAULT_M);
    if !(1..=hive_meta::MAX_K).contains(&k) || m > hive_meta::MAX_M {
        bail!(
            "meta: k = {k}, m = {m} is not a storage class (k 1..={}, m 0..={})",
            hive_meta::MAX_K,
            hive_meta::MAX_M
        );
    }
    let mut replicas = std::collections::BTreeMap::new();
    for (id, addr) in raw.replicas.iter().flatten() {
        let id: u64 = id
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .with_context(|| format!("meta.replicas: {id:?} is not a node id"))?;
        addr.parse::<SocketAddr>()
            .with_context(|| format!("meta.replicas: replica {id}'s address {addr:?}"))?;
        replicas.insert(id, addr.clone());
    }
    if replicas.len() > MAX_META_REPLICAS {
        bail!(
            "meta.replicas: {} replicas; a metadata group has at most {MAX_META_REPLICAS}",
            replicas.len()
        );
    }
    Ok(MetaConfig {
        path: resolve(&raw.path),
        class: (k, m),
        replicas,
    })
}

/// `8GiB`, `64MiB`, `512KiB`, `4096`.
fn bytes(key: &str, text: &str) -> Result<u64> {
    hive_wire::units::parse_bytes(text).with_context(|| key.to_string())
}

fn address(key: &str, text: &str) -> Result<SocketAddr> {
    text.parse()
        .with_context(|| format!("{key}: {text:?} is not an address like 127.0.0.1:7400"))
}

impl Cluster {
    fn check(raw: RawCluster, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<Self> {
        let authority = address("cluster.authority", &raw.authority)?;
        for (key, set) in [
            ("weight", raw.weight.is_some()),
            ("domain", raw.domain.is_some()),
        ] {
            if set {
                bail!(
                    "cluster.{key}: a node no longer names its own {key}; an administrator sets it with 'hive node set N --{key} ...' (remove the line)"
                );
            }
        }
        if raw.map.is_none() && raw.pg_bits.is_some() {
            bail!("cluster.pg_bits belongs with cluster.map, on the map authority");
        }
        let pg_bits = raw.pg_bits.unwrap_or(DEFAULT_PG_BITS);
        if pg_bits > hive_codec::MAX_PG_BITS {
            bail!(
                "cluster.pg_bits: {pg_bits} is more than the {} supported",
                hive_codec::MAX_PG_BITS
            );
        }
        Ok(Self {
            authority,
            authority_id: raw.authority_id,
            map: raw.map.as_deref().map(resolve),
            pg_bits,
            advertise: raw
                .advertise
                .as_deref()
                .map(|a| address("cluster.advertise", a))
                .transpose()?,
            out_after: match raw.out_after.as_deref() {
                None => Some(DEFAULT_OUT_AFTER),
                Some("never") => None,
                Some(text) => Some(duration("cluster.out_after", text)?),
            },
            census_interval: raw
                .census_interval
                .as_deref()
                .map(|t| duration("cluster.census_interval", t))
                .transpose()?
                .unwrap_or(hive_actors::constants::DEFAULT_CENSUS_INTERVAL),
        })
    }
}

impl Cluster {
    /// Checks what depends on the node's id (known from its certificate): exactly the
    /// authority keeps the map.
    pub fn check_for(&self, node: u64) -> Result<()> {
        match (&self.map, self.authority_id == node) {
            (None, true) => bail!(
                "cluster.map: required on the map authority (cluster.authority_id is this node, {node})"
            ),
            (Some(_), false) => bail!(
                "cluster.map is set, which makes this node the map authority, but cluster.authority_id says node {} is",
                self.authority_id
            ),
            _ => Ok(()),
        }
    }
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
        let listen = address("listen", &raw.listen)?;
        if raw.store.is_empty() {
            bail!("store: at least one [[store]] table (path, size) is needed");
        }
        let mut stores = Vec::with_capacity(raw.store.len());
        for (n, store) in raw.store.iter().enumerate() {
            let key = |field: &str| format!("store[{n}].{field}");
            let path = resolve(&store.path);
            if stores.iter().any(|s: &StoreConfig| s.path == path) {
                bail!("{}: {} is named twice", key("path"), path.display());
            }
            stores.push(StoreConfig {
                path,
                size: store
                    .size
                    .as_deref()
                    .map(|s| bytes(&key("size"), s))
                    .transpose()?,
                segment_size: store
                    .segment_size
                    .as_deref()
                    .map(|s| {
                        let n = bytes(&key("segment_size"), s)?;
                        u32::try_from(n)
                            .with_context(|| format!("{}: at most 4 GiB", key("segment_size")))
                    })
                    .transpose()?,
                cpu: store.cpu,
            });
        }
        let cluster = raw
            .cluster
            .map(|c| Cluster::check(c, &resolve))
            .transpose()?;
        let enroll = raw
            .enroll
            .map(|e| -> Result<Enroll> {
                Ok(Enroll {
                    listen: address("enroll.listen", &e.listen)?,
                    ca_key: resolve(&e.ca_key),
                    token_key: resolve(&e.token_key),
                    used_tokens: e
                        .used_tokens
                        .as_deref()
                        .map_or_else(|| resolve(&e.ids).with_file_name("used-tokens"), resolve),
                    ids: resolve(&e.ids),
                })
            })
            .transpose()?;
        let network_threads = raw.network_threads.unwrap_or(DEFAULT_NETWORK_THREADS);
        if network_threads == 0 {
            bail!("network_threads: at least 1");
        }
        Ok(Self {
            network_threads,
            node_id: raw.node_id,
            listen,
            stores,
            ca: resolve(&raw.tls.ca),
            cert: resolve(&raw.tls.cert),
            key: resolve(&raw.tls.key),
            revoked: raw.tls.revoked.as_deref().map(resolve),
            cluster,
            enroll,
            meta: raw.meta.map(|m| meta_config(&m, resolve)).transpose()?,
            metrics: raw
                .metrics
                .map(|m| address("metrics.listen", &m.listen))
                .transpose()?,
            scrub_period: raw
                .scrub
                .and_then(|s| s.period)
                .map(|t| duration("scrub.period", &t))
                .transpose()?
                .unwrap_or(hive_actors::constants::DEFAULT_SCRUB_PERIOD),
            gc_interval: positive(
                "gc.interval",
                raw.gc.as_ref().and_then(|g| g.interval.clone()),
                hive_actors::constants::DEFAULT_GC_INTERVAL,
            )?,
            space: space(raw.reclaim, raw.gc)?,
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
[[store]]
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
        assert_eq!(config.stores[0].size, Some(64 << 20));
        assert!(config.stores[0].path.is_absolute());
        assert_eq!(config.meta, None);
        let meta = load(&format!("{GOOD}[meta]\npath = \"meta\"\nk = 2\nm = 1\n")).expect("valid");
        assert_eq!(meta.meta.expect("[meta]").class, (2, 1));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (bad, key) in [
            (GOOD.replace("64MiB", "64 parsecs"), "store[0].size"),
            (
                GOOD.replace("[tls]", "[[store]]\npath = \"store.img\"\n[tls]"),
                "named twice",
            ),
            (
                GOOD.replace("[[store]]\npath = \"store.img\"\nsize = \"64MiB\"\n", ""),
                "at least one [[store]]",
            ),
            (GOOD.replace("127.0.0.1:0", "everywhere"), "listen"),
            (
                format!("{GOOD}[scrub]\nperiod = \"7 fortnights\"\n"),
                "scrub.period",
            ),
            (
                format!("{GOOD}[reclaim]\nthreshold = 0.95\n"),
                "reclaim.threshold",
            ),
            (
                format!("{GOOD}[reclaim]\nrate = \"fast\"\n"),
                "reclaim.rate",
            ),
            (
                format!("{GOOD}[reclaim]\ninterval = \"0s\"\n"),
                "reclaim.interval",
            ),
            (format!("{GOOD}[gc]\ngrace = \"0s\"\n"), "gc.grace"),
            (format!("{GOOD}[gc]\ninterval = \"often\"\n"), "gc.interval"),
            (
                format!(
                    "{GOOD}[cluster]\nauthority = \"127.0.0.1:1\"\nauthority_id = 1\nout_after = \"soon\"\n"
                ),
                "cluster.out_after",
            ),
            (
                format!("{GOOD}[meta]\npath = \"meta\"\nk = 0\n"),
                "meta: k = 0",
            ),
            (
                GOOD.replace("node_id = 3", "node_id = 3\ncolour = 1"),
                "colour",
            ),
            (GOOD.replace("key = \"node.key\"", ""), "key"),
            (
                format!("{GOOD}[cluster]\nauthority = \"here\"\nauthority_id = 1\n"),
                "cluster.authority",
            ),
            (
                format!("{GOOD}[enroll]\nlisten = \"127.0.0.1:1\"\n"),
                "ca_key",
            ),
            (
                format!(
                    "{GOOD}[cluster]\nauthority = \"127.0.0.1:1\"\nauthority_id = 1\npg_bits = 4\n"
                ),
                "cluster.pg_bits",
            ),
        ] {
            let err = format!("{:#}", load(&bad).expect_err("invalid"));
            assert!(err.contains(key), "{key} not named in: {err}");
        }
    }
}
