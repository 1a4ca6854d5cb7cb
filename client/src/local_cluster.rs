//! `hive cluster up|down`, `hive put|get`: a whole cluster of `hive-node` processes on
//! this machine's loopback, for trying HiveFS out and for tests.
//!
//! `up` makes the CA (as `hive init`), gives every node a certificate directly from it,
//! picks a fixed port per node, formats a file-backed store per node, starts the nodes
//! (node 1 is the map authority), writes `cluster.toml` (the erasure scheme, the nodes
//! and their addresses, the client identity to use) and returns once the authority's map
//! shows every node up. `start` restarts stopped nodes on their ports; `status` asks the
//! authority.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hive_codec::{
    Chunker, ChunkerConfig, ClusterView, CompressionConfig, ErasureScheme, NodeState,
};
use hive_wire::net::control::{ControlClient, MAP_WATCH_WAIT, MapMessage, OwedShard};
use hive_wire::net::enroll::enroll;
use hive_wire::net::gc::GcClient;
use hive_wire::net::meta::{MetaCall, MetaClient, MetaOp, MetaReply};
use hive_wire::net::pki::DEFAULT_CERT_VALIDITY;
use hive_wire::net::shard_service::ShardClient;
use hive_wire::net::{Client, Identity, JoinToken, Role, Validity};
use hive_wire::units::{format_duration, parse_duration};
use hive_wire::{ChunkId, NodeId};
use serde::{Deserialize, Serialize};

use crate::chunk_io::{BadShard, ChunkStore};
use crate::cluster_dir::{ClusterDir, pem, write_new};
use crate::object::{get_object_to, put_object_from};

/// How long `up` waits for a node to listen, and `down` for one to exit.
const NODE_WAIT: Duration = Duration::from_secs(60);
/// How often `up` and `down` look again while waiting.
const POLL: Duration = Duration::from_millis(20);
/// How long `put` waits, after its last chunk's ACK, for the remaining shard writes
/// before counting them owed.
const SETTLE_GRACE: Duration = Duration::from_secs(2);
/// How long the join tokens `up` makes for its nodes and client stay valid.
const JOIN_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// How long, once another node has answered with a map, the authority may still take
/// to answer before its map is done without.
const AUTHORITY_GRACE: Duration = Duration::from_secs(1);
/// Owed shards per report to the authority (a report must fit one frame header).
const OWED_REPORT_BATCH: usize = 512;
/// Placement groups of a local cluster: 2^8.
const PG_BITS: u8 = 8;
/// Time between census rounds on a local cluster's nodes.
const LOCAL_CENSUS_INTERVAL: &str = "5s";
/// Time between each store's looks for segments to reclaim on a local cluster's nodes.
const LOCAL_RECLAIM_INTERVAL: &str = "5s";
/// The most replicas a metadata group has (each change waits for a majority).
const MAX_META_REPLICAS: u64 = 5;
/// How long a tool waits to learn the metadata group's leader.
const LEADER_DEADLINE: Duration = Duration::from_secs(5);
/// Each local node's store file, in its directory.
const STORE_FILE: &str = "store.img";
/// The map authority's map file, in its node's directory.
const MAP_FILE: &str = "map.toml";

/// `cluster.toml`.
#[derive(Serialize, Deserialize)]
struct ClusterFile {
    k: u8,
    m: u8,
    pg_bits: u8,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// The map authority's node id; its address is that node's.
    authority: u64,
    /// The node hosting the metadata service (the first replica of its group).
    #[serde(default = "first_node")]
    meta: u64,
    /// Every replica of the metadata group (empty: `meta` alone).
    #[serde(default)]
    meta_replicas: Vec<u64>,
    /// What making one more node takes (`cluster add`).
    #[serde(default)]
    template: Option<NodeTemplate>,
    nodes: Vec<NodeEntry>,
}

/// What making one more node of a local cluster takes: written by `up`, read by `add`.
#[derive(Serialize, Deserialize, Clone)]
struct NodeTemplate {
    /// Where the map authority enrolls new nodes.
    enroll: SocketAddr,
    /// Each node's store size, as `cluster up --store-size` took it.
    store_size: String,
    /// `[gc] grace`.
    gc_grace: String,
    /// `[gc] interval`.
    gc_interval: String,
}

