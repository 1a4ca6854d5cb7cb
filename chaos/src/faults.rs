//! How each fault is produced on a local cluster, and healed: real signals to the
//! nodes' processes, real bytes changed in their store files.
//!
//! - **Kill**: SIGKILL (one step in [`TERM_SHARE`] SIGTERM, which drains), then `hive cluster start`'s restart of those nodes (on their own
//!   ports and stores), which returns once the map shows them up and following.
//! - **Stop**: SIGSTOP (every thread stopped: a hung node whose connections stay open),
//!   then SIGCONT and a wait until the authority has a fresh heartbeat from each.
//! - **Bitrot**: shards found through the store's own format reader
//!   (`hive_nvme::layout::shards`), damaged in the store file behind the node's back.
//!   Not healed by the tool: reads must refuse the damage and repair replace it.
//! - **Fill**: shards of random chunks nothing refers to, put straight to the node's
//!   shard service until its store refuses one as full. Healed by the cluster too:
//!   garbage collection deletes them once they are older than its grace, reclaim frees
//!   their segments, and the tool waits until the store has room again.
//! - **Flaky**: the fault proxy ([`crate::proxy`]) delays, jitters, drops, duplicates
//!   and reorders every packet to and from the nodes, with drawn amounts
//!   ([`flaky_rules`]); healed by clearing the rules and a wait for fresh heartbeats.
//! - **DiskError**: SIGUSR1 (the next fdatasync fails) or SIGUSR2 (the next write
//!   fails) to a hive-node built with fault hooks (`--features faults`), which arms
//!   them on every store; the node's next write poisons the store and the node must
//!   stop itself (fail-stop) within [`NODE_WAIT`]. Healed like a kill: restarted.
//! - **KillMount**: SIGKILL to the `hive mount` process the file workload writes
//!   through; healed by clearing the dead mount (`umount -l`) and mounting again.
//! - **Partition**: the proxy blocks the nodes' packets to and from everyone, only the
//!   clients, or only the other nodes (drawn: [`partition_rules`]); healed the same way.
//! - **MetaKill**: SIGKILL to whichever replica leads the metadata group when the step
//!   starts (asked of the group, `hive meta status`); healed by restarting it and
//!   waiting until the group has a leader again and every member holds the log as it
//!   stood when the restart began ([`Target::wait_meta_caught_up`]).
//! - **Reweigh**: the nodes' placement weight set to 0 by the administrator (`hive node
//!   set`), so their slots move to the others and rebalance copies the shards while
//!   reads look under the earlier placement; healed by setting it back to 1.
//! - **Reencode**: the default volume (the one the file workload writes through the
//!   mount) re-encoded into one data shard fewer (`hive volume set --k --m`: every chunk
//!   stored anew in that class while the workload goes on, the mount's commits of the
//!   old class refused and stored again); healed by re-encoding it back.
//! - **MapLoss**: SIGKILL to the map authority, then its map file deleted or
//!   overwritten with random bytes (drawn); healed by restarting it, after which the
//!   map it serves must be at the epoch it had, or later, with as many nodes: it took
//!   the metadata group's copy, never starting again at epoch 0.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hive_client::health::{Repaired, until_repaired};
use hive_client::local_cluster::{self, signal};
use hive_client::meta_group;
use hive_client::volumes::DEFAULT_VOLUME;
use hive_codec::{ChunkEncoder, CompressionConfig, chunk_id};
use hive_nvme::layout::{self, ShardLocation};
use hive_testkit::{Rng, random_bytes};
use hive_wire::NodeId;
use hive_wire::SHARD_HEADER_LEN;
use hive_wire::net::control::{NodeSet, StoreFigures, state};
use serde::Serialize;
use tokio::runtime::Handle;

use crate::files::Mount;
use crate::proxy::{Impairment, Proxy, Rule, Side};
use crate::report::MetaAgreement;
use crate::schedule::{BITROT_SHARDS, FaultKind, Step};

