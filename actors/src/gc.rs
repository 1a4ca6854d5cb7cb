//! Garbage collection's coordinator, on the node that hosts the metadata service.
//!
//! A round notes its start T, then:
//! 1. **Mark:** reads every reference (each file's extents, each object's manifest and
//!    chunks) from one metadata snapshot into a Bloom filter (`Namespace::mark`).
//! 2. **Sweep:** pages through every reachable node's shards (`OP_SCAN`) and asks the
//!    node to delete the shards of chunks the mark does not hold (`OP_DELETE`), unless
//!    the node saw the chunk written or asked about within grace + (now - T).
//!
//! A chunk is deleted only if no reference named it at T and no writer touched it since
//! T - grace. A writer commits its extents within the grace of its last touch of the
//! chunk, so what it is writing, or deduplicating against, is never taken. A false
//! positive of the mark keeps garbage until a later round; nothing else is approximate.
//!
//! Rounds run every `interval` by themselves and when an administrator orders one
//! (`hive gc`); a dry run counts what a round would delete and deletes nothing.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hive_wire::bloom::{ChunkBloom, class_salt, salted};
use hive_wire::net::Client;
use hive_wire::net::auth::{Operation, authorise};
use hive_wire::net::control::{MapMessage, state};
use hive_wire::net::gc::{
    Gc, GcOrder, GcRound, GcStatus, GcTicket, MAX_GC_PROBLEMS, OP_GC_START, OP_GC_STATUS, phase,
};
use hive_wire::net::message::{self, check_version};
use hive_wire::net::rpc::{Handler, Peer, Refusal, Request, Response, code};
use hive_wire::net::shard_service::{MAX_DELETE_BATCH, MAX_SCAN_PAGE, ShardClient};
use hive_wire::{ChunkId, NodeId, ShardName};
use tokio::sync::{Notify, watch};

use crate::MetaStore;
use crate::constants::{GC_AFTER_RETURN, GC_MARK_BUDGET, GC_QUEUED};

/// What the coordinator needs.
pub struct GcArgs {
    /// The grace period (the stores' touch window is the same).
    pub grace: Duration,
    /// Time between rounds that start by themselves.
    pub interval: Duration,
    /// This node's endpoint, with its node identity (only nodes may delete shards).
    pub client: Arc<Client>,
    /// The cluster map this node follows.
    pub map: watch::Receiver<Arc<MapMessage>>,
    /// The namespace.
    pub meta: Arc<MetaStore>,
}

/// The rounds: queued, running, last finished. Shared by the coordinator and the
/// service that answers `hive gc`.
pub struct Collector {
    rounds: Mutex<Rounds>,
    wake: Notify,
    grace: Duration,
    interval: Duration,
}

#[derive(Default)]
struct Rounds {
    /// The last round number given out.
    issued: u64,
    /// Ordered, not started: at most [`GC_QUEUED`], one of each kind.
    queued: VecDeque<GcRound>,
    current: Option<GcRound>,
    /// Whether `current` was ordered by an administrator (who waits for its end).
    current_ordered: bool,
    last: Option<GcRound>,
    /// When `last` finished.
    finished: Option<Instant>,
    /// When the next periodic round starts by itself...
    due: Option<tokio::time::Instant>,
    /// ...or this, if earlier (a node came back).
    brought: Option<tokio::time::Instant>,
}

impl Rounds {
    /// When the next round starts by itself.
    fn next_due(&self) -> Option<tokio::time::Instant> {
        match (self.due, self.brought) {
            (Some(d), Some(b)) => Some(d.min(b)),
            (d, b) => d.or(b),
        }
    }

    fn new_round(&mut self, dry_run: bool) -> GcRound {
        self.issued += 1;
        GcRound {
            round: self.issued,
            dry_run,
            phase: phase::QUEUED,
            ..GcRound::default()
        }
    }
}

