//! `hive status`: the cluster's health on one screen, like `ceph -s`, or as one JSON
//! object.
//!
//! Everything comes from the map authority's status: each node's heartbeat carries its
//! store figures, its scrub progress and its census and repair figures, so one request
//! shows the whole cluster. The figures are as of each node's last heartbeat (a second
//! old at most while it is up).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use hive_codec::{ClusterView, NodeState};
use hive_wire::NodeId;
use hive_wire::net::control::{NodeStatus, StatusMessage};
use hive_wire::net::gc::{GcStatus, phase};
use hive_wire::units::format_duration;

use crate::local_cluster::{self, bytes};

/// Chunks of one class by how many of their shards are intact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassHealth {
    /// k.
    pub k: u8,
    /// m.
    pub m: u8,
    /// Chunks by intact shards, from k + m down to 0.
    pub by_healthy: BTreeMap<u8, u64>,
}

impl ClassHealth {
    /// Chunks with fewer than k intact shards.
    pub fn unreadable(&self) -> u64 {
        self.by_healthy.range(..self.k).map(|(_, n)| n).sum()
    }

    /// Chunks with fewer than k + m intact shards but at least k.
    pub fn degraded(&self) -> u64 {
        let width = self.k + self.m;
        self.by_healthy.range(self.k..width).map(|(_, n)| n).sum()
    }

    /// Every chunk counted.
    pub fn total(&self) -> u64 {
        self.by_healthy.values().sum()
    }
}

/// The cluster's health summed over its nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Per class, from each placement group's primary's last census.
    pub classes: Vec<ClassHealth>,
    /// Chunks waiting to be rebuilt, and the shard bytes they need.
    pub queued: (u64, u64),
    /// Shards and bytes rebuilt since the nodes started.
    pub rebuilt: (u64, u64),
    /// Rebuilds that failed (tried again next round).
    pub failed: u64,
    /// Placement groups censused in the rounds under way, of all.
    pub censused: (u64, u64),
    /// Bytes verified in the scrub passes under way, of their total.
    pub scrub_pass: (u64, u64),
    /// Scrub passes finished (summed over nodes) and damaged shards found.
    pub scrub_passes: u64,
    /// Damaged shards scrub found.
    pub damaged: u64,
    /// Shards and bytes rebalance copied from past holders, and the old copies it
    /// dropped, since the nodes started.
    pub moved: (u64, u64, u64),
    /// Shard copies rebalance's rounds under way have left to make, their estimated
    /// bytes, and the most bytes any one node has left (nodes copy in parallel, each
    /// at the repair rate).
    pub moves_left: (u64, u64, u64),
}

/// Rebalance's work left, in words: the copies the rounds under way still have to
/// make and, at the repair rate, about how long they take (a round's census may find
/// more).
pub fn moves_left(s: &Summary, repair_rate: u64) -> String {
    let (shards, total, most) = s.moves_left;
    let eta = match (shards, repair_rate) {
        (0, _) => String::new(),
        (_, 0) => ", no rate limit".to_string(),
        (_, rate) => format!(
            ", about {} at the repair rate",
            format_duration(Duration::from_secs(most.div_ceil(rate)))
        ),
    };
    format!("{shards} shard copies ({}) left{eta}", bytes(total))
}

/// Sums the nodes' figures.
pub fn summarize(status: &StatusMessage) -> Summary {
    let mut classes: BTreeMap<(u8, u8), ClassHealth> = BTreeMap::new();
    let mut s = Summary::default();
    for class in &status.map.classes {
        classes.entry((class.k, class.m)).or_insert(ClassHealth {
            k: class.k,
            m: class.m,
            by_healthy: BTreeMap::new(),
        });
    }
    for node in &status.nodes {
        let (repair, scrub) = (&node.health.repair, &node.health.scrub);
        for count in &repair.health {
            let class = classes
                .entry((count.class.k, count.class.m))
                .or_insert(ClassHealth {
                    k: count.class.k,
                    m: count.class.m,
                    by_healthy: BTreeMap::new(),
                });
            *class.by_healthy.entry(count.healthy).or_default() += count.chunks;
        }
        s.queued.0 += repair.queued;
        s.queued.1 += repair.queued_bytes;
        s.rebuilt.0 += repair.shards_rebuilt;
        s.rebuilt.1 += repair.bytes_rebuilt;
        s.failed += repair.failed;
        s.moved.0 += repair.shards_moved;
        s.moved.1 += repair.bytes_moved;
        s.moved.2 += repair.copies_dropped;
        s.moves_left.0 += repair.moves_queued;
        s.moves_left.1 += repair.moves_queued_bytes;
        s.moves_left.2 = s.moves_left.2.max(repair.moves_queued_bytes);
        s.censused.0 += repair.censused;
        s.censused.1 += repair.groups;
        s.scrub_pass.0 += scrub.pass_done;
        s.scrub_pass.1 += scrub.pass_total;
        s.scrub_passes += scrub.passes;
        s.damaged += scrub.damaged;
    }
    s.classes = classes.into_values().collect();
    s
}

