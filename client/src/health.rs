//! The cluster's health as an operator acts on it: `hive scrub`, `hive repair` and
//! `hive node out`, with progress bars for `--wait`. What they show comes from the
//! status (see [`crate::status`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hive_codec::ClusterView;
use hive_wire::NodeId;
use hive_wire::net::control::{NodeSet, NodeStatus};

use crate::local_cluster::{self, Admin};
use crate::status::{ClassHealth, rate, render_repair, summarize};

/// How often `--wait` looks at the status.
const WAIT_POLL: Duration = Duration::from_millis(500);
/// Status calls a wait makes in a row before it gives up: a busy authority may miss a
/// deadline or two, and one miss must not end a wait that has minutes to run.
const STATUS_TRIES: u32 = 10;

/// The cluster's status, asked again (every [`WAIT_POLL`]) after a failed call, up to
/// [`STATUS_TRIES`] calls.
async fn status_retrying(admin: &Admin) -> Result<hive_wire::net::control::StatusMessage> {
    let mut tries = 1;
    loop {
        match admin.status().await {
            Ok(status) => return Ok(status),
            Err(e) if tries >= STATUS_TRIES => {
                return Err(e.context(format!("{STATUS_TRIES} tries in a row failed")));
            }
            Err(_) => {
                tries += 1;
                tokio::time::sleep(WAIT_POLL).await;
            }
        }
    }
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

/// `hive node out N`.
pub fn node_out(dir: &Path, node: NodeId) -> Result<()> {
    let epoch = order(
        dir,
        format!("marking node {node} out"),
        |admin| async move { admin.authority.node_out(node).await },
    )?;
    crate::outln!(
        "node {node} is out in map epoch {epoch}; its shards move to the other nodes, copied from it while it runs, else rebuilt ('hive rebalance --wait' follows it)"
    );
    Ok(())
}

/// `hive node in N`.
pub fn node_in(dir: &Path, node: NodeId) -> Result<()> {
    let epoch = order(
        dir,
        format!("putting node {node} into placement"),
        |admin| async move { admin.authority.node_in(node).await },
    )?;
    crate::outln!(
        "node {node} is in placement in map epoch {epoch}; the shards of its slots move to it ('hive rebalance --wait' follows it)"
    );
    Ok(())
}

/// An administrator's order to the map authority (`what`, for the error); the map
/// epoch it answers.
fn order<F: std::future::Future<Output = Result<u64, hive_wire::net::RpcError>>>(
    dir: &Path,
    what: String,
    call: impl FnOnce(Admin) -> F,
) -> Result<u64> {
    local_cluster::runtime()?
        .block_on(async { anyhow::Ok(call(local_cluster::admin(dir)?).await?) })
        .context(what)
}

/// `hive node remove N [--force]`.
pub fn node_remove(dir: &Path, node: NodeId, force: bool) -> Result<()> {
    if local_cluster::control_nodes(dir)?.contains(&node) {
        bail!(
            "node {node} hosts the map authority or a metadata replica; move the replica off it first ('hive meta remove')"
        );
    }
    let epoch = order(dir, format!("removing node {node}"), |admin| async move {
        admin.authority.remove_node(node, force).await
    })?;
    local_cluster::retire(dir, node)?;
    crate::outln!(
        "node {node} removed in map epoch {epoch}: stopped, its certificate revoked, and dropped from cluster.toml (its directory is left for you to delete)"
    );
    Ok(())
}

/// `hive node set N [--weight W] [--domain LABELS]`.
pub fn node_set(
    dir: &Path,
    node: NodeId,
    weight: Option<u32>,
    labels: Option<String>,
) -> Result<()> {
    if weight.is_none() && labels.is_none() {
        bail!("nothing to set: give --weight, --domain or both");
    }
    if let Some(labels) = &labels {
        hive_codec::domain::parse_labels(labels).context("--domain")?;
    }
    let set = NodeSet {
        node: node.0,
        weight,
        labels,
    };
    let epoch = order(dir, format!("setting node {node}"), |admin| async move {
        admin.authority.set_node(&set).await
    })?;
    crate::outln!(
        "node {node} set in map epoch {epoch}; rebalance moves the shards of the slots that moved ('hive status' follows it)"
    );
    Ok(())
}

/// `hive rebalance [--wait]`.
pub fn rebalance(dir: &Path, wait: bool) -> Result<()> {
    local_cluster::runtime()?.block_on(async {
        let admin = local_cluster::admin(dir)?;
        let started = Instant::now();
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("rebalance {bar:40} {pos}/{len} {msg}")
                .expect("invariant: a valid template"),
        );
        let mut first_moved = None;
        loop {
            let status = status_retrying(&admin).await?;
            let s = summarize(&status);
            let past = status.map.history.len();
            // The bar: copies made since the wait began, of those and what is left.
            let since = s.moved.0.saturating_sub(*first_moved.get_or_insert(s.moved.0));
            bar.set_length(since + s.moves_left.0);
            bar.set_position(since);
            let moved = format!(
                "{} shards ({}) moved, {} old copies dropped, {} chunks queued",
                s.moved.0,
                local_cluster::bytes(s.moved.1),
                s.moved.2,
                s.queued.0
            );
            if past == 0 {
                bar.finish_and_clear();
                crate::outln!(
                    "rebalance done: every shard is where the map puts it; {moved} since the nodes started"
                );
                return Ok(());
            }
            if !wait {
                crate::outln!(
                    "rebalance under way: reads also look under {past} earlier placements; {}; {moved} since the nodes started",
                    crate::status::moves_left(&s, status.map.repair_rate)
                );
                return Ok(());
            }
            bar.set_message(format!(
                "shard copies; {}; {past} earlier placements to empty; {moved}; {:.0}s",
                crate::status::moves_left(&s, status.map.repair_rate),
                started.elapsed().as_secs_f64()
            ));
            tokio::time::sleep(REBALANCE_POLL).await;
        }
    })
}

