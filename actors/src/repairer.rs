//! The repairer: every node's loop that keeps the chunks of the placement groups it is
//! primary for whole. It is a thin shell: the census logic lives in [`crate::census`],
//! the plan in [`crate::repair_plan`]; this module only asks holders and stores shards.
//!
//! A round: for every storage class of the map and every placement group whose first
//! up holder is this node (its primary), ask each up holder for its digest (batched per
//! holder), compare, and merge the holders' lists where they differ; plan the findings
//! (riskiest first); then read k intact shards of each chunk, rebuild the missing ones
//! byte for byte ([`ChunkDecoder::rebuild`]) and store each on the holder the map names,
//! paced by the map's repair rate. Rounds repeat every census interval, and sooner when
//! the map changes or scrub names a damaged shard. Nothing is remembered between
//! rounds: a primary that dies mid-round is replaced by the next up holder, whose
//! census finds what is still missing; storing a shard a holder already has intact is
//! a no-op, so nothing is written twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hive_codec::{ChunkDecoder, ClusterView, ShardBytes};
use hive_wire::net::Client;
use hive_wire::net::control::{Class, HealthCount, MapMessage, RepairFigures};
use hive_wire::net::shard_service::{
    GroupDigest, GroupShards, MAX_DELETE_BATCH, MAX_DIGEST_GROUPS, MAX_LIST_PAGE, ShardClient,
};
use hive_wire::{ChunkId, NodeId, PgId, ShardIndex, ShardName};
use tokio::sync::watch;

use crate::census::{self, ListMerge, Verdict};
use crate::constants::{
    CENSUS_PARALLEL, HINT_SETTLE, MAX_CENSUS_LANES, PACE_SLICE, REPAIR_BACKLOG, REPAIR_PARALLELISM,
    SETTLE_AFTER,
};
use crate::repair_plan::{self, Finding, RateLimiter, Task};

/// What the repairer needs; see [`run`].
pub struct RepairArgs {
    /// This node.
    pub node: NodeId,
    /// A client with this node's identity.
    pub client: Arc<Client>,
    /// The map this node follows.
    pub map: watch::Receiver<Arc<MapMessage>>,
    /// Time between census rounds.
    pub interval: Duration,
    /// Damaged shards scrub found: each makes the next round come sooner.
    pub hints: crate::DamageHints,
    /// Where the figures go.
    pub state: Arc<RepairState>,
}

/// The repairer's figures, read by the heartbeat.
#[derive(Default)]
pub struct RepairState {
    figures: Mutex<RepairFigures>,
}

impl RepairState {
    /// The figures now.
    pub fn figures(&self) -> RepairFigures {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RepairFigures> {
        self.figures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut RepairFigures)) {
        f(&mut self.lock());
    }
}

/// One placement group of one class that this node is primary for.
struct Group {
    pg: u32,
    k: u8,
    m: u8,
    holders: Vec<NodeId>,
    /// Bit i: holder i is up in the map.
    up: u64,
    /// Holders under past placements that may still keep shards of this group: (shard
    /// index, node), each up or out in the map (not down), newest placement first.
    past: Vec<(u8, NodeId)>,
}

impl Group {
    fn width(&self) -> usize {
        self.holders.len()
    }

    /// Lanes are what the census asks: the holders (lane i keeps shard i), then the
    /// past holders.
    fn lanes(&self) -> usize {
        self.width() + self.past.len()
    }

    /// The shard index and node of lane `j`.
    fn lane(&self, j: usize) -> (usize, NodeId) {
        match j.checked_sub(self.width()) {
            None => (j, self.holders[j]),
            Some(p) => (usize::from(self.past[p].0), self.past[p].1),
        }
    }

    /// Bit i set for every holder lane.
    fn holder_mask(&self) -> u64 {
        (1u64 << self.width()) - 1
    }

