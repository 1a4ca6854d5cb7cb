//! `hive-bench cluster`: a whole cluster of `hive-node` processes (6 nodes, 4+2, on
//! loopback), through the client library, against the local disk it runs on and
//! against the CPU ceiling of this machine.
//!
//! - `cluster_put_seq`: a 1 GiB object of random bytes (from a seed new to each run, so
//!   a cluster given with `--cluster` cannot deduplicate it) stored with `put_object`,
//!   against writing the same bytes to a file on the same file system (1 MiB writes,
//!   one fdatasync at the end, inside the time).
//! - `cluster_get_seq`: the object read back with `get_object` (compared with what was
//!   written, outside the time), against reading that file with O_DIRECT.
//! - `cluster_put_vs_ceiling`, `cluster_get_vs_ceiling`: the same two rates against
//!   what this machine's cores could do at best, from the per-byte CPU cost of every
//!   stage of the path measured in this run (see [`stages`]). With every node and the
//!   client on a few cores, CPU, not the disk, is the honest limit.
//! - `cluster_put_p99_one_stopped`: p99 latency of 1 MiB chunk puts with one node (not
//!   the map authority) stopped with SIGSTOP, against the same with none stopped,
//!   measured first. With as many nodes as shards, every chunk has a shard there.
//!
//! A table run also prints, after the result lines, where the CPU goes on each path:
//! each stage's cost, and the CPU the client and the nodes really used per byte during
//! the 1 GiB transfer. With `--json` these are extra lines with `path`, `stage` and
//! `ns_per_byte`.
//!
//! `--rounds` and `--round-ms` do not apply: each transfer is one round of 1 GiB, the
//! latencies are [`LATENCY_PUTS`] puts each, and each stage runs for a fixed least time.

pub(crate) mod baseline;
pub(crate) mod local;
mod stages;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use hive_client::chunk_io::ChunkStore;
use hive_client::local_cluster;
use hive_client::object::{get_object, put_object};
use hive_codec::{Chunker, ChunkerConfig};
use hive_testkit::random_bytes;
use hive_wire::ChunkId;

use self::local::{CpuUse, CpuUsed, K, LocalCluster, M, Paused};
use self::stages::Ceiling;
use crate::measure::Throughput;
use crate::report::{Better, Cost, Line, Report};

const SUITE: &str = "cluster";
/// The object of the sequential benchmarks: big enough that the stores' and the disk's
/// caches cannot hide the writes, small enough to hold twice in memory.
const OBJECT: usize = 1 << 30;
/// Puts per latency run: enough that the p99 (by nearest rank, the 198th of 200) is not
/// just the slowest put.
const LATENCY_PUTS: usize = 200;
/// Bytes of each latency put: one chunk of the chunker's average size.
const LATENCY_CHUNK: usize = 1 << 20;
/// The percentile reported.
const PERCENTILE: f64 = 0.99;
/// How long to wait, after a put, for the shard writes still running after their chunk's
/// ACK, so the next measurement does not share the machine with them.
const SETTLE_GRACE: Duration = Duration::from_secs(30);
/// How long the stopped node gets, once continued, to take the shards waiting for it.
const RESUME_GRACE: Duration = Duration::from_secs(10);
/// Bytes per MiB, the unit of the other suites' rates.
const MIB: f64 = (1 << 20) as f64;

/// Where the cluster is.
pub struct Options {
    /// A running local cluster to use; `None` starts one.
    pub cluster: Option<PathBuf>,
    /// Where to start one, with the baseline file and the stage store beside it.
    pub dir: PathBuf,
}

/// A directory of this run's files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(path: PathBuf) -> Result<Self> {
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            eprintln!("hive-bench: removing {}: {err}", self.0.display());
        }
    }
}

pub fn run(report: &mut Report, options: &Options) -> Result<()> {
    let pid = std::process::id();
    // The baseline file and the stage store go where the nodes' stores are.
    let scratch_in = options.cluster.as_deref().unwrap_or(&options.dir);
    let scratch = Scratch::new(scratch_in.join(format!("hive-bench-cluster-{pid}")))?;
    // Declared after `scratch`, so a cluster started here is stopped before its
    // directory goes.
    let (dir, _started) = match &options.cluster {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = scratch.0.join("cluster");
            let started = LocalCluster::up(&dir)?;
            (dir, Some(started))
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting tokio")?;
    measure(report, &runtime, &dir, &scratch.0)
}

async fn timed<T>(work: impl Future<Output = Result<T>>) -> Result<(T, Duration)> {
    let start = Instant::now();
    let value = work.await?;
    Ok((value, start.elapsed()))
}

/// One timed transfer of the object, and the CPU the client and nodes used meanwhile.
struct Transfer {
    time: Duration,
    cpu: CpuUsed,
}

fn mib_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / MIB
}