/// How long a node may take to exit after SIGKILL, to stop after SIGSTOP, or to send a
/// fresh heartbeat after SIGCONT.
pub const NODE_WAIT: Duration = Duration::from_secs(60);
/// How often those waits look again.
const POLL: Duration = Duration::from_millis(20);
/// How often the wait for fresh heartbeats asks the authority.
const STATUS_POLL: Duration = Duration::from_millis(250);
/// A heartbeat at most this old counts as fresh (local nodes beat every second).
const FRESH_HEARTBEAT: Duration = Duration::from_secs(2);
/// Bytes of each chunk a fill makes (its shard at 4+2: 2 MiB).
const FILL_CHUNK: usize = 8 << 20;
/// Fill shards in flight at once, so the store's group commit takes several.
const FILL_IN_FLIGHT: usize = 8;
/// How long a fill may put shards before the store must have refused one as full. Not
/// a count of bytes against its capacity: garbage collection, ordered by the workload
/// while a fill runs, may delete the fill's own shards once they pass its grace, and
/// reclaim then makes room for more, so a store can rightly take more than its
/// capacity before it fills.
const FILL_WAIT: Duration = Duration::from_secs(300);
/// A filled store has room again once this share of it is free.
const ROOM_AGAIN: u64 = 10;
/// How long a filled store may take to have room again: the collection grace, a round
/// and reclaim.
pub const ROOM_WAIT: Duration = Duration::from_secs(300);
/// How long repair may take to catch up after a fault is healed.
pub const REPAIR_WAIT: Duration = Duration::from_secs(300);
/// Tries at reading a live store's layout: a batch being written while it is read can
/// make one try fail.
const LAYOUT_TRIES: usize = 5;

/// A way a shard is damaged on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Damage {
    /// One bit of the payload flipped.
    BitFlip,
    /// Up to 4 KiB of the payload zeroed.
    ZeroedBlock,
    /// The record header zeroed: the record is no longer recognisable.
    HeaderDestroyed,
    /// The whole record zeroed: the shard is gone.
    ShardErased,
}

const DAMAGES: [Damage; 4] = [
    Damage::BitFlip,
    Damage::ZeroedBlock,
    Damage::HeaderDestroyed,
    Damage::ShardErased,
];

/// Longest delay a flaky network adds to each packet.
pub const FLAKY_DELAY_MAX: Duration = Duration::from_millis(80);
/// Highest share of packets a flaky network drops (QUIC sends them again).
pub const FLAKY_LOSS_MAX: f64 = 0.10;
/// Highest share of packets a flaky network sends twice.
pub const FLAKY_DUPLICATE_MAX: f64 = 0.05;
/// Highest share of packets a flaky network reorders.
pub const FLAKY_REORDER_MAX: f64 = 0.20;

/// One kill step in this many sends SIGTERM (a drained stop) instead of SIGKILL.
pub const TERM_SHARE: usize = 4;

/// What `hive-node --version` says in a build with fault hooks.
const FAULT_HOOKS: &str = "with fault hooks";

/// Fails, saying how to get one, unless the cluster's `hive-node` is built with fault
/// hooks: to any other build, the signals that arm them are fatal, and a node killed by
/// one would look like a node that stopped itself.
pub fn check_fault_hooks() -> Result<()> {
    let binary = local_cluster::node_binary()?;
    let out = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    if !String::from_utf8_lossy(&out.stdout).contains(FAULT_HOOKS) {
        bail!(
            "disk errors need a hive-node built with fault hooks, and {} is not one; \
             build it with 'cargo build -p hive-node --features faults' (never for production)",
            binary.display()
        );
    }
    Ok(())
}

/// The rules of a flaky network for `nodes`: one impairment drawn from `rng` (delay up
/// to [`FLAKY_DELAY_MAX`] with up to half as much jitter, and loss, duplication and
/// reordering up to their maxima) on their packets both ways, with everyone.
pub fn flaky_rules(nodes: &[NodeId], rng: &mut Rng) -> (Vec<Rule>, String) {
    let mut share = |max: f64| max * rng.below(1001) as f64 / 1000.0;
    let delay = Duration::from_secs_f64(share(FLAKY_DELAY_MAX.as_secs_f64()));
    let impairment = Impairment {
        delay,
        jitter: Duration::from_secs_f64(share(delay.as_secs_f64() / 2.0)),
        loss: share(FLAKY_LOSS_MAX),
        duplicate: share(FLAKY_DUPLICATE_MAX),
        reorder: share(FLAKY_REORDER_MAX),
    };
    let rules = Rule::both_ways(Side::nodes(nodes), Side::any(), impairment).to_vec();
    (rules, format!("{impairment}, both ways with everyone"))
}

