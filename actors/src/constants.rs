//! Bounds of the actors, with the reason for each.

/// Requests waiting in a shard actor's mailbox; a full mailbox makes the caller wait
/// (backpressure to the network, never an unbounded queue).
pub const SHARD_ACTOR_MAILBOX: usize = 1024;

/// How often a node heartbeats to the map authority.
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Silence after which the authority marks a node down: several missed heartbeats, so a
/// busy node on a loaded machine is not flapped, yet a dead one is noticed in seconds.
pub const HEARTBEAT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);
/// How often the authority looks for silent nodes.
pub const MEMBERSHIP_TICK: std::time::Duration = std::time::Duration::from_millis(500);
/// How long a map follower waits after a failed watch before asking again.
pub const MAP_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// How long the map authority waits after a failed call to the metadata group (to
/// keep its map there, or to ask for the copy) before trying again.
pub const MAP_GROUP_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// The furthest past its own epoch a node's claimed epoch moves the authority: a copy
/// trails the lost file by the epochs made while the group could not commit (seconds
/// of node changes), never by a million; a larger claim is a bug or a lie, ignored.
pub const MAX_EPOCH_LEAP: u64 = 1 << 20;
/// How long a map authority that found its map file waits for the metadata group's
/// copy (which may be newer: a file put back from an old backup) before it goes on
/// from the file; nothing changes the map meanwhile. A group that has a majority
/// answers within an election or two.
pub const MAP_CONFIRM_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
/// Control requests a node serves at once; each may put one message in the authority's
/// mailbox (ractor mailboxes are unbounded, so the bound is kept here).
pub const CONTROL_INFLIGHT: usize = 256;
/// Owed-shard reports the authority keeps (the most recent); the total is counted
/// regardless.
pub const OWED_KEPT: usize = 65_536;
/// Restarts of failed control actors the supervisor allows within [`RESTART_WINDOW`].
pub const MAX_RESTARTS: usize = 5;
/// See [`MAX_RESTARTS`].
pub const RESTART_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Metadata requests a node serves at once.
pub const META_INFLIGHT: usize = 512;
/// A metadata call that takes this long is logged (a warning), with how it ended.
pub const SLOW_META_CALL: std::time::Duration = std::time::Duration::from_secs(1);
/// How often the metadata service looks for client sessions whose time is up.
pub const SESSION_TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// The slowest a background scrub reads (1 MiB/s): a small store is still verified
/// within minutes, at a cost no disk notices.
pub const SCRUB_MIN_RATE: u64 = 1 << 20;
/// How often an idle scrub (an empty store, or one after a read error) looks again.
pub const SCRUB_IDLE_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);
/// How often an idle scrub loop looks for an order.
pub const SCRUB_ORDER_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// Damaged shard names waiting for the repairer (a hint: the census finds them anyway).
pub const DAMAGE_HINTS: usize = 1024;
/// The default time a background scrub pass takes: a week.
pub const DEFAULT_SCRUB_PERIOD: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
/// Digest requests a repairer has in flight at once during a census.
pub const CENSUS_PARALLEL: usize = 8;
/// How long a repairer waits after a map change or a damage hint before its round, so
/// a burst of them makes one round.
pub const HINT_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);
/// Chunks short of shards one census round keeps for repair (about 100 bytes each);
/// beyond them the next round finds the rest.
pub const REPAIR_BACKLOG: usize = 100_000;
/// Lanes one group's census merges at most: its holders, then as many past holders as
/// fit (chunk presence is a 64-bit mask over lanes). A past holder left out keeps its
/// copies until a round after an earlier entry's lanes emptied.
pub const MAX_CENSUS_LANES: usize = 64;
/// How long after a node sees a new placement before its census may call the map
/// settled: a writer that stored under the placement before is done within the shard
/// deadline (30 s), and the map watch tells it of the new one within seconds. Until
/// then the authority keeps the past placement, so no chunk such a writer stored is
/// left where no read looks.
pub const SETTLE_AFTER: std::time::Duration = std::time::Duration::from_secs(40);
/// The default time between census rounds.
pub const DEFAULT_CENSUS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// The longest a repairer sleeps on its rate before looking at the rate again, so a
/// changed repair rate takes effect within it.
pub const PACE_SLICE: std::time::Duration = std::time::Duration::from_millis(500);
/// Chunks a repairer rebuilds at once: enough to overlap one chunk's reads with
/// another's writes and decoding, few enough that repair leaves the disks and the
/// network to foreground work (the rate limit bounds it too).
pub const REPAIR_PARALLELISM: usize = 4;

