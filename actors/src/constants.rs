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
/// Metadata changes waiting for the writer; a full queue makes callers wait.
pub const META_QUEUE: usize = 1024;
/// Metadata changes applied and synced together: one sync per batch (fjall does about
/// 9k synced transactions a second here; batches lift that to the apply rate).
pub const META_BATCH: usize = 256;
/// Metadata requests a node serves at once.
pub const META_INFLIGHT: usize = 512;
/// How often the metadata service looks for client sessions whose time is up.
pub const SESSION_TICK: std::time::Duration = std::time::Duration::from_secs(1);