/// Whom a partition cuts the nodes off from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Everyone else: clients and the other nodes (the victims still reach each other).
    Everyone,
    /// The clients only: the nodes still talk among themselves.
    Clients,
    /// The other nodes only: clients still reach them.
    OtherNodes,
}

const CUTS: [Cut; 3] = [Cut::Everyone, Cut::Clients, Cut::OtherNodes];

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cut::Everyone => "everyone else",
            Cut::Clients => "the clients",
            Cut::OtherNodes => "the other nodes",
        })
    }
}

/// The rules of a partition of `nodes`, whom from drawn by `rng`.
pub fn partition_rules(nodes: &[NodeId], rng: &mut Rng) -> (Vec<Rule>, Cut) {
    let cut = CUTS[rng.below(CUTS.len())];
    let others = match cut {
        Cut::Everyone => Side::all_but(nodes),
        Cut::Clients => Side::clients(),
        Cut::OtherNodes => Side::other_nodes(nodes),
    };
    let rules = Rule::both_ways(Side::nodes(nodes), others, Impairment::block()).to_vec();
    (rules, cut)
}

/// The local cluster the faults are made on.
pub struct Target {
    dir: PathBuf,
    runtime: Handle,
    /// The fault proxy the cluster is reached through, if it is.
    proxy: Option<Arc<Proxy>>,
    /// The mount the file workload writes through, if there is one.
    mount: Option<Arc<Mount>>,
    /// The map as a map loss found it, for its heal to compare with.
    map_before: Mutex<Option<MapSeen>>,
    /// The default volume's class before a re-encode, for its heal to go back to.
    class_before: Mutex<Option<(u8, u8)>>,
}

/// What a map looked like.
#[derive(Debug, Clone, Copy)]
struct MapSeen {
    epoch: u64,
    nodes: usize,
}

