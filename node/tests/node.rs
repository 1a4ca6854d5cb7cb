//! A real `hive-node` process: formatted, started, used over mutual-TLS QUIC, stopped
//! with SIGTERM (exit 0, nothing lost), restarted.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use hive_codec::{ChunkEncoder, CompressionConfig, ErasureScheme, chunk_id};
use hive_testkit::random_bytes;
use hive_wire::net::message;
use hive_wire::net::shard_service::{Found, OP_GET, OP_PUT, ShardKey, ShardService};
use hive_wire::net::{Client, ClusterCa, Connection, Credentials, Identity, Role, Validity};
use hive_wire::{NodeId, ShardIndex};

const NODE: NodeId = NodeId(5);
const WAIT: Duration = Duration::from_secs(60);

struct Cluster {
    dir: PathBuf,
    ca: ClusterCa,
}

fn pem(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

fn cluster(name: &str, cert_for: NodeId) -> Cluster {
    let dir = std::env::temp_dir().join(format!("hive-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let ca = ClusterCa::create("test").expect("ca");
    let validity = Validity::starting_now(Duration::from_secs(3600));
    let (cert, key) = ca
        .issue_with_key(Identity::node(cert_for), validity)
        .expect("cert");
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).expect("ca.pem");
    std::fs::write(dir.join("node.pem"), pem("CERTIFICATE", cert.as_ref())).expect("node.pem");
    std::fs::write(dir.join("node.key"), key.serialize_pem()).expect("node.key");
    std::fs::write(dir.join("revoked"), "# revoked identities\n").expect("revoked");
    let config = format!(
        "node_id = {}\nlisten = \"127.0.0.1:0\"\n[[store]]\npath = \"store.img\"\nsize = \"64MiB\"\nsegment_size = \"1MiB\"\n[[store]]\npath = \"store-2.img\"\nsize = \"64MiB\"\nsegment_size = \"1MiB\"\n[tls]\nca = \"ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\nrevoked = \"revoked\"\n",
        NODE.get()
    );
    std::fs::write(dir.join("node.toml"), config).expect("config");
    Cluster { dir, ca }
}

fn hive_node(args: &[&str], config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hive-node"));
    command.args(args).arg("--config").arg(config);
    command
}

/// Starts `hive-node run` and waits for the address it listens on; the node's later
/// log lines arrive on the returned channel.
fn start(c: &Cluster) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let mut child = hive_node(&["run"], &c.dir.join("node.toml"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hive-node");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(WAIT)
            .expect("hive-node said where it listens");
        if let Some(addr) = line.split("listening on ").nth(1) {
            break addr.trim().parse::<SocketAddr>().expect("address");
        }
    };
    (child, addr, rx)
}

/// Sends `signal` (`-TERM`, ...) to the node.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal}");
}

/// Waits (at most [`WAIT`]) for the node to exit; its exit status.
fn exited(mut child: Child, why: &str) -> std::process::ExitStatus {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait().expect("wait"));
    });
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("hive-node did not exit {why} within {WAIT:?}"))
}

/// Sends SIGTERM and waits for the exit status.
fn stop(child: Child) -> std::process::ExitStatus {
    signal(&child, "-TERM");
    exited(child, "after SIGTERM")
}

async fn connect(c: &Cluster, addr: SocketAddr) -> (Client, Connection) {
    let who = Identity {
        role: Role::Client,
        id: 1,
    };
    let (cert, key) =
        c.ca.issue_with_key(who, Validity::starting_now(Duration::from_secs(3600)))
            .expect("client cert");
    let client = Client::new(c.ca.cert(), Some(&Credentials::new(cert, &key))).expect("client");
    let connection = client
        .connect(addr, Some(Identity::node(NODE)))
        .await
        .expect("connect");
    (client, connection)
}

/// Formats the node's stores.
fn format(c: &Cluster) {
    let formatted = hive_node(&["format"], &c.dir.join("node.toml"))
        .output()
        .expect("format");
    assert!(
        formatted.status.success(),
        "{}",
        String::from_utf8_lossy(&formatted.stderr)
    );
}

/// The six shards of a 4+2 chunk of seeded data, and its id.
fn shards_of(seed: u64) -> (hive_wire::ChunkId, Vec<Vec<u8>>) {
    let data = random_bytes(seed, 300_000);
    let id = chunk_id(&data);
    let mut encoder = ChunkEncoder::new(
        ErasureScheme::new(4, 2).expect("4+2"),
        CompressionConfig::default(),
    )
    .expect("encoder");
    let chunk = encoder.encode(id, &data).expect("encode");
    (id, (0..6).map(|i| chunk.shard_to_vec(i)).collect())
}