    /// Where shard `index` of a chunk can be read: its holder if it has it, else the
    /// first past holder that does.
    fn source(&self, finding: &Finding, index: u8) -> Option<NodeId> {
        if finding.present & (1 << index) != 0 {
            return Some(self.holders[usize::from(index)]);
        }
        self.past
            .iter()
            .enumerate()
            .find(|(p, (i, _))| *i == index && finding.past & (1 << p) != 0)
            .map(|(_, (_, node))| *node)
    }

    fn shards(&self, index: usize) -> GroupShards {
        GroupShards {
            pg: self.pg,
            k: self.k,
            m: self.m,
            index: u8::try_from(index).expect("invariant: at most 48 shards"),
        }
    }

    fn name(&self, chunk: ChunkId, index: u8) -> ShardName {
        ShardName {
            chunk,
            k: self.k,
            m: self.m,
            index: ShardIndex(index),
        }
    }
}

/// Chunks by (class, healthy shards), from one round.
type Histogram = BTreeMap<(u8, u8, u8), u64>;

/// What one round's census found.
#[derive(Default)]
struct Found {
    health: Histogram,
    /// Chunks short of shards on their holders.
    findings: Vec<Finding>,
    /// Copies past holders keep of shards every holder has.
    drops: Vec<(NodeId, ShardName)>,
}

/// Runs rounds until the map's sender is gone (the node stopped).
pub async fn run(mut args: RepairArgs) {
    let repairer = Arc::new(Repairer {
        me: args.node,
        client: args.client.clone(),
        peers: tokio::sync::Mutex::new(HashMap::new()),
        state: args.state.clone(),
        limiter: Mutex::new(RateLimiter::new(0)),
    });
    let mut last: Option<ClusterView> = None;
    let mut placed_at = Instant::now();
    loop {
        let message = args.map.borrow_and_update().clone();
        if let Ok(view) = ClusterView::from_message(&message)
            && view.map.node(args.node).is_some()
        {
            if let Some(last) = &last {
                repairer.forget(&view.returned_since(last)).await;
                if !last.map.same_placement(&view.map) {
                    placed_at = Instant::now();
                }
            }
            let may_settle = placed_at.elapsed() >= SETTLE_AFTER;
            repairer.round(&view, &args.map, may_settle).await;
            last = Some(view);
        }
        // The next round: after the interval, or sooner on a new map or a hint.
        let wake = tokio::select! {
            _ = tokio::time::sleep(args.interval) => true,
            changed = args.map.changed() => changed.is_ok(),
            hint = args.hints.recv_async() => hint.is_ok() || !args.hints.is_disconnected(),
        };
        if !wake {
            return;
        }
        // Let a burst of map changes or hints settle into one round.
        tokio::time::sleep(HINT_SETTLE).await;
        while args.hints.try_recv().is_ok() {}
    }
}

struct Repairer {
    me: NodeId,
    client: Arc<Client>,
    peers: tokio::sync::Mutex<HashMap<NodeId, Arc<ShardClient>>>,
    state: Arc<RepairState>,
    limiter: Mutex<RateLimiter>,
}

