//! `hive-bench repair`: how fast a cluster heals and what healing costs the foreground,
//! on a local cluster of 8 nodes (4+2, so two can be marked out in turn), started here.
//!
//! - `repair_rate`: bytes of shards rebuilt per second after a node is killed and marked
//!   out, from `node out` until the nodes report having rebuilt as many shards as the
//!   node held (the census that finds them is inside the time; the census that then
//!   finds every chunk whole is checked after), with the repair rate unlimited; against
//!   a local sequential write of as many bytes with fdatasync, in the same run.
//! - `repair_fg_p99`: p99 latency of 1 MiB chunk gets while a repair runs at the
//!   default repair rate (another node killed and marked out first), against the same
//!   gets with no repair (ratio = baseline / ours).
//! - `scrub_rate`: one node's scrub pass at no rate limit, bytes verified per second
//!   (the pass's time as the node measures it), against a raw O_DIRECT sequential read
//!   of as many bytes of its store file.
//!
//! `--rounds` and `--round-ms` do not apply: each figure is one run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hive_client::chunk_io::ChunkStore;
use hive_client::local_cluster::{self, Admin};
use hive_client::status::{ClassHealth, summarize};
use hive_codec::ClusterView;
use hive_testkit::Rng;
use hive_wire::net::control::StatusMessage;
use hive_wire::{ChunkId, NodeId};

use crate::measure::Throughput;
use crate::report::{Better, Line, Report};
use crate::suites::cluster::{baseline, local, quantile};
use crate::suites::load::{self, GIVE_UP, MIB, POLL, Until};

const SUITE: &str = "repair";
/// Nodes: two more than a 4+2 chunk's shards, so two can go out in turn.
const NODES: u64 = 8;
/// The class.
const CLASS: (u8, u8) = (4, 2);
/// Each node's store (sparse).
const STORE_SIZE: &str = "4GiB";
/// 1 MiB chunks written before the node goes: about 1.5 GiB of shards, of which the
/// node going out holds a seventh.
const CHUNKS: usize = 768;
/// Bytes of each chunk.
const CHUNK: usize = 1 << 20;
/// Gets timed for each latency figure.
const GETS: usize = 200;
/// The node killed and marked out while foreground gets are timed (not the map
/// authority, node 1).
const FIRST_VICTIM: NodeId = NodeId(NODES);
/// The node killed and marked out for the repair rate.
const VICTIM: NodeId = NodeId(NODES - 1);
/// The node whose scrub is timed.
const SCRUBBED: NodeId = NodeId(2);

/// Runs the suite on a cluster it starts under `dir` (sparse stores, up to ~2 GiB written each).
pub fn run(report: &mut Report, dir: &Path) -> Result<()> {
    let shape = (NODES, CLASS);
    load::on_local_cluster(
        dir,
        SUITE,
        shape,
        STORE_SIZE,
        local::NO_GC,
        |dir| async move { measure(report, &dir).await },
    )
}

async fn measure(report: &mut Report, dir: &Path) -> Result<()> {
    let (store, _) = local_cluster::connect(dir).await?;
    let admin = local_cluster::admin(dir)?;
    let ids = load::fill(&store, CHUNKS, CHUNK).await?;
    store.settle(Duration::from_secs(30)).await;
    wait_whole(&admin).await?;
    let quiet = gets(&store, &ids, 1, None).await?;
    scrub(report, &admin, dir).await?;
    // At the default rate: what a repair costs the foreground.
    let rounds = out(&admin, dir, FIRST_VICTIM).await?;
    let repaired = async {
        wait_repaired(&admin, &rounds).await?;
        anyhow::Ok(())
    };
    let busy = gets(&store, &ids, 2, Some(Box::pin(repaired))).await?;
    ensure!(
        busy.len() >= GETS / 10,
        "only {} gets ran during the repair",
        busy.len()
    );
    // At no limit: how fast a repair goes.
    admin.authority.set_repair_rate(0).await?;
    let held = node(&admin.status().await?, VICTIM).map_or(0, |n| n.store.shards);
    ensure!(held > 0, "node {VICTIM} holds nothing to rebuild");
    let before = rebuilt(&admin.status().await?);
    let shards_before = summarize(&admin.status().await?).rebuilt.0;
    let started = Instant::now();
    let rounds = out(&admin, dir, VICTIM).await?;
    // Timed until the nodes report having rebuilt as many shards as the victim held
    // (their heartbeats, at most a second old, are inside the time: it errs slow).
    wait_until(&admin, "the victim's shards rebuilt", |s| {
        summarize(s).rebuilt.0.saturating_sub(shards_before) >= held
    })
    .await?;
    let took = started.elapsed();
    let bytes = rebuilt(&admin.status().await?).saturating_sub(before);
    // And the census agrees: every chunk whole again (outside the time).
    wait_repaired(&admin, &rounds).await?;
    report.add(load::rate_against_write(
        SUITE,
        "repair_rate",
        dir,
        bytes,
        took,
    )?);
    report.add(Line {
        suite: SUITE,
        name: "repair_fg_p99",
        unit: "ms",
        hive: quantile(&busy, 0.99) * 1e3,
        baseline: quantile(&quiet, 0.99) * 1e3,
        better: Better::Lower,
        against: "p99 of the same gets with no repair",
    });
    Ok(())
}