/// How often `hive rebalance --wait` looks at the status.
const REBALANCE_POLL: Duration = Duration::from_millis(500);

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
            crate::outln!(
                "repair rate set to {} in map epoch {epoch}",
                self::rate(rate)
            );
        }
        if wait {
            wait_for_repair(&admin).await?;
        } else if rate.is_none() {
            let status = admin.status().await?;
            crate::output::print(&render_repair(&status, &summarize(&status)));
        }
        anyhow::Ok(())
    })
}

/// Waits until every up node has finished a census round that began after now and has
/// nothing queued, with a progress bar of shards rebuilt.
async fn wait_for_repair(admin: &Admin) -> Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "repair {bar:40} {pos}/{len} shards rebuilt, {msg}",
        )
        .expect("invariant: a valid template"),
    );
    let left = until_repaired(admin, |done, queued| {
        bar.set_length(done + queued);
        bar.set_position(done);
        bar.set_message(format!("{queued} chunks queued"));
    })
    .await?;
    bar.finish_and_clear();
    crate::outln!(
        "repair done: {} shards rebuilt; {} degraded and {} unreadable chunks left",
        left.rebuilt,
        left.degraded,
        left.unreadable
    );
    Ok(())
}

/// What a finished repair did and left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// Shards rebuilt while it was waited for.
    pub rebuilt: u64,
    /// Chunks still missing shards but readable.
    pub degraded: u64,
    /// Chunks with fewer than k shards.
    pub unreadable: u64,
}

/// Waits until every up node has finished a census round that began after now and has
/// nothing queued; `progress(shards rebuilt, chunks queued)` after each look.
pub async fn until_repaired(admin: &Admin, mut progress: impl FnMut(u64, u64)) -> Result<Repaired> {
    let start = status_retrying(admin).await?;
    let rounds_at_start: BTreeMap<u64, u64> = start
        .nodes
        .iter()
        .map(|n| (n.id, n.health.repair.rounds))
        .collect();
    let rebuilt_at_start = summarize(&start).rebuilt.0;
    loop {
        let status = status_retrying(admin).await?;
        let view = ClusterView::from_message(&status.map)?;
        let s = summarize(&status);
        let done = s.rebuilt.0.saturating_sub(rebuilt_at_start);
        progress(done, s.queued.0);
        // Each up node must have finished two rounds: one may have begun before now.
        let settled = status
            .nodes
            .iter()
            .filter(|n| view.is_up(NodeId(n.id)))
            .all(|n| {
                let before = rounds_at_start.get(&n.id).copied().unwrap_or(0);
                // Fewer rounds than at the start: a new process, all of whose rounds
                // began after now.
                let before = if n.health.repair.rounds < before {
                    0
                } else {
                    before
                };
                n.health.repair.rounds >= before + 2 && n.health.repair.queued == 0
            });
        if settled {
            return Ok(Repaired {
                rebuilt: done,
                degraded: s.classes.iter().map(ClassHealth::degraded).sum(),
                unreadable: s.classes.iter().map(ClassHealth::unreadable).sum(),
            });
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
        crate::outln!(
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
        let status = status_retrying(admin).await?;
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
            crate::outln!(
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

    #[test]
    fn rates_parse_with_units() {
        assert_eq!(parse_rate("64MiB").expect("rate"), 64 << 20);
        assert_eq!(parse_rate("64MiB/s").expect("rate"), 64 << 20);
        assert_eq!(parse_rate("1000").expect("rate"), 1000);
        assert_eq!(parse_rate("unlimited").expect("rate"), 0);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("3 parsecs").is_err());
    }
}
