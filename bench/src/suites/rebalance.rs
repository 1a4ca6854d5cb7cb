//! `hive-bench rebalance`: what adding a node moves, how fast, and what the move costs
//! the foreground, on a local cluster of 6 nodes (4+2) started here, joined by a 7th.
//!
//! - `rebalance_moved_fraction`: shards copied or rebuilt because the 7th node joined,
//!   as a percentage of all shards, against the ideal 1/7 (its fair share); ratio =
//!   ideal / ours, so moving more than needed scores below 1.
//! - `rebalance_rate`: bytes of shards moved per second, from the join until the last
//!   shard arrived (the nodes' heartbeats, at most a second old, are inside the time:
//!   it errs slow), at the default repair rate; against a local sequential write of as
//!   many bytes with fdatasync, in the same run.
//! - `rebalance_fg_p99`: p99 latency of 1 MiB chunk gets while the shards move (reads
//!   then also look under the earlier placement), against the same gets before the join
//!   (ratio = baseline / ours).
//!
//! `--rounds` and `--round-ms` do not apply: each figure is one run.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use hive_client::local_cluster::{self, Admin};
use hive_client::status::summarize;
use hive_wire::net::control::StatusMessage;

use crate::report::{Better, Line, Report};
use crate::suites::cluster::{local, quantile};
use crate::suites::load::{self, GIVE_UP, POLL};
use crate::suites::repair::{gets, wait_whole};

const SUITE: &str = "rebalance";
/// Nodes before the join.
const NODES: u64 = 6;
/// The class.
const CLASS: (u8, u8) = (4, 2);
/// Each node's store (sparse).
const STORE_SIZE: &str = "4GiB";
/// 1 MiB chunks written before the join: about 1.5 GiB of shards, a seventh of which
/// should move.
const CHUNKS: usize = 768;
/// Bytes of each chunk.
const CHUNK: usize = 1 << 20;

/// Runs the suite on a cluster it starts under `dir` (sparse stores, ~300 MiB written
/// to each).
pub fn run(report: &mut Report, dir: &Path) -> Result<()> {
    load::on_local_cluster(
        dir,
        SUITE,
        (NODES, CLASS),
        STORE_SIZE,
        local::NO_GC,
        |dir| async move { measure(report, &dir).await },
    )
}

/// What moved so far: shards moved plus rebuilt, and their bytes.
fn moved(status: &StatusMessage) -> (u64, u64) {
    let s = summarize(status);
    (s.moved.0 + s.rebuilt.0, s.moved.1 + s.rebuilt.1)
}

async fn measure(report: &mut Report, dir: &Path) -> Result<()> {
    let (store, _) = local_cluster::connect(dir).await?;
    let admin = local_cluster::admin(dir)?;
    let ids = load::fill(&store, CHUNKS, CHUNK).await?;
    store.settle(Duration::from_secs(30)).await;
    let whole = wait_whole(&admin).await?;
    let shards: u64 = summarize(&whole)
        .classes
        .iter()
        .map(|c| c.total() * u64::from(c.k + c.m))
        .sum();
    ensure!(shards > 0, "the census counted no chunks");
    let quiet = gets(&store, &ids, 1, None).await?;
    let (shards_before, bytes_before) = moved(&admin.status().await?);
    let started = Instant::now();
    let joining = dir.to_path_buf();
    // `add` runs its own runtime to wait on the nodes.
    tokio::task::spawn_blocking(move || local_cluster::add(&joining, 1, true)).await??;
    let last = Arc::new(Mutex::new((bytes_before, started)));
    let follow = follow_move(&admin, last.clone());
    let busy = gets(&store, &ids, 2, Some(Box::pin(follow))).await?;
    ensure!(
        busy.len() >= 10,
        "only {} gets ran during the move",
        busy.len()
    );
    let (bytes_after, arrived) = *last.lock().unwrap_or_else(PoisonError::into_inner);
    let (shards_after, _) = moved(&admin.status().await?);
    let moved_shards = shards_after.saturating_sub(shards_before);
    let bytes = bytes_after.saturating_sub(bytes_before);
    ensure!(
        moved_shards > 0 && bytes > 0,
        "nothing moved to the new node"
    );
    report.add(Line {
        suite: SUITE,
        name: "rebalance_moved_fraction",
        unit: "%",
        hive: 100.0 * moved_shards as f64 / shards as f64,
        baseline: 100.0 / (NODES + 1) as f64,
        better: Better::Lower,
        against: "the ideal: the new node's fair share, 1/7",
    });
    report.add(load::rate_against_write(
        SUITE,
        "rebalance_rate",
        dir,
        bytes,
        arrived.duration_since(started),
    )?);
    report.add(Line {
        suite: SUITE,
        name: "rebalance_fg_p99",
        unit: "ms",
        hive: quantile(&busy, 0.99) * 1e3,
        baseline: quantile(&quiet, 0.99) * 1e3,
        better: Better::Lower,
        against: "p99 of the same gets before the join",
    });
    Ok(())
}

/// Follows the move until the map forgets the earlier placement (every node found its
/// groups in place), noting in `last` the bytes moved and when they last grew.
async fn follow_move(admin: &Admin, last: Arc<Mutex<(u64, Instant)>>) -> Result<()> {
    let started = Instant::now();
    loop {
        let status = admin.status().await?;
        let (_, bytes) = moved(&status);
        {
            let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
            if bytes > last.0 {
                *last = (bytes, Instant::now());
            }
        }
        if status.map.history.is_empty() && summarize(&status).queued.0 == 0 {
            return Ok(());
        }
        ensure!(
            started.elapsed() < GIVE_UP,
            "waited {GIVE_UP:?} for the move to settle"
        );
        tokio::time::sleep(POLL).await;
    }
}