impl NodeTemplate {
    fn gc(&self) -> Result<GcTimes> {
        Ok(GcTimes {
            grace: parse_duration(&self.gc_grace)?,
            interval: parse_duration(&self.gc_interval)?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct NodeEntry {
    id: u64,
    addr: SocketAddr,
    pid: u32,
    dir: PathBuf,
    /// Where the node serves its Prometheus metrics over HTTP.
    #[serde(default)]
    metrics: Option<SocketAddr>,
}

fn first_node() -> u64 {
    1
}

impl ClusterFile {
    fn node_addr(&self, id: u64, what: &str) -> Result<SocketAddr> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.addr)
            .with_context(|| format!("cluster.toml: {what} {id} is not among its nodes"))
    }

    /// The metadata group's replicas, with their addresses.
    fn meta_group(&self) -> Result<Vec<(NodeId, SocketAddr)>> {
        let ids = if self.meta_replicas.is_empty() {
            vec![self.meta]
        } else {
            self.meta_replicas.clone()
        };
        ids.iter()
            .map(|id| Ok((NodeId(*id), self.node_addr(*id, "metadata replica")?)))
            .collect()
    }

    fn authority_addr(&self) -> Result<SocketAddr> {
        self.node_addr(self.authority, "authority")
    }

    /// Rewrites `dir/cluster.toml` (a new file renamed over the old one).
    fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join("cluster.toml");
        hive_wire::files::replace(&path, toml::to_string(self)?.as_bytes())
            .with_context(|| format!("replacing {}", path.display()))
    }
}

/// The `hive-node` executable local clusters run: `HIVE_NODE_BIN`, or the one next to
/// this program.
pub fn node_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("HIVE_NODE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe().context("finding the hive executable")?;
    let beside = me.with_file_name("hive-node");
    if beside.exists() {
        return Ok(beside);
    }
    bail!(
        "hive-node not found next to {}; build it (cargo build -p hive-node) or set HIVE_NODE_BIN",
        me.display()
    )
}

/// The lowest port a local cluster takes.
const LOCAL_PORT_FLOOR: u16 = 10_000;
/// Where the kernel's ephemeral range is taken to start when it cannot be read.
const DEFAULT_EPHEMERAL_START: u16 = 32_768;

/// Ports handed out by this process, so clusters started side by side (tests) never
/// share one between choosing it and their node binding it.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The first port of the kernel's ephemeral range (`ip_local_port_range`).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

/// Shares the local port range is cut into when tests run side by side in separate
/// processes (one per test runner slot): more than the slots a two-core CI runs.
const TEST_SLOT_SHARES: u16 = 8;

/// The first port and the number of ports in `[floor, top)` this process takes from.
/// Under a test runner that runs each test in its own process side by side (nextest
/// names each running test's slot in `NEXTEST_TEST_GLOBAL_SLOT`), each slot takes its
/// own share: a port that one test's killed node keeps for its restart is never free
/// for another test's cluster to take meanwhile. Otherwise the whole range.
fn port_share(floor: u16, top: u16) -> (u16, u32) {
    let span = top - floor;
    let slot = std::env::var("NEXTEST_TEST_GLOBAL_SLOT")
        .ok()
        .and_then(|slot| slot.parse::<u16>().ok());
    match slot {
        Some(slot) if span >= TEST_SLOT_SHARES => {
            let share = span / TEST_SLOT_SHARES;
            (floor + (slot % TEST_SLOT_SHARES) * share, u32::from(share))
        }
        _ => (floor, u32::from(span)),
    }
}

/// `n` ports on 127.0.0.1, each free for both UDP (a node's QUIC endpoint) and TCP (its
/// metrics) when asked. Every node keeps its ports for good, so a stopped node restarts
/// where clients and the map expect it. They come from below the kernel's ephemeral
/// range: a port from that range, free when chosen, can be taken by any client's
/// outgoing socket before the node binds it.
fn free_ports(n: u64) -> Result<Vec<u16>> {
    let top = ephemeral_start();
    if top <= LOCAL_PORT_FLOOR {
        bail!(
            "the ephemeral port range starts at {top}; a local cluster needs ports between \
             {LOCAL_PORT_FLOOR} and it (see /proc/sys/net/ipv4/ip_local_port_range)"
        );
    }
    let (floor, span) = port_share(LOCAL_PORT_FLOOR, top);
    // A random start, so `up`s in concurrent processes rarely probe alike.
    let start = {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            % u64::from(span)
    };
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut ports = Vec::new();
    // Hold every socket until all are chosen, so no port is handed out twice.
    let mut held = Vec::new();
    for i in 0..span {
        if ports.len() as u64 == n {
            break;
        }
        let port = floor + ((start + u64::from(i)) % u64::from(span)) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        let (Ok(udp), Ok(tcp)) = (
            std::net::UdpSocket::bind(("127.0.0.1", port)),
            std::net::TcpListener::bind(("127.0.0.1", port)),
        ) else {
            continue;
        };
        held.push((udp, tcp));
        ports.push(port);
    }
    if ports.len() as u64 != n {
        bail!(
            "found only {} free ports on 127.0.0.1 below {top}; {n} are needed",
            ports.len()
        );
    }
    handed_out.extend(&ports);
    Ok(ports)
}

/// The configuration of a local node listening on `listen` and reached at `addr` (its
/// id comes from its certificate). The authority also hosts enrollment on
/// `enroll_port`.
fn node_config(
    (listen, addr): (SocketAddr, SocketAddr),
    authority: &NodeEntry,
    enroll_port: u16,
    store_size: &str,
    gc: GcTimes,
) -> String {
    // Six nodes share this machine's cores: one network thread each. A census every
    // few seconds: a local cluster is for trying failures out and seeing them healed.
    let mut config = format!(
        "network_threads = 1\nlisten = \"{listen}\"\n\n[[store]]\npath = \"{STORE_FILE}\"\nsize = \"{store_size}\"\nsegment_size = \"16MiB\"\n\n[reclaim]\ninterval = \"{LOCAL_RECLAIM_INTERVAL}\"\n\n[gc]\ngrace = \"{}\"\ninterval = \"{}\"\n\n[tls]\nca = \"../ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\nrevoked = \"../revoked\"\n\n[cluster]\nauthority = \"{}\"\nauthority_id = {}\ncensus_interval = \"{LOCAL_CENSUS_INTERVAL}\"\n",
        format_duration(gc.grace),
        format_duration(gc.interval),
        authority.addr,
        authority.id
    );
    if addr != listen {
        config.push_str(&format!("advertise = \"{addr}\"\n"));
    }
    if addr == authority.addr {
        config.push_str(&format!(
            "map = \"{MAP_FILE}\"\npg_bits = {PG_BITS}\n\n[enroll]\nlisten = \"127.0.0.1:{enroll_port}\"\nca_key = \"../ca.key\"\ntoken_key = \"../token.key\"\nids = \"ids.toml\"\n"
        ));
    }
    config
}

/// The `[meta]` section of a replica of the metadata group `replicas` (a default
/// volume of class k + m).
fn meta_section(replicas: &[&NodeEntry], (k, m): (u8, u8)) -> String {
    let members: Vec<String> = replicas
        .iter()
        .map(|r| format!("{} = \"{}\"", r.id, r.addr))
        .collect();
    format!(
        "\n[meta]\npath = \"meta\"\nk = {k}\nm = {m}\nreplicas = {{ {} }}\n",
        members.join(", ")
    )
}

/// Starts local node `entry` (its configuration and store exist); returns its pid.
fn spawn_node(binary: &Path, entry: &NodeEntry) -> Result<u32> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(entry.dir.join("node.log"))?;
    let child = Command::new(binary)
        .args(["run", "--config"])
        .arg(entry.dir.join("node.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting node {}", NodeId(entry.id)))?;
    Ok(child.id())
}

/// Sends `signal` (as kill(1) names it: `-KILL`, `-STOP`, ...) to process `pid`.
pub fn signal(signal: &str, pid: u32) -> Result<()> {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill {signal} {pid} failed ({status})");
    }
    Ok(())
}

/// Processes `up` started; stopped (SIGTERM) if `up` fails before it is emptied.
struct Started(Vec<u32>);

impl Drop for Started {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = signal("-TERM", *pid);
        }
    }
}

/// Garbage collection's timing on a local cluster's nodes.
#[derive(Debug, Clone, Copy)]
pub struct GcTimes {
    /// `[gc] grace`.
    pub grace: Duration,
    /// `[gc] interval`.
    pub interval: Duration,
}

/// The shape of a local cluster to start, as `hive cluster up` and `hive-chaos run`
/// take it.
#[derive(clap::Args, Debug, Clone)]
pub struct Shape {
    /// Nodes to start.
    #[arg(long, default_value_t = 6)]
    pub nodes: u64,
    /// Data shards per chunk.
    #[arg(long, default_value_t = 4)]
    pub k: u8,
    /// Parity shards per chunk.
    #[arg(long, default_value_t = 2)]
    pub m: u8,
    /// Size of each node's store file (sparse): like 1GiB or 512MiB.
    #[arg(long, default_value = "1GiB")]
    pub store_size: String,
    /// Replicas of the metadata group (nodes 1, 2, ...): each change is committed on a
    /// majority of them, so 3 survive the loss of one. Default: 3 with 3 or more
    /// nodes, else 1.
    #[arg(long)]
    pub meta_replicas: Option<u64>,
}

