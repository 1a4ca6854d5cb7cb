//! A node's stores, each owned by its own shard actor (one executor, one core): a
//! chunk's shards live in the store that its id picks, so the stores share the node's
//! placement groups without any lock between them.

use std::sync::Arc;

use bytes::Bytes;
use hive_nvme::Stats;
use hive_wire::{ChunkId, ShardName};

use crate::shard_actor::{ActorError, ShardActor};

/// Where a chunk id starts in a shard (after magic, version and header length).
const CHUNK_ID_AT: usize = 8;

/// The stores of a node; cheap to clone.
#[derive(Clone)]
pub struct Shards {
    actors: Arc<[ShardActor]>,
}

impl Shards {
    /// The stores behind `actors` (at least one), in configuration order.
    pub fn new(actors: Vec<ShardActor>) -> Self {
        assert!(
            !actors.is_empty(),
            "invariant: a node has at least one store"
        );
        Self {
            actors: actors.into(),
        }
    }

    /// The store a chunk's shards belong in. Bytes 24..32 of the id: placement groups
    /// use the first bytes, so the two choices stay independent.
    fn home(&self, chunk: &ChunkId) -> usize {
        let b = chunk.as_bytes();
        let key = u64::from_le_bytes([b[24], b[25], b[26], b[27], b[28], b[29], b[30], b[31]]);
        // The remainder is below the store count, a usize.
        (key % self.actors.len() as u64) as usize
    }

    /// The stores to look in for `chunk`: its home first, then the others (a shard
    /// written before the store list changed may sit in another one).
    fn search_order(&self, chunk: &ChunkId) -> impl Iterator<Item = &ShardActor> {
        let home = self.home(chunk);
        let n = self.actors.len();
        (0..n).map(move |i| &self.actors[(home + i) % n])
    }

    /// Stores a shard in its chunk's store; returns when it is durable. A shard too
    /// short to name its chunk goes to the first store, which refuses it.
    pub async fn put(&self, shard: Bytes) -> Result<(), ActorError> {
        let actor = match shard.get(CHUNK_ID_AT..CHUNK_ID_AT + ChunkId::LEN) {
            Some(id) => {
                let mut bytes = [0u8; ChunkId::LEN];
                bytes.copy_from_slice(id);
                &self.actors[self.home(&ChunkId(bytes))]
            }
            None => &self.actors[0],
        };
        actor.put(shard).await
    }

    /// Reads a verified shard.
    pub async fn get(&self, name: ShardName) -> Result<Option<Bytes>, ActorError> {
        for actor in self.search_order(&name.chunk) {
            if let Some(shard) = actor.get(name).await? {
                return Ok(Some(shard));
            }
        }
        Ok(None)
    }

    /// Whether a shard is stored.
    pub async fn has(&self, name: ShardName) -> Result<bool, ActorError> {
        for actor in self.search_order(&name.chunk) {
            if actor.has(name).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The stores' space accounting, summed.
    pub async fn stats(&self) -> Result<Stats, ActorError> {
        let mut total: Option<Stats> = None;
        for actor in self.actors.iter() {
            let s = actor.stats().await?;
            total = Some(total.map_or(s, |t| t + s));
        }
        Ok(total.expect("invariant: a node has at least one store"))
    }
}