impl Repairer {
    /// One census round, the repairs it finds and the old copies it drops. `may_settle`:
    /// the placement is old enough that no writer can still be storing under the one
    /// before ([`SETTLE_AFTER`]), so a round that finds everything in place reports the
    /// map's epoch settled.
    async fn round(
        self: &Arc<Self>,
        view: &ClusterView,
        map: &watch::Receiver<Arc<MapMessage>>,
        may_settle: bool,
    ) {
        let groups = self.my_groups(view);
        self.state.update(|f| {
            f.groups = groups.len() as u64;
            f.censused = 0;
        });
        let digests = self.gather_digests(view, map, &groups).await;
        let mut found = Found::default();
        let mut settled = true;
        for (group, digests) in groups.iter().zip(digests) {
            settled &= self.census(view, group, &digests, &mut found).await;
            self.state.update(|f| f.censused += 1);
        }
        let plan = repair_plan::plan(found.findings);
        for lost in &plan.unreadable {
            tracing::error!(
                "repair: chunk {} ({}+{}) has {} intact shards, fewer than {}: unreadable until a holder with a shard returns",
                lost.chunk,
                lost.k,
                lost.m,
                lost.healthy(),
                lost.k
            );
        }
        let queued_bytes: u64 = plan.tasks.iter().map(estimated_bytes).sum();
        let moves: u64 = plan.tasks.iter().map(|t| t.copy.len() as u64).sum();
        let moves_bytes: u64 = plan.tasks.iter().map(estimated_move).sum();
        self.state.update(|f| {
            f.health = histogram(&found.health);
            f.unreadable = plan.unreadable.len() as u64;
            f.queued = plan.tasks.len() as u64;
            f.queued_bytes = queued_bytes;
            f.moves_queued = moves;
            f.moves_queued_bytes = moves_bytes;
        });
        if !plan.tasks.is_empty() {
            tracing::info!(
                "repair: {} chunks to rebuild or move ({} waiting on down holders, {} unreadable)",
                plan.tasks.len(),
                plan.waiting,
                plan.unreadable.len()
            );
        }
        self.repair(view, map, groups, plan.tasks).await;
        // Old copies go only under a placement that has stood for SETTLE_AFTER: a
        // round under the placement before (another primary's, or this node's own
        // before it saw the change) could otherwise take the copies this round keeps,
        // and this one the copies that round keeps.
        if !found.drops.is_empty() && may_settle {
            tracing::info!(
                "rebalance: dropping {} shard copies past holders keep",
                found.drops.len()
            );
            self.drop_copies(view, map, found.drops).await;
        }
        self.state.update(|f| {
            f.rounds += 1;
            if settled && may_settle {
                f.settled_epoch = f.settled_epoch.max(view.map.epoch().0);
            }
        });
    }

    /// Carries out `tasks` in their (risk) order, [`REPAIR_PARALLELISM`] at a time.
    async fn repair(
        self: &Arc<Self>,
        view: &ClusterView,
        map: &watch::Receiver<Arc<MapMessage>>,
        groups: Vec<Group>,
        tasks: Vec<Task>,
    ) {
        let by_group: HashMap<(u32, u8, u8), usize> = groups
            .iter()
            .enumerate()
            .map(|(n, g)| ((g.pg, g.k, g.m), n))
            .collect();
        let groups = Arc::new(groups);
        let mut current = Arc::new(view.clone());
        let mut running = tokio::task::JoinSet::new();
        for task in tasks {
            while running.len() >= REPAIR_PARALLELISM {
                running.join_next().await;
            }
            // Nodes that came back while the round runs are new processes: connect afresh.
            let message = map.borrow().clone();
            if message.epoch != current.map.epoch().0
                && let Ok(newer) = ClusterView::from_message(&message)
            {
                self.forget(&newer.returned_since(&current)).await;
                current = Arc::new(newer);
            }
            let f = &task.finding;
            let group = by_group[&(view.map.pg_of(&f.chunk).get(), f.k, f.m)];
            tracing::debug!(
                "repair: chunk {} ({}+{}), {} intact: rebuilding shards {:?}",
                f.chunk,
                f.k,
                f.m,
                f.healthy(),
                task.rebuild
            );
            let (me, view, groups, map) =
                (self.clone(), current.clone(), groups.clone(), map.clone());
            running.spawn(async move { me.carry_out(&view, &map, &groups[group], &task).await });
        }
        while running.join_next().await.is_some() {}
    }

    /// One task, counted in the figures however it ends.
    async fn carry_out(
        &self,
        view: &ClusterView,
        map: &watch::Receiver<Arc<MapMessage>>,
        group: &Group,
        task: &Task,
    ) {
        match self.rebuild(view, map, group, task).await {
            Ok(bytes) => self.state.update(|f| {
                f.shards_rebuilt += task.rebuild.len() as u64;
                f.bytes_rebuilt += bytes;
                count_rebuilt(&mut f.health, task);
            }),
            Err(err) => {
                tracing::warn!("repair: chunk {}: {err}", task.finding.chunk);
                self.state.update(|f| f.failed += 1);
            }
        }
        self.state.update(|f| {
            f.queued = f.queued.saturating_sub(1);
            f.queued_bytes = f.queued_bytes.saturating_sub(estimated_bytes(task));
            f.moves_queued = f.moves_queued.saturating_sub(task.copy.len() as u64);
            f.moves_queued_bytes = f.moves_queued_bytes.saturating_sub(estimated_move(task));
        });
    }