impl Shape {
    /// The metadata group's replicas: the first nodes.
    fn meta_replicas(&self) -> Result<u64> {
        let n = self
            .meta_replicas
            .unwrap_or(if self.nodes >= 3 { 3 } else { 1 });
        if n == 0 || n > self.nodes || n > MAX_META_REPLICAS {
            bail!(
                "--meta-replicas {n}: between 1 and {} (the nodes, at most {MAX_META_REPLICAS})",
                self.nodes.min(MAX_META_REPLICAS)
            );
        }
        Ok(n)
    }
}

/// Something that stands between a local cluster's nodes and everyone who reaches them
/// (the chaos tool's fault proxy): each node listens on an address of its own and is
/// reached at another, which the relay forwards to it.
pub trait Relay {
    /// The address node `id` listens on, with `port` (free on 127.0.0.1). Its
    /// connections to other nodes leave from the same IP address.
    fn listen(&self, id: u64, port: u16) -> SocketAddr;
    /// Starts relaying to node `id`, which listens on `listen`; the address the others
    /// reach it at (what the map, the other nodes and `cluster.toml` say).
    fn front(&mut self, id: u64, listen: SocketAddr) -> Result<SocketAddr>;
}

/// Starts a local cluster of the given shape in `dir`.
pub fn up(dir: &Path, shape: &Shape, gc: GcTimes) -> Result<()> {
    up_relayed(dir, shape, gc, None)
}

