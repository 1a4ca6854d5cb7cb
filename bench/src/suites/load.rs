//! Load the cluster suites share: filling a cluster with chunks, and timing one
//! operation after another, alone or while something else runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use hive_client::chunk_io::ChunkStore;
use hive_client::local_cluster::Admin;
use hive_testkit::random_bytes;
use hive_wire::ChunkId;

/// Chunk puts in flight while filling a cluster.
const FILL_PARALLELISM: usize = 8;
/// How long a suite waits for the cluster to heal or collect before it gives up.
pub const GIVE_UP: std::time::Duration = std::time::Duration::from_secs(900);
/// How often the status is asked while waiting.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(200);
/// Bytes per MiB, the unit of the rates.
pub const MIB: f64 = (1 << 20) as f64;

/// Starts a local cluster of `nodes` nodes of `class` with stores of `store_size` (and
/// `extra` arguments for `hive cluster up`) in a new directory under `parent` named
/// for `suite`, runs `measure` on it in a tokio runtime, and stops the cluster.
pub fn on_local_cluster<F, Fut>(
    parent: &std::path::Path,
    suite: &str,
    (nodes, class): (u64, (u8, u8)),
    store_size: &str,
    extra: &[&str],
    measure: F,
) -> Result<()>
where
    F: FnOnce(std::path::PathBuf) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let dir = parent.join(format!("hive-bench-{suite}-{}", std::process::id()));
    let _cluster =
        super::cluster::local::LocalCluster::up_with(&dir, nodes, class, store_size, extra)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(measure(dir.clone()))
}

/// Something running while operations are timed; the timing stops when it finishes.
pub type Until<'a> = Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// Puts `chunks` chunks of `len` random bytes (content new on every run); their ids.
pub async fn fill(store: &Arc<ChunkStore>, chunks: usize, len: usize) -> Result<Vec<ChunkId>> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut ids = Vec::with_capacity(chunks);
    let mut running = tokio::task::JoinSet::new();
    for n in 0..chunks as u64 {
        if running.len() == FILL_PARALLELISM
            && let Some(done) = running.join_next().await
        {
            ids.push(done??);
        }
        let store = store.clone();
        running.spawn(async move {
            let chunk = random_bytes(seed.wrapping_add(n), len);
            anyhow::Ok(store.put(&chunk).await?)
        });
    }
    while let Some(done) = running.join_next().await {
        ids.push(done??);
    }
    Ok(ids)
}

/// Times `op(n)` for n = 0, 1, ... one after another, in seconds, sorted: `count` of
/// them, or with `until`, as many as finish before it does.
pub async fn timed<F, Fut>(count: usize, until: Option<Until<'_>>, mut op: F) -> Result<Vec<f64>>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut latencies = Vec::new();
    let mut until = until;
    for n in 0.. {
        let one = op(n);
        let timed = async {
            let t = Instant::now();
            one.await?;
            anyhow::Ok(t.elapsed().as_secs_f64())
        };
        match until.as_mut() {
            None => {
                latencies.push(timed.await?);
                if latencies.len() == count {
                    break;
                }
            }
            Some(done) => {
                tokio::select! {
                    took = timed => latencies.push(took?),
                    finished = done => {
                        finished?;
                        break;
                    }
                }
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// A rate line: `bytes` done in `took`, against writing as many bytes sequentially to
/// a file in `dir` with fdatasync, in the same run.
pub fn rate_against_write(
    suite: &'static str,
    name: &'static str,
    dir: &std::path::Path,
    bytes: u64,
    took: std::time::Duration,
) -> Result<crate::report::Line> {
    let file = dir.join("baseline.bin");
    let written = super::cluster::baseline::write(&file, &random_bytes(7, bytes as usize))?;
    let _ = std::fs::remove_file(&file);
    Ok(crate::report::Line::rate(
        suite,
        name,
        "MiB/s",
        crate::measure::Throughput {
            hive: bytes as f64 / MIB / took.as_secs_f64(),
            baseline: bytes as f64 / MIB / written.as_secs_f64(),
        },
        "sequential write of as many bytes + fdatasync",
    ))
}

/// The nodes' used and live bytes in a status, summed.
fn summed(status: &hive_wire::net::control::StatusMessage) -> (u64, u64) {
    let figures = status.nodes.iter().map(|n| n.store);
    figures.fold((0, 0), |(used, live), s| (used + s.used, live + s.live))
}

/// Bytes the stores of a cluster use (live shards and garbage) and bytes of live
/// shards, summed, as measured now: waits for a heartbeat from every node that has
/// sent one, sent after this call began (a status read right after a round could
/// otherwise show the stores as they were before it).
pub async fn store_use_now(admin: &Admin) -> Result<(u64, u64)> {
    let asked = Instant::now();
    loop {
        let status = admin.status().await?;
        let fresh = status.nodes.iter().all(|n| {
            n.heartbeat_age_ms == u64::MAX
                || std::time::Duration::from_millis(n.heartbeat_age_ms) < asked.elapsed()
        });
        if fresh {
            return Ok(summed(&status));
        }
        anyhow::ensure!(
            asked.elapsed() < GIVE_UP,
            "no fresh heartbeats within {GIVE_UP:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `work` on each of `items` at once, a thread each; the first error, if any
/// (a panic in one is an error too).
pub fn on_threads<T: Sync>(items: &[T], work: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    std::thread::scope(|scope| {
        let running: Vec<_> = items
            .iter()
            .map(|item| {
                let work = &work;
                scope.spawn(move || work(item))
            })
            .collect();
        running.into_iter().try_for_each(|r| {
            r.join()
                .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?
        })
    })
}