    fn lock_limiter(&self) -> std::sync::MutexGuard<'_, RateLimiter> {
        self.limiter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `bytes` may be written at the map's repair rate. The rate is looked
    /// at again at least every [`PACE_SLICE`]: when an administrator changes it, what is
    /// still owed is paced at the new rate from then on.
    async fn pace(&self, map: &watch::Receiver<Arc<MapMessage>>, fallback: u64, bytes: u64) {
        let rate_now =
            || ClusterView::from_message(&map.borrow()).map_or(fallback, |v| v.repair_rate);
        let mut rate = rate_now();
        let mut wait = {
            let mut limiter = self.lock_limiter();
            limiter.set_rate(rate);
            limiter.take(Instant::now(), bytes)
        };
        while !wait.is_zero() {
            let slice = wait.min(PACE_SLICE);
            tokio::time::sleep(slice).await;
            wait -= slice;
            let changed = rate_now();
            if changed != rate && !wait.is_zero() {
                // The bytes not yet paid for at the old rate, paced at the new one.
                let owed = (wait.as_secs_f64() * rate as f64) as u64;
                let mut limiter = self.lock_limiter();
                limiter.refund(owed);
                limiter.set_rate(changed);
                wait = limiter.take(Instant::now(), owed);
            }
            rate = changed;
        }
    }