/// [`up`], the nodes reached through `relay` if one is given. Such a cluster can be
/// reached only while the relay runs.
pub fn up_relayed(
    dir: &Path,
    shape: &Shape,
    gc: GcTimes,
    mut relay: Option<&mut dyn Relay>,
) -> Result<()> {
    let Shape {
        nodes,
        k,
        m,
        ref store_size,
        ..
    } = *shape;
    let meta_replicas = shape.meta_replicas()?;
    let scheme = ErasureScheme::new(k, m)?;
    if nodes < scheme.width() as u64 {
        bail!(
            "--nodes {nodes} is fewer than the {} shards of a {scheme} chunk",
            scheme.width()
        );
    }
    let binary = node_binary()?;
    let started = Instant::now();
    ClusterDir::init(dir, "local")?;
    let cluster = ClusterDir::open(dir)?;
    let ports = free_ports(2 * nodes + 1)?;
    let (ports, metrics_ports) = ports.split_at(nodes as usize + 1);
    let enroll_at = SocketAddr::from(([127, 0, 0, 1], ports[0]));
    // Where each node listens, and where it is reached (the same without a relay).
    let mut listens = Vec::new();
    let mut entries = Vec::new();
    for (n, (port, metrics)) in (1..=nodes).zip(ports[1..].iter().zip(metrics_ports)) {
        let listen = match &relay {
            Some(relay) => relay.listen(n, *port),
            None => SocketAddr::from(([127, 0, 0, 1], *port)),
        };
        let addr = match &mut relay {
            Some(relay) => relay.front(n, listen)?,
            None => listen,
        };
        listens.push(listen);
        entries.push(NodeEntry {
            id: n,
            addr,
            pid: 0,
            dir: dir.join(format!("node-{n}")),
            metrics: Some(SocketAddr::from(([127, 0, 0, 1], *metrics))),
        });
    }
    let authority = NodeEntry {
        pid: 0,
        dir: PathBuf::new(),
        ..entries[0]
    };
    let replicas: Vec<&NodeEntry> = entries.iter().take(meta_replicas as usize).collect();
    let meta = meta_section(&replicas, (k, m));
    let replica_ids: Vec<u64> = replicas.iter().map(|r| r.id).collect();
    let template = NodeTemplate {
        enroll: enroll_at,
        store_size: store_size.clone(),
        gc_grace: format_duration(gc.grace),
        gc_interval: format_duration(gc.interval),
    };
    // Nodes started before a failure are stopped again.
    let mut started_pids = Started(Vec::new());
    for (entry, listen) in entries.iter_mut().zip(listens) {
        let mut extra = String::new();
        if replica_ids.contains(&entry.id) {
            extra.push_str(&meta);
        }
        make_node(
            &binary, &cluster, entry, listen, &authority, &template, &extra,
        )?;
        started_pids.0.push(entry.pid);
        if entry.id == authority.id {
            wait_listening(
                &entry.dir.join("node.log"),
                entry.id,
                Instant::now() + NODE_WAIT,
            )?;
            wait_log(
                &entry.dir.join("node.log"),
                "enrollment listening on",
                Instant::now() + NODE_WAIT,
            )?;
        }
    }
    let key = rcgen::KeyPair::generate()?;
    let token = JoinToken::new(cluster.fingerprint()?, Role::Client, None, JOIN_TOKEN_TTL)
        .seal(&cluster.token_key()?);
    let enrolled = runtime()?
        .block_on(enroll(enroll_at, &token, &key))
        .context("enrolling the client identity")?;
    write_new(
        &dir.join("client.pem"),
        pem("CERTIFICATE", enrolled.cert.as_ref()).as_bytes(),
        0o644,
    )?;
    write_new(
        &dir.join("client.key"),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    let file = ClusterFile {
        k,
        m,
        pg_bits: PG_BITS,
        client_cert: "client.pem".into(),
        client_key: "client.key".into(),
        authority: 1,
        meta: 1,
        meta_replicas: replica_ids,
        template: Some(template),
        nodes: entries,
    };
    file.save(dir)?;
    let ids: Vec<u64> = file.nodes.iter().map(|n| n.id).collect();
    wait_healthy(dir, &file, &ids)?;
    admit(dir, &file, &ids)?;
    wait_meta_leader(dir, &file)?;
    started_pids.0.clear();
    for node in &file.nodes {
        crate::outln!(
            "node {} listening on {} (pid {})",
            NodeId(node.id),
            node.addr,
            node.pid
        );
    }
    crate::outln!(
        "cluster of {nodes} nodes, {scheme}, up in {:.1}s; map authority: node {}; its files are in {}",
        started.elapsed().as_secs_f64(),
        NodeId(file.authority),
        dir.display()
    );
    Ok(())
}

/// Makes local node `entry` and starts it: its directory and configuration (listening
/// on `listen`, plus `extra`), its certificate (from the CA directly for the map
/// authority, which enrolls the others; through a join token for every other node),
/// and its formatted store. Sets `entry.pid`.
fn make_node(
    binary: &Path,
    cluster: &ClusterDir,
    entry: &mut NodeEntry,
    listen: SocketAddr,
    authority: &NodeEntry,
    template: &NodeTemplate,
    extra: &str,
) -> Result<()> {
    std::fs::create_dir_all(&entry.dir)?;
    let mut config = node_config(
        (listen, entry.addr),
        authority,
        template.enroll.port(),
        &template.store_size,
        template.gc()?,
    );
    config.push_str(extra);
    if let Some(metrics) = entry.metrics {
        config.push_str(&format!("\n[metrics]\nlisten = \"{metrics}\"\n"));
    }
    let config_path = entry.dir.join("node.toml");
    write_new(&config_path, config.as_bytes(), 0o644)?;
    if entry.id == authority.id {
        let validity = Validity::starting_now(DEFAULT_CERT_VALIDITY);
        let (cert, key) = cluster
            .ca()?
            .issue_with_key(Identity::node(NodeId(entry.id)), validity)?;
        write_new(
            &entry.dir.join("node.pem"),
            pem("CERTIFICATE", cert.as_ref()).as_bytes(),
            0o644,
        )?;
        write_new(
            &entry.dir.join("node.key"),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
    } else {
        join_node(binary, cluster, entry.id, template.enroll, &config_path)?;
    }
    let status = Command::new(binary)
        .args(["format", "--config"])
        .arg(&config_path)
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {}", binary.display()))?;
    if !status.success() {
        bail!("formatting node {} failed ({status})", entry.id);
    }
    entry.pid = spawn_node(binary, entry)?;
    Ok(())
}

/// Enrolls node `id` with a new join token (`hive-node join`), which writes its key
/// and certificate beside `config_path`.
fn join_node(
    binary: &Path,
    cluster: &ClusterDir,
    id: u64,
    enroll_at: SocketAddr,
    config_path: &Path,
) -> Result<()> {
    let token = JoinToken::new(cluster.fingerprint()?, Role::Node, None, JOIN_TOKEN_TTL)
        .seal(&cluster.token_key()?);
    let out = Command::new(binary)
        .args([
            "join",
            "--token",
            &token,
            "--enroll",
            &enroll_at.to_string(),
            "--config",
        ])
        .arg(config_path)
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !out.status.success() {
        bail!(
            "node {id} could not join: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let named: Identity = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("the identity hive-node join printed")?;
    if named != Identity::node(NodeId(id)) {
        bail!("node-{id} joined as {named}; was another node enrolled meanwhile?");
    }
    Ok(())
}

/// Adds `count` new nodes to the local cluster in `dir`, like those `up` made, and
/// waits until the map hears from them; their ids. With `admitted`, also puts them into
/// placement and waits until the map shows them up: placement moves some slots of
/// every group to them, and the nodes' census moves the shards after. Without, they
/// stay out (as nodes that join a cluster do) until 'hive node in'.
pub fn add(dir: &Path, count: u64, admitted: bool) -> Result<Vec<NodeId>> {
    if count == 0 {
        bail!("--nodes 0: nothing to add");
    }
    let mut file = load(dir)?;
    let template = file.template.clone().context(
        "cluster.toml has no [template]: this cluster was made by an older 'hive cluster up', which did not record how to make more nodes",
    )?;
    if file.nodes.iter().any(|n| n.dir.as_os_str().is_empty()) {
        bail!("cluster.toml names a node without a directory");
    }
    let binary = node_binary()?;
    let cluster = ClusterDir::open(dir)?;
    let authority = file
        .nodes
        .iter()
        .find(|n| n.id == file.authority)
        .map(|n| NodeEntry {
            pid: 0,
            dir: PathBuf::new(),
            ..*n
        })
        .context("cluster.toml: the map authority is not among its nodes")?;
    let ports = free_ports(2 * count)?;
    let first = file.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
    let mut added = Vec::new();
    for (n, pair) in (first..).zip(ports.chunks(2)) {
        let addr = SocketAddr::from(([127, 0, 0, 1], pair[0]));
        let mut entry = NodeEntry {
            id: n,
            addr,
            pid: 0,
            dir: dir.join(format!("node-{n}")),
            metrics: Some(SocketAddr::from(([127, 0, 0, 1], pair[1]))),
        };
        if entry.dir.exists() {
            bail!(
                "{} exists already: a node is left from an earlier add",
                entry.dir.display()
            );
        }
        make_node(
            &binary, &cluster, &mut entry, addr, &authority, &template, "",
        )?;
        added.push(n);
        // Recorded at once: 'cluster down' stops it even if a later one fails.
        file.nodes.push(entry);
        file.save(dir)?;
    }
    wait_healthy(dir, &file, &added)?;
    if admitted {
        admit(dir, &file, &added)?;
    }
    Ok(added.into_iter().map(NodeId).collect())
}

/// Starts the nodes of the local cluster in `dir` that are not running (all of them, or
/// those in `only`), and waits until the map shows them up.
pub fn start(dir: &Path, only: &[u64]) -> Result<()> {
    let started = Instant::now();
    let done = start_nodes(dir, only)?;
    for (id, pid) in done.running {
        crate::outln!("node {id} is already running (pid {pid})");
    }
    for id in &done.started {
        crate::outln!("node {id} started");
    }
    crate::outln!(
        "{} nodes up again in {:.1}s",
        done.started.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What [`start_nodes`] found: the nodes it started, and those already running with
/// their process ids.
pub struct StartedNodes {
    /// Started now.
    pub started: Vec<NodeId>,
    /// Running already.
    pub running: Vec<(NodeId, u32)>,
}

/// What [`start`] does, saying nothing.
pub fn start_nodes(dir: &Path, only: &[u64]) -> Result<StartedNodes> {
    let binary = node_binary()?;
    let mut file = load(dir)?;
    let mut ids = Vec::new();
    let mut running = Vec::new();
    for entry in &mut file.nodes {
        if !only.is_empty() && !only.contains(&entry.id) {
            continue;
        }
        if entry.pid != 0 && alive(entry.pid) {
            running.push((NodeId(entry.id), entry.pid));
            continue;
        }
        entry.pid = spawn_node(&binary, entry)?;
        ids.push(entry.id);
    }
    if let Some(unknown) = only
        .iter()
        .find(|n| !file.nodes.iter().any(|e| e.id == **n))
    {
        bail!("the cluster has no node {unknown}");
    }
    file.save(dir)?;
    wait_healthy(dir, &file, &ids)?;
    if file.meta_group()?.iter().any(|(id, _)| ids.contains(&id.0)) {
        wait_meta_leader(dir, &file)?;
    }
    Ok(StartedNodes {
        started: ids.into_iter().map(NodeId).collect(),
        running,
    })
}

/// Waits until each node of `ids` logs that it listens, the map authority hears from
/// it (up, or out: a node that joined is out until put in), and it follows a map (a
/// node that knows none answers map questions with epoch 0), within [`NODE_WAIT`].
fn wait_healthy(dir: &Path, file: &ClusterFile, ids: &[u64]) -> Result<()> {
    let deadline = Instant::now() + NODE_WAIT;
    let nodes: Vec<_> = file.nodes.iter().filter(|n| ids.contains(&n.id)).collect();
    for entry in &nodes {
        wait_listening(&entry.dir.join("node.log"), entry.id, deadline)?;
    }
    wait_map(
        dir,
        file,
        ids,
        deadline,
        "heard from (up or out)",
        |state| matches!(state, NodeState::Up | NodeState::Out),
    )?;
    for entry in &nodes {
        wait_log(
            &entry.dir.join("node.log"),
            "map: following epoch",
            deadline,
        )
        .with_context(|| format!("node {}", NodeId(entry.id)))?;
    }
    Ok(())
}

/// Waits until the metadata group has a leader that has applied what it found (its
/// first answer to a read), within [`NODE_WAIT`].
fn wait_meta_leader(dir: &Path, file: &ClusterFile) -> Result<()> {
    let runtime = runtime()?;
    let _entered = runtime.enter();
    let client = Arc::new(cluster_client(dir, file)?);
    let meta = MetaClient::group(client, &file.meta_group()?);
    let deadline = Instant::now() + NODE_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let answer =
            runtime.block_on(meta.call_within("default", (0, 0, 0), MetaCall::Mount, left));
        match answer {
            Ok(MetaReply::Mounted(_) | MetaReply::Errno(_)) => return Ok(()),
            Ok(other) => bail!("the metadata group answered a mount with {other:?}"),
            // A refusal is an answer too: the group serves.
            Err(hive_wire::net::RpcError::Remote(r))
                if r.code != hive_wire::net::rpc::code::UNAVAILABLE =>
            {
                return Ok(());
            }
            Err(e) if left.is_zero() => bail!(
                "the metadata group did not serve within {NODE_WAIT:?} ({e}); see the node logs in {}",
                dir.display()
            ),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Puts the nodes of `ids` that joined (out until then) into placement, as an
/// administrator does with 'hive node in', and waits until the map shows them up:
/// what `up` and `add` do for the nodes they make.
fn admit(dir: &Path, file: &ClusterFile, ids: &[u64]) -> Result<()> {
    let runtime = runtime()?;
    let _entered = runtime.enter();
    let admin = admin(dir)?;
    runtime.block_on(async {
        for &id in ids {
            admin
                .authority
                .node_in(NodeId(id))
                .await
                .with_context(|| format!("putting node {} into placement", NodeId(id)))?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let deadline = Instant::now() + NODE_WAIT;
    wait_map(dir, file, ids, deadline, "up", |state| {
        state == NodeState::Up
    })
}

/// Waits until the map authority shows every node of `ids` in a state `wanted` takes
/// (described as `what`).
fn wait_map(
    dir: &Path,
    file: &ClusterFile,
    ids: &[u64],
    deadline: Instant,
    what: &str,
    wanted: impl Fn(NodeState) -> bool,
) -> Result<()> {
    runtime()?.block_on(async {
        let authority = authority_client(dir, file)?;
        let mut known = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "the map authority did not show nodes {ids:?} {what} within {NODE_WAIT:?}; see the node logs in {}",
                    dir.display()
                );
            }
            // A watch: answers at once with a newer map, or after the wait.
            let Ok(message) = authority.map(known, left.min(MAP_WATCH_WAIT)).await else {
                // The authority itself may still be starting: its log says when it listens.
                tokio::time::sleep(POLL).await;
                continue;
            };
            known = message.epoch;
            let view = ClusterView::from_message(&message)?;
            let state = |id: &u64| view.map.node(NodeId(*id)).map(|n| n.state);
            if ids.iter().all(|id| state(id).is_some_and(&wanted)) {
                return Ok(());
            }
        }
    })
}
/// The log of a node's latest run (a restarted node appends to its log).
fn last_run(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.rsplit("hive-node starting")
        .next()
        .unwrap_or(&text)
        .to_string()
}

/// Waits until the latest run of a node logs a line containing `what`; the rest of
/// that line. Fails early if the node logged its failure.
fn wait_log(log: &Path, what: &str, deadline: Instant) -> Result<String> {
    loop {
        let run = last_run(log);
        if let Some(rest) = run.lines().find_map(|l| l.split(what).nth(1)) {
            return Ok(rest.trim().to_string());
        }
        if let Some(err) = run.lines().find(|l| l.starts_with("hive-node:")) {
            bail!("node failed to start: {err} (see {})", log.display());
        }
        if Instant::now() > deadline {
            bail!("no {what:?} within {NODE_WAIT:?}; see {}", log.display());
        }
        std::thread::sleep(POLL);
    }
}

fn wait_listening(log: &Path, id: u64, deadline: Instant) -> Result<SocketAddr> {
    let addr = wait_log(log, "listening on ", deadline).with_context(|| format!("node {id}"))?;
    addr.parse().context("node address in its log")
}

fn load(dir: &Path) -> Result<ClusterFile> {
    let path = dir.join("cluster.toml");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {}; start a cluster with 'hive cluster up --dir {}'",
            path.display(),
            dir.display()
        )
    })?;
    toml::from_str(&text).with_context(|| format!("{} is invalid", path.display()))
}

/// Whether `pid` is a running `hive-node` (not gone, not a zombie waiting to be reaped,
/// not another program that reused the pid).
pub fn alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name: "pid (comm) S ...".
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    let program = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let is_node = program
        .split(|b| *b == 0)
        .next()
        .is_some_and(|exe| exe.ends_with(b"hive-node"));
    is_node && !matches!(state, Some('Z' | 'X') | None)
}

/// Stops every node of the local cluster in `dir`: SIGTERM to each, then waits for
/// all. A node still running after [`NODE_WAIT`] is killed (SIGKILL: what it
/// acknowledged is durable already). Every node is seen to, whatever fails on
/// another; the failures are named together at the end.
pub fn down(dir: &Path) -> Result<()> {
    let file = load(dir)?;
    let problems = stop(file.nodes.iter());
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("; "))
    }
}

/// Stops the processes of `nodes` that run (SIGTERM: each drains and exits; SIGKILL
/// past [`NODE_WAIT`]), saying so of each; what went wrong.
fn stop<'a>(nodes: impl Iterator<Item = &'a NodeEntry> + Clone) -> Vec<String> {
    let mut problems = Vec::new();
    for node in nodes.clone() {
        if alive(node.pid) {
            // SIGCONT too: a stopped (SIGSTOP) node would hold its SIGTERM forever.
            for sig in ["-TERM", "-CONT"] {
                if let Err(e) = signal(sig, node.pid) {
                    problems.push(format!("node {}: {e:#}", NodeId(node.id)));
                }
            }
        }
    }
    let deadline = Instant::now() + NODE_WAIT;
    for node in nodes {
        while alive(node.pid) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        if !alive(node.pid) {
            crate::outln!("node {} stopped", NodeId(node.id));
            continue;
        }
        let killed = signal("-KILL", node.pid)
            .map(|()| "killed".to_string())
            .unwrap_or_else(|e| format!("and could not be killed: {e:#}"));
        problems.push(format!(
            "node {} (pid {}) did not stop within {NODE_WAIT:?}: {killed}",
            NodeId(node.id),
            node.pid
        ));
    }
    problems
}

/// What follows the authority's removal of `node` on the local cluster in `dir`: its
/// process stopped if it runs, its certificate revoked (no node or client accepts it
/// again), and its entry dropped from `cluster.toml`. Its directory stays, store
/// included, for the operator to delete.
pub fn retire(dir: &Path, node: NodeId) -> Result<()> {
    let mut file = load(dir)?;
    let Some(at) = file.nodes.iter().position(|n| n.id == node.0) else {
        bail!("cluster.toml has no node {node}");
    };
    let problems = stop(std::iter::once(&file.nodes[at]));
    ClusterDir::open(dir)?.revoke(Identity::node(node))?;
    file.nodes.remove(at);
    file.save(dir)?;
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("; "))
    }
}