fn state_name(view: &ClusterView, id: u64) -> &'static str {
    view.map
        .node(NodeId(id))
        .map_or("unknown", |n| match n.state {
            NodeState::Up => "up",
            NodeState::Down => "down",
            NodeState::Out => "out",
            NodeState::Removed => "removed",
            NodeState::Lost => "lost",
        })
}

pub(crate) fn rate(bytes_per_second: u64) -> String {
    if bytes_per_second == 0 {
        "no limit".to_string()
    } else {
        format!("{}/s", bytes(bytes_per_second))
    }
}

/// The one-screen summary, with garbage collection's state if the metadata node
/// answered.
pub fn render(status: &StatusMessage, gc: Option<&GcStatus>) -> Result<String> {
    let view = ClusterView::from_message(&status.map)?;
    let s = summarize(status);
    let mut out = String::new();
    let count = |state: &str| {
        status
            .nodes
            .iter()
            .filter(|n| state_name(&view, n.id) == state)
            .count()
    };
    let unreadable: u64 = s.classes.iter().map(ClassHealth::unreadable).sum();
    let degraded: u64 = s.classes.iter().map(ClassHealth::degraded).sum();
    let down = count("down");
    let verdict = if unreadable > 0 {
        format!("UNREADABLE: {unreadable} chunks have fewer than k intact shards")
    } else if degraded > 0 || down > 0 {
        let nodes = if down > 0 {
            format!("{down} nodes down; ")
        } else {
            String::new()
        };
        format!("DEGRADED: {nodes}{degraded} chunks below full redundancy")
    } else {
        "OK".to_string()
    };
    out += &format!("health: {verdict}\n");
    out += &format!(
        "nodes:  {} in map epoch {}: {} up, {} down, {} out ({} of them silent)\n",
        status.nodes.len(),
        status.map.epoch,
        count("up"),
        count("down"),
        count("out") + count("lost"),
        count("lost")
    );
    out += &render_data(&s);
    out += &render_repair(status, &s);
    out += &render_scrub(&s);
    let capacity: u64 = status.nodes.iter().map(|n| n.store.capacity).sum();
    let used: u64 = status.nodes.iter().map(|n| n.store.used).sum();
    let stored: u64 = status.nodes.iter().map(|n| n.store.live).sum();
    out += &format!(
        "space:  {} of {} used ({} in live shards)\n",
        bytes(used),
        bytes(capacity),
        bytes(stored)
    );
    out += &render_gc(gc);
    out += &render_savings(savings(status, gc).as_ref());
    out += "\n";
    out += &render_nodes(status, &view);
    Ok(out)
}

/// Garbage collection on one line: the last round, the one running, the next.
fn render_gc(gc: Option<&GcStatus>) -> String {
    let Some(gc) = gc else {
        return "gc:     unknown (the metadata node did not answer)\n".to_string();
    };
    let ago = |ms: u64| format_duration(Duration::from_secs(ms / 1000));
    let mut parts = Vec::new();
    if let Some(last) = &gc.last {
        let verdict = if last.phase == phase::FAILED {
            "FAILED"
        } else {
            "done"
        };
        parts.push(format!(
            "last round {}{} {verdict} {} ago, deleted {} shards ({}){}",
            last.round,
            if last.dry_run { " (dry run)" } else { "" },
            ago(gc.last_age_ms),
            last.deleted_shards,
            bytes(last.deleted_bytes),
            if last.problems.is_empty() {
                String::new()
            } else {
                format!(", {} problems", last.problems.len())
            }
        ));
    } else {
        parts.push("no round yet".to_string());
    }
    if let Some(current) = gc.current.as_ref().filter(|c| c.phase != phase::QUEUED) {
        parts.push(format!("round {} running", current.round));
    }
    parts.push(format!("next by itself in {}", ago(gc.next_in_ms)));
    format!("gc:     {}\n", parts.join("; "))
}