impl Collector {
    /// A collector with no rounds yet.
    pub fn new(grace: Duration, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            rounds: Mutex::new(Rounds::default()),
            wake: Notify::new(),
            grace,
            interval,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Orders a round; the number of the round that will carry it out (one already
    /// queued of the same kind serves).
    pub fn order(&self, dry_run: bool) -> u64 {
        let mut rounds = self.lock();
        if let Some(queued) = rounds.queued.iter().find(|r| r.dry_run == dry_run) {
            return queued.round;
        }
        debug_assert!(rounds.queued.len() < GC_QUEUED, "one of each kind");
        let round = rounds.new_round(dry_run);
        let number = round.round;
        rounds.queued.push_back(round);
        drop(rounds);
        self.wake.notify_one();
        number
    }

    /// The rounds as they stand.
    pub fn status(&self) -> GcStatus {
        let rounds = self.lock();
        GcStatus {
            current: rounds
                .current
                .clone()
                .or_else(|| rounds.queued.front().cloned()),
            last: rounds.last.clone(),
            issued: rounds.issued,
            last_age_ms: rounds.finished.map_or(0, |at| millis(at.elapsed())),
            next_in_ms: rounds.next_due().map_or(0, |due| {
                millis(due.saturating_duration_since(tokio::time::Instant::now()))
            }),
            grace_ms: millis(self.grace),
            interval_ms: millis(self.interval),
        }
    }

    /// Changes the running round's figures.
    fn update(&self, change: impl FnOnce(&mut GcRound)) {
        if let Some(round) = self.lock().current.as_mut() {
            change(round);
        }
    }

    /// Waits for an ordered round, or until the periodic one is due (at `due`, or
    /// earlier if [`Collector::bring_forward`] says so); makes it current.
    async fn next_round(&self, due: tokio::time::Instant) {
        self.lock().due = Some(due);
        loop {
            let due = {
                let mut rounds = self.lock();
                let due = rounds.next_due().unwrap_or(due);
                let now = tokio::time::Instant::now();
                let next = match rounds.queued.pop_front() {
                    Some(round) => Some((round, true)),
                    None if now >= due => Some((rounds.new_round(false), false)),
                    None => None,
                };
                if let Some((mut round, ordered)) = next {
                    // A round starting now serves what was brought forward to now.
                    if rounds.brought.is_some_and(|b| b <= now) {
                        rounds.brought = None;
                    }
                    round.phase = phase::MARKING;
                    rounds.current = Some(round);
                    rounds.current_ordered = ordered;
                    return;
                }
                due
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(due) => {}
            }
        }
    }

    /// Makes the next periodic round start by `at` at the latest.
    pub fn bring_forward(&self, at: tokio::time::Instant) {
        let mut rounds = self.lock();
        if rounds.brought.is_none_or(|b| b > at) {
            rounds.brought = Some(at);
            drop(rounds);
            self.wake.notify_one();
        }
    }

    /// Lets the running round pass on a replica that does not lead the metadata
    /// group: a periodic one without a trace, an ordered one (taken while this node
    /// led) as failed, so whoever waits for it hears why.
    fn pass(&self, started: Instant) {
        let ordered = {
            let mut rounds = self.lock();
            if !rounds.current_ordered {
                rounds.current = None;
            }
            rounds.current_ordered
        };
        if ordered {
            self.finish(started, Err(NOT_LEADING_ANY_MORE.to_string()));
        }
    }

    /// Ends the running round with `outcome`.
    fn finish(&self, started: Instant, outcome: Result<(), String>) {
        let mut rounds = self.lock();
        let Some(mut round) = rounds.current.take() else {
            return;
        };
        round.elapsed_ms = millis(started.elapsed());
        round.phase = match outcome {
            Ok(()) => phase::DONE,
            Err(why) => {
                problem(&mut round, why);
                phase::FAILED
            }
        };
        tracing::info!(
            "gc: round {}{} {} in {:.1}s: {} references marked, {} of {} nodes swept, {} shards scanned, {} garbage ({} bytes), {} deleted ({} bytes), {} kept as touched within the grace{}",
            round.round,
            if round.dry_run { " (dry run)" } else { "" },
            if round.phase == phase::DONE {
                "done"
            } else {
                "failed"
            },
            started.elapsed().as_secs_f64(),
            round.references,
            round.nodes_swept,
            round.nodes,
            round.scanned_shards,
            round.garbage_shards,
            round.garbage_bytes,
            round.deleted_shards,
            round.deleted_bytes,
            round.kept_touched,
            if round.problems.is_empty() {
                String::new()
            } else {
                format!("; {}", round.problems.join("; "))
            }
        );
        rounds.last = Some(round);
        rounds.finished = Some(Instant::now());
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Notes a problem, up to [`MAX_GC_PROBLEMS`].
fn problem(round: &mut GcRound, why: String) {
    if round.problems.len() < MAX_GC_PROBLEMS {
        round.problems.push(why);
    }
}

/// Why an ordered round ends without running.
const NOT_LEADING_ANY_MORE: &str = "this node stopped leading the metadata group before the \
     round began; order it again ('hive gc'), which goes to the leader";

/// Runs rounds for as long as the node runs.
pub async fn run(args: GcArgs, collector: Arc<Collector>) {
    tokio::spawn(watch_returns(
        args.map.clone(),
        args.grace,
        Arc::downgrade(&collector),
    ));
    let mut due = tokio::time::Instant::now() + args.interval;
    loop {
        collector.next_round(due).await;
        let started = Instant::now();
        due = tokio::time::Instant::now() + args.interval;
        if !args.meta.leading() {
            // Rounds run on the metadata group's leader; a replica that does not lead
            // lets its round pass.
            collector.pass(started);
            continue;
        }
        let outcome = round(&args, &collector, started).await;
        collector.finish(started, outcome);
    }
}

/// Brings a round forward when a node that was down comes back: it kept its shards of
/// what rounds collected meanwhile, and the census counts those chunks as short of
/// shards until a round deletes them. The round comes once the node has been up for
/// the grace (before that it cannot tell what was touched) and then some. Ends with
/// the collector.
fn watch_returns(
    mut map: watch::Receiver<Arc<MapMessage>>,
    grace: Duration,
    collector: std::sync::Weak<Collector>,
) -> impl Future<Output = ()> {
    let down = |m: &MapMessage| -> std::collections::BTreeSet<u64> {
        m.nodes
            .iter()
            .filter(|n| n.state == state::DOWN || n.state == state::LOST)
            .map(|n| n.id)
            .collect()
    };
    // The map as it is now, before the task first runs: a change made meanwhile is
    // seen as a change.
    let mut was_down = down(&map.borrow_and_update());
    async move {
        while map.changed().await.is_ok() {
            let now_down = down(&map.borrow_and_update());
            let Some(collector) = collector.upgrade() else {
                return;
            };
            if was_down.iter().any(|n| !now_down.contains(n)) {
                collector.bring_forward(tokio::time::Instant::now() + grace + GC_AFTER_RETURN);
            }
            was_down = now_down;
        }
    }
}

/// What the mark found.
struct Mark {
    /// The chunks referenced, each under this round's salt mixed with its class's (or
    /// with none, for any class): a chunk that is a false positive in one round is
    /// one in the next only by chance, so no garbage is kept for good.
    set: ChunkBloom,
    salt: u64,
    references: u64,
    /// Bytes the references cover.
    referenced_bytes: u64,
    /// Bytes of the references that named a chunk first: the distinct chunks' share.
    distinct_bytes: u64,
}

impl Mark {
    fn new(references: u64, salt: u64) -> Self {
        Self {
            set: ChunkBloom::for_chunks(references, GC_MARK_BUDGET),
            salt,
            references,
            referenced_bytes: 0,
            distinct_bytes: 0,
        }
    }

    /// A reference to `chunk` in each of `classes` (k, m), or in any class (none).
    fn add(&mut self, chunk: &[u8; 32], len: u64, classes: &[(u8, u8)]) {
        let chunk = ChunkId(*chunk);
        self.referenced_bytes += len;
        let mut first = false;
        let (set, salt) = (&mut self.set, self.salt);
        let mut keep = |class: u64| {
            let member = salted(&chunk, salt ^ class);
            if !set.contains(&member) {
                first = true;
                set.insert(&member);
            }
        };
        if classes.is_empty() {
            keep(0);
        }
        for &(k, m) in classes {
            keep(class_salt(k, m));
        }
        if first {
            self.distinct_bytes += len;
        }
    }
}

/// Whether the mark may hold shard `name`: its chunk referenced in its class, or in
/// any class. A chunk still referenced in one class leaves its shards of every other
/// class to be collected.
fn marked(mark: &ChunkBloom, salt: u64, name: &ShardName) -> bool {
    mark.contains(&salted(&name.chunk, salt))
        || mark.contains(&salted(&name.chunk, salt ^ class_salt(name.k, name.m)))
}

/// One round: mark, then sweep every node not down.
async fn round(args: &GcArgs, collector: &Collector, started: Instant) -> Result<(), String> {
    let salt = collector.lock().current.as_ref().map_or(0, |r| r.round);
    let Mark {
        set: mark,
        salt,
        references,
        referenced_bytes,
        distinct_bytes,
    } = args
        .meta
        .read(move |ns| ns.mark(|count| Mark::new(count, salt), Mark::add))
        .await
        .map_err(|e| format!("the mark failed: {}", e.message))?;
    let dry_run = collector.lock().current.as_ref().is_some_and(|r| r.dry_run);
    let map = args.map.borrow().clone();
    let mut nodes = Vec::new();
    let mut skipped = Vec::new();
    // A removed node is gone for good: nothing to sweep, nothing skipped.
    for node in map.nodes.iter().filter(|n| n.state != state::REMOVED) {
        match node.addr.parse() {
            Ok(addr) if node.state != state::DOWN && node.state != state::LOST => {
                nodes.push((NodeId(node.id), addr))
            }
            Ok(_) => skipped.push(format!("node {} is down: not swept", NodeId(node.id))),
            Err(_) => skipped.push(format!(
                "node {} has no usable address ({:?}): not swept",
                NodeId(node.id),
                node.addr
            )),
        }
    }
    collector.update(|r| {
        r.phase = phase::SWEEPING;
        r.references = references;
        r.referenced_bytes = referenced_bytes;
        r.distinct_bytes = distinct_bytes;
        r.mark_bytes = mark.memory_bytes();
        r.nodes = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
        for why in skipped {
            problem(r, why);
        }
    });
    if map.nodes.is_empty() {
        return Err("no cluster map yet: nothing to sweep".into());
    }
    let sweep = Sweep {
        mark: &mark,
        salt,
        collector,
        grace: args.grace,
        started,
        dry_run,
    };
    for (node, addr) in nodes {
        let peer = ShardClient::new(args.client.clone(), addr, node);
        match sweep.node(&peer).await {
            Ok(()) => collector.update(|r| {
                r.nodes_swept += 1;
                r.node_progress_ppm = 0;
            }),
            Err(why) => collector.update(|r| {
                r.node_progress_ppm = 0;
                problem(
                    r,
                    format!("node {node}: {why} (its garbage waits for a later round)"),
                );
            }),
        }
    }
    Ok(())
}

/// How far through a node's shards a sweep at `chunk` is, in millionths: chunk ids
/// are uniform, and the sweep goes in id order.
fn progress_ppm(chunk: &ChunkId) -> u32 {
    let head = u32::from_be_bytes([chunk.0[0], chunk.0[1], chunk.0[2], chunk.0[3]]);
    u32::try_from((u64::from(head) * 1_000_000) >> 32).unwrap_or(999_999)
}

/// One round's sweep.
struct Sweep<'a> {
    mark: &'a ChunkBloom,
    salt: u64,
    collector: &'a Collector,
    grace: Duration,
    started: Instant,
    dry_run: bool,
}

impl Sweep<'_> {
    /// Pages through one node's shards, deleting the unmarked ones.
    async fn node(&self, peer: &ShardClient) -> Result<(), String> {
        let mut after: Option<ShardName> = None;
        loop {
            let page = peer
                .scan(after, MAX_SCAN_PAGE)
                .await
                .map_err(|e| format!("listing its shards failed: {e}"))?;
            let garbage: Vec<(ShardName, u64)> = page
                .iter()
                .filter(|(name, _)| !marked(self.mark, self.salt, name))
                .copied()
                .collect();
            self.collector.update(|r| {
                r.scanned_shards += page.len() as u64;
                r.scanned_bytes += page.iter().map(|(_, b)| b).sum::<u64>();
                r.garbage_shards += garbage.len() as u64;
                r.garbage_bytes += garbage.iter().map(|(_, b)| b).sum::<u64>();
            });
            if !self.dry_run {
                self.delete(peer, &garbage).await?;
            }
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            let ppm = progress_ppm(&last.chunk);
            self.collector.update(|r| r.node_progress_ppm = ppm);
            if page.len() < MAX_SCAN_PAGE as usize {
                return Ok(());
            }
            after = Some(*last);
        }
    }

    /// Asks the node to delete `garbage`, sparing what it saw touched within the grace
    /// plus the round's age.
    async fn delete(&self, peer: &ShardClient, garbage: &[(ShardName, u64)]) -> Result<(), String> {
        for batch in garbage.chunks(MAX_DELETE_BATCH) {
            let names: Vec<ShardName> = batch.iter().map(|(n, _)| *n).collect();
            let age = self.grace + self.started.elapsed();
            let done = peer
                .delete(&names, age)
                .await
                .map_err(|e| format!("deleting failed: {e}"))?;
            self.collector.update(|r| {
                r.deleted_shards += u64::from(done.deleted);
                r.deleted_bytes += done.bytes;
                r.kept_touched += u64::from(done.touched);
            });
        }
        Ok(())
    }
}

/// Serves the garbage collection protocol: orders and status, administrators only.
pub fn gc_service(collector: Arc<Collector>, meta: Arc<MetaStore>) -> Handler {
    Arc::new(move |peer: Peer, request: Request| {
        let (collector, meta) = (collector.clone(), meta.clone());
        Box::pin(async move {
            check_version::<Gc>(&request)?;
            authorise(&peer, Operation::Administer)?;
            let message = match request.op {
                OP_GC_START => {
                    // Rounds run on the metadata group's leader: an order taken here
                    // would fail at its mark.
                    meta.refuse_unless_leading()?;
                    let order: GcOrder = message::decode("GcOrder", &request.message)
                        .map_err(|e| Refusal::new(code::BAD_REQUEST, e.to_string()))?;
                    let round = collector.order(order.dry_run);
                    tracing::info!(
                        "gc: round {round}{} ordered",
                        if order.dry_run { " (dry run)" } else { "" }
                    );
                    message::encode(&GcTicket { round })
                }
                OP_GC_STATUS => message::encode(&collector.status()),
                op => {
                    return Err(Refusal::new(
                        code::BAD_REQUEST,
                        format!("unknown garbage collection operation {op}"),
                    ));
                }
            };
            Ok(Response {
                message,
                body: Bytes::new(),
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_of_one_kind_share_a_queued_round() {
        let collector = Collector::new(Duration::from_secs(30), Duration::from_secs(600));
        assert_eq!(collector.order(false), 1);
        assert_eq!(collector.order(true), 2);
        assert_eq!(
            collector.order(false),
            1,
            "one real round queued serves both"
        );
        assert_eq!(collector.order(true), 2);
        let status = collector.status();
        assert_eq!(status.issued, 2);
        assert_eq!(
            status.current.map(|r| (r.round, r.phase)),
            Some((1, phase::QUEUED))
        );
        assert_eq!((status.grace_ms, status.interval_ms), (30_000, 600_000));
    }

    #[tokio::test]
    async fn a_round_runs_when_ordered_or_when_due_and_its_figures_are_kept() {
        let collector = Collector::new(Duration::from_secs(30), Duration::from_secs(600));
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        collector.order(true);
        collector.next_round(far).await;
        collector.update(|r| r.deleted_shards = 7);
        let running = collector.status().current.expect("running");
        assert_eq!(
            (running.round, running.dry_run, running.phase),
            (1, true, phase::MARKING)
        );
        collector.finish(Instant::now(), Err("the mark failed".into()));
        let last = collector.status().last.expect("finished");
        assert_eq!((last.phase, last.deleted_shards), (phase::FAILED, 7));
        assert_eq!(last.problems, vec!["the mark failed".to_string()]);
        // Nothing ordered: the next round starts when due, and is a real one.
        collector.next_round(tokio::time::Instant::now()).await;
        let due = collector.status().current.expect("running");
        assert_eq!((due.round, due.dry_run), (2, false));
    }

    #[tokio::test]
    async fn a_replica_that_stopped_leading_fails_an_ordered_round_and_drops_a_periodic_one() {
        let collector = Collector::new(Duration::from_secs(30), Duration::from_secs(600));
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        collector.order(false);
        collector.next_round(far).await;
        collector.pass(Instant::now());
        let status = collector.status();
        assert!(status.current.is_none(), "nothing runs");
        let last = status.last.expect("the ordered round ended");
        assert_eq!((last.round, last.phase), (1, phase::FAILED));
        assert!(
            last.problems[0].contains("stopped leading"),
            "{:?}",
            last.problems
        );
        // A periodic round passes without a trace.
        collector.next_round(tokio::time::Instant::now()).await;
        collector.pass(Instant::now());
        let status = collector.status();
        assert!(status.current.is_none());
        assert_eq!(status.last.map(|l| l.round), Some(1), "round 2 left none");
    }

    #[tokio::test]
    async fn a_returning_node_brings_the_next_round_forward() {
        let grace = Duration::from_millis(50);
        let collector = Collector::new(grace, Duration::from_secs(3600));
        let node = |id: u64, state: u8| hive_wire::net::control::MapNode {
            id,
            domain: 0,
            weight: 1,
            state,
            joined: 1,
            addr: format!("127.0.0.1:{id}"),
            labels: String::new(),
        };
        let map = |epoch, state| {
            Arc::new(MapMessage {
                epoch,
                pg_bits: 0,
                nodes: vec![node(1, state::UP), node(2, state)],
                classes: vec![],
                repair_rate: 0,
                history: Vec::new(),
            })
        };
        let (publish, watched) = watch::channel(map(1, state::DOWN));
        tokio::spawn(watch_returns(watched, grace, Arc::downgrade(&collector)));
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let started = tokio::time::Instant::now();
        publish.send(map(2, state::UP)).expect("watched");
        // The round comes once the node has been up for the grace, and then some, and
        // long before the hour.
        tokio::time::timeout(Duration::from_secs(120), collector.next_round(far))
            .await
            .expect("the round was brought forward");
        assert!(started.elapsed() >= grace + GC_AFTER_RETURN);
        let round = collector.status().current.expect("running");
        assert_eq!((round.round, round.dry_run), (1, false));
    }

    #[test]
    fn sweep_progress_follows_the_chunk_id() {
        let at = |first: u8| {
            let mut id = [0u8; 32];
            id[0] = first;
            progress_ppm(&ChunkId(id))
        };
        assert_eq!(at(0), 0);
        assert_eq!(at(0x80), 500_000);
        assert_eq!(at(0xff), 996_093);
        assert!(progress_ppm(&ChunkId([0xff; 32])) < 1_000_000);
    }
}