/// Makes node `node` of the local cluster in `dir` able to hold a replica of the
/// metadata group (a `[meta]` section naming the group's replicas and itself, so it
/// never forms a group of its own), restarting it if it ran without one. Returns its
/// address.
pub fn prepare_meta_replica(dir: &Path, node: u64) -> Result<SocketAddr> {
    let file = load(dir)?;
    let entry = file
        .nodes
        .iter()
        .find(|n| n.id == node)
        .with_context(|| format!("the cluster has no node {node}"))?;
    let config_path = entry.dir.join("node.toml");
    let config = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    if config.lines().any(|l| l.trim() == "[meta]") {
        return Ok(entry.addr);
    }
    let mut members: Vec<&NodeEntry> = file
        .meta_group()?
        .iter()
        .filter_map(|(id, _)| file.nodes.iter().find(|n| n.id == id.0))
        .collect();
    members.push(entry);
    let updated = config + &meta_section(&members, (file.k, file.m));
    hive_wire::files::replace(&config_path, updated.as_bytes())
        .with_context(|| format!("replacing {}", config_path.display()))?;
    if entry.pid != 0 && alive(entry.pid) {
        signal("-TERM", entry.pid)?;
        let deadline = Instant::now() + NODE_WAIT;
        while alive(entry.pid) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        if alive(entry.pid) {
            bail!(
                "node {} did not stop within {NODE_WAIT:?} to take up its replica",
                NodeId(node)
            );
        }
    }
    start_nodes(dir, &[node])?;
    Ok(entry.addr)
}