    /// The groups of every class whose primary (first up holder) is this node.
    fn my_groups(&self, view: &ClusterView) -> Vec<Group> {
        let mut groups = Vec::new();
        for class in &view.classes {
            for pg in 0..view.map.pg_count() {
                let pg = u32::try_from(pg).expect("invariant: at most 2^24 groups");
                let Ok(homes) = view.shard_homes(PgId(pg), class.width()) else {
                    continue;
                };
                let holders: Vec<NodeId> = homes.iter().map(|h| h[0]).collect();
                let depth = homes.iter().map(Vec::len).max().unwrap_or(1);
                let past: Vec<(u8, NodeId)> = (1..depth)
                    .flat_map(|d| {
                        homes.iter().enumerate().filter_map(move |(i, h)| {
                            let index = u8::try_from(i).expect("invariant: at most 48 shards");
                            h.get(d).map(|&node| (index, node))
                        })
                    })
                    .filter(|(_, node)| view.may_answer(*node))
                    .take(MAX_CENSUS_LANES - holders.len())
                    .collect();
                let up = holders
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| view.is_up(**n))
                    .fold(0u64, |m, (i, _)| m | 1 << i);
                let primary = holders.iter().find(|n| view.is_up(**n));
                if primary == Some(&self.me) {
                    groups.push(Group {
                        pg,
                        k: class.k(),
                        m: class.m(),
                        holders,
                        up,
                        past,
                    });
                }
            }
        }
        groups
    }

    /// Drops the connections to `nodes` (they came back: a new process).
    async fn forget(&self, nodes: &[NodeId]) {
        let mut peers = self.peers.lock().await;
        for node in nodes {
            peers.remove(node);
        }
    }

    async fn peer(&self, view: &ClusterView, node: NodeId) -> Option<Arc<ShardClient>> {
        let addr = *view.addresses.get(&node)?;
        let mut peers = self.peers.lock().await;
        if let Some(peer) = peers.get(&node)
            && peer.addr() == addr
        {
            return Some(peer.clone());
        }
        let peer = Arc::new(ShardClient::new(self.client.clone(), addr, node));
        peers.insert(node, peer.clone());
        Some(peer)
    }

    /// Every group's digests, by shard index (`None`: the holder is down or failed),
    /// asked of each up holder in batches of at most [`MAX_DIGEST_GROUPS`].
    async fn gather_digests(
        &self,
        view: &ClusterView,
        map: &watch::Receiver<Arc<MapMessage>>,
        groups: &[Group],
    ) -> Vec<Vec<Option<GroupDigest>>> {
        let mut asks: HashMap<NodeId, Vec<(usize, usize)>> = HashMap::new();
        for (g, group) in groups.iter().enumerate() {
            for j in 0..group.lanes() {
                // Past holders are up or out by construction; a holder only if up.
                if j >= group.width() || group.up & (1 << j) != 0 {
                    asks.entry(group.lane(j).1).or_default().push((g, j));
                }
            }
        }
        let mut digests: Vec<Vec<Option<GroupDigest>>> =
            groups.iter().map(|g| vec![None; g.lanes()]).collect();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(CENSUS_PARALLEL));
        let mut calls = tokio::task::JoinSet::new();
        let mut asked = Vec::new();
        for (node, wanted) in asks {
            let Some(peer) = self.peer(view, node).await else {
                continue;
            };
            for batch in wanted.chunks(MAX_DIGEST_GROUPS) {
                let batch = batch.to_vec();
                let query = batch
                    .iter()
                    .map(|&(g, j)| groups[g].shards(groups[g].lane(j).0))
                    .collect();
                let (peer, semaphore, pg_bits) =
                    (peer.clone(), semaphore.clone(), view.map.pg_bits());
                let call = calls.spawn(async move {
                    let _permit = semaphore.acquire_owned().await;
                    (batch, node, peer.digests(pg_bits, query).await)
                });
                asked.push((node, call));
            }
        }
        // A holder the map marks down meanwhile (it died after the round began) will
        // not answer: its calls are given up at once rather than at their deadline.
        let mut watch = map.clone();
        let mut watching = true;
        loop {
            let done = tokio::select! {
                done = calls.join_next() => done,
                changed = watch.changed(), if watching => {
                    watching = changed.is_ok();
                    if let Ok(newer) = ClusterView::from_message(&watch.borrow_and_update()) {
                        for (node, call) in &asked {
                            if !newer.may_answer(*node) {
                                call.abort();
                            }
                        }
                    }
                    continue;
                }
            };
            let Some(done) = done else {
                break;
            };
            let Ok((batch, node, answer)) = done else {
                continue;
            };
            match answer {
                Ok(answers) => {
                    for ((g, j), digest) in batch.into_iter().zip(answers) {
                        digests[g][j] = Some(digest);
                    }
                }
                Err(err) => tracing::debug!("census: node {node} gave no digests: {err}"),
            }
        }
        digests
    }

    /// Judges one group, merging its lanes' lists when the holders' digests differ or a
    /// past holder still keeps shards of it; whether the group is settled: whole on
    /// every holder, with nothing left on past holders.
    async fn census(
        &self,
        view: &ClusterView,
        group: &Group,
        digests: &[Option<GroupDigest>],
        found: &mut Found,
    ) -> bool {
        let (held, past) = digests.split_at(group.width());
        let leftover = past.iter().any(|d| d.is_some_and(|d| d.count > 0));
        if !leftover {
            match census::judge(held) {
                Verdict::Whole { chunks, healthy } => {
                    if chunks > 0 {
                        *found.health.entry((group.k, group.m, healthy)).or_default() += chunks;
                    }
                    // A past holder that did not answer may keep the only shards of
                    // chunks no holder has, unless it is out: then it is not counted on.
                    let heard = past
                        .iter()
                        .zip(&group.past)
                        .all(|(d, (_, node))| d.is_some() || view.is_out(*node));
                    return usize::from(healthy) == group.width() && heard;
                }
                Verdict::Unknown => return false,
                Verdict::Differ => {}
            }
        }
        let listed = digests
            .iter()
            .enumerate()
            .filter(|(j, d)| d.is_some_and(|d| *j < group.width() || d.count > 0))
            .fold(0u64, |m, (j, _)| m | 1 << j);
        if let Err(err) = self.merge_lists(view, group, listed, found).await {
            tracing::debug!(
                "census: group {} ({}+{}): {err}",
                group.pg,
                group.k,
                group.m
            );
        }
        false
    }

    /// Merges the lists of the lanes in `listed`, counting every chunk's intact shards,
    /// keeping those short of them on their holders (up to [`REPAIR_BACKLOG`] a round),
    /// and the past copies of chunks every holder has.
    async fn merge_lists(
        &self,
        view: &ClusterView,
        group: &Group,
        listed: u64,
        found: &mut Found,
    ) -> Result<(), String> {
        let mut merge = ListMerge::new(group.lanes(), listed);
        let holders = group.holder_mask();
        loop {
            while let Some(chunk) = merge.next_chunk() {
                let present = chunk.present & holders;
                let past = chunk.present >> group.width();
                let moved = group
                    .past
                    .iter()
                    .enumerate()
                    .filter(|(p, _)| past & (1 << p) != 0)
                    .fold(0u64, |m, (_, (i, _))| m | 1 << i)
                    & !present;
                let healthy = u8::try_from((present | moved).count_ones()).unwrap_or(u8::MAX);
                *found.health.entry((group.k, group.m, healthy)).or_default() += 1;
                if present != listed & holders {
                    if found.findings.len() < REPAIR_BACKLOG {
                        found.findings.push(Finding {
                            chunk: chunk.chunk,
                            k: group.k,
                            m: group.m,
                            present,
                            up: listed & holders,
                            moved,
                            past,
                        });
                    }
                } else if present == holders {
                    // Every holder has its own shard: the past copies can go.
                    for (p, &(i, node)) in group.past.iter().enumerate() {
                        if past & (1 << p) != 0 && found.drops.len() < REPAIR_BACKLOG {
                            found.drops.push((node, group.name(chunk.chunk, i)));
                        }
                    }
                }
            }
            let Some((j, after)) = merge.wants() else {
                return Ok(());
            };
            let (index, node) = group.lane(j);
            let peer = self
                .peer(view, node)
                .await
                .ok_or_else(|| format!("node {node} has no address"))?;
            let page = peer
                .list(
                    view.map.pg_bits(),
                    group.shards(index),
                    after,
                    MAX_LIST_PAGE,
                )
                .await
                .map_err(|e| format!("listing node {node}: {e}"))?;
            let last = page.len() < MAX_LIST_PAGE as usize;
            merge.feed(j, page, last);
        }
    }

    /// Deletes the copies past holders keep of shards every holder has now, as long as
    /// the map this node follows still places as `view` did.
    async fn drop_copies(
        &self,
        view: &ClusterView,
        map: &watch::Receiver<Arc<MapMessage>>,
        drops: Vec<(NodeId, ShardName)>,
    ) {
        let mut by_node: HashMap<NodeId, Vec<ShardName>> = HashMap::new();
        for (node, name) in drops {
            by_node.entry(node).or_default().push(name);
        }
        for (node, names) in by_node {
            let Some(peer) = self.peer(view, node).await else {
                continue;
            };
            for batch in names.chunks(MAX_DELETE_BATCH) {
                let latest = ClusterView::from_message(&map.borrow());
                if !latest.is_ok_and(|now| now.map.same_placement(&view.map)) {
                    tracing::info!(
                        "rebalance: the placement changed during the round; old copies wait for a later one"
                    );
                    return;
                }
                match peer.delete(batch, Duration::ZERO).await {
                    Ok(reply) => {
                        self.state
                            .update(|f| f.copies_dropped += u64::from(reply.deleted));
                    }
                    Err(err) => {
                        tracing::warn!("rebalance: dropping old copies on node {node}: {err}");
                    }
                }
            }
        }
    }

    /// Copies the task's shards that past holders keep to their holders, then reads k
    /// intact shards, rebuilds the missing ones and stores each on its holder; the
    /// bytes rebuilt (copies are counted as moved).
    async fn rebuild(
        &self,
        view: &ClusterView,
        map: &watch::Receiver<Arc<MapMessage>>,
        group: &Group,
        task: &Task,
    ) -> Result<u64, String> {
        let chunk = task.finding.chunk;
        for &index in &task.copy {
            let from = group
                .source(&task.finding, index)
                .ok_or_else(|| format!("no past holder of shard {index}"))?;
            let peer = self
                .peer(view, from)
                .await
                .ok_or_else(|| format!("node {from} has no address"))?;
            let shard = peer
                .get(group.name(chunk, index))
                .await
                .map_err(|e| format!("shard {index} on node {from}: {e}"))?
                .ok_or_else(|| format!("shard {index} gone from node {from}"))?;
            let len = self.store(view, map, group, chunk, index, shard).await?;
            self.state.update(|f| {
                f.shards_moved += 1;
                f.bytes_moved += len;
            });
        }
        if task.rebuild.is_empty() {
            return Ok(0);
        }
        let shards = self.read_sources(view, group, task).await?;
        let wanted: Vec<ShardIndex> = task.rebuild.iter().map(|&i| ShardIndex(i)).collect();
        let rebuilt = tokio::task::spawn_blocking(move || {
            let mut decoder = ChunkDecoder::new().map_err(|e| e.to_string())?;
            let views: Vec<ShardBytes> = shards
                .iter()
                .map(|(i, bytes)| ShardBytes::contiguous(bytes, Some(ShardIndex(*i))))
                .collect();
            decoder
                .rebuild(chunk, &views, &wanted)
                .map_err(|e| format!("rebuilding: {e}"))
        })
        .await
        .map_err(|e| format!("rebuilding: {e}"))??;
        let mut stored = 0;
        for (shard, &index) in rebuilt.into_iter().zip(&task.rebuild) {
            stored += self
                .store(view, map, group, chunk, index, Bytes::from(shard))
                .await?;
        }
        Ok(stored)
    }

    /// Stores shard `index` of `chunk` on its holder, paced by the repair rate; its
    /// length.
    async fn store(
        &self,
        view: &ClusterView,
        map: &watch::Receiver<Arc<MapMessage>>,
        group: &Group,
        chunk: ChunkId,
        index: u8,
        shard: Bytes,
    ) -> Result<u64, String> {
        let node = group.holders[usize::from(index)];
        let len = shard.len() as u64;
        self.pace(map, view.repair_rate, len).await;
        let peer = self
            .peer(view, node)
            .await
            .ok_or_else(|| format!("node {node} has no address"))?;
        tracing::debug!("repair: storing shard {index} of chunk {chunk} on node {node}");
        peer.put(shard)
            .await
            .map_err(|e| format!("storing shard {index} on node {node}: {e}"))?;
        Ok(len)
    }

    /// Fetches intact shards from the task's sources, data shards first: the first k at
    /// once, and one more for each that fails or lacks its shard.
    async fn read_sources(
        &self,
        view: &ClusterView,
        group: &Group,
        task: &Task,
    ) -> Result<Vec<(u8, Bytes)>, String> {
        let k = usize::from(group.k);
        let mut got = Vec::with_capacity(k);
        let mut causes = Vec::new();
        let mut sources = task.sources.iter().copied();
        let mut reads = tokio::task::JoinSet::new();
        while got.len() < k {
            while got.len() + reads.len() < k {
                let Some(index) = sources.next() else { break };
                let Some(node) = group.source(&task.finding, index) else {
                    causes.push(format!("no holder of shard {index}"));
                    continue;
                };
                let Some(peer) = self.peer(view, node).await else {
                    causes.push(format!("node {node} has no address"));
                    continue;
                };
                let name = group.name(task.finding.chunk, index);
                reads.spawn(async move { (index, node, peer.get(name).await) });
            }
            let Some(done) = reads.join_next().await else {
                break;
            };
            match done {
                Ok((index, _, Ok(Some(bytes)))) => got.push((index, bytes)),
                Ok((index, node, Ok(None))) => {
                    causes.push(format!("shard {index} gone from node {node}"))
                }
                Ok((index, node, Err(e))) => {
                    causes.push(format!("shard {index} on node {node}: {e}"))
                }
                Err(e) => causes.push(format!("a read failed: {e}")),
            }
        }
        if got.len() < k {
            return Err(format!(
                "only {} of {k} shards readable ({})",
                got.len(),
                causes.join("; ")
            ));
        }
        Ok(got)
    }
}