/// What deduplication and compression save, from the last garbage collection round's
/// mark and the stores' figures now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Savings {
    /// The round whose mark counted the references.
    pub round: u64,
    /// Bytes files and objects hold, as written.
    pub referenced: u64,
    /// Bytes of their distinct chunks: what is left after deduplication.
    pub distinct: u64,
    /// Bytes of chunk streams the stores hold now, after compression and before
    /// parity (garbage not yet collected included).
    pub stored: u64,
}

impl Savings {
    /// Bytes deduplication saves.
    pub fn dedup(&self) -> u64 {
        self.referenced.saturating_sub(self.distinct)
    }

    /// Bytes compression saves (none when the stores hold more, such as garbage).
    pub fn compression(&self) -> u64 {
        self.distinct.saturating_sub(self.stored)
    }
}

/// The savings, if a round has marked the references since the metadata node started.
pub fn savings(status: &StatusMessage, gc: Option<&GcStatus>) -> Option<Savings> {
    let last = gc?.last.as_ref().filter(|r| r.phase == phase::DONE)?;
    Some(Savings {
        round: last.round,
        referenced: last.referenced_bytes,
        distinct: last.distinct_bytes,
        stored: status.nodes.iter().map(|n| n.store.stream).sum(),
    })
}

/// The savings on one line.
fn render_savings(savings: Option<&Savings>) -> String {
    let Some(s) = savings else {
        return "saved:  not known until a garbage collection round has counted the references\n"
            .to_string();
    };
    let ratio = |of: u64, to: u64| of as f64 / to.max(1) as f64;
    format!(
        "saved:  dedup {} ({} referenced, {} distinct: {:.2}x); compression {} ({} stored before parity: {:.2}x); as of gc round {}\n",
        bytes(s.dedup()),
        bytes(s.referenced),
        bytes(s.distinct),
        ratio(s.referenced, s.distinct),
        bytes(s.compression()),
        bytes(s.stored),
        ratio(s.distinct, s.stored),
        s.round
    )
}

fn render_data(s: &Summary) -> String {
    let mut out = String::new();
    for class in &s.classes {
        let width = class.k + class.m;
        let mut parts = Vec::new();
        for healthy in (0..=width).rev() {
            let n = class.by_healthy.get(&healthy).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let what = if healthy == width {
                "whole".to_string()
            } else if healthy >= class.k {
                format!("{healthy}/{width}")
            } else {
                format!("{healthy}/{width} UNREADABLE")
            };
            parts.push(format!("{n} {what}"));
        }
        if parts.is_empty() {
            parts.push("no chunks counted yet".to_string());
        }
        out += &format!(
            "data:   {}+{}: {} chunks: {}\n",
            class.k,
            class.m,
            class.total(),
            parts.join(", ")
        );
    }
    if s.classes.is_empty() {
        out += "data:   no shards stored yet\n";
    }
    out
}

pub(crate) fn render_repair(status: &StatusMessage, s: &Summary) -> String {
    let repair_rate = status.map.repair_rate;
    let eta = match (s.queued.1, repair_rate) {
        (0, _) => String::new(),
        (_, 0) => ", no rate limit".to_string(),
        (queued, rate) => format!(", ETA {}s at most", queued.div_ceil(rate)),
    };
    let rebalance = match status.map.history.len() {
        0 => "done: every shard is where the map puts it".to_string(),
        n => format!(
            "under way: reads also look under {n} earlier placement{}; {}",
            if n == 1 { "" } else { "s" },
            moves_left(s, repair_rate)
        ),
    };
    format!(
        "repair: {} chunks queued ({}){eta}; {} shards ({}) rebuilt since start, {} failed; rate {}; census {} of {} groups this round\n\
         rebalance: {rebalance}; {} shards ({}) moved and {} old copies dropped since start\n\
         owed:   {} shards reported owed by writers since the authority started\n",
        s.queued.0,
        bytes(s.queued.1),
        s.rebuilt.0,
        bytes(s.rebuilt.1),
        s.failed,
        rate(repair_rate),
        s.censused.0,
        s.censused.1,
        s.moved.0,
        bytes(s.moved.1),
        s.moved.2,
        status.shards_owed,
    )
}

