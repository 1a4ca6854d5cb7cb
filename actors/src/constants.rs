//! Bounds of the actors, with the reason for each.

/// Requests waiting in a shard actor's mailbox; a full mailbox makes the caller wait
/// (backpressure to the network, never an unbounded queue).
pub const SHARD_ACTOR_MAILBOX: usize = 1024;
