use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use hive_wire::{NodeId, ShardError, ShardName};

use crate::format::FormatError;

/// What went wrong in a store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The device could not be opened, read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What the store was doing.
        op: &'static str,
        /// The device.
        path: PathBuf,
        /// The operating system's error.
        source: Arc<io::Error>,
    },
    /// Neither superblock copy is valid: not a HiveFS store, or damaged.
    #[error("{path} is not a HiveFS store: superblock {reason}; format it with 'hive-node format'")]
    NotAStore {
        /// The device.
        path: PathBuf,
        /// Why the superblock was refused.
        reason: FormatError,
    },
    /// The store was formatted for another node.
    #[error("{path} belongs to node {found}, not to node {expected}")]
    WrongNode {
        /// The device.
        path: PathBuf,
        /// The node this store is for.
        found: NodeId,
        /// The node that opened it.
        expected: NodeId,
    },
    /// A bad format request.
    #[error("cannot format {path}: {reason}")]
    BadGeometry {
        /// The device.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An earlier write or sync failed, so the store refuses writes until reopened.
    #[error("store is read-only after a failed {op}: {cause}")]
    Poisoned {
        /// The operation that failed.
        op: &'static str,
        /// Its error.
        cause: Arc<io::Error>,
    },
    /// No free segment is left for new records.
    #[error(
        "store full: no free segment for a {needed}-byte record ({free_bytes} bytes free in the open segment)"
    )]
    StoreFull {
        /// Bytes the record needs.
        needed: u64,
        /// Bytes left in the segment being written.
        free_bytes: u64,
    },
    /// The record fits, but would leave less free space than the store keeps for
    /// reservations (fallocate), and does not draw on one.
    #[error(
        "no room: a {needed}-byte record would leave less than the {kept} bytes kept for reservations ({free} bytes free)"
    )]
    Reserved {
        /// Bytes the record needs.
        needed: u64,
        /// Bytes free in the store.
        free: u64,
        /// Bytes the store keeps for reservations.
        kept: u64,
    },
    /// A shard bigger than a segment can hold.
    #[error("a {len}-byte shard does not fit in a segment of {segment_size} bytes")]
    TooLarge {
        /// The shard's length.
        len: usize,
        /// The store's segment size.
        segment_size: u32,
    },
    /// `put` was given bytes that are not a valid shard.
    #[error("refused to store an invalid shard: {0}")]
    InvalidShard(ShardError),
    /// A stored record failed verification when read.
    #[error("corrupt record for shard {name} at segment {segment} offset {offset}: {reason}")]
    Corrupt {
        /// The shard asked for.
        name: ShardName,
        /// Where the index said the record is.
        segment: u32,
        /// Byte offset within that segment.
        offset: u32,
        /// What failed.
        reason: String,
    },
    /// The store was closed while the request waited.
    #[error("store closed")]
    Closed,
}
