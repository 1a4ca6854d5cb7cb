//! The processes under test: a local cluster started and stopped with the `hive` tool,
//! a volume mounted with it, a node paused with SIGSTOP, and the CPU time processes use (from `/proc`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hive_client::local_cluster::signal;
use hive_wire::NodeId;

/// Nodes of the cluster the suite starts: one per shard of a 4+2 chunk.
pub const NODES: u64 = 6;
/// Data shards per chunk.
pub const K: u8 = 4;
/// Parity shards per chunk.
pub const M: u8 = 2;
/// Each node's store file (sparse): room for its share of the 1 GiB object and the
/// latency puts, with space to spare.
const STORE_SIZE: &str = "2GiB";
/// `hive cluster up` arguments for a cluster whose chunks no file or object refers to
/// (the suites put chunks through the library): no garbage collection round starts by
/// itself while the suite runs.
pub const NO_GC: &[&str] = &["--gc-interval", "7d"];
/// The node holding the map authority, which must keep running.
const AUTHORITY: NodeId = NodeId(1);
/// Clock ticks per second of the CPU times in `/proc/<pid>/stat` (USER_HZ, fixed at 100
/// by the Linux ABI).
const USER_HZ: u64 = 100;

/// A cluster the suite started in a directory of its own; stopped (`hive cluster down`)
/// and its directory removed when dropped, on success and on error alike.
pub struct LocalCluster {
    hive: PathBuf,
    dir: PathBuf,
}

/// The `hive` tool built next to this executable.
pub fn hive_binary() -> Result<PathBuf> {
    let me = std::env::current_exe().context("finding the hive-bench executable")?;
    let hive = me.with_file_name("hive");
    if !hive.exists() {
        bail!(
            "{} is missing; build it with cargo build --release -p hive-client -p hive-node",
            hive.display()
        );
    }
    Ok(hive)
}

