//! The shard service's messages: what clients and nodes send a node to store and fetch
//! shards. The shard itself travels as the frame body, never inside a message.

use rkyv::{Archive, Deserialize, Serialize};

use super::message::MessageSet;
use crate::{ChunkId, ShardIndex, ShardName};

/// The shard service message set.
pub struct ShardService;

impl MessageSet for ShardService {
    const PROTOCOL: u16 = 2;
    /// Version 2 added the scheme (k, m) to shard names.
    const VERSION: u16 = 2;
    const NAME: &'static str = "shard service";
}

/// Store the shard in the body (durable when answered). Message: none.
pub const OP_PUT: u16 = 1;
/// Fetch a shard. Message: [`ShardKey`]; answer: [`Found`], the shard in the body.
pub const OP_GET: u16 = 2;
/// Whether a shard is stored (the dedup question). Message: [`ShardKey`]; answer:
/// [`Found`], no body.
pub const OP_HAS: u16 = 3;

/// Names one shard: see [`ShardName`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardKey {
    /// The chunk.
    pub chunk: [u8; 32],
    /// Data shards of the chunk's scheme.
    pub k: u8,
    /// Parity shards of the chunk's scheme.
    pub m: u8,
    /// The shard index.
    pub index: u8,
}

impl ShardKey {
    /// The key of the shard named `name`.
    pub fn new(name: ShardName) -> Self {
        Self {
            chunk: name.chunk.0,
            k: name.k,
            m: name.m,
            index: name.index.get(),
        }
    }

    /// The shard's name.
    pub fn name(&self) -> ShardName {
        ShardName {
            chunk: ChunkId(self.chunk),
            k: self.k,
            m: self.m,
            index: ShardIndex(self.index),
        }
    }
}

/// Whether the shard asked for is stored.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Stored or not.
    pub present: bool,
}