impl Target {
    /// The local cluster in `dir`, reached through `proxy` if one is given; `runtime`
    /// runs the status calls.
    pub fn new(dir: &Path, runtime: Handle, proxy: Option<Arc<Proxy>>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            runtime,
            proxy,
            mount: None,
            map_before: Mutex::new(None),
            class_before: Mutex::new(None),
        }
    }

    /// The same, with the file workload's mount as a fault target.
    pub fn with_mount(mut self, mount: Option<Arc<Mount>>) -> Self {
        self.mount = mount;
        self
    }

    /// The mount, for a mount fault.
    fn mount(&self) -> Result<&Mount> {
        self.mount
            .as_deref()
            .context("killing the mount needs the file workload's mount: leave out --no-mount")
    }

    /// The fault proxy, for a network fault.
    fn proxy(&self) -> Result<&Proxy> {
        self.proxy.as_deref().context(
            "network faults need the fault proxy, which stands only in front of a cluster \
             the run starts itself: give --cluster a directory without one",
        )
    }

    /// Every node of the cluster, with its process id (0: never started).
    pub fn nodes(&self) -> Result<Vec<(NodeId, u32)>> {
        local_cluster::nodes(&self.dir)
    }

    /// The process id of running node `node`: a node not running (its recorded pid
    /// gone, or reused by another program) is an error, never a signal to whatever
    /// has that pid now.
    fn pid(&self, node: NodeId) -> Result<u32> {
        let pid = self
            .nodes()?
            .into_iter()
            .find(|(id, _)| *id == node)
            .map(|(_, pid)| pid)
            .with_context(|| format!("the cluster has no node {node}"))?;
        if !local_cluster::alive(pid) {
            bail!("node {node} is not running (pid {pid} in cluster.toml)");
        }
        Ok(pid)
    }

    /// Produces `step`'s fault; what it did, in words. A fault whose node is found
    /// when it starts (the metadata group's leader) records that node in `step`.
    pub fn inject(&self, step: &mut Step, rng: &mut Rng) -> Result<String> {
        match step.kind {
            FaultKind::MetaKill => {
                let (leader, term) = self.meta_leader()?;
                self.end(leader, "-KILL")?;
                step.nodes = vec![leader];
                Ok(format!("SIGKILL to the metadata leader (term {term})"))
            }
            FaultKind::MapLoss => {
                let admin = self.admin()?;
                let map = self.runtime.block_on(admin.status())?.map;
                let seen = MapSeen {
                    epoch: map.epoch,
                    nodes: map.nodes.len(),
                };
                let path = local_cluster::map_file(&self.dir)?;
                self.end(admin.authority_id, "-KILL")?;
                let lost = lose_map_file(&path, rng)?;
                *self
                    .map_before
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(seen);
                step.nodes = vec![admin.authority_id];
                Ok(format!(
                    "SIGKILL to the map authority at epoch {} with {} nodes; its map file {lost}",
                    seen.epoch, seen.nodes
                ))
            }
            FaultKind::Kill => {
                // Mostly a crash; one step in TERM_SHARE an operator's stop, which
                // drains first.
                let (sig, name) = if rng.below(TERM_SHARE) == 0 {
                    ("-TERM", "SIGTERM")
                } else {
                    ("-KILL", "SIGKILL")
                };
                for node in &step.nodes {
                    self.end(*node, sig)?;
                }
                Ok(name.to_string())
            }
            FaultKind::Stop => {
                for node in &step.nodes {
                    let pid = self.pid(*node)?;
                    signal("-STOP", pid)?;
                    wait(&format!("node {node} to stop"), || stopped(pid))?;
                }
                Ok("SIGSTOP".to_string())
            }
            FaultKind::Fill => {
                let mut done = Vec::new();
                for node in &step.nodes {
                    let (shards, bytes) = self.runtime.block_on(self.fill(*node, rng))?;
                    done.push(format!(
                        "{node}: {shards} shards ({}) until full",
                        local_cluster::bytes(bytes)
                    ));
                }
                Ok(format!("filled {}", done.join(", ")))
            }
            FaultKind::Bitrot => {
                let mut done = Vec::new();
                for node in &step.nodes {
                    let store = local_cluster::store_file(&self.dir, *node)?;
                    for damage in damage_shards(&store, BITROT_SHARDS, rng)? {
                        done.push(format!("{node}:{damage:?}"));
                    }
                }
                Ok(format!("damaged {}", done.join(" ")))
            }
            FaultKind::DiskError => {
                let mut done = Vec::new();
                for node in &step.nodes {
                    let pid = self.pid(*node)?;
                    let (arm, what) = if rng.below(2) == 0 {
                        ("-USR1", "fdatasync")
                    } else {
                        ("-USR2", "write")
                    };
                    signal(arm, pid)?;
                    wait(
                        &format!("node {node} to stop itself after its next {what} failed"),
                        || Ok(!local_cluster::alive(pid)),
                    )?;
                    done.push(format!("{node}: {what}"));
                }
                Ok(format!("next {} failed; stopped itself", done.join(", ")))
            }
            FaultKind::KillMount => {
                self.mount()?.kill()?;
                Ok("SIGKILL to the mount process".to_string())
            }
            FaultKind::Flaky => {
                let proxy = self.proxy()?;
                let (rules, detail) = flaky_rules(&step.nodes, rng);
                proxy.set_rules(rules);
                Ok(detail)
            }
            FaultKind::Partition => {
                let proxy = self.proxy()?;
                let (rules, cut) = partition_rules(&step.nodes, rng);
                proxy.set_rules(rules);
                Ok(format!("cut off from {cut}"))
            }
            FaultKind::Reweigh => {
                let epoch = self.set_weights(&step.nodes, 0)?;
                Ok(format!(
                    "weight 0 in map epoch {epoch}: their slots moved away"
                ))
            }
            FaultKind::Reencode => {
                let volume = hive_client::volumes::list(&self.dir)?
                    .into_iter()
                    .find(|v| v.name == DEFAULT_VOLUME)
                    .context("the cluster has no default volume")?;
                let (k, m) = (volume.k, volume.m);
                *self
                    .class_before
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some((k, m));
                self.reencode(if k > 1 { k - 1 } else { k + 1 }, m)
            }
        }
    }

    /// Re-encodes the default volume into k + m; what it did.
    fn reencode(&self, k: u8, m: u8) -> Result<String> {
        let done = hive_client::reencode::reencode(&self.dir, DEFAULT_VOLUME, k, m, true)
            .with_context(|| format!("re-encoding the default volume into {k}+{m}"))?;
        Ok(hive_client::reencode::render(DEFAULT_VOLUME, k, m, &done))
    }

    /// Sets the placement weight of `nodes`, one after another; the last epoch.
    fn set_weights(&self, nodes: &[NodeId], weight: u32) -> Result<u64> {
        let admin = self.admin()?;
        let mut epoch = 0;
        for node in nodes {
            let order = NodeSet {
                node: node.0,
                weight: Some(weight),
                labels: None,
            };
            epoch = self
                .runtime
                .block_on(admin.authority.set_node(&order))
                .with_context(|| format!("setting node {node}'s weight to {weight}"))?;
        }
        Ok(epoch)
    }

    /// Heals `step`'s fault; returns once the nodes serve again.
    pub fn heal(&self, step: &Step) -> Result<()> {
        match step.kind {
            FaultKind::Kill | FaultKind::DiskError | FaultKind::MetaKill | FaultKind::MapLoss => {
                let ids: Vec<u64> = step.nodes.iter().map(|n| n.0).collect();
                local_cluster::start_nodes(&self.dir, &ids)?;
                match step.kind {
                    FaultKind::MetaKill => self.wait_meta_caught_up(),
                    FaultKind::MapLoss => self.check_map_back(),
                    _ => Ok(()),
                }
            }
            FaultKind::Stop => {
                for node in &step.nodes {
                    signal("-CONT", self.pid(*node)?)?;
                }
                self.wait_serving(&step.nodes)
            }
            FaultKind::Fill => self.wait_room(&step.nodes),
            FaultKind::Bitrot => Ok(()),
            FaultKind::Flaky | FaultKind::Partition => {
                self.proxy()?.clear();
                self.wait_serving(&step.nodes)
            }
            FaultKind::KillMount => self.mount()?.remount(),
            FaultKind::Reweigh => self.set_weights(&step.nodes, 1).map(|_| ()),
            FaultKind::Reencode => {
                let (k, m) = self
                    .class_before
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                    .context("a re-encode is healed only after it was made")?;
                self.reencode(k, m).map(|_| ())
            }
        }
    }

    /// Fails unless the map authority, restarted after its map file was lost, serves
    /// a map at least as new and as large as the one the loss found.
    fn check_map_back(&self) -> Result<()> {
        let before = self
            .map_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .context("a map loss is healed only after it was made")?;
        let map = self.runtime.block_on(self.admin()?.status())?.map;
        if map.epoch < before.epoch || map.nodes.len() < before.nodes {
            bail!(
                "the map authority came back without its map file at epoch {} with {} nodes, \
                 behind epoch {} with {} nodes before: it did not take the metadata group's copy",
                map.epoch,
                map.nodes.len(),
                before.epoch,
                before.nodes
            );
        }
        Ok(())
    }

    /// Puts shards of random chunks nothing refers to on `node` until its store
    /// refuses one as full, within [`FILL_WAIT`]; how many, and their bytes.
    async fn fill(&self, node: NodeId, rng: &mut Rng) -> Result<(u64, u64)> {
        let deadline = Instant::now() + FILL_WAIT;
        let client = Arc::new(local_cluster::shard_client(&self.dir, node)?);
        let mut encoder =
            ChunkEncoder::new(local_cluster::scheme(&self.dir)?, CompressionConfig::off())?;
        let (mut shards, mut bytes, mut full) = (0u64, 0u64, false);
        let mut in_flight = tokio::task::JoinSet::new();
        while !full || !in_flight.is_empty() {
            if !full && in_flight.len() < FILL_IN_FLIGHT {
                let chunk = random_bytes(rng.next_u64(), FILL_CHUNK);
                let shard = encoder.encode(chunk_id(&chunk), &chunk)?.shard_to_vec(0);
                let client = client.clone();
                in_flight.spawn(async move {
                    let len = shard.len() as u64;
                    (len, client.put(Bytes::from(shard)).await)
                });
                continue;
            }
            let Some(done) = in_flight.join_next().await else {
                break;
            };
            match done? {
                (len, Ok(())) => {
                    shards += 1;
                    bytes += len;
                }
                (_, Err(e)) if e.is_full() => full = true,
                (_, Err(e)) => return Err(e).with_context(|| format!("filling node {node}")),
            }
            if Instant::now() > deadline {
                bail!(
                    "node {node} took {} in {FILL_WAIT:?} without refusing a shard as full",
                    local_cluster::bytes(bytes)
                );
            }
        }
        Ok((shards, bytes))
    }

    /// Node `node`'s store figures as the authority last heard them.
    fn figures(&self, node: NodeId) -> Result<StoreFigures> {
        let status = self.runtime.block_on(self.admin()?.status())?;
        status
            .nodes
            .iter()
            .find(|n| n.id == node.0)
            .map(|n| n.store)
            .with_context(|| format!("the status has no node {node}"))
    }

    /// Waits until the stores of `nodes` have a [`ROOM_AGAIN`]th of their space free.
    fn wait_room(&self, nodes: &[NodeId]) -> Result<()> {
        let deadline = Instant::now() + ROOM_WAIT;
        for node in nodes {
            loop {
                // A status call that fails (a busy authority) is tried again.
                let figures = self.figures(*node);
                if let Ok(f) = &figures
                    && f.capacity.saturating_sub(f.used) >= f.capacity / ROOM_AGAIN
                {
                    break;
                }
                if Instant::now() > deadline {
                    let f = figures?;
                    bail!(
                        "node {node}'s store had no room again within {ROOM_WAIT:?} ({} of {} used)",
                        f.used,
                        f.capacity
                    );
                }
                std::thread::sleep(STATUS_POLL);
            }
        }
        Ok(())
    }

    /// Starts every node that is not running and continues every stopped one, once
    /// every fault of the run is over; returns the nodes that were not running, which
    /// had died by themselves unless a fault failed to heal.
    pub fn heal_all(&self) -> Result<Vec<NodeId>> {
        if let Some(proxy) = &self.proxy {
            proxy.clear();
        }
        if let Some(mount) = &self.mount
            && !mount.alive()
        {
            mount.remount()?;
        }
        let mut crashed = Vec::new();
        for (node, pid) in self.nodes()? {
            if local_cluster::alive(pid) {
                signal("-CONT", pid)?;
            } else {
                crashed.push(node);
            }
        }
        local_cluster::start_nodes(&self.dir, &[])?;
        let all: Vec<NodeId> = self.nodes()?.into_iter().map(|(n, _)| n).collect();
        self.wait_serving(&all)?;
        Ok(crashed)
    }

    /// Sends `sig` to node `node` and waits until its process is gone.
    fn end(&self, node: NodeId, sig: &str) -> Result<()> {
        let pid = self.pid(node)?;
        signal(sig, pid)?;
        wait(&format!("node {node} to exit"), || {
            Ok(!local_cluster::alive(pid))
        })
    }

    /// The metadata group's leader and its term, waited for (an election may be under
    /// way) within [`NODE_WAIT`].
    fn meta_leader(&self) -> Result<(NodeId, u64)> {
        let mut found = None;
        wait_every("the metadata group to have a leader", STATUS_POLL, || {
            let group = meta_group::status(&self.dir);
            found = group
                .ok()
                .and_then(|g| g.leader.map(|l| (NodeId(l), g.term)));
            Ok(found.is_some())
        })?;
        found.context("no leader")
    }

    /// Waits until the metadata group has a leader and every member holds the
    /// leader's log as it stood at the first look (the workload goes on writing, so
    /// a later head is not waited for), within [`NODE_WAIT`].
    pub fn wait_meta_caught_up(&self) -> Result<()> {
        let mut head = None;
        let mut last = None;
        wait_every("every metadata replica to catch up", STATUS_POLL, || {
            let Ok(group) = meta_group::status(&self.dir) else {
                return Ok(false);
            };
            let caught_up = match (group.leader, group.last_log) {
                (Some(_), Some(now)) => {
                    let head = *head.get_or_insert(now);
                    group
                        .members
                        .iter()
                        .all(|m| m.matched.is_some_and(|i| i >= head))
                }
                _ => false,
            };
            last = Some(meta_group::render(&group));
            Ok(caught_up)
        })
        .with_context(|| format!("the group as last seen:\n{}", last.unwrap_or_default()))
    }

    /// Waits until every metadata replica has applied the same index with the same
    /// namespace (the workload stopped), within [`NODE_WAIT`]; how they ended.
    pub fn meta_agreement(&self) -> Result<MetaAgreement> {
        let deadline = Instant::now() + NODE_WAIT;
        loop {
            let digests = meta_group::digests(&self.dir)?;
            let states: Vec<_> = digests.iter().map(|d| d.state.as_ref().ok()).collect();
            let alike = states.iter().all(|s| s.is_some() && *s == states[0]);
            let differ = !meta_group::disagreements(&digests).is_empty();
            if alike || differ || Instant::now() > deadline {
                let applied = states.first().copied().flatten().and_then(|(i, _)| *i);
                return Ok(MetaAgreement {
                    replicas: digests.len(),
                    agree: alike,
                    detail: if alike {
                        format!(
                            "every one applied index {} and has the same namespace",
                            applied.map_or("-".to_string(), |i| i.to_string())
                        )
                    } else {
                        meta_group::render_digests(&digests)
                            .trim_end()
                            .replace('\n', "; ")
                    },
                });
            }
            std::thread::sleep(STATUS_POLL);
        }
    }

    /// The administrator's handle, its endpoint on the runtime.
    fn admin(&self) -> Result<local_cluster::Admin> {
        let _entered = self.runtime.enter();
        local_cluster::admin(&self.dir)
    }

    /// Waits until repair has caught up: every up node has finished a census round
    /// begun after now with nothing left queued (within [`REPAIR_WAIT`]).
    pub fn wait_repaired(&self) -> Result<Repaired> {
        let admin = self.admin()?;
        self.runtime
            .block_on(async {
                tokio::time::timeout(REPAIR_WAIT, until_repaired(&admin, |_, _| {})).await
            })
            .with_context(|| format!("repair did not catch up within {REPAIR_WAIT:?}"))?
    }

    /// Waits until the authority shows each of `nodes` up with a fresh heartbeat.
    fn wait_serving(&self, nodes: &[NodeId]) -> Result<()> {
        let admin = self.admin()?;
        let deadline = Instant::now() + NODE_WAIT;
        loop {
            let status = self.runtime.block_on(admin.status());
            let serving = status.as_ref().is_ok_and(|status| {
                nodes.iter().all(|node| {
                    let up = status
                        .map
                        .nodes
                        .iter()
                        .any(|n| n.id == node.0 && n.state == state::UP);
                    let fresh = status.nodes.iter().any(|n| {
                        n.id == node.0
                            && Duration::from_millis(n.heartbeat_age_ms) <= FRESH_HEARTBEAT
                    });
                    up && fresh
                })
            });
            if serving {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nodes {nodes:?} were not serving again within {NODE_WAIT:?}: {status:?}");
            }
            std::thread::sleep(STATUS_POLL);
        }
    }
}

