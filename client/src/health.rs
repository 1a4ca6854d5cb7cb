//! The cluster's health as an operator sees it: `hive status` (one screen, like
//! `ceph -s`), `hive scrub`, `hive repair` and `hive node out`, with progress bars for
//! `--wait`.
//!
//! Everything comes from the map authority's status: each node's heartbeat carries its
//! store figures, its scrub progress and its census and repair figures, so one request
//! shows the whole cluster. The figures are as of each node's last heartbeat (a second
//! old at most while it is up).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hive_codec::{ClusterView, NodeState};
use hive_wire::NodeId;
use hive_wire::net::control::{NodeStatus, StatusMessage};

use crate::local_cluster::{self, Admin, bytes};

/// How often `--wait` looks at the status.
const WAIT_POLL: Duration = Duration::from_millis(500);

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
        })
}

fn rate(bytes_per_second: u64) -> String {
    if bytes_per_second == 0 {
        "no limit".to_string()
    } else {
        format!("{}/s", bytes(bytes_per_second))
    }
}

/// The one-screen summary.
pub fn render(status: &StatusMessage) -> Result<String> {
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
        "nodes:  {} in map epoch {}: {} up, {} down, {} out\n",
        status.nodes.len(),
        status.map.epoch,
        count("up"),
        count("down"),
        count("out")
    );
    out += &render_data(&s);
    out += &render_repair(status, &s);
    out += &render_scrub(&s);
    let capacity: u64 = status.nodes.iter().map(|n| n.store.capacity).sum();
    let used: u64 = status.nodes.iter().map(|n| n.store.used).sum();
    let stored: u64 = status.nodes.iter().map(|n| n.store.live).sum();
    out += &format!(
        "space:  {} of {} used ({} in live shards)\n\n",
        bytes(used),
        bytes(capacity),
        bytes(stored)
    );
    out += &render_nodes(status, &view);
    Ok(out)
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

fn render_repair(status: &StatusMessage, s: &Summary) -> String {
    let repair_rate = status.map.repair_rate;
    let eta = match (s.queued.1, repair_rate) {
        (0, _) => String::new(),
        (_, 0) => ", no rate limit".to_string(),
        (queued, rate) => format!(", ETA {}s at most", queued.div_ceil(rate)),
    };
    format!(
        "repair: {} chunks queued ({}){eta}; {} shards ({}) rebuilt since start, {} failed; rate {}; census {} of {} groups this round\n\
         owed:   {} shards reported owed by writers since the authority started\n",
        s.queued.0,
        bytes(s.queued.1),
        s.rebuilt.0,
        bytes(s.rebuilt.1),
        s.failed,
        rate(repair_rate),
        s.censused.0,
        s.censused.1,
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
        "{:<18} {:<5} {:<22} {:>10} {:>10} {:>8} {:>10} {:>7} {:>6}\n",
        "node", "state", "address", "capacity", "used", "shards", "heartbeat", "scrub", "queued"
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
        out += &format!(
            "{:<18} {:<5} {:<22} {:>10} {:>10} {:>8} {:>10} {:>7} {:>6}\n",
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
            n.health.repair.queued
        );
    }
    out
}

/// The summary as one JSON object.
pub fn to_json(status: &StatusMessage) -> Result<serde_json::Value> {
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
                "capacity": n.store.capacity,
                "used": n.store.used,
                "stored": n.store.live,
                "shards": n.store.shards,
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
        "scrub": { "passes": s.scrub_passes, "damaged": s.damaged },
    }))
}

/// A rate given on the command line, in bytes per second: `64MiB`, `500KiB`, `1GiB`,
/// a plain number of bytes, or `unlimited` (0).
pub fn parse_rate(text: &str) -> Result<u64> {
    let text = text.trim();
    if text == "unlimited" {
        return Ok(0);
    }
    hive_wire::units::parse_bytes(text.trim_end_matches("/s"))
        .with_context(|| format!("rate {text:?} (per second, or unlimited)"))
}

/// `hive status`.
pub fn status(dir: &Path, json: bool) -> Result<()> {
    let status = local_cluster::runtime()?.block_on(async {
        let admin = local_cluster::admin(dir)?;
        admin.status().await
    })?;
    if json {
        println!("{}", to_json(&status)?);
    } else {
        print!("{}", render(&status)?);
    }
    Ok(())
}

/// `hive node out N`.
pub fn node_out(dir: &Path, node: NodeId) -> Result<()> {
    let epoch = local_cluster::runtime()?
        .block_on(async {
            let admin = local_cluster::admin(dir)?;
            anyhow::Ok(admin.authority.node_out(node).await?)
        })
        .with_context(|| format!("marking node {node} out"))?;
    println!(
        "node {node} is out in map epoch {epoch}; its shards are rebuilt on the other nodes ('hive repair --wait' follows it)"
    );
    Ok(())
}

/// `hive repair [--rate R] [--wait]`.
pub fn repair(dir: &Path, rate: Option<u64>, wait: bool) -> Result<()> {
    local_cluster::runtime()?.block_on(async {
        let admin = local_cluster::admin(dir)?;
        if let Some(rate) = rate {
            let epoch = admin
                .authority
                .set_repair_rate(rate)
                .await
                .context("setting the repair rate")?;
            println!(
                "repair rate set to {} in map epoch {epoch}",
                self::rate(rate)
            );
        }
        if wait {
            wait_for_repair(&admin).await?;
        } else if rate.is_none() {
            let status = admin.status().await?;
            print!("{}", render_repair(&status, &summarize(&status)));
        }
        anyhow::Ok(())
    })
}

