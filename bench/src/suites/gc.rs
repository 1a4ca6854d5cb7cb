//! `hive-bench gc`: how fast garbage comes back as free space, and what collecting it
//! costs the foreground, on a local cluster of 6 nodes (4+2) started here with a 5 s
//! grace period and no rounds but those the suite orders.
//!
//! - `gc_free_rate`: 1 GiB of chunks put through the client library and recorded
//!   nowhere (garbage from the start); once the grace has passed, a round is ordered
//!   and timed until it is done and the stores' used space has come back (reclaim
//!   included). Bytes: the drop in used space. Against a local sequential write of as
//!   many bytes with fdatasync, in the same run.
//! - `gc_fg_p99`: p99 latency of 1 MiB chunk puts while a round and its reclaim free
//!   another 1 GiB of garbage, against the same puts with no collection (ratio =
//!   baseline / ours).
//!
//! - `space_small_files`: the shard bytes a tree of small files takes, against each
//!   file compressed alone with zstd (see `small_files`).
//!
//! `--rounds` and `--round-ms` do not apply: each figure is one run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hive_client::chunk_io::ChunkStore;
use hive_client::local_cluster::{self, Admin};
use hive_testkit::random_bytes;
use hive_wire::net::gc::{GcClient, phase};

use crate::report::{Better, Line, Report};
use crate::suites::cluster::quantile;
use crate::suites::load::{self, GIVE_UP, POLL, Until};
use crate::suites::small_files;

const SUITE: &str = "gc";
/// Nodes: one per shard of a 4+2 chunk.
const NODES: u64 = 6;
/// The class.
const CLASS: (u8, u8) = (4, 2);
/// Each node's store (sparse).
const STORE_SIZE: &str = "4GiB";
/// The grace period: short, so garbage is collectable seconds after it is written.
const GRACE: Duration = Duration::from_secs(5);
/// `hive cluster up` arguments: the grace, and no rounds but the suite's.
const UP_ARGS: &[&str] = &["--gc-grace", "5s", "--gc-interval", "7d"];
/// 1 MiB chunks of garbage per measurement: 1 GiB, 1.5 GiB of shards.
const GARBAGE_CHUNKS: usize = 1024;
/// Bytes of each chunk.
const CHUNK: usize = 1 << 20;
/// Puts timed with no collection running.
const PUTS: usize = 200;
/// The used space counts as come back within this fraction of the garbage's shards
/// (the segment each store writes into is not reclaimed: up to 16 MiB a store).
const BACK_WITHIN: f64 = 0.1;

/// Runs the suite on a cluster it starts under `dir` (sparse stores, up to ~1 GiB written to each).
pub fn run(report: &mut Report, dir: &Path) -> Result<()> {
    let shape = (NODES, CLASS);
    load::on_local_cluster(dir, SUITE, shape, STORE_SIZE, UP_ARGS, |dir| async move {
        measure(report, &dir).await
    })
}

async fn measure(report: &mut Report, dir: &Path) -> Result<()> {
    let (store, _) = local_cluster::connect(dir).await?;
    let admin = local_cluster::admin(dir)?;
    let gc = local_cluster::gc_client(dir).await?;
    // The small-file tree first, while the stores hold nothing else that changes.
    report.add(small_files::measure(SUITE, &store, &admin).await?);
    // A first run warms the connections and the stores; the second is the baseline.
    puts(&store, None).await?;
    let quiet = puts(&store, None).await?;

    // The free rate.
    let garbage = make_garbage(&store, &admin).await?;
    let started = Instant::now();
    collect(&gc, &admin, &garbage).await?;
    let took = started.elapsed();
    let freed = garbage
        .used
        .saturating_sub(load::store_use_now(&admin).await?.0);
    ensure!(freed > 0, "the round freed nothing");
    report.add(load::rate_against_write(
        SUITE,
        "gc_free_rate",
        dir,
        freed,
        took,
    )?);

    // The foreground during a round.
    let garbage = make_garbage(&store, &admin).await?;
    let collecting: Until = Box::pin(collect(&gc, &admin, &garbage));
    let busy = puts(&store, Some(collecting)).await?;
    ensure!(
        busy.len() >= PUTS / 10,
        "only {} puts ran during the round",
        busy.len()
    );
    report.add(Line {
        suite: SUITE,
        name: "gc_fg_p99",
        unit: "ms",
        hive: quantile(&busy, 0.99) * 1e3,
        baseline: quantile(&quiet, 0.99) * 1e3,
        better: Better::Lower,
        against: "p99 of the same puts with no collection",
    });
    Ok(())
}

/// Garbage made for a measurement.
struct Garbage {
    /// Shard bytes it added.
    bytes: u64,
    /// Bytes the stores used but held no live shard in, before it was made.
    unreclaimed: u64,
    /// Bytes the stores used once it was made.
    used: u64,
}

/// Puts [`GARBAGE_CHUNKS`] chunks nothing refers to and waits out the grace.
async fn make_garbage(store: &Arc<ChunkStore>, admin: &Admin) -> Result<Garbage> {
    let (used, live) = load::store_use_now(admin).await?;
    load::fill(store, GARBAGE_CHUNKS, CHUNK).await?;
    store.settle(Duration::from_secs(30)).await;
    // The grace is a rule about time, not an event: the stores delete nothing written
    // more recently, and remember touches in windows of the grace, so a touch counts
    // for up to two graces.
    tokio::time::sleep(2 * GRACE + Duration::from_secs(1)).await;
    let (used_after, live_after) = load::store_use_now(admin).await?;
    let bytes = live_after.saturating_sub(live);
    ensure!(bytes > 0, "the garbage took no space");
    Ok(Garbage {
        bytes,
        unreclaimed: used.saturating_sub(live),
        used: used_after,
    })
}

/// Orders rounds until they have deleted all but [`BACK_WITHIN`] of `garbage`, and
/// waits until reclaim has freed it: the stores' used space beyond their live shards
/// is back within [`BACK_WITHIN`] of what it was. (Puts running meanwhile add live
/// shards, which this leaves out.)
async fn collect(gc: &GcClient, admin: &Admin, garbage: &Garbage) -> Result<()> {
    let share = |bytes: u64| (bytes as f64 * (1.0 - BACK_WITHIN)) as u64;
    let slack = garbage.bytes - share(garbage.bytes);
    let mut round = gc.start(false).await.context("ordering a round")?;
    let mut deleted = 0;
    let started = Instant::now();
    loop {
        if deleted < share(garbage.bytes) {
            let status = gc.status().await?;
            if let Some(last) = status.last.filter(|l| l.round >= round) {
                ensure!(
                    last.phase == phase::DONE,
                    "round {round} failed: {:?}",
                    last.problems
                );
                deleted += last.deleted_bytes;
                if deleted < share(garbage.bytes) {
                    round = gc.start(false).await.context("ordering a round")?;
                }
            }
        } else {
            let (used, live) = load::store_use_now(admin).await?;
            if used.saturating_sub(live) <= garbage.unreclaimed + slack {
                return Ok(());
            }
        }
        if started.elapsed() > GIVE_UP {
            bail!(
                "{deleted} of {} garbage bytes deleted and reclaimed within {GIVE_UP:?}",
                garbage.bytes
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Times 1 MiB chunk puts of new random bytes; see [`load::timed`].
async fn puts(store: &Arc<ChunkStore>, until: Option<Until<'_>>) -> Result<Vec<f64>> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    load::timed(PUTS, until, |n| {
        let chunk = random_bytes(seed.wrapping_add(n), CHUNK);
        async move {
            store.put(&chunk).await?;
            Ok(())
        }
    })
    .await
}