/// Deletes the map file at `path` or overwrites all of it with random bytes (drawn);
/// which, in words.
fn lose_map_file(path: &Path, rng: &mut Rng) -> Result<String> {
    if rng.below(2) == 0 {
        std::fs::remove_file(path).with_context(|| format!("deleting {}", path.display()))?;
        return Ok("deleted".to_string());
    }
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let garbage = random_bytes(rng.next_u64(), usize::try_from(len).unwrap_or(usize::MAX));
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.write_all_at(&garbage, 0))
        .with_context(|| format!("overwriting {}", path.display()))?;
    Ok(format!("overwritten with {len} random bytes"))
}

/// Waits until `done` holds, or fails naming `what` after [`NODE_WAIT`].
fn wait(what: &str, done: impl FnMut() -> Result<bool>) -> Result<()> {
    wait_every(what, POLL, done)
}

/// [`wait`], looking every `poll` (a look that asks the cluster costs a connection).
fn wait_every(what: &str, poll: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + NODE_WAIT;
    while !done()? {
        if Instant::now() > deadline {
            bail!("waited {NODE_WAIT:?} for {what}");
        }
        std::thread::sleep(poll);
    }
    Ok(())
}

/// Whether every thread of `pid` is stopped: SIGSTOP reaches each thread as it next
/// runs, and a thread not yet stopped could still answer a request.
fn stopped(pid: u32) -> Result<bool> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("listing the threads of process {pid}"))?;
    Ok(tasks.filter_map(Result::ok).all(|task| {
        state(&task.path().join("stat")).is_some_and(|state| state == "T" || state == "t")
    }))
}