/// Runs `hive` with `args`, its output captured (the report owns stdout); fails with
/// its error output if it fails.
pub fn run_hive(hive: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = Command::new(hive)
        .args(args)
        .output()
        .with_context(|| format!("running {}", hive.display()))?;
    if !out.status.success() {
        bail!(
            "hive {} failed ({}): {}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl LocalCluster {
    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts a 6-node 4+2 cluster in `dir`, which must not exist yet; returns once
    /// every node is up in the authority's map (`hive cluster up` waits for that).
    pub fn up(dir: &Path) -> Result<Self> {
        Self::up_with(dir, NODES, (K, M), STORE_SIZE, NO_GC)
    }

    /// Starts a cluster of `nodes` nodes of class k + m with stores of `store_size` in
    /// `dir`, with `extra` arguments for `hive cluster up`, as [`LocalCluster::up`]
    /// does.
    pub fn up_with(
        dir: &Path,
        nodes: u64,
        (k, m): (u8, u8),
        store_size: &str,
        extra: &[&str],
    ) -> Result<Self> {
        let hive = hive_binary()?;
        if dir.exists() {
            bail!(
                "{} exists already; the cluster needs a new directory",
                dir.display()
            );
        }
        let (nodes, k, m) = (nodes.to_string(), k.to_string(), m.to_string());
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "cluster".as_ref(),
            "up".as_ref(),
            "--dir".as_ref(),
            dir.as_os_str(),
            "--nodes".as_ref(),
            nodes.as_ref(),
            "--k".as_ref(),
            k.as_ref(),
            "--m".as_ref(),
            m.as_ref(),
            "--store-size".as_ref(),
            store_size.as_ref(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let cluster = Self {
            hive,
            dir: dir.to_path_buf(),
        };
        // On failure `cluster` is dropped: whatever `up` left running is stopped.
        run_hive(&cluster.hive, &args)?;
        Ok(cluster)
    }
}

/// A volume mounted for the suite, unmounted when dropped.
pub struct Mount {
    /// The mount point.
    pub dir: PathBuf,
}

impl Mount {
    /// Mounts the default volume of the cluster in `cluster` on `at` (made if missing).
    pub fn new(cluster: &Path, at: &Path) -> Result<Self> {
        std::fs::create_dir_all(at).with_context(|| format!("creating {}", at.display()))?;
        run_hive(
            &hive_binary()?,
            &[
                "mount".as_ref(),
                "--cluster".as_ref(),
                cluster.as_os_str(),
                at.as_os_str(),
            ],
        )?;
        Ok(Self {
            dir: at.to_path_buf(),
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let unmounted = hive_binary()
            .and_then(|hive| run_hive(&hive, &["umount".as_ref(), self.dir.as_os_str()]));
        if let Err(err) = unmounted {
            eprintln!("hive-bench: unmounting {}: {err:#}", self.dir.display());
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.dir.join("cluster.toml").exists() {
            let args: [&std::ffi::OsStr; 4] = [
                "cluster".as_ref(),
                "down".as_ref(),
                "--dir".as_ref(),
                self.dir.as_os_str(),
            ];
            if let Err(err) = run_hive(&self.hive, &args) {
                eprintln!("hive-bench: stopping the cluster: {err:#}");
                eprintln!("hive-bench: its files stay in {}", self.dir.display());
                return;
            }
        }
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("hive-bench: removing {}: {err}", self.dir.display());
        }
    }
}

/// Kills node `node` of the cluster in `dir` with SIGKILL.
pub fn kill(dir: &Path, node: NodeId) -> Result<()> {
    let nodes = hive_client::local_cluster::nodes(dir)?;
    let Some(&(_, pid)) = nodes.iter().find(|(id, pid)| *id == node && *pid != 0) else {
        bail!(
            "node {node} of the cluster in {} is not running",
            dir.display()
        );
    };
    signal("-KILL", pid)
}

/// A node stopped with SIGSTOP; continued (SIGCONT) when dropped, also on error paths.
pub struct Paused {
    pid: u32,
}

impl Paused {
    /// Stops the last node of the cluster in `dir` (never the map authority); returns
    /// the guard and the node.
    pub fn last_node(dir: &Path) -> Result<(Self, NodeId)> {
        let nodes = hive_client::local_cluster::nodes(dir)?;
        let Some(&(node, pid)) = nodes
            .iter()
            .rev()
            .find(|(id, pid)| *id != AUTHORITY && *pid != 0)
        else {
            bail!(
                "the cluster in {} has no running node besides the map authority",
                dir.display()
            );
        };
        signal("-STOP", pid)?;
        Ok((Self { pid }, node))
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Err(err) = signal("-CONT", self.pid) {
            eprintln!("hive-bench: continuing node process {}: {err:#}", self.pid);
        }
    }
}

/// CPU time (user and system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime field 14 and stime field 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path} has no command name"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |field: usize| -> Result<u64> {
        fields
            .get(field - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path}: field {field} is not a tick count"))
    };
    let total = ticks(14)? + ticks(15)?;
    Ok(Duration::from_nanos(total * (1_000_000_000 / USER_HZ)))
}

/// CPU time of this process so far.
pub fn own_cpu_time() -> Result<Duration> {
    cpu_time(std::process::id())
}

/// The CPU the client (this process) and the cluster's nodes use over a stretch of
/// work, so the report can say how busy the machine really was.
pub struct CpuUse {
    nodes: Vec<u32>,
    client_start: Duration,
    nodes_start: Duration,
}

/// CPU time used over a stretch: by this process, and by the nodes together.
pub struct CpuUsed {
    pub client: Duration,
    pub nodes: Duration,
}

impl CpuUse {
    /// Starts counting for this process and the node processes of the cluster in `dir`.
    pub fn start(dir: &Path) -> Result<Self> {
        let nodes: Vec<u32> = hive_client::local_cluster::nodes(dir)?
            .into_iter()
            .map(|(_, pid)| pid)
            .filter(|pid| *pid != 0)
            .collect();
        Ok(Self {
            client_start: own_cpu_time()?,
            nodes_start: nodes_cpu(&nodes)?,
            nodes,
        })
    }

    /// CPU used since [`CpuUse::start`].
    pub fn stop(self) -> Result<CpuUsed> {
        Ok(CpuUsed {
            client: own_cpu_time()?.saturating_sub(self.client_start),
            nodes: nodes_cpu(&self.nodes)?.saturating_sub(self.nodes_start),
        })
    }
}

fn nodes_cpu(pids: &[u32]) -> Result<Duration> {
    pids.iter().map(|pid| cpu_time(*pid)).sum()
}