fn measure(
    report: &mut Report,
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    scratch: &Path,
) -> Result<()> {
    let chunker = Chunker::new(ChunkerConfig::default())?;
    let seed = fresh_seed();
    let data = random_bytes(seed, OBJECT);
    let (store, _authority) = runtime.block_on(local_cluster::connect(dir))?;
    // Any chunk id will do: every chunk has k + m holders.
    let width = store.holders(&ChunkId([0; 32]))?.len();
    ensure!(
        width == usize::from(K + M),
        "the cluster in {} writes {width} shards per chunk; the stage model is for {K}+{M}",
        dir.display()
    );
    let file = scratch.join("baseline.bin");
    let (id, put) = put_seq(report, runtime, &store, dir, &file, &chunker, &data)?;
    let get = get_seq(report, runtime, &store, dir, &file, id, &data)?;
    let ceiling = stages::measure(runtime, &data, &chunker, scratch)?;
    drop(data);
    for (name, path, transfer) in [
        ("cluster_put_vs_ceiling", "put", put),
        ("cluster_get_vs_ceiling", "get", get),
    ] {
        report.add(Line::rate(
            SUITE,
            name,
            "MiB/s",
            Throughput {
                hive: mib_per_s(OBJECT, transfer.time),
                baseline: ceiling.bytes_per_s(path) / MIB,
            },
            "CPU ceiling from stage costs",
        ));
        breakdown(report, &ceiling, path, &transfer);
    }
    latency(report, runtime, &store, dir, seed)
}

/// A seed of this run's own for the data it writes: a cluster given with `--cluster`
/// may hold an earlier run's, and a chunk the cluster holds is only asked about
/// (dedup), not sent.
fn fresh_seed() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    now ^ u64::from(std::process::id()).rotate_left(32)
}

/// `cluster_put_seq`: the object stored with `put_object`, after the baseline wrote it
/// to `file`.
fn put_seq(
    report: &mut Report,
    runtime: &tokio::runtime::Runtime,
    store: &Arc<ChunkStore>,
    dir: &Path,
    file: &Path,
    chunker: &Chunker,
    data: &[u8],
) -> Result<(ChunkId, Transfer)> {
    let written = baseline::write(file, data)?;
    let cpu = CpuUse::start(dir)?;
    let (id, time) =
        runtime.block_on(timed(async { Ok(put_object(store, chunker, data).await?) }))?;
    let cpu = cpu.stop()?;
    settle(runtime, store, SETTLE_GRACE, "the object put");
    report.add(Line::rate(
        SUITE,
        "cluster_put_seq",
        "MiB/s",
        Throughput {
            hive: mib_per_s(OBJECT, time),
            baseline: mib_per_s(OBJECT, written),
        },
        "local file, 1 MiB writes + fdatasync",
    ));
    Ok((id, Transfer { time, cpu }))
}

/// `cluster_get_seq`: object `id` read with `get_object` and compared with `data`
/// (untimed), after the baseline read `file` (then removed).
fn get_seq(
    report: &mut Report,
    runtime: &tokio::runtime::Runtime,
    store: &Arc<ChunkStore>,
    dir: &Path,
    file: &Path,
    id: ChunkId,
    data: &[u8],
) -> Result<Transfer> {
    let read = baseline::read_direct(file, OBJECT as u64)?;
    std::fs::remove_file(file).with_context(|| format!("removing {}", file.display()))?;
    let cpu = CpuUse::start(dir)?;
    let (got, time) = runtime.block_on(timed(async { Ok(get_object(store, id).await?) }))?;
    let cpu = cpu.stop()?;
    ensure!(
        got == data,
        "the object read back differs from what was written"
    );
    report.add(Line::rate(
        SUITE,
        "cluster_get_seq",
        "MiB/s",
        Throughput {
            hive: mib_per_s(OBJECT, time),
            baseline: mib_per_s(OBJECT, read),
        },
        "local file, O_DIRECT reads",
    ));
    Ok(Transfer { time, cpu })
}