fn render_scrub(s: &Summary) -> String {
    let pass = if s.scrub_pass.1 > 0 {
        format!(
            "{:.0}% of the passes under way ({} of {})",
            100.0 * s.scrub_pass.0 as f64 / s.scrub_pass.1 as f64,
            bytes(s.scrub_pass.0),
            bytes(s.scrub_pass.1)
        )
    } else {
        "idle".to_string()
    };
    format!(
        "scrub:  {pass}; {} passes finished (all nodes), {} damaged shards found\n",
        s.scrub_passes, s.damaged
    )
}

fn render_nodes(status: &StatusMessage, view: &ClusterView) -> String {
    let mut out = format!(
        "{:<18} {:<5} {:<22} {:>10} {:>10} {:>8} {:>10} {:>7} {:>6} {:>6}  {}\n",
        "node",
        "state",
        "address",
        "capacity",
        "used",
        "shards",
        "heartbeat",
        "scrub",
        "queued",
        "weight",
        "domain"
    );
    let mut nodes: Vec<&NodeStatus> = status.nodes.iter().collect();
    nodes.sort_by_key(|n| n.id);
    for n in nodes {
        let heartbeat = if n.heartbeat_age_ms == u64::MAX {
            "never".to_string()
        } else {
            format!("{:.1}s ago", n.heartbeat_age_ms as f64 / 1000.0)
        };
        let scrub = &n.health.scrub;
        let scrubbing = if scrub.pass_total > 0 {
            format!(
                "{:.0}%",
                100.0 * scrub.pass_done as f64 / scrub.pass_total as f64
            )
        } else {
            "-".to_string()
        };
        let placed = view.map.node(NodeId(n.id));
        out += &format!(
            "{:<18} {:<5} {:<22} {:>10} {:>10} {:>8} {:>10} {:>7} {:>6} {:>6}  {}\n",
            NodeId(n.id).to_string(),
            state_name(view, n.id),
            view.addresses
                .get(&NodeId(n.id))
                .map(ToString::to_string)
                .unwrap_or_default(),
            bytes(n.store.capacity),
            bytes(n.store.used),
            n.store.shards,
            heartbeat,
            scrubbing,
            n.health.repair.queued,
            placed.map_or_else(|| "-".to_string(), |p| p.weight.to_string()),
            view.labels.get(&NodeId(n.id)).map_or("-", String::as_str),
        );
    }
    out
}