/// Records the metadata group's replicas in `dir`'s `cluster.toml` (what clients ask).
pub fn set_meta_replicas(dir: &Path, replicas: &[u64]) -> Result<()> {
    let mut file = load(dir)?;
    file.meta_replicas = replicas.to_vec();
    if let Some(first) = replicas.first()
        && !replicas.contains(&file.meta)
    {
        file.meta = *first;
    }
    file.save(dir)
}

fn cluster_client(dir: &Path, file: &ClusterFile) -> Result<Client> {
    ClusterDir::open(dir)?.client(&file.client_cert, &file.client_key)
}

/// A client of each replica of the metadata group alone (as the admin), by node.
pub fn meta_replicas(dir: &Path) -> Result<Vec<(NodeId, MetaClient)>> {
    let file = load(dir)?;
    let client = Arc::new(ClusterDir::open(dir)?.admin_client()?);
    Ok(file
        .meta_group()?
        .into_iter()
        .map(|(node, addr)| (node, MetaClient::new(client.clone(), addr, node)))
        .collect())
}

/// The metadata group's replicas of the local cluster in `dir`, with their addresses.
pub fn meta_group(dir: &Path) -> Result<Vec<(NodeId, SocketAddr)>> {
    load(dir)?.meta_group()
}

/// The metadata service of the local cluster in `dir`, as its client identity (which
/// mounts) or, with `admin`, as the admin identity (which manages volumes).
pub fn meta_client(dir: &Path, admin: bool) -> Result<MetaClient> {
    let file = load(dir)?;
    let client = if admin {
        ClusterDir::open(dir)?.admin_client()?
    } else {
        cluster_client(dir, &file)?
    };
    Ok(MetaClient::group(Arc::new(client), &file.meta_group()?))
}

/// The garbage collection service of the local cluster in `dir`, reached as the
/// administrator: on the metadata group's leader (the only replica that runs rounds),
/// or on the first replica while no leader is known.
pub async fn gc_client(dir: &Path) -> Result<GcClient> {
    let file = load(dir)?;
    let client = Arc::new(ClusterDir::open(dir)?.admin_client()?);
    let group = file.meta_group()?;
    let meta = MetaClient::group(client.clone(), &group);
    let leader = match meta
        .call_within("", (0, 0, 0), MetaCall::Group, LEADER_DEADLINE)
        .await
    {
        Ok(MetaReply::Group(g)) => g.leader,
        _ => None,
    };
    let (node, addr) = group
        .iter()
        .find(|(id, _)| Some(id.0) == leader)
        .or(group.first())
        .copied()
        .context("cluster.toml names no metadata replica")?;
    Ok(GcClient::new(client, addr, node))
}

/// The erasure scheme the local cluster in `dir` was made with.
pub fn scheme(dir: &Path) -> Result<ErasureScheme> {
    let file = load(dir)?;
    Ok(ErasureScheme::new(file.k, file.m)?)
}

/// Refuses `scheme` if the local cluster in `dir` has fewer nodes than it has shards.
pub fn check_fits(dir: &Path, scheme: ErasureScheme) -> Result<()> {
    fits(scheme, load(dir)?.nodes.len())
}

/// Refuses `scheme` on `nodes` nodes when its k + m shards cannot each have their own.
fn fits(scheme: ErasureScheme, nodes: usize) -> Result<()> {
    let shards = usize::from(scheme.k()) + usize::from(scheme.m());
    if shards > nodes {
        bail!(
            "{scheme} puts each of a chunk's {shards} shards on its own node, and this cluster has {nodes}"
        );
    }
    Ok(())
}

/// The local cluster in `dir` as its administrator reaches it: the map authority,
/// and a client with the admin identity for talking to any node.
pub struct Admin {
    /// A client with the cluster's admin identity.
    pub client: Arc<Client>,
    /// The map authority, reached as the admin.
    pub authority: ControlClient,
    /// The authority's node id.
    pub authority_id: NodeId,
}

impl Admin {
    /// The control service of `node` at `addr`, reached as the admin.
    pub fn node(&self, node: NodeId, addr: SocketAddr) -> ControlClient {
        ControlClient::new(self.client.clone(), addr, node)
    }