/// `cluster_put_p99_one_stopped`: chunk puts with no node stopped, then with the last
/// node stopped, through the same store, connected before the stop. The store follows
/// the authority's map, so once the authority marks the node down the remaining puts
/// skip it; when that happens within the run it is said on stderr.
fn latency(
    report: &mut Report,
    runtime: &tokio::runtime::Runtime,
    store: &Arc<ChunkStore>,
    dir: &Path,
    seed: u64,
) -> Result<()> {
    // Every put has a chunk of its own, seeded after the object's.
    let first = seed.wrapping_add(1);
    let normal = latencies(runtime, store, first, "no node stopped")?;
    let before = store.view().map.epoch();
    let (paused, node) = Paused::last_node(dir)?;
    let later = first.wrapping_add(LATENCY_PUTS as u64);
    let stopped = latencies(runtime, store, later, "one node stopped");
    drop(paused);
    let stopped = stopped.with_context(|| format!("putting chunks with node {node} stopped"))?;
    let view = store.view();
    if view.map.epoch() != before {
        // The store follows the map: the later puts may have skipped the node.
        let state = if view.is_up(node) { "up" } else { "down" };
        eprintln!(
            "hive-bench: the map changed during the puts with node {node} stopped (epoch {} to {}; the node {state} in it)",
            before.0,
            view.map.epoch().0
        );
    }
    settle(runtime, store, RESUME_GRACE, "the puts with a node stopped");
    report.add(Line {
        suite: SUITE,
        name: "cluster_put_p99_one_stopped",
        unit: "ms",
        hive: quantile(&stopped, PERCENTILE) * 1e3,
        baseline: quantile(&normal, PERCENTILE) * 1e3,
        better: Better::Lower,
        against: "p99 with no node stopped",
    });
    Ok(())
}

/// Waits up to `grace` for shard writes still running after their chunks' ACKs.
fn settle(runtime: &tokio::runtime::Runtime, store: &ChunkStore, grace: Duration, after: &str) {
    let owed = runtime.block_on(store.settle(grace));
    if !owed.is_empty() {
        eprintln!(
            "hive-bench: after {after}, {} shards did not reach their node (owed to repair)",
            owed.len()
        );
    }
}

/// The cost rows of `path`: each stage, the modelled total, and what the client and the
/// nodes really used per byte during `transfer`.
fn breakdown(report: &mut Report, ceiling: &Ceiling, path: &'static str, transfer: &Transfer) {
    let total = ceiling.total(path);
    let cost = |stage, ns_per_byte, share, how| Cost {
        suite: SUITE,
        path,
        stage,
        ns_per_byte,
        share,
        how,
    };
    for stage in ceiling.stages.iter().filter(|s| s.path == path) {
        let share = Some(stage.ns_per_byte / total);
        report.cost(cost(
            stage.name,
            stage.ns_per_byte,
            share,
            stage.how.to_string(),
        ));
    }
    let how = format!(
        "sum: a ceiling of {:.1} MiB/s on {} cores",
        ceiling.bytes_per_s(path) / MIB,
        ceiling.cores
    );
    report.cost(cost("total", total, Some(1.0), how));
    let per_byte = |d: Duration| d.as_nanos() as f64 / OBJECT as f64;
    let (used, time) = (&transfer.cpu, transfer.time);
    let client = per_byte(used.client);
    let nodes = per_byte(used.nodes);
    let verb = if path == "put" {
        "put_object"
    } else {
        "get_object"
    };
    let how = format!("this process during the 1 GiB {verb}");
    report.cost(cost("run_client", client, None, how));
    report.cost(cost(
        "run_nodes",
        nodes,
        None,
        "the node processes, same time".into(),
    ));
    let busy = (used.client + used.nodes).as_secs_f64() / time.as_secs_f64();
    let how = format!(
        "{busy:.2} of {} cores busy during the transfer",
        ceiling.cores
    );
    report.cost(cost("run_total", client + nodes, None, how));
}

/// Times [`LATENCY_PUTS`] puts of 1 MiB chunks seeded `first_seed`, `first_seed + 1`,
/// and so on, one after another; seconds, sorted.
fn latencies(
    runtime: &tokio::runtime::Runtime,
    store: &Arc<ChunkStore>,
    first_seed: u64,
    label: &str,
) -> Result<Vec<f64>> {
    let times = runtime.block_on(async {
        let mut times = Vec::with_capacity(LATENCY_PUTS);
        for n in 0..LATENCY_PUTS as u64 {
            let chunk = random_bytes(first_seed.wrapping_add(n), LATENCY_CHUNK);
            let ((), took) = timed(async { Ok(store.put(&chunk).await.map(drop)?) }).await?;
            times.push(took.as_secs_f64());
        }
        anyhow::Ok(times)
    })?;
    let mut sorted = times;
    sorted.sort_by(f64::total_cmp);
    if std::env::var_os("HIVE_BENCH_TRACE").is_some() {
        let ms = |q| quantile(&sorted, q) * 1e3;
        eprintln!(
            "latency, {label}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(1.0)
        );
    }
    Ok(sorted)
}

/// The `q` quantile of `sorted` (ascending, not empty) by nearest rank: for the p99 of
/// 200, the 198th fastest.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