/// The bytes a task stores, estimated before its shards are read (chunks average
/// 1 MiB; the figure is for progress and ETA only).
fn estimated_bytes(task: &Task) -> u64 {
    shards_estimate(task, task.rebuild.len())
}

/// The bytes of the shards a task copies from past holders, estimated alike.
fn estimated_move(task: &Task) -> u64 {
    shards_estimate(task, task.copy.len())
}

/// The bytes of `shards` shards of the task's chunk, at 1 MiB a chunk.
fn shards_estimate(task: &Task, shards: usize) -> u64 {
    shards as u64 * ((1 << 20) / u64::from(task.finding.k.max(1)))
}

/// Moves the chunk `task` rebuilt to its new count of intact shards in this round's
/// figures, so they say what the round left, not only what its census found.
fn count_rebuilt(health: &mut Vec<HealthCount>, task: &Task) {
    let f = &task.finding;
    let class = Class { k: f.k, m: f.m };
    let from = u8::try_from(f.healthy()).unwrap_or(u8::MAX);
    let to = from
        .saturating_add(u8::try_from(task.rebuild.len()).unwrap_or(u8::MAX))
        .min(f.k.saturating_add(f.m));
    let Some(was) = health
        .iter_mut()
        .find(|h| h.class == class && h.healthy == from && h.chunks > 0)
    else {
        return;
    };
    was.chunks -= 1;
    match health
        .iter_mut()
        .find(|h| h.class == class && h.healthy == to)
    {
        Some(now) => now.chunks += 1,
        None => health.push(HealthCount {
            class,
            healthy: to,
            chunks: 1,
        }),
    }
    health.retain(|h| h.chunks > 0);
    health.sort_by_key(|h| (h.class, h.healthy));
}