    /// The cluster's status, as the map authority knows it.
    pub async fn status(&self) -> Result<hive_wire::net::control::StatusMessage> {
        self.authority.status().await.with_context(|| {
            format!(
                "asking the map authority (node {} at {}) for the status",
                self.authority_id,
                self.authority.addr()
            )
        })
    }
}

/// The administrator's handle on the local cluster in `dir`.
pub fn admin(dir: &Path) -> Result<Admin> {
    let file = load(dir)?;
    let client = Arc::new(ClusterDir::open(dir)?.admin_client()?);
    let authority = ControlClient::new(
        client.clone(),
        file.authority_addr()?,
        NodeId(file.authority),
    );
    Ok(Admin {
        client,
        authority,
        authority_id: NodeId(file.authority),
    })
}

fn authority_client(dir: &Path, file: &ClusterFile) -> Result<ControlClient> {
    Ok(ControlClient::new(
        Arc::new(cluster_client(dir, file)?),
        file.authority_addr()?,
        NodeId(file.authority),
    ))
}

/// The newest map the cluster offers: the authority's, or, while it cannot be reached,
/// the newest one the other nodes follow (asked all at once). Never one made up from
/// `cluster.toml`'s node list: shards written under a map the cluster never had land
/// where no read looks. No map, no reads or writes, and an error that says why.
async fn learn_view(file: &ClusterFile, client: Arc<Client>) -> Result<ClusterView> {
    let mut asked = tokio::task::JoinSet::new();
    for node in &file.nodes {
        let control = ControlClient::new(client.clone(), node.addr, NodeId(node.id));
        let from_authority = node.id == file.authority;
        asked.spawn(async move { (from_authority, control.map(0, Duration::ZERO).await) });
    }
    let mut best: Option<MapMessage> = None;
    let mut grace: Option<tokio::time::Instant> = None;
    let mut authority_error = None;
    loop {
        let next = match grace {
            Some(until) => match tokio::time::timeout_at(until, asked.join_next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => asked.join_next().await,
        };
        let Some(Ok((from_authority, answer))) = next else {
            if next.is_none() {
                break;
            }
            continue;
        };
        match answer {
            Ok(map) if from_authority => return Ok(ClusterView::from_message(&map)?),
            // A node that follows no map yet (just started) has nothing to offer.
            Ok(map) if map.epoch == 0 => {}
            Ok(map) => {
                if best.as_ref().is_none_or(|b| map.epoch > b.epoch) {
                    best = Some(map);
                }
                // Another node answered: give the authority a moment, then go without.
                grace.get_or_insert_with(|| tokio::time::Instant::now() + AUTHORITY_GRACE);
            }
            Err(err) if from_authority => authority_error = Some(err),
            Err(_) => {}
        }
    }
    let why =
        authority_error.map_or_else(|| "did not answer in time".to_string(), |e| e.to_string());
    match best {
        Some(map) => {
            eprintln!(
                "warning: map authority (node {}) unreachable ({why}); using map epoch {} from another node",
                NodeId(file.authority),
                map.epoch
            );
            Ok(ClusterView::from_message(&map)?)
        }
        None => bail!(
            "no node of the cluster answered with a map (the map authority, node {}: {why}); without one nothing can be placed or found. Are the nodes running? 'hive cluster start --dir DIR' starts stopped ones",
            NodeId(file.authority)
        ),
    }
}

/// The nodes of the local cluster in `dir` and their process ids (0: never started).
pub fn nodes(dir: &Path) -> Result<Vec<(NodeId, u32)>> {
    Ok(load(dir)?
        .nodes
        .iter()
        .map(|n| (NodeId(n.id), n.pid))
        .collect())
}

/// A client of node `node`'s shard service in the local cluster in `dir`, as the
/// administrator; call on a tokio runtime (its endpoint lives there).
pub fn shard_client(dir: &Path, node: NodeId) -> Result<ShardClient> {
    let file = load(dir)?;
    let client = Arc::new(ClusterDir::open(dir)?.admin_client()?);
    Ok(ShardClient::new(
        client,
        file.node_addr(node.0, "node")?,
        node,
    ))
}

/// The nodes of the local cluster in `dir` that host its control plane: the map
/// authority and the metadata group's replicas.
pub fn control_nodes(dir: &Path) -> Result<Vec<NodeId>> {
    let file = load(dir)?;
    let mut nodes = vec![NodeId(file.authority)];
    nodes.extend(file.meta_group()?.into_iter().map(|(id, _)| id));
    nodes.sort();
    nodes.dedup();
    Ok(nodes)
}

/// The store file of node `node` of the local cluster in `dir`.
pub fn store_file(dir: &Path, node: NodeId) -> Result<PathBuf> {
    let file = load(dir)?;
    let entry = file
        .nodes
        .iter()
        .find(|n| n.id == node.0)
        .with_context(|| format!("node {node} is not in {}", dir.display()))?;
    Ok(entry.dir.join(STORE_FILE))
}

/// The map file of the local cluster in `dir`: the map authority's copy of the map.
pub fn map_file(dir: &Path) -> Result<PathBuf> {
    let file = load(dir)?;
    let entry = file
        .nodes
        .iter()
        .find(|n| n.id == file.authority)
        .with_context(|| format!("the map authority is not in {}", dir.display()))?;
    Ok(entry.dir.join(MAP_FILE))
}

/// A chunk store on the current map of the local cluster in `dir`, with its erasure
/// scheme, and a control client of its map authority.
pub async fn connect(dir: &Path) -> Result<(Arc<ChunkStore>, Arc<ControlClient>)> {
    let file = load(dir)?;
    chunk_store(dir, &file).await
}

/// The metadata service of the local cluster in `dir`, and what connects a chunk store
/// of a given scheme on the same endpoint: what a mount uses (its volume names the
/// scheme).
pub fn connect_mount(dir: &Path) -> Result<(MetaClient, Connector)> {
    let file = load(dir)?;
    let client = Arc::new(cluster_client(dir, &file)?);
    let meta = MetaClient::group(client.clone(), &file.meta_group()?);
    Ok((meta, Connector { file, client }))
}

/// Makes chunk stores on one cluster endpoint; see [`connect_mount`].
pub struct Connector {
    file: ClusterFile,
    client: Arc<Client>,
}

impl Connector {
    /// A chunk store writing `scheme` on the current map, and a control client of the
    /// map authority.
    pub async fn chunk_store(
        &self,
        scheme: ErasureScheme,
    ) -> Result<(Arc<ChunkStore>, Arc<ControlClient>)> {
        fits(scheme, self.file.nodes.len())?;
        store_on(&self.file, self.client.clone(), scheme).await
    }
}

/// A chunk store on the cluster's current map, and a control client of the authority
/// (the one the store follows the map through).
async fn chunk_store(
    dir: &Path,
    file: &ClusterFile,
) -> Result<(Arc<ChunkStore>, Arc<ControlClient>)> {
    let scheme = ErasureScheme::new(file.k, file.m)?;
    store_on(file, Arc::new(cluster_client(dir, file)?), scheme).await
}

/// A chunk store and an authority client on `client`'s endpoint.
async fn store_on(
    file: &ClusterFile,
    client: Arc<Client>,
    scheme: ErasureScheme,
) -> Result<(Arc<ChunkStore>, Arc<ControlClient>)> {
    let view = learn_view(file, client.clone()).await?;
    let authority = Arc::new(ControlClient::new(
        client.clone(),
        file.authority_addr()?,
        NodeId(file.authority),
    ));
    let store = Arc::new(ChunkStore::new(
        view,
        client.as_ref().clone(),
        scheme,
        CompressionConfig::default(),
    ));
    // New epochs (nodes going down or coming back) reach the store while it works.
    store.follow(authority.clone());
    Ok((store, authority))
}

/// The runtime the `hive` tool's cluster commands run on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting tokio")
}

