//! What the tests that start local clusters share: the `hive` tool, a cluster that
//! stops itself when dropped, and its nodes' processes.
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub mod mounted;

/// How long a killed or stopped node may take to serve again.
pub const RECOVER_WITHIN: Duration = Duration::from_secs(120);
/// Seed of every sample file; printed in failures.
pub const SEED: u64 = 0x5eed_0006;
/// How long figures may take to be fresh in the status.
pub const STATUS_WAIT: Duration = Duration::from_secs(60);
/// How often a wait for fresh figures asks for the status.
pub const STATUS_POLL: Duration = Duration::from_millis(250);
/// A heartbeat interval and then some: a heartbeat this much younger than a moment was
/// measured after it.
pub const FRESH_MARGIN: Duration = Duration::from_millis(1500);

pub fn hive(args: &[&str]) -> Output {
    hive_with_env(args, &[])
}

/// `hive` with extra environment (a `hive cluster up` or `start` passes it on to the
/// nodes it starts: `HIVE_LOG=debug`, say).
pub fn hive_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hive"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run hive")
}

/// `hive-node` beside `hive` (the workspace builds both).
pub fn hive_node() -> Command {
    Command::new(PathBuf::from(env!("CARGO_BIN_EXE_hive")).with_file_name("hive-node"))
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed (seed {SEED:#x}): {}",
        text(out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Node `id`'s entry in a `hive status --json` answer.
pub fn node_in(status: &serde_json::Value, id: u64) -> &serde_json::Value {
    status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("node {id} is not in the status: {status}"))
}

/// A local cluster, stopped when dropped (also when a test fails).
pub struct Cluster {
    pub dir: PathBuf,
}

impl Cluster {
    /// Six nodes, 4+2, with 1 GiB stores.
    pub fn up(name: &str) -> Self {
        Self::with(name, 6, (4, 2), "1GiB", &[])
    }

    /// `nodes` nodes, class k + m, stores of `size`, the nodes started with `env`.
    pub fn with(
        name: &str,
        nodes: u64,
        (k, m): (u8, u8),
        size: &str,
        env: &[(&str, &str)],
    ) -> Self {
        Self::with_args(name, nodes, (k, m), size, env, &[])
    }

    /// [`Cluster::with`], with `extra` arguments for `hive cluster up`.
    pub fn with_args(
        name: &str,
        nodes: u64,
        (k, m): (u8, u8),
        size: &str,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("hive-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cluster = Self { dir };
        ok(
            &hive_with_env(
                &[
                    "cluster",
                    "up",
                    "--dir",
                    cluster.d(),
                    "--nodes",
                    &nodes.to_string(),
                    "--k",
                    &k.to_string(),
                    "--m",
                    &m.to_string(),
                    "--store-size",
                    size,
                ]
                .into_iter()
                .chain(extra.iter().copied())
                .collect::<Vec<_>>(),
                env,
            ),
            "cluster up",
        );
        cluster
    }

    /// Starts the stopped nodes again, with `env`.
    pub fn start(&self, env: &[(&str, &str)]) {
        ok(
            &hive_with_env(&["cluster", "start", "--dir", self.d()], env),
            "cluster start",
        );
    }

    /// Waits until `done` holds for the status, or fails naming `what` after `within`.
    pub fn wait_status(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let status = self.status();
            if done(&status) {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "{what}: not within {within:?} (seed {SEED:#x}); status: {status}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn d(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `data` to a file and stores it; the object id.
    pub fn put(&self, name: &str, data: &[u8]) -> String {
        let file = self.path(name);
        std::fs::write(&file, data).expect("sample");
        let id = ok(
            &hive(&["put", "--cluster", self.d(), file.to_str().expect("utf-8")]),
            "put",
        );
        let id = id.trim().to_string();
        assert_eq!(id.len(), 64, "{id}");
        id
    }

    pub fn get(&self, id: &str) -> Output {
        let out = self.path("read-back");
        let _ = std::fs::remove_file(&out);
        hive(&[
            "get",
            "--cluster",
            self.d(),
            id,
            "-o",
            out.to_str().expect("utf-8"),
        ])
    }

    /// Reads `id` back and checks it is `data`, byte for byte.
    pub fn check(&self, id: &str, data: &[u8]) -> Output {
        let out = self.get(id);
        ok(&out, "get");
        let back = std::fs::read(self.path("read-back")).expect("read back");
        assert!(
            back == data,
            "object {id} read back differs (seed {SEED:#x})"
        );
        out
    }

    pub fn pid(&self, node: u64) -> String {
        let text = std::fs::read_to_string(self.path("cluster.toml")).expect("cluster.toml");
        let file: toml::Table = text.parse().expect("cluster.toml parses");
        let nodes = file["nodes"].as_array().expect("nodes");
        let entry = nodes
            .iter()
            .find(|n| n["id"].as_integer() == Some(node as i64))
            .expect("node in cluster.toml");
        entry["pid"].as_integer().expect("pid").to_string()
    }

    pub fn signal(&self, signal: &str, nodes: &[u64]) {
        for node in nodes {
            let pid = self.pid(*node);
            let status = Command::new("kill")
                .args([signal, &pid])
                .status()
                .expect("kill");
            assert!(status.success(), "kill {signal} node {node} (pid {pid})");
            if signal == "-STOP" {
                wait_stopped(&pid);
            }
        }
    }

    /// Stops `node` with SIGTERM and waits until its process is gone.
    pub fn stop(&self, node: u64) {
        self.signal("-TERM", &[node]);
        let pid = self.pid(node);
        let since = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                since.elapsed() < RECOVER_WITHIN,
                "node {node} did not stop within {RECOVER_WITHIN:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where node 1 (the map authority) serves enrollment.
    pub fn enroll_at(&self) -> String {
        std::fs::read_to_string(self.path("node-1/node.toml"))
            .expect("authority config")
            .lines()
            .skip_while(|l| *l != "[enroll]")
            .find_map(|l| l.strip_prefix("listen = "))
            .expect("the authority hosts enrollment")
            .trim_matches('"')
            .to_string()
    }

    /// Enrolls a new node `n` (a directory of its own, node 2's configuration) with
    /// `token`; the output of `hive-node join`.
    pub fn join(&self, n: u64, token: &str) -> Output {
        let config = std::fs::read_to_string(self.path("node-2/node.toml")).expect("config");
        let node_dir = self.path(&format!("node-{n}"));
        std::fs::create_dir_all(&node_dir).expect("dir");
        std::fs::write(node_dir.join("node.toml"), config).expect("config");
        hive_node()
            .args([
                "join",
                "--token",
                token,
                "--enroll",
                &self.enroll_at(),
                "--config",
            ])
            .arg(node_dir.join("node.toml"))
            .output()
            .expect("hive-node join")
    }

    pub fn status(&self) -> serde_json::Value {
        let out = ok(
            &hive(&["status", "--cluster", self.d(), "--json"]),
            "status",
        );
        serde_json::from_str(&out).expect("status is JSON")
    }

    /// Bytes of live shards the nodes report storing, summed, as of now (see
    /// [`Cluster::node_sum`]).
    pub fn stored(&self) -> u64 {
        self.node_sum("stored")
    }

    /// Bytes the nodes' stores use (live shards and garbage not yet reclaimed), summed,
    /// as of now.
    pub fn used(&self) -> u64 {
        self.node_sum("used")
    }

    /// A per-node status figure summed over the nodes, as of now: waits until every
    /// node that is up has sent a heartbeat whose figures were taken after this call.
    pub fn node_sum(&self, figure: &str) -> u64 {
        let asked = Instant::now();
        loop {
            let status = self.status();
            let nodes = status["nodes"].as_array().expect("nodes");
            // A heartbeat that arrived a full interval after `asked` was measured after
            // it too.
            let fresh = |n: &serde_json::Value| {
                n["state"] != "up"
                    || n["heartbeat_age_ms"].as_u64().is_some_and(|age| {
                        Duration::from_millis(age) + FRESH_MARGIN < asked.elapsed()
                    })
            };
            if nodes.iter().all(fresh) {
                return nodes
                    .iter()
                    .map(|n| n[figure].as_u64().expect(figure))
                    .sum();
            }
            assert!(
                asked.elapsed() < STATUS_WAIT,
                "no fresh heartbeats within {STATUS_WAIT:?}: {status}"
            );
            // Each look is a new `hive` process and a new connection the node keeps
            // until its idle timeout: look a few times a second, not as fast as it can.
            std::thread::sleep(STATUS_POLL);
        }
    }

    pub fn owed(&self) -> u64 {
        self.status()["shards_owed"].as_u64().expect("shards_owed")
    }
}

/// Waits until every thread of process `pid` is stopped (SIGSTOP is delivered to each
/// thread as it next runs; a request sent before that could still be answered).
fn wait_stopped(pid: &str) {
    let started = Instant::now();
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task");
        let all = tasks.filter_map(Result::ok).all(|task| {
            std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .is_some_and(|state| state == "T" || state == "t")
            })
        });
        if all {
            return;
        }
        assert!(
            started.elapsed() < STATUS_WAIT,
            "process {pid} did not stop within {STATUS_WAIT:?}"
        );
        std::thread::yield_now();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let down = hive(&["cluster", "down", "--dir", self.d()]);
        if !std::thread::panicking() {
            ok(&down, "cluster down");
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