/// The state letter (R, S, T, Z, ...) of the process or thread whose `stat` file is
/// `stat`, if it exists.
pub fn state(stat: &Path) -> Option<String> {
    let stat = std::fs::read_to_string(stat).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next().map(str::to_string)
}

/// Damages `count` shards of the store file `store`, chosen by `rng`, each in one of
/// the [`Damage`] ways in turn; returns what was done to each.
pub fn damage_shards(store: &Path, count: usize, rng: &mut Rng) -> Result<Vec<Damage>> {
    let mut shards = live_layout(store)?;
    rng.shuffle(&mut shards);
    shards.truncate(count);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(store)
        .with_context(|| format!("opening {}", store.display()))?;
    let mut done = Vec::with_capacity(shards.len());
    for shard in &shards {
        let damage = DAMAGES[rng.below(DAMAGES.len())];
        damage_one(&file, shard, damage, rng)
            .with_context(|| format!("damaging a shard in {}", store.display()))?;
        done.push(damage);
    }
    file.sync_all()
        .with_context(|| format!("syncing {}", store.display()))?;
    Ok(done)
}

/// Every shard of the store file `store` and where it lies, read while its node may be
/// writing.
pub fn live_layout(store: &Path) -> Result<Vec<ShardLocation>> {
    let mut last = None;
    for _ in 0..LAYOUT_TRIES {
        match layout::shards(store) {
            Ok(shards) => return Ok(shards),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no tries"), anyhow::Error::from))
        .with_context(|| format!("reading the layout of {}", store.display()))
}

fn damage_one(file: &File, shard: &ShardLocation, damage: Damage, rng: &mut Rng) -> Result<()> {
    let payload = shard.shard + SHARD_HEADER_LEN as u64;
    let payload_len = shard.len.saturating_sub(SHARD_HEADER_LEN as u64).max(1);
    match damage {
        Damage::BitFlip => {
            let at = payload + rng.below(payload_len as usize) as u64;
            let mut byte = [0u8; 1];
            file.read_exact_at(&mut byte, at)?;
            byte[0] ^= 1 << rng.below(8);
            file.write_all_at(&byte, at)?;
        }
        Damage::ZeroedBlock => {
            file.write_all_at(&vec![0u8; payload_len.min(4096) as usize], payload)?;
        }
        Damage::HeaderDestroyed => {
            file.write_all_at(
                &vec![0u8; (shard.shard - shard.record) as usize],
                shard.record,
            )?;
        }
        Damage::ShardErased => {
            let len = shard.shard + shard.len - shard.record;
            file.write_all_at(&vec![0u8; len as usize], shard.record)?;
        }
    }
    Ok(())
}