/// Waits for shard writes still running after their chunks' ACKs (at most
/// [`SETTLE_GRACE`]) and reports the shards owed to the map authority.
/// Returns how many were owed.
pub async fn report_owed(store: &ChunkStore, authority: &ControlClient) -> usize {
    let owed = store.settle(SETTLE_GRACE).await;
    if owed.is_empty() {
        return 0;
    }
    send_owed(authority, &owed).await;
    store.hint_owed(&owed).await;
    owed.len()
}

/// Says how many shards [`report_owed`] handed to repair, if any.
pub fn say_owed(owed: usize) {
    if owed > 0 {
        eprintln!("{owed} shards could not be stored on their nodes and are owed to repair");
    }
}

/// Reports `owed` shards to the map authority, in batches that fit a request.
pub async fn send_owed(authority: &ControlClient, owed: &[OwedShard]) {
    for batch in owed.chunks(OWED_REPORT_BATCH) {
        if let Err(err) = authority.report_owed(batch.to_vec()).await {
            eprintln!("warning: could not report owed shards to the map authority: {err}");
            return;
        }
    }
}

/// Stores `path` as an object and records it in the namespace (so garbage collection
/// keeps it until `hive delete`); returns its id.
pub fn put(dir: &Path, path: &Path) -> Result<ChunkId> {
    let file = load(dir)?;
    let chunker = Chunker::new(ChunkerConfig::default())?;
    runtime()?.block_on(async {
        let meta = meta_client(dir, true)?;
        let source = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let (store, authority) = chunk_store(dir, &file).await?;
        let stored = put_recorded(&meta, &store, &chunker, source).await;
        say_owed(report_owed(&store, &authority).await);
        stored.with_context(|| format!("storing {}", path.display()))
    })
}

/// Stores everything `source` yields as an object and records it in the namespace
/// through `meta` (an admin client), so garbage collection keeps it until it is
/// deleted; returns its id. The shards owed are left in `store` to report.
pub async fn put_recorded<R: tokio::io::AsyncRead + Unpin>(
    meta: &MetaClient,
    store: &Arc<ChunkStore>,
    chunker: &Chunker,
    source: R,
) -> Result<ChunkId> {
    let (id, manifest) = put_object_from(store, chunker, source).await?;
    let op = MetaOp::PutObject {
        id: id.0,
        len: manifest.len,
        chunks: manifest.chunks.iter().map(|(c, _)| c.0).collect(),
    };
    object_op(meta, op)
        .await
        .with_context(|| format!("recording object {id} in the namespace"))?;
    Ok(id)
}

/// Hands the damaged shards `store`'s reads have met since the last call to repair:
/// reports them owed to the authority and hints their holders. Returns them.
pub async fn report_bad(store: &ChunkStore, authority: &ControlClient) -> Vec<BadShard> {
    let bad = store.take_bad();
    let owed = bad.iter().map(|b| store.owed(b)).collect::<Vec<_>>();
    send_owed(authority, &owed).await;
    store.hint_owed(&owed).await;
    bad
}

/// Deletes object `id`'s record: garbage collection then frees the chunks nothing else
/// uses.
pub fn delete_object(dir: &Path, id: ChunkId) -> Result<()> {
    runtime()?.block_on(async { delete_recorded(&meta_client(dir, true)?, id).await })
}

/// Deletes object `id`'s record through `meta` (an admin client).
pub async fn delete_recorded(meta: &MetaClient, id: ChunkId) -> Result<()> {
    object_op(meta, MetaOp::DeleteObject { id: id.0 })
        .await
        .with_context(|| format!("deleting object {id}"))
}

/// Applies an object operation as the administrator.
async fn object_op(meta: &MetaClient, op: MetaOp) -> Result<()> {
    match meta.call("", 0, 0, MetaCall::Apply(op)).await? {
        MetaReply::Done => Ok(()),
        MetaReply::Errno(crate::errno::ENOENT) => {
            bail!("no such object")
        }
        MetaReply::Errno(e) => bail!("refused: {}", std::io::Error::from_raw_os_error(e)),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// Reads object `id` into `out`: into a temporary file beside it, renamed over `out`
/// once complete and synced, so a failed read never leaves a truncated `out` (a device
/// or pipe such as /dev/null is written directly).
pub fn get(dir: &Path, id: ChunkId, out: &Path) -> Result<u64> {
    let file = load(dir)?;
    let special = std::fs::metadata(out).is_ok_and(|m| !m.is_file());
    let partial = if special {
        out.to_path_buf()
    } else {
        let mut name = out.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        out.with_file_name(name)
    };
    let written = runtime()?.block_on(async {
        let (store, authority) = chunk_store(dir, &file).await?;
        let mut sink = tokio::fs::File::create(&partial)
            .await
            .with_context(|| format!("creating {}", partial.display()))?;
        let written = get_object_to(&store, id, &mut sink).await;
        for shard in report_bad(&store, &authority).await {
            eprintln!(
                "warning: damaged shard {} of chunk {} on node {}: {} (read from other shards; owed to repair)",
                shard.index, shard.chunk, shard.node, shard.reason
            );
        }
        match written {
            Ok(n) if !special => {
                sink.sync_all()
                    .await
                    .with_context(|| format!("syncing {}", partial.display()))?;
                anyhow::Ok(n)
            }
            Ok(n) => Ok(n),
            Err(err) => {
                if !special {
                    let _ = tokio::fs::remove_file(&partial).await;
                }
                Err(err.into())
            }
        }
    })?;
    if !special {
        std::fs::rename(&partial, out).with_context(|| format!("renaming to {}", out.display()))?;
    }
    Ok(written)
}

/// `n` bytes in the largest binary unit that keeps it above 1 (`1.5 GiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