async fn put(connection: &Connection, shard: &[u8]) -> Result<(), String> {
    let request =
        message::request::<ShardService>(OP_PUT, Bytes::new(), Bytes::copy_from_slice(shard));
    connection
        .call(request, WAIT)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Shard `index` of chunk `id`, if the node has it.
async fn get(connection: &Connection, id: hive_wire::ChunkId, index: u8) -> Option<Bytes> {
    let key = message::encode(&ShardKey::new(hive_wire::ShardName {
        chunk: id,
        k: 4,
        m: 2,
        index: ShardIndex(index),
    }));
    let request = message::request::<ShardService>(OP_GET, key, Bytes::new());
    let answer = connection.call(request, WAIT).await.expect("get");
    let found: Found = message::decode("Found", &answer.message).expect("Found");
    found.present.then_some(answer.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_shards_and_stops_cleanly_on_sigterm() {
    let c = cluster("serve", NODE);
    format(&c);
    let (id, shards) = shards_of(1);

    let (child, addr, _log) = start(&c);
    {
        let (_client, connection) = connect(&c, addr).await;
        for shard in &shards {
            put(&connection, shard).await.expect("put");
        }
    }
    let status = stop(child);
    assert!(
        status.success(),
        "SIGTERM must end with exit 0, got {status}"
    );

    let (child, addr, _log) = start(&c);
    {
        let (_client, connection) = connect(&c, addr).await;
        for (i, shard) in shards.iter().enumerate() {
            let found = get(&connection, id, i as u8).await;
            let found = found.unwrap_or_else(|| panic!("shard {i} lost across a restart"));
            assert_eq!(&found[..], &shard[..]);
        }
    }
    assert!(stop(child).success());
    let _ = std::fs::remove_dir_all(&c.dir);
}

/// Waits for a log line containing `text`.
#[cfg(feature = "faults")]
fn wait_log(log: &mpsc::Receiver<String>, text: &str) -> String {
    loop {
        let line = log
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no log line with {text:?} within {WAIT:?}"));
        if line.contains(text) {
            return line;
        }
    }
}

#[cfg(feature = "faults")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_stops_the_node_and_a_restart_serves_what_was_acknowledged() {
    let c = cluster("fail-stop", NODE);
    format(&c);
    let (id, shards) = shards_of(2);
    let (child, addr, log) = start(&c);
    {
        let (_client, connection) = connect(&c, addr).await;
        for shard in &shards[..4] {
            put(&connection, shard).await.expect("put");
        }
        // A chaos build's hook: every store's next fdatasync fails.
        signal(&child, "-USR1");
        wait_log(&log, "FailNextSync armed");
        let refused = put(&connection, &shards[4]).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("fdatasync")),
            "a put whose sync failed is refused, saying why: {refused:?}"
        );
    }
    let said = wait_log(&log, "fail-stop");
    assert!(said.contains("fdatasync"), "{said}");
    let status = exited(child, "after its store's fdatasync failed");
    assert!(!status.success(), "a fail-stop is a failure: {status}");

    let (child, addr, _log) = start(&c);
    {
        let (_client, connection) = connect(&c, addr).await;
        for (i, shard) in shards[..4].iter().enumerate() {
            let found = get(&connection, id, i as u8).await;
            let found = found.unwrap_or_else(|| panic!("acknowledged shard {i} lost"));
            assert_eq!(&found[..], &shard[..]);
        }
        put(&connection, &shards[4])
            .await
            .expect("the reopened store takes writes");
        assert_eq!(
            get(&connection, id, 4).await.as_deref(),
            Some(&shards[4][..])
        );
    }
    assert!(stop(child).success());
    let _ = std::fs::remove_dir_all(&c.dir);
}

#[test]
fn bad_configurations_and_certificates_are_refused_by_name() {
    let c = cluster("refuse", NodeId(6));
    let config = c.dir.join("node.toml");
    // The certificate is node 6's, the configuration says node 5.
    for command in ["format", "run"] {
        let out = hive_node(&[command], &config).output().expect("hive-node");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("tls.cert names node/0000000000000006"),
            "{command}: {err}"
        );
    }
    // A store formatted by node 5.
    let other = cluster("refuse-other", NodeId(5));
    let other_config = other.dir.join("node.toml");
    let out = hive_node(&["format"], &other_config)
        .output()
        .expect("format");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(other.dir.join("store.img"), c.dir.join("store.img")).expect("copy store");
    let _ = std::fs::remove_dir_all(&other.dir);
    // An unknown key.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("{text}\n[extra]\nvalue = 1\n")).expect("write");
    let out = hive_node(&["run"], &config).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("extra"));
    // The store was formatted for node 5; a configuration (and certificate) for node 6
    // must not take it over.
    let node6 = text.replace("node_id = 5", "node_id = 6");
    std::fs::write(&config, &node6).expect("write");
    let out = hive_node(&["run"], &config).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to node 0000000000000005"), "{err}");
    // A store that is not there.
    std::fs::write(&config, node6.replace("store.img", "missing.img")).expect("write");
    let out = hive_node(&["run"], &config).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.img"), "{err}");
    let _ = std::fs::remove_dir_all(&c.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_takes_effect_without_a_restart() {
    let c = cluster("revoke", NODE);
    let formatted = hive_node(&["format"], &c.dir.join("node.toml"))
        .output()
        .expect("format");
    assert!(formatted.status.success());
    let (child, addr, log) = start(&c);
    let (_client, connection) = connect(&c, addr).await;
    let ping = || {
        let key = message::encode(&ShardKey::new(hive_wire::ShardName {
            chunk: hive_wire::ChunkId([1; 32]),
            k: 4,
            m: 2,
            index: ShardIndex(0),
        }));
        message::request::<ShardService>(OP_GET, key, Bytes::new())
    };
    connection
        .call(ping(), WAIT)
        .await
        .expect("allowed before revocation");
    std::fs::write(c.dir.join("revoked"), "client/0000000000000001\n").expect("revoke");
    // Wait for the node to say it applied the list.
    let applied = tokio::task::spawn_blocking(move || {
        loop {
            match log.recv_timeout(WAIT) {
                Ok(line) if line.contains("revocation: client/0000000000000001") => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    });
    assert!(
        applied.await.expect("log reader"),
        "the node never applied the revocation"
    );
    match connection.call(ping(), WAIT).await {
        Err(hive_wire::net::RpcError::Remote(refusal)) => {
            assert!(refusal.message.contains("revoked"), "{refusal}")
        }
        other => panic!(
            "a revoked client was served: {:?}",
            other.map(|r| r.message)
        ),
    }
    assert!(stop(child).success());
    let _ = std::fs::remove_dir_all(&c.dir);
}