/// Kills `victim`, waits for the map to show it down, and marks it out; the census
/// rounds each node had finished just before.
async fn out(admin: &Admin, dir: &Path, victim: NodeId) -> Result<Vec<(u64, u64)>> {
    local::kill(dir, victim)?;
    wait_until(admin, "the killed node marked down", |s| {
        state_of(s, victim) == Some("down")
    })
    .await?;
    let rounds = rounds_by_node(&admin.status().await?);
    admin.authority.node_out(victim).await?;
    Ok(rounds)
}

/// Times [`GETS`] gets of chunks drawn from `ids` with `seed`, one after another, in
/// seconds, sorted; with `until`, gets go on until it finishes, and only those that
/// finished before it count.
pub(crate) async fn gets(
    store: &Arc<ChunkStore>,
    ids: &[ChunkId],
    seed: u64,
    until: Option<Until<'_>>,
) -> Result<Vec<f64>> {
    let mut rng = Rng::new(seed);
    load::timed(GETS, until, move |_| {
        let id = ids[rng.below(ids.len())];
        async move {
            store.get(id).await?;
            Ok(())
        }
    })
    .await
}

/// One node's scrub pass at no limit against reading as many bytes of its store.
async fn scrub(report: &mut Report, admin: &Admin, dir: &Path) -> Result<()> {
    let status = admin.status().await?;
    let view = ClusterView::from_message(&status.map)?;
    let addr = *view
        .addresses
        .get(&SCRUBBED)
        .with_context(|| format!("node {SCRUBBED} has no address"))?;
    let before = scrub_bytes(&status, SCRUBBED);
    let ticket = admin.node(SCRUBBED, addr).scrub(0).await?;
    let done = wait_until(admin, "the ordered scrub", |s| {
        node(s, SCRUBBED).is_some_and(|n| n.health.scrub.ordered >= ticket)
    })
    .await?;
    // The pass's own time, measured on the node.
    let took = node(&done, SCRUBBED).map_or(Duration::ZERO, |n| {
        Duration::from_micros(n.health.scrub.pass_micros)
    });
    ensure!(!took.is_zero(), "the scrub pass took no measurable time");
    let bytes = scrub_bytes(&done, SCRUBBED).saturating_sub(before);
    ensure!(bytes > 0, "the scrub read nothing");
    let store = dir.join(format!("node-{}/store.img", SCRUBBED.0));
    let raw = baseline::read_direct_prefix(&store, bytes)?;
    report.add(Line::rate(
        SUITE,
        "scrub_rate",
        "MiB/s",
        Throughput {
            hive: bytes as f64 / MIB / took.as_secs_f64(),
            baseline: bytes as f64 / MIB / raw.as_secs_f64(),
        },
        "raw O_DIRECT sequential read of as many bytes of the store file",
    ));
    Ok(())
}

fn node(status: &StatusMessage, id: NodeId) -> Option<&hive_wire::net::control::NodeStatus> {
    status.nodes.iter().find(|n| n.id == id.0)
}

fn scrub_bytes(status: &StatusMessage, id: NodeId) -> u64 {
    node(status, id).map_or(0, |n| n.health.scrub.bytes)
}

fn state_of(status: &StatusMessage, id: NodeId) -> Option<&'static str> {
    let view = ClusterView::from_message(&status.map).ok()?;
    view.map.node(id).map(|n| match n.state {
        hive_codec::NodeState::Up => "up",
        hive_codec::NodeState::Down => "down",
        hive_codec::NodeState::Out => "out",
        hive_codec::NodeState::Removed => "removed",
        hive_codec::NodeState::Lost => "lost",
    })
}

fn rebuilt(status: &StatusMessage) -> u64 {
    summarize(status).rebuilt.1
}

fn rounds_by_node(status: &StatusMessage) -> Vec<(u64, u64)> {
    status
        .nodes
        .iter()
        .map(|n| (n.id, n.health.repair.rounds))
        .collect()
}

/// Every chunk counted whole, and nothing queued.
fn whole(status: &StatusMessage) -> bool {
    let s = summarize(status);
    s.queued.0 == 0
        && !s.classes.is_empty()
        && s.classes
            .iter()
            .all(|c: &ClassHealth| c.degraded() == 0 && c.unreadable() == 0 && c.total() > 0)
}

pub(crate) async fn wait_whole(admin: &Admin) -> Result<StatusMessage> {
    let rounds = rounds_by_node(&admin.status().await?);
    wait_repaired(admin, &rounds).await
}

/// Waits until every up node has finished two census rounds since `rounds` were
/// counted (one may have begun before) and the status shows every chunk whole.
async fn wait_repaired(admin: &Admin, rounds: &[(u64, u64)]) -> Result<StatusMessage> {
    wait_until(admin, "the census to find every chunk whole", |s| {
        let view = ClusterView::from_message(&s.map);
        let settled = s.nodes.iter().all(|n| {
            let up = view.as_ref().is_ok_and(|v| v.is_up(NodeId(n.id)));
            let before = rounds
                .iter()
                .find(|(id, _)| *id == n.id)
                .map_or(0, |(_, r)| *r);
            !up || n.health.repair.rounds >= before + 2
        });
        settled && whole(s)
    })
    .await
}

async fn wait_until(
    admin: &Admin,
    what: &str,
    done: impl Fn(&StatusMessage) -> bool,
) -> Result<StatusMessage> {
    let started = Instant::now();
    loop {
        let status = admin.status().await?;
        if done(&status) {
            return Ok(status);
        }
        if started.elapsed() > GIVE_UP {
            bail!("waited {GIVE_UP:?} for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}
