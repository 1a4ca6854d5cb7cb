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
//! `--rounds` and `--round-ms` do not apply: each figure is one run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hive_client::chunk_io::ChunkStore;
use hive_client::local_cluster::{self, Admin};
use hive_testkit::random_bytes;
use hive_wire::net::control::StoreFigures;
use hive_wire::net::gc::{GcClient, phase};

use crate::report::{Better, Line, Report};
use crate::suites::cluster::quantile;
use crate::suites::load::{self, GIVE_UP, POLL, Until};

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
    let gc = local_cluster::gc_client(dir)?;
    let quiet = puts(&store, None).await?;

    // The free rate.
    let (garbage, used) = make_garbage(&store, &admin).await?;
    let started = Instant::now();
    collect(&gc, &admin, used, garbage).await?;
    let took = started.elapsed();
    let freed = used.saturating_sub(used_now(&admin).await?);
    ensure!(freed > 0, "the round freed nothing");
    report.add(load::rate_against_write(
        SUITE,
        "gc_free_rate",
        dir,
        freed,
        took,
    )?);

    // The foreground during a round.
    let (garbage, used) = make_garbage(&store, &admin).await?;
    let collecting: Until = Box::pin(collect(&gc, &admin, used, garbage));
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

/// Puts [`GARBAGE_CHUNKS`] chunks nothing refers to and waits out the grace; the
/// shard bytes they added, and the used space then.
async fn make_garbage(store: &Arc<ChunkStore>, admin: &Admin) -> Result<(u64, u64)> {
    let before = live_now(admin).await?;
    load::fill(store, GARBAGE_CHUNKS, CHUNK).await?;
    store.settle(Duration::from_secs(30)).await;
    // The grace is a rule about time, not an event: the stores delete nothing written
    // more recently.
    tokio::time::sleep(GRACE + Duration::from_secs(1)).await;
    let garbage = live_now(admin).await?.saturating_sub(before);
    ensure!(garbage > 0, "the garbage took no space");
    Ok((garbage, used_now(admin).await?))
}

/// Orders a round and waits until it is done and the used space is back within
/// [`BACK_WITHIN`] of the `garbage` below `used`.
async fn collect(gc: &GcClient, admin: &Admin, used: u64, garbage: u64) -> Result<()> {
    let round = gc.start(false).await.context("ordering a round")?;
    let started = Instant::now();
    let target = used.saturating_sub(garbage) + (garbage as f64 * BACK_WITHIN) as u64;
    loop {
        let status = gc.status().await?;
        if let Some(last) = status.last.filter(|l| l.round >= round) {
            ensure!(
                last.phase == phase::DONE,
                "round {round} failed: {:?}",
                last.problems
            );
            if used_now(admin).await? <= target {
                return Ok(());
            }
        }
        if started.elapsed() > GIVE_UP {
            bail!(
                "round {round} and reclaim did not bring the used space down to {target} within {GIVE_UP:?}"
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

/// Bytes the stores use (live and garbage), summed.
async fn used_now(admin: &Admin) -> Result<u64> {
    Ok(stores(admin).await?.iter().map(|s| s.used).sum())
}

/// Bytes of live shards, summed.
async fn live_now(admin: &Admin) -> Result<u64> {
    Ok(stores(admin).await?.iter().map(|s| s.live).sum())
}

async fn stores(admin: &Admin) -> Result<Vec<StoreFigures>> {
    Ok(admin
        .status()
        .await?
        .nodes
        .iter()
        .map(|n| n.store)
        .collect())
}