/// Waits until every up node has finished a census round that began after now and has
/// nothing queued, with a progress bar of shards rebuilt.
async fn wait_for_repair(admin: &Admin) -> Result<()> {
    let start = admin.status().await?;
    let rounds_at_start: BTreeMap<u64, u64> = start
        .nodes
        .iter()
        .map(|n| (n.id, n.health.repair.rounds))
        .collect();
    let rebuilt_at_start = summarize(&start).rebuilt.0;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "repair {bar:40} {pos}/{len} shards rebuilt, {msg}",
        )
        .expect("invariant: a valid template"),
    );
    loop {
        let status = admin.status().await?;
        let view = ClusterView::from_message(&status.map)?;
        let s = summarize(&status);
        let done = s.rebuilt.0.saturating_sub(rebuilt_at_start);
        bar.set_length(done + s.queued.0);
        bar.set_position(done);
        bar.set_message(format!("{} chunks queued", s.queued.0));
        // Each up node must have finished two rounds: one may have begun before now.
        let settled = status
            .nodes
            .iter()
            .filter(|n| view.is_up(NodeId(n.id)))
            .all(|n| {
                let before = rounds_at_start.get(&n.id).copied().unwrap_or(0);
                n.health.repair.rounds >= before + 2 && n.health.repair.queued == 0
            });
        if settled {
            bar.finish_and_clear();
            let unreadable: u64 = s.classes.iter().map(ClassHealth::unreadable).sum();
            println!(
                "repair done: {done} shards rebuilt; {} degraded and {unreadable} unreadable chunks left",
                s.classes.iter().map(ClassHealth::degraded).sum::<u64>()
            );
            return Ok(());
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// `hive scrub [--node N] [--rate R] [--wait]`.
pub fn scrub(dir: &Path, node: Option<NodeId>, rate: u64, wait: bool) -> Result<()> {
    local_cluster::runtime()?.block_on(async {
        let admin = local_cluster::admin(dir)?;
        let status = admin.status().await?;
        let view = ClusterView::from_message(&status.map)?;
        let targets: Vec<NodeId> = match node {
            Some(node) if view.map.node(node).is_none() => {
                bail!("node {node} is not in the cluster map")
            }
            Some(node) => vec![node],
            None => status
                .nodes
                .iter()
                .map(|n| NodeId(n.id))
                .filter(|n| view.is_up(*n))
                .collect(),
        };
        let mut tickets = BTreeMap::new();
        for target in targets {
            let addr = *view
                .addresses
                .get(&target)
                .with_context(|| format!("node {target} has no address in the map"))?;
            let ticket = admin
                .node(target, addr)
                .scrub(rate)
                .await
                .with_context(|| format!("ordering a scrub on node {target}"))?;
            tickets.insert(target.0, ticket);
        }
        println!(
            "scrub started on {} nodes at {}",
            tickets.len(),
            self::rate(rate)
        );
        if wait {
            wait_for_scrub(&admin, &tickets).await?;
        }
        anyhow::Ok(())
    })
}

/// Waits until every node in `tickets` has finished the pass it was ordered, with a
/// progress bar of bytes verified.
async fn wait_for_scrub(admin: &Admin, tickets: &BTreeMap<u64, u64>) -> Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "scrub {bar:40} {bytes}/{total_bytes} verified, {msg}",
        )
        .expect("invariant: a valid template"),
    );
    let started = Instant::now();
    loop {
        let status = admin.status().await?;
        let view = ClusterView::from_message(&status.map)?;
        let ordered: Vec<&NodeStatus> = status
            .nodes
            .iter()
            .filter(|n| tickets.contains_key(&n.id))
            .collect();
        let finished = |n: &NodeStatus| n.health.scrub.ordered >= tickets[&n.id];
        let gone: Vec<u64> = ordered
            .iter()
            .filter(|n| !view.is_up(NodeId(n.id)) && !finished(n))
            .map(|n| n.id)
            .collect();
        if let Some(node) = gone.first() {
            bar.finish_and_clear();
            bail!("node {} went down before its scrub finished", NodeId(*node));
        }
        let (done, total) = ordered
            .iter()
            .filter(|n| !finished(n))
            .fold((0, 0), |(d, t), n| {
                (d + n.health.scrub.pass_done, t + n.health.scrub.pass_total)
            });
        let damaged: u64 = ordered.iter().map(|n| n.health.scrub.damaged).sum();
        let left = ordered.iter().filter(|n| !finished(n)).count();
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(format!("{left} nodes to go, {damaged} damaged found"));
        if left == 0 {
            bar.finish_and_clear();
            println!(
                "scrub done on {} nodes in {:.1}s: {damaged} damaged shards found since the nodes started (dropped, and rebuilt by repair)",
                ordered.len(),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
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
    fn rates_parse_with_units() {
        assert_eq!(parse_rate("64MiB").expect("rate"), 64 << 20);
        assert_eq!(parse_rate("64MiB/s").expect("rate"), 64 << 20);
        assert_eq!(parse_rate("1000").expect("rate"), 1000);
        assert_eq!(parse_rate("unlimited").expect("rate"), 0);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("3 parsecs").is_err());
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
        let text = render(&status).expect("render");
        assert!(text.starts_with("health: UNREADABLE: 2 chunks"), "{text}");
        assert!(
            text.contains("2+1: 18 chunks: 15 whole, 1 2/3, 2 1/3 UNREADABLE"),
            "{text}"
        );
        assert!(text.contains("1 down"), "{text}");
        assert!(text.contains("ETA 3s"), "{text}");
        let json = to_json(&status).expect("json");
        assert_eq!(json["classes"][0]["unreadable"], 2);
    }
}