/// Reclaim compacts a segment once less than this fraction of it is live.
pub const DEFAULT_RECLAIM_THRESHOLD: f64 = 0.5;
/// The highest threshold a node accepts: a segment reclaim has just filled with the
/// live records it moved is rarely all live (every open seals its head early), and a
/// threshold near 1 would have reclaim rewrite it again, and again.
pub const MAX_RECLAIM_THRESHOLD: f64 = 0.9;
/// Shard bytes reclaim rewrites per second on each store, at most.
pub const DEFAULT_RECLAIM_RATE: u64 = 32 << 20;
/// How often each store looks for segments to reclaim.
pub const DEFAULT_RECLAIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// Garbage collection's grace period: a chunk written or deduplicated against within it
/// is never deleted.
pub const DEFAULT_GC_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);
/// The default time between garbage collection rounds that start by themselves.
pub const DEFAULT_GC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);
/// The most memory garbage collection's mark set takes: 100 M chunks at 10 bits each
/// (about 1% false positives) fit; past that, false positives grow and more garbage
/// waits for a later round, and nothing else changes.
pub const GC_MARK_BUDGET: u64 = 128 << 20;
/// Garbage collection rounds ordered and not started: one real, one dry run.
pub const GC_QUEUED: usize = 2;
/// How long past the grace after a down node returns garbage collection's next round
/// comes (the node's touch filters then reach back far enough).
pub const GC_AFTER_RETURN: std::time::Duration = std::time::Duration::from_secs(10);

/// How often the metadata node tells every node the room it keeps for reservations
/// (fallocate), besides right after each reservation: a restarted node keeps none
/// until then.
pub const RESERVE_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);
/// Reservations waiting for the metadata node to tell the nodes (each a fallocate).
pub const RESERVE_ORDERS: usize = 64;
/// Each node keeps its weight's share of the reserved shard bytes and this much more,
/// in percent: a reserved range's chunks fall on the nodes unevenly.
pub const RESERVE_MARGIN_PERCENT: u64 = 25;
/// And room for this many more bytes (a few of the largest shards), while anything is
/// reserved.
pub const RESERVE_SPARE: u64 = 16 << 20;

/// How often the metadata group's leader heartbeats its followers.
pub const GROUP_HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(150);
/// A follower that hears no leader for a random time in [`GROUP_ELECTION_MIN`,
/// [`GROUP_ELECTION_MAX`]] (after the leader's lease, which is the maximum) stands for
/// election: well above the heartbeat, so a loaded machine does not flap leaders, and
/// low enough that a dead leader is replaced in a few seconds.
pub const GROUP_ELECTION_MIN: std::time::Duration = std::time::Duration::from_millis(500);
/// See [`GROUP_ELECTION_MIN`].
pub const GROUP_ELECTION_MAX: std::time::Duration = std::time::Duration::from_millis(1000);
/// How long the group may take to commit a change (or confirm a read) before the
/// caller is told that a majority is unreachable.
pub const GROUP_COMMIT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
/// Log entries between two snapshots of the namespace.
pub const GROUP_SNAPSHOT_EVERY: u64 = 20_000;
/// Entries kept before a snapshot, so a follower a little behind catches up from the
/// log instead of a whole snapshot.
pub const GROUP_KEEP_LOGS: u64 = 2_000;
/// The bytes of a snapshot sent in one message.
pub const GROUP_SNAPSHOT_CHUNK: u64 = 1 << 20;
/// The largest replication message or log entry a replica decodes (below the frame's
/// body limit).
pub const GROUP_MESSAGE_MAX: u64 = 16 << 20;
/// The pause between probes of the other replicas while a group is being formed.
pub const GROUP_PROBE_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);
/// How long `hive meta add` waits for a new replica to catch up before it is made a
/// voter (a snapshot of a large namespace takes a while to send).
pub const GROUP_JOIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);
/// How long after a majority accepted an append the leader answers reads from its own
/// state without asking again: well inside [`GROUP_ELECTION_MAX`] (how long each of
/// those followers refuses to vote for another), the rest a margin for timers and
/// clock rates that differ between nodes.
pub const GROUP_LEASE: std::time::Duration = std::time::Duration::from_millis(600);
/// How long the leader may take to confirm a read (a read-index round) before it
/// refuses it, saying a majority is unreachable: inside a client's attempt on one
/// replica (`META_ATTEMPT`), so the client hears the reason rather than a timeout.
pub const GROUP_READ_DEADLINE: std::time::Duration =
    std::time::Duration::from_millis(hive_wire::net::meta::META_ATTEMPT.as_millis() as u64 * 3 / 4);