fn histogram(health: &Histogram) -> Vec<HealthCount> {
    health
        .iter()
        .map(|(&(k, m, healthy), &chunks)| HealthCount {
            class: Class { k, m },
            healthy,
            chunks,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(k: u8, m: u8, healthy: u8, chunks: u64) -> HealthCount {
        HealthCount {
            class: Class { k, m },
            healthy,
            chunks,
        }
    }

    #[test]
    fn a_rebuilt_chunk_moves_to_its_new_count_of_intact_shards() {
        let task = Task {
            finding: Finding {
                chunk: ChunkId([7; 32]),
                k: 4,
                m: 2,
                present: 0b001111,
                up: 0b111111,
                moved: 0,
                past: 0,
            },
            sources: vec![0, 1, 2, 3],
            copy: vec![],
            rebuild: vec![4, 5],
        };
        let mut health = vec![count(4, 2, 4, 1), count(4, 2, 6, 9)];
        count_rebuilt(&mut health, &task);
        assert_eq!(health, vec![count(4, 2, 6, 10)]);

        // Only one of two missing shards rebuilt (its holder is down): 4 becomes 5.
        let partial = Task {
            rebuild: vec![4],
            ..task.clone()
        };
        let mut health = vec![count(4, 2, 4, 2)];
        count_rebuilt(&mut health, &partial);
        assert_eq!(health, vec![count(4, 2, 4, 1), count(4, 2, 5, 1)]);

        // A chunk the figures do not hold (a newer round replaced them) changes nothing.
        let mut health = vec![count(4, 2, 6, 3)];
        count_rebuilt(&mut health, &task);
        assert_eq!(health, vec![count(4, 2, 6, 3)]);
    }
}