/// The summary as one JSON object (`gc` is null if the metadata node did not answer).
pub fn to_json(status: &StatusMessage, gc: Option<&GcStatus>) -> Result<serde_json::Value> {
    let view = ClusterView::from_message(&status.map)?;
    let s = summarize(status);
    let nodes: Vec<serde_json::Value> = status
        .nodes
        .iter()
        .map(|n| {
            serde_json::json!({
                "id": n.id,
                "state": state_name(&view, n.id),
                "addr": view.addresses.get(&NodeId(n.id)).map(ToString::to_string),
                "weight": view.map.node(NodeId(n.id)).map(|p| p.weight),
                "domain": view.labels.get(&NodeId(n.id)),
                "capacity": n.store.capacity,
                "used": n.store.used,
                "stored": n.store.live,
                "shards": n.store.shards,
                "stream": n.store.stream,
                "heartbeat_age_ms": (n.heartbeat_age_ms != u64::MAX).then_some(n.heartbeat_age_ms),
                "scrub": {
                    "passes": n.health.scrub.passes,
                    "pass_done": n.health.scrub.pass_done,
                    "pass_total": n.health.scrub.pass_total,
                    "bytes": n.health.scrub.bytes,
                    "damaged": n.health.scrub.damaged,
                    "rate": n.health.scrub.rate,
                    "ordered": n.health.scrub.ordered,
                },
                "repair": {
                    "groups": n.health.repair.groups,
                    "censused": n.health.repair.censused,
                    "rounds": n.health.repair.rounds,
                    "queued": n.health.repair.queued,
                    "queued_bytes": n.health.repair.queued_bytes,
                    "shards_rebuilt": n.health.repair.shards_rebuilt,
                    "bytes_rebuilt": n.health.repair.bytes_rebuilt,
                    "unreadable": n.health.repair.unreadable,
                    "failed": n.health.repair.failed,
                    "shards_moved": n.health.repair.shards_moved,
                    "bytes_moved": n.health.repair.bytes_moved,
                    "copies_dropped": n.health.repair.copies_dropped,
                    "settled_epoch": n.health.repair.settled_epoch,
                },
            })
        })
        .collect();
    let classes: Vec<serde_json::Value> = s
        .classes
        .iter()
        .map(|c| {
            let by_healthy: serde_json::Map<String, serde_json::Value> = c
                .by_healthy
                .iter()
                .map(|(h, n)| (h.to_string(), serde_json::json!(n)))
                .collect();
            serde_json::json!({
                "k": c.k, "m": c.m, "chunks": c.total(), "by_healthy": by_healthy,
                "degraded": c.degraded(), "unreadable": c.unreadable(),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "epoch": status.map.epoch,
        "repair_rate": status.map.repair_rate,
        "classes": classes,
        "nodes": nodes,
        "shards_owed": status.shards_owed,
        "repair": {
            "queued": s.queued.0, "queued_bytes": s.queued.1,
            "shards_rebuilt": s.rebuilt.0, "bytes_rebuilt": s.rebuilt.1, "failed": s.failed,
        },
        "rebalance": {
            "past_placements": status.map.history.len(),
            "shards_moved": s.moved.0, "bytes_moved": s.moved.1, "copies_dropped": s.moved.2,
            "moves_left": s.moves_left.0, "moves_left_bytes": s.moves_left.1,
        },
        "scrub": { "passes": s.scrub_passes, "damaged": s.damaged },
        "saved": savings(status, gc).map(|s| serde_json::json!({
            "round": s.round,
            "referenced": s.referenced,
            "distinct": s.distinct,
            "stored": s.stored,
            "dedup": s.dedup(),
            "compression": s.compression(),
        })),
        "gc": gc.map(|g| serde_json::json!({
            "last_round": g.last.as_ref().map(|r| r.round),
            "last_deleted_shards": g.last.as_ref().map(|r| r.deleted_shards),
            "last_deleted_bytes": g.last.as_ref().map(|r| r.deleted_bytes),
            "last_age_ms": g.last.as_ref().map(|_| g.last_age_ms),
            "running": g.current.as_ref().filter(|c| c.phase != phase::QUEUED).map(|c| c.round),
            "next_in_ms": g.next_in_ms,
            "grace_ms": g.grace_ms,
            "interval_ms": g.interval_ms,
        })),
    }))
}

/// `hive status`.
pub fn status(dir: &Path, json: bool) -> Result<()> {
    let (status, gc) = local_cluster::runtime()?.block_on(async {
        let admin = local_cluster::admin(dir)?;
        let status = admin.status().await?;
        // Best effort: the status stands without it.
        let gc = match local_cluster::gc_client(dir).await {
            Ok(client) => client.status().await.ok(),
            Err(_) => None,
        };
        anyhow::Ok((status, gc))
    })?;
    // Best effort too: the data's health stands without the metadata group's.
    let group = crate::meta_group::status(dir);
    if json {
        let mut value = to_json(&status, gc.as_ref())?;
        value["meta"] = match &group {
            Ok(g) => crate::meta_group::to_json(g),
            Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
        };
        crate::output::println(&value.to_string());
    } else {
        let mut out = render(&status, gc.as_ref())?;
        let meta = match &group {
            Ok(g) => crate::meta_group::render(g),
            Err(e) => format!("meta:   unknown ({e:#})\n"),
        };
        // The group's lines after the cluster summary, before the node table.
        match out.find("\n\n") {
            Some(at) => out.insert_str(at + 1, &meta),
            None => out.push_str(&meta),
        }
        crate::output::print(&out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_wire::net::control::{
        Class, HealthCount, MapMessage, MapNode, NodeHealth, RepairFigures, StoreFigures, state,
    };

    fn node(id: u64, health: Vec<HealthCount>) -> (MapNode, NodeStatus) {
        (
            MapNode {
                id,
                domain: id as u32,
                weight: 1,
                state: if id == 3 { state::DOWN } else { state::UP },
                joined: 1,
                addr: format!("127.0.0.1:{}", 7000 + id),
                labels: String::new(),
            },
            NodeStatus {
                id,
                store: StoreFigures::default(),
                heartbeat_age_ms: 100,
                health: NodeHealth {
                    classes: vec![],
                    scrub: Default::default(),
                    repair: RepairFigures {
                        health,
                        queued: 1,
                        queued_bytes: 1 << 20,
                        ..Default::default()
                    },
                },
            },
        )
    }

    #[test]
    fn the_summary_adds_up_every_primary_and_names_the_worst() {
        let class = Class { k: 2, m: 1 };
        let count = |healthy, chunks| HealthCount {
            class,
            healthy,
            chunks,
        };
        let (nodes, statuses): (Vec<_>, Vec<_>) = [
            node(1, vec![count(3, 10), count(2, 1)]),
            node(2, vec![count(3, 5), count(1, 2)]),
            node(3, vec![]),
        ]
        .into_iter()
        .unzip();
        let status = StatusMessage {
            map: MapMessage {
                epoch: 9,
                pg_bits: 4,
                nodes,
                classes: vec![class],
                repair_rate: 1 << 20,
                history: Vec::new(),
            },
            nodes: statuses,
            shards_owed: 4,
        };
        let s = summarize(&status);
        assert_eq!(s.classes.len(), 1);
        assert_eq!(s.classes[0].total(), 18);
        assert_eq!(s.classes[0].degraded(), 1);
        assert_eq!(s.classes[0].unreadable(), 2);
        assert_eq!(s.queued, (3, 3 << 20));
        let text = render(&status, None).expect("render");
        assert!(text.starts_with("health: UNREADABLE: 2 chunks"), "{text}");
        assert!(
            text.contains("2+1: 18 chunks: 15 whole, 1 2/3, 2 1/3 UNREADABLE"),
            "{text}"
        );
        assert!(text.contains("1 down"), "{text}");
        assert!(text.contains("ETA 3s"), "{text}");
        let json = to_json(&status, None).expect("json");
        assert_eq!(json["classes"][0]["unreadable"], 2);
        assert!(text.contains("gc:     unknown"), "{text}");
    }

    #[test]
    fn the_gc_line_names_the_last_round_and_the_next() {
        let gc = GcStatus {
            current: None,
            last: Some(hive_wire::net::gc::GcRound {
                round: 3,
                phase: phase::DONE,
                deleted_shards: 246,
                deleted_bytes: 75 << 20,
                ..Default::default()
            }),
            issued: 3,
            last_age_ms: 120_500,
            next_in_ms: 480_000,
            grace_ms: 30_000,
            interval_ms: 600_000,
        };
        assert_eq!(
            render_gc(Some(&gc)),
            "gc:     last round 3 done 2m ago, deleted 246 shards (75.0 MiB); next by itself in 8m\n"
        );
    }

    #[test]
    fn the_savings_line_tells_dedup_from_compression() {
        let savings = Savings {
            round: 4,
            referenced: 300 << 20,
            distinct: 100 << 20,
            stored: 40 << 20,
        };
        assert_eq!(savings.dedup(), 200 << 20);
        assert_eq!(savings.compression(), 60 << 20);
        assert_eq!(
            render_savings(Some(&savings)),
            "saved:  dedup 200.0 MiB (300.0 MiB referenced, 100.0 MiB distinct: 3.00x); compression 60.0 MiB (40.0 MiB stored before parity: 2.50x); as of gc round 4\n"
        );
        // Stores holding more than the references (garbage not yet collected) save
        // nothing by compression, never a negative amount.
        let garbage = Savings {
            stored: 150 << 20,
            ..savings
        };
        assert_eq!(garbage.compression(), 0);
        assert!(render_savings(None).contains("not known until"));
    }
}
