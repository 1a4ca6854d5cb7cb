//! `hive cluster up|down`, `hive put|get`: a whole cluster of `hive-node` processes on
//! this machine's loopback, for trying HiveFS out and for tests.
//!
//! `up` makes the CA (as `hive init`), gives every node a certificate directly from it
//! (enrollment by token needs a node to host it, which comes later), formats a
//! file-backed store per node, starts the nodes, and writes `cluster.toml`: the erasure
//! scheme, the nodes and their addresses, and the client identity to use.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hive_client::chunk_io::ChunkStore;
use hive_client::object::{get_object, put_object};
use hive_codec::{
    Chunker, ChunkerConfig, ClusterMap, CompressionConfig, ErasureScheme, NodeInfo, NodeState,
};
use hive_wire::net::pki::{ALL_VOLUMES, DEFAULT_CERT_VALIDITY};
use hive_wire::net::rustls_pki_types::CertificateDer;
use hive_wire::net::rustls_pki_types::pem::PemObject;
use hive_wire::net::{Client, Credentials, Identity, Role, Validity};
use hive_wire::{ChunkId, Epoch, FailureDomain, NodeId};
use serde::{Deserialize, Serialize};

use crate::cluster_dir::{ClusterDir, pem, write_new};

/// How long `up` waits for a node to listen, and `down` for one to exit.
const NODE_WAIT: Duration = Duration::from_secs(60);
/// How often `up` and `down` look again while waiting.
const POLL: Duration = Duration::from_millis(20);
/// Store size of each local node (a sparse file).
const NODE_STORE: &str = "1GiB";
/// Placement groups of a local cluster: 2^8.
const PG_BITS: u8 = 8;

/// `cluster.toml`.
#[derive(Serialize, Deserialize)]
struct ClusterFile {
    k: u8,
    m: u8,
    pg_bits: u8,
    client_cert: PathBuf,
    client_key: PathBuf,
    nodes: Vec<NodeEntry>,
}

#[derive(Serialize, Deserialize)]
struct NodeEntry {
    id: u64,
    addr: SocketAddr,
    pid: u32,
    dir: PathBuf,
}

