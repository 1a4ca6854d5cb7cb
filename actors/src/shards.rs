//! A node's stores, each owned by its own shard actor (one executor, one core): a
//! chunk's shards live in the store that its id picks, so the stores share the node's
//! placement groups without any lock between them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hive_nvme::{GroupKey, Stats, UntouchedDelete};
use hive_wire::net::control::ScrubFigures;
use hive_wire::{ChunkId, ChunkSetDigest, EncodingTag, ShardName};

use crate::shard_actor::{ActorError, ShardActor};

/// Where a chunk id starts in a shard (after magic, version and header length).
const CHUNK_ID_AT: usize = 8;

/// The stores of a node; cheap to clone.
#[derive(Clone)]
pub struct Shards {
    actors: Arc<[ShardActor]>,
    scrub_orders: Arc<crate::scrub::ScrubOrders>,
    /// Where hints of shards to rebuild go (the repairer), if anywhere.
    hints: Option<flume::Sender<ShardName>>,
    /// Bytes the node keeps free for reservations, across its stores (see
    /// [`Shards::keep_for_reservations`]).
    reserve: Arc<AtomicU64>,
}

impl Shards {
    /// The stores behind `actors` (at least one), in configuration order, scrubbing
    /// on the orders in `scrub_orders` (the [`crate::ScrubArgs::orders`] they started
    /// with).
    pub fn new(actors: Vec<ShardActor>, scrub_orders: Arc<crate::scrub::ScrubOrders>) -> Self {
        assert!(
            !actors.is_empty(),
            "invariant: a node has at least one store"
        );
        Self {
            actors: actors.into(),
            scrub_orders,
            hints: None,
            reserve: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sends hints of shards to rebuild (a writer's owed-shard reports) to `hints`:
    /// the repairer's channel.
    pub fn with_hints(mut self, hints: flume::Sender<ShardName>) -> Self {
        self.hints = Some(hints);
        self
    }

    /// Resolves with why, once any of the stores refuses writes after a failed write
    /// or sync (never, if none does): the node stops on it (fail-stop).
    pub fn poisoned(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let watches: Vec<_> = self.actors.iter().map(ShardActor::poisoned).collect();
        async move {
            let mut waits = tokio::task::JoinSet::new();
            for mut watch in watches {
                waits.spawn(async move {
                    watch
                        .wait_for(Option::is_some)
                        .await
                        .ok()
                        .and_then(|reason| reason.clone())
                });
            }
            while let Some(done) = waits.join_next().await {
                if let Ok(Some(reason)) = done {
                    return reason;
                }
            }
            std::future::pending().await
        }
    }

    /// Arms `fault` on every store (a chaos build).
    #[cfg(feature = "faults")]
    pub async fn arm(&self, fault: crate::shard_actor::ArmedFault) -> Result<(), ActorError> {
        for actor in self.actors.iter() {
            actor.arm(fault).await?;
        }
        Ok(())
    }

    /// Passes a hint on to the repairer; a full channel drops it (the census finds the
    /// shard anyway).
    pub fn hint(&self, name: ShardName) {
        if let Some(hints) = &self.hints {
            let _ = hints.try_send(name);
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
        self.put_as(shard, false).await
    }

    /// Sets the bytes the node keeps free for reservations (fallocate), as the
    /// metadata node says: split evenly among its stores.
    pub fn keep_for_reservations(&self, bytes: u64) {
        let was = self.reserve.swap(bytes, Ordering::Relaxed);
        if was != bytes {
            tracing::info!("keeping {bytes} bytes for reservations (was {was})");
        }
    }

    /// Stores a shard; one that does not draw on a reservation (`reserved` false) is
    /// refused if it would leave its store less free space than its part of the room
    /// kept for reservations.
    pub async fn put_as(&self, shard: Bytes, reserved: bool) -> Result<(), ActorError> {
        let keep = if reserved {
            0
        } else {
            self.reserve
                .load(Ordering::Relaxed)
                .div_ceil(self.actors.len() as u64)
        };
        let actor = match shard.get(CHUNK_ID_AT..CHUNK_ID_AT + ChunkId::LEN) {
            Some(id) => {
                let mut bytes = [0u8; ChunkId::LEN];
                bytes.copy_from_slice(id);
                &self.actors[self.home(&ChunkId(bytes))]
            }
            None => &self.actors[0],
        };
        actor.put_keeping(shard, keep).await
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

    /// The encoding of a shard, if it is stored.
    pub async fn has(&self, name: ShardName) -> Result<Option<EncodingTag>, ActorError> {
        for actor in self.search_order(&name.chunk) {
            if let Some(tag) = actor.has(name).await? {
                return Ok(Some(tag));
            }
        }
        Ok(None)
    }

    /// Garbage collection's delete, in every store (a shard written before the store
    /// list changed may sit in another than its home): see `Store::delete_untouched`.
    pub async fn delete_untouched(
        &self,
        names: Vec<ShardName>,
        age: std::time::Duration,
    ) -> Result<UntouchedDelete, ActorError> {
        let mut total = UntouchedDelete::default();
        for actor in self.actors.iter() {
            let one = actor.delete_untouched(names.clone(), age).await?;
            total.deleted += one.deleted;
            total.touched += one.touched;
            total.bytes += one.bytes;
        }
        Ok(total)
    }

    /// Up to `limit` of the node's shards named above `after`, ascending, every
    /// store's together (a shard in two stores is listed once, with its larger size).
    pub async fn scan(
        &self,
        after: Option<ShardName>,
        limit: usize,
    ) -> Result<Vec<(ShardName, u64)>, ActorError> {
        let mut all = Vec::new();
        for actor in self.actors.iter() {
            all.extend(actor.scan(after, limit).await?);
        }
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        all.dedup_by_key(|(name, _)| *name);
        all.truncate(limit);
        Ok(all)
    }

    /// The digests of the node's shards in `groups`, every store's together.
    pub async fn digests(
        &self,
        pg_bits: u8,
        groups: Vec<GroupKey>,
    ) -> Result<Vec<ChunkSetDigest>, ActorError> {
        let mut total = vec![ChunkSetDigest::default(); groups.len()];
        for actor in self.actors.iter() {
            let digests = actor.digests(pg_bits, groups.clone()).await?;
            for (sum, digest) in total.iter_mut().zip(&digests) {
                sum.merge(digest);
            }
        }
        Ok(total)
    }

    /// Up to `limit` of one group's chunks above `after`, ascending, every store's
    /// together.
    pub async fn list(
        &self,
        pg_bits: u8,
        group: GroupKey,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkId>, ActorError> {
        let mut all = Vec::new();
        for actor in self.actors.iter() {
            all.extend(actor.list(pg_bits, group, after, limit).await?);
        }
        all.sort_unstable();
        all.dedup();
        all.truncate(limit);
        Ok(all)
    }

    /// The storage classes (k, m) the node holds shards of.
    pub async fn classes(&self) -> Result<Vec<(u8, u8)>, ActorError> {
        let mut classes = Vec::new();
        for actor in self.actors.iter() {
            classes.extend(actor.classes().await?.into_iter().map(|(c, _)| c));
        }
        classes.sort_unstable();
        classes.dedup();
        Ok(classes)
    }

    /// The node's scrub figures: its stores' together.
    pub fn scrub_figures(&self) -> ScrubFigures {
        self.actors
            .iter()
            .map(ShardActor::scrub_figures)
            .reduce(crate::scrub::sum)
            .expect("invariant: a node has at least one store")
    }

    /// Segments the node's reclaim freed and shard bytes it rewrote, every store's
    /// together.
    pub fn reclaim_figures(&self) -> (u64, u64) {
        self.actors
            .iter()
            .map(ShardActor::reclaim_figures)
            .fold((0, 0), |(f, m), (a, b)| (f + a, m + b))
    }

    /// Starts a scrub pass on every store now; its ticket.
    pub fn order_scrub(&self, bytes_per_second: u64) -> u64 {
        self.scrub_orders.order(bytes_per_second)
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