fn node_binary() -> Result<PathBuf> {
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

/// Starts a local cluster of `nodes` nodes with erasure scheme k + m in `dir`.
pub fn up(dir: &Path, nodes: u64, k: u8, m: u8) -> Result<()> {
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
    let ca = cluster.ca()?;
    let validity = Validity::starting_now(DEFAULT_CERT_VALIDITY);
    let mut entries = Vec::new();
    for n in 1..=nodes {
        let node_dir = dir.join(format!("node-{n}"));
        std::fs::create_dir_all(&node_dir)?;
        let (cert, key) = ca.issue_with_key(Identity::node(NodeId(n)), validity)?;
        write_new(
            &node_dir.join("node.pem"),
            pem("CERTIFICATE", cert.as_ref()).as_bytes(),
            0o644,
        )?;
        write_new(
            &node_dir.join("node.key"),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        let config = format!(
            "node_id = {n}\nlisten = \"127.0.0.1:0\"\n\n[store]\npath = \"store.img\"\nsize = \"{NODE_STORE}\"\nsegment_size = \"16MiB\"\n\n[tls]\nca = \"../ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\nrevoked = \"../revoked\"\n"
        );
        let config_path = node_dir.join("node.toml");
        write_new(&config_path, config.as_bytes(), 0o644)?;
        let status = Command::new(&binary)
            .args(["format", "--config"])
            .arg(&config_path)
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {}", binary.display()))?;
        if !status.success() {
            bail!("formatting node {n} failed ({status})");
        }
        let log = std::fs::File::create(node_dir.join("node.log"))?;
        let child = Command::new(&binary)
            .args(["run", "--config"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node {n}"))?;
        entries.push(NodeEntry {
            id: n,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid: child.id(),
            dir: node_dir,
        });
    }
    for entry in &mut entries {
        entry.addr = wait_listening(&entry.dir.join("node.log"), entry.id)?;
    }
    let me = Identity {
        role: Role::Client,
        id: 1,
    };
    let key = rcgen::KeyPair::generate()?;
    let cert = ca.issue_with_volumes(me, &[ALL_VOLUMES.to_string()], &key, validity)?;
    write_new(
        &dir.join("client.pem"),
        pem("CERTIFICATE", cert.as_ref()).as_bytes(),
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
        nodes: entries,
    };
    write_new(
        &dir.join("cluster.toml"),
        toml::to_string(&file)?.as_bytes(),
        0o644,
    )?;
    for node in &file.nodes {
        println!(
            "node {} listening on {} (pid {})",
            NodeId(node.id),
            node.addr,
            node.pid
        );
    }
    println!(
        "cluster of {nodes} nodes, {scheme}, up in {:.1}s; its files are in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

fn wait_listening(log: &Path, id: u64) -> Result<SocketAddr> {
    let deadline = Instant::now() + NODE_WAIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text.lines().find_map(|l| l.split("listening on ").nth(1)) {
            return addr.trim().parse().context("node address in its log");
        }
        if let Some(err) = text.lines().find(|l| l.starts_with("hive-node:")) {
            bail!("node {id} failed to start: {err}");
        }
        if Instant::now() > deadline {
            bail!(
                "node {id} did not start within {NODE_WAIT:?}; see {}",
                log.display()
            );
        }
        std::thread::sleep(POLL);
    }
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

fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops every node of the local cluster in `dir` (SIGTERM, then waits for each).
pub fn down(dir: &Path) -> Result<()> {
    let file = load(dir)?;
    for node in &file.nodes {
        if alive(node.pid) {
            Command::new("kill")
                .args(["-TERM", &node.pid.to_string()])
                .status()
                .context("sending SIGTERM")?;
        }
    }
    let deadline = Instant::now() + NODE_WAIT;
    for node in &file.nodes {
        while alive(node.pid) {
            if Instant::now() > deadline {
                bail!(
                    "node {} (pid {}) did not stop within {NODE_WAIT:?}",
                    NodeId(node.id),
                    node.pid
                );
            }
            std::thread::sleep(POLL);
        }
        println!("node {} stopped", NodeId(node.id));
    }
    Ok(())
}

fn chunk_store(dir: &Path, file: &ClusterFile) -> Result<Arc<ChunkStore>> {
    let cluster = ClusterDir::open(dir)?;
    let ca = cluster.ca()?;
    let cert = CertificateDer::from_pem_slice(
        std::fs::read_to_string(dir.join(&file.client_cert))?.as_bytes(),
    )
    .context("client certificate")?;
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join(&file.client_key))?)?;
    let client = Client::new(ca.cert(), Some(&Credentials::new(cert, &key)))?;
    let nodes: Vec<NodeInfo> = file
        .nodes
        .iter()
        .map(|n| NodeInfo {
            id: NodeId(n.id),
            domain: FailureDomain(u32::try_from(n.id).unwrap_or(u32::MAX)),
            weight: 1,
            state: NodeState::Up,
            joined: Epoch(1),
        })
        .collect();
    let map = ClusterMap::new(Epoch(1), file.pg_bits, nodes)?;
    let addresses: HashMap<NodeId, SocketAddr> =
        file.nodes.iter().map(|n| (NodeId(n.id), n.addr)).collect();
    Ok(Arc::new(ChunkStore::new(
        map,
        addresses,
        client,
        ErasureScheme::new(file.k, file.m)?,
        CompressionConfig::default(),
    )))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting tokio")
}

/// Stores `path` as an object; returns its id.
pub fn put(dir: &Path, path: &Path) -> Result<ChunkId> {
    let file = load(dir)?;
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let chunker = Chunker::new(ChunkerConfig::default())?;
    runtime()?.block_on(async {
        let store = chunk_store(dir, &file)?;
        Ok(put_object(&store, &chunker, &data).await?)
    })
}

/// Reads object `id` into `out`.
pub fn get(dir: &Path, id: ChunkId, out: &Path) -> Result<u64> {
    let file = load(dir)?;
    let data = runtime()?.block_on(async {
        let store = chunk_store(dir, &file)?;
        anyhow::Ok(get_object(&store, id).await?)
    })?;
    std::fs::write(out, &data).with_context(|| format!("writing {}", out.display()))?;
    Ok(data.len() as u64)
}
