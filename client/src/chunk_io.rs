//! Writing and reading chunks across the cluster: a chunk is encoded into k + m shards
//! sent to their k + m nodes at once, and the write returns as soon as k are durable;
//! a read asks the data shards' holders first, hedges slow ones, and decodes from the
//! first k shards that verify.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hive_codec::{
    ChunkDecoder, ChunkEncoder, ClusterView, CodecError, CompressionConfig, ErasureScheme,
    PlacementError, ShardBytes, chunk_id,
};
use hive_wire::net::control::{ControlClient, MAP_WATCH_WAIT, OwedShard};
use hive_wire::net::message;
use hive_wire::net::rpc::code;
use hive_wire::net::shard_service::{
    Found, OP_GET, OP_HAS, OP_HINT, OP_PUT, PutOptions, ShardKey, ShardService,
};
use hive_wire::net::{Client, Connection, Identity, RpcError};
use hive_wire::{ChunkId, EncodingTag, NodeId, ShardIndex, ShardName};
use tokio::sync::mpsc;

use crate::quorum::{DedupQuorum, HedgeTimer, WriteOutcome, WriteQuorum};

/// How long one shard request may take before it counts as failed.
pub const SHARD_DEADLINE: Duration = Duration::from_secs(30);
/// How long the dedup question may take: a holder that has not answered by then counts
/// as not having its shard (the chunk is sent; storing a shard twice costs space in one
/// place, never correctness).
pub const HAS_DEADLINE: Duration = Duration::from_secs(3);
/// How long connecting to a node may take: the transport's bound.
pub use hive_wire::net::rpc::CONNECT_DEADLINE;
/// How long a map follower waits after a failed watch before asking again.
pub const MAP_RETRY: Duration = Duration::from_secs(1);
/// Owed shards remembered for reporting; past it only the count grows.
pub const OWED_KEPT: usize = 65_536;

/// Why a chunk could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// Fewer reachable nodes than the write needs.
    #[error(
        "chunk {chunk} not stored: {durable} of {needed} shards durable, only {available} of {width} nodes could take one ({causes})"
    )]
    NotEnoughNodes {
        /// The chunk.
        chunk: ChunkId,
        /// Shards made durable.
        durable: usize,
        /// Shards needed (k).
        needed: usize,
        /// Shards that could still have been written.
        available: usize,
        /// k + m.
        width: usize,
        /// What went wrong with the others.
        causes: String,
    },
    /// Holders refused their shards for lack of room: the cluster is out of space
    /// (without them the write would have been acknowledged).
    #[error(
        "chunk {chunk} not stored: no space left ({full} of {width} holders are full; {causes})"
    )]
    NoSpace {
        /// The chunk.
        chunk: ChunkId,
        /// Holders that answered that they have no room.
        full: usize,
        /// k + m.
        width: usize,
        /// What went wrong with each shard that failed.
        causes: String,
    },
    /// Fewer intact shards reachable than a read needs.
    #[error("chunk {chunk} unreadable: {found} intact shards of {needed} needed ({causes})")]
    Unreadable {
        /// The chunk.
        chunk: ChunkId,
        /// Intact shards found.
        found: usize,
        /// Shards needed.
        needed: usize,
        /// What went wrong with the others.
        causes: String,
    },
    /// Placement failed.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// Encoding or decoding failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A node the map names has no known address.
    #[error("node {0} is in the cluster map but its address is unknown")]
    NoAddress(NodeId),
}

/// A shard a read found damaged (refused by its node's checksum, or by ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadShard {
    /// The chunk.
    pub chunk: ChunkId,
    /// The class it is stored in.
    pub scheme: ErasureScheme,
    /// The shard index.
    pub index: u8,
    /// The node that served or holds it.
    pub node: NodeId,
    /// What was wrong.
    pub reason: String,
}

/// The nodes of a cluster and connections to them.
pub struct ChunkStore {
    view: RwLock<Arc<ClusterView>>,
    client: Client,
    /// Never held across an await.
    connections: std::sync::Mutex<HashMap<NodeId, Connection>>,
    scheme: ErasureScheme,
    compression: CompressionConfig,
    owed: Arc<Owed>,
    bad: std::sync::Mutex<(u64, Vec<BadShard>)>,
    hedge: std::sync::Mutex<HedgeTimer>,
    /// Signalled when a newer map is put in use.
    view_changed: tokio::sync::Notify,
}

/// Shards owed to repair (failed after their chunk was acknowledged), and shards still
/// being written after it.
#[derive(Default)]
struct Owed {
    count: AtomicU64,
    /// Signalled when the count grows or a pending shard finishes.
    changed: tokio::sync::Notify,
    shards: std::sync::Mutex<OwedState>,
}

#[derive(Default)]
struct OwedState {
    /// Owed and not yet taken by [`ChunkStore::settle`], at most [`OWED_KEPT`].
    owed: Vec<OwedShard>,
    /// Written in the background after the chunk's ACK.
    pending: HashMap<ShardName, NodeId>,
}

/// The holders of `chunk`'s shards of class `scheme` in `view`, in shard-index order.
fn place(
    view: &ClusterView,
    chunk: &ChunkId,
    scheme: ErasureScheme,
) -> Result<Vec<NodeId>, ChunkError> {
    Ok(view.map.place(view.map.pg_of(chunk), scheme.width())?)
}

fn owed_shard(name: ShardName, node: NodeId) -> OwedShard {
    OwedShard {
        chunk: name.chunk.0,
        k: name.k,
        m: name.m,
        index: name.index.get(),
        node: node.0,
    }
}

impl Owed {
    fn state(&self) -> std::sync::MutexGuard<'_, OwedState> {
        self.shards.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, shard: OwedShard) {
        let mut state = self.state();
        if state.owed.len() < OWED_KEPT {
            state.owed.push(shard);
        }
        drop(state);
        self.count.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn finished(&self, name: ShardName, failed: bool) {
        let node = self.state().pending.remove(&name);
        match (node, failed) {
            (Some(node), true) => self.add(owed_shard(name, node)),
            _ => self.changed.notify_waiters(),
        }
    }
}

/// The failure of a request not sent because the map says `node` is down (an out node
/// is asked: it may still keep shards that rebalance has not moved).
fn down(view: &ClusterView, node: NodeId) -> Option<RpcError> {
    (!view.may_answer(node)).then(|| {
        RpcError::Connection(format!(
            "node {node} is down in map epoch {}",
            view.map.epoch().0
        ))
    })
}

/// The order a read asks for a chunk's shards, from [`ClusterView::shard_homes`]: every
/// current holder in shard-index order (data shards first), then each past placement's
/// holders, newest first.
fn where_to_ask(homes: &[Vec<NodeId>]) -> Vec<(usize, NodeId)> {
    let depth = homes.iter().map(Vec::len).max().unwrap_or(0);
    (0..depth)
        .flat_map(|d| {
            homes
                .iter()
                .enumerate()
                .filter_map(move |(i, nodes)| nodes.get(d).map(|&node| (i, node)))
        })
        .collect()
}

fn shard_index(i: usize) -> ShardIndex {
    ShardIndex(u8::try_from(i).expect("invariant: at most 48 shards"))
}

impl ChunkStore {
    /// A chunk store over the nodes of `map`, reached at `addresses` through `client`,
    /// writing with `scheme`.
    pub fn new(
        view: ClusterView,
        client: Client,
        scheme: ErasureScheme,
        compression: CompressionConfig,
    ) -> Self {
        Self {
            view: RwLock::new(Arc::new(view)),
            client,
            connections: std::sync::Mutex::new(HashMap::new()),
            scheme,
            compression,
            owed: Arc::new(Owed::default()),
            bad: std::sync::Mutex::new((0, Vec::new())),
            hedge: std::sync::Mutex::new(HedgeTimer::default()),
            view_changed: tokio::sync::Notify::new(),
        }
    }

    /// The erasure scheme chunks are written with.
    pub fn scheme(&self) -> ErasureScheme {
        self.scheme
    }

    /// The name shard `index` of `chunk` is stored under: this store's scheme is in it.
    pub fn shard_name(&self, chunk: ChunkId, index: ShardIndex) -> ShardName {
        self.scheme.shard_name(chunk, index)
    }

    /// Shards whose write failed after their chunk was acknowledged: owed to repair.
    pub fn shards_owed(&self) -> u64 {
        self.owed.count.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` shards are owed (shard writes still in flight after an
    /// acknowledged chunk may fail later).
    pub async fn owed_at_least(&self, n: u64) {
        loop {
            let changed = self.owed.changed.notified();
            if self.shards_owed() >= n {
                return;
            }
            changed.await;
        }
    }

    /// The shards owed so far (failed after their chunk's ACK), taken: for a reporter
    /// that runs while writes go on (shards still in flight are left alone).
    pub fn take_owed(&self) -> Vec<OwedShard> {
        std::mem::take(&mut self.owed.state().owed)
    }

    /// Waits up to `grace` for shard writes still running after their chunk's ACK, then
    /// counts those still unfinished as owed too, and takes every owed shard not taken
    /// before (to report to the map authority). Call before the process exits: a
    /// shard whose write was cut short is owed, not silently forgotten.
    pub async fn settle(&self, grace: Duration) -> Vec<OwedShard> {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let changed = self.owed.changed.notified();
            if self.owed.state().pending.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break;
            }
        }
        let unfinished: Vec<_> = self.owed.state().pending.drain().collect();
        for (name, node) in unfinished {
            self.owed.add(owed_shard(name, node));
        }
        self.take_owed()
    }

    /// Tells the primary of each placement group that `owed` shards belong to (its first
    /// holder the map shows up) that shards are missing there, so its census comes soon:
    /// the fast path beside the census, which finds them anyway. One hint per group;
    /// failures are ignored (a hint only).
    pub async fn hint_owed(&self, owed: &[OwedShard]) {
        let view = self.view();
        let mut hinted = std::collections::HashSet::new();
        for shard in owed {
            let name = ShardName {
                chunk: ChunkId(shard.chunk),
                k: shard.k,
                m: shard.m,
                index: ShardIndex(shard.index),
            };
            let pg = view.map.pg_of(&name.chunk);
            let width = usize::from(shard.k) + usize::from(shard.m);
            if !hinted.insert((pg, shard.k, shard.m)) {
                continue;
            }
            let Ok(holders) = view.map.place(pg, width) else {
                continue;
            };
            let Some(primary) = holders.into_iter().find(|n| view.is_up(*n)) else {
                continue;
            };
            let key = message::encode(&ShardKey::new(name));
            let request = message::request::<ShardService>(OP_HINT, key, Bytes::new());
            let _ = self.call(primary, request, HAS_DEADLINE).await;
        }
    }

    /// Damaged shards reads have met (and read around).
    pub fn bad_shards(&self) -> u64 {
        self.bad.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    /// Damaged shard `bad` as owed to repair.
    pub fn owed(&self, bad: &BadShard) -> OwedShard {
        owed_shard(
            bad.scheme.shard_name(bad.chunk, ShardIndex(bad.index)),
            bad.node,
        )
    }

    /// Takes the damaged shards met since the last call (at most [`OWED_KEPT`]).
    pub fn take_bad(&self) -> Vec<BadShard> {
        std::mem::take(&mut self.bad.lock().unwrap_or_else(PoisonError::into_inner).1)
    }

    fn found_bad(&self, shard: BadShard) {
        let mut bad = self.bad.lock().unwrap_or_else(PoisonError::into_inner);
        bad.0 += 1;
        if bad.1.len() < OWED_KEPT {
            bad.1.push(shard);
        }
    }

    /// The cluster map and addresses in use.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Uses `view` from now on if its epoch is newer than the one in use; `true` if it
    /// was. Connections to nodes that came back (or moved) are dropped: they lead to
    /// the node's old process.
    pub fn set_view(&self, view: ClusterView) -> bool {
        let mut current = self.view.write().unwrap_or_else(PoisonError::into_inner);
        if view.map.epoch() <= current.map.epoch() {
            return false;
        }
        let returned = view.returned_since(&current);
        *current = Arc::new(view);
        drop(current);
        let mut connections = self.lock_connections();
        for node in &returned {
            connections.remove(node);
        }
        drop(connections);
        self.view_changed.notify_waiters();
        true
    }

    /// Waits until the map in use satisfies `wanted`.
    pub async fn view_where(&self, wanted: impl Fn(&ClusterView) -> bool) {
        loop {
            let changed = self.view_changed.notified();
            if wanted(&self.view()) {
                return;
            }
            changed.await;
        }
    }

    /// Follows the cluster map from `control` (a watch: each answer comes when the
    /// map's epoch passes the one in use) and puts every newer one in use, until the
    /// store is dropped. A failed watch is asked again after [`MAP_RETRY`].
    pub fn follow(self: &Arc<Self>, control: Arc<ControlClient>) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(known) = store.upgrade().map(|s| s.view().map.epoch().0) else {
                    return;
                };
                match control.map(known, MAP_WATCH_WAIT).await {
                    Ok(message) => {
                        let Some(me) = store.upgrade() else { return };
                        if let Ok(view) = ClusterView::from_message(&message) {
                            me.set_view(view);
                        }
                    }
                    // Waiting is the point here: the authority is unreachable.
                    Err(_) => tokio::time::sleep(MAP_RETRY).await,
                }
            }
        })
    }

    /// The nodes holding `chunk`'s shards, in shard-index order.
    pub fn holders(&self, chunk: &ChunkId) -> Result<Vec<NodeId>, ChunkError> {
        place(&self.view(), chunk, self.scheme)
    }

    fn lock_connections(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Connection>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `request` to `node`, on its cached connection or a new one. A cached
    /// connection the node reset (it restarted since: it processed nothing) is
    /// replaced and the request sent again; after any other transport failure the
    /// connection is dropped.
    async fn call(
        &self,
        node: NodeId,
        request: hive_wire::net::Request,
        deadline: Duration,
    ) -> Result<hive_wire::net::Response, RpcError> {
        let (connection, reused) = self.connection(node).await?;
        let mut result = connection.call(request.clone(), deadline).await;
        if reused && matches!(result, Err(RpcError::Reset)) {
            self.forget(node).await;
            let (fresh, _) = self.connection(node).await?;
            result = fresh.call(request, deadline).await;
        }
        if let Err(err) = &result
            && !matches!(err, RpcError::Remote(_))
        {
            self.forget(node).await;
        }
        result
    }

    /// `node`'s connection, made if need be; whether it was cached.
    async fn connection(&self, node: NodeId) -> Result<(Connection, bool), RpcError> {
        if let Some(c) = self.lock_connections().get(&node)
            && !c.is_closed()
        {
            return Ok((c.clone(), true));
        }
        let addr = *self
            .view()
            .addresses
            .get(&node)
            .ok_or_else(|| RpcError::Connection(format!("no address for node {node}")))?;
        let connecting = self.client.connect(addr, Some(Identity::node(node)));
        let connection = tokio::time::timeout(CONNECT_DEADLINE, connecting)
            .await
            .map_err(|_| {
                RpcError::Connection(format!(
                    "node {node} at {addr} did not answer within {CONNECT_DEADLINE:?}"
                ))
            })??;
        self.lock_connections().insert(node, connection.clone());
        Ok((connection, false))
    }

    async fn forget(&self, node: NodeId) {
        self.lock_connections().remove(&node);
    }

    /// Writes `data` as one chunk and returns its id once k shards are durable. A chunk
    /// k of whose holders have intact shards of one encoding is not sent again (dedup).
    pub async fn put(self: &Arc<Self>, data: &[u8]) -> Result<ChunkId, ChunkError> {
        self.put_as(data, false).await
    }

    /// [`ChunkStore::put`]; a chunk `reserved` is part of a write into a reserved range
    /// (fallocate) and may use the room nodes keep for reservations.
    pub async fn put_as(
        self: &Arc<Self>,
        data: &[u8],
        reserved: bool,
    ) -> Result<ChunkId, ChunkError> {
        self.put_in(self.scheme, data, reserved).await
    }

    /// Whether chunk `id` is stored in class `scheme`: k of its holders have intact
    /// shards of one encoding (the dedup question of a put).
    pub async fn stored_in(self: &Arc<Self>, scheme: ErasureScheme, id: ChunkId) -> bool {
        let view = self.view();
        match place(&view, &id, scheme) {
            Ok(holders) => {
                self.stored(&view, &holders, scheme.shard_name(id, ShardIndex(0)))
                    .await
            }
            Err(_) => false,
        }
    }

    /// [`ChunkStore::put_as`] in class `scheme` rather than the store's own.
    pub async fn put_in(
        self: &Arc<Self>,
        scheme: ErasureScheme,
        data: &[u8],
        reserved: bool,
    ) -> Result<ChunkId, ChunkError> {
        let id = chunk_id(data);
        let view = self.view();
        let holders = place(&view, &id, scheme)?;
        if self
            .stored(&view, &holders, scheme.shard_name(id, ShardIndex(0)))
            .await
        {
            return Ok(id);
        }
        let mut encoder = ChunkEncoder::new(scheme, self.compression)?;
        let encoded = encoder.encode(id, data)?;
        let shards: Vec<Bytes> = (0..encoded.width())
            .map(|i| Bytes::from(encoded.shard_to_vec(i)))
            .collect();
        let (tx, mut rx) = mpsc::channel(shards.len());
        for (i, (node, shard)) in holders.iter().zip(shards).enumerate() {
            let (me, tx, node) = (self.clone(), tx.clone(), *node);
            if let Some(down) = down(&view, node) {
                let _ = tx.try_send((i, node, Err(down)));
                continue;
            }
            tokio::spawn(async move {
                let result = me.send_shard(node, shard, reserved).await;
                let _ = tx.send((i, node, result)).await;
            });
        }
        drop(tx);
        let mut quorum = WriteQuorum::new(scheme.k(), scheme.m());
        let (mut causes, mut full) = (Vec::new(), 0);
        while let Some((i, node, result)) = rx.recv().await {
            let outcome = match result {
                Ok(()) => quorum.on_shard_durable(shard_index(i)),
                Err(err) => {
                    if err.is_full() {
                        full += 1;
                    }
                    causes.push(format!("shard {i} on node {node}: {err}"));
                    quorum.on_shard_failed(shard_index(i))
                }
            };
            match outcome {
                Some(WriteOutcome::Acked) => {
                    // The remaining shards finish in the background; failures there are
                    // owed to repair.
                    let owed = self.owed.clone();
                    let failed = quorum.owed();
                    {
                        let mut state = owed.state();
                        for (j, node) in holders.iter().enumerate() {
                            if !quorum.is_answered(shard_index(j)) {
                                state
                                    .pending
                                    .insert(scheme.shard_name(id, shard_index(j)), *node);
                            }
                        }
                    }
                    for index in failed {
                        owed.add(owed_shard(
                            scheme.shard_name(id, index),
                            holders[usize::from(index.get())],
                        ));
                    }
                    let name = scheme.shard_name(id, ShardIndex(0));
                    tokio::spawn(async move {
                        while let Some((j, _, result)) = rx.recv().await {
                            let index = shard_index(j);
                            owed.finished(ShardName { index, ..name }, result.is_err());
                        }
                    });
                    return Ok(id);
                }
                Some(WriteOutcome::Failed {
                    needed, available, ..
                }) if available + full >= needed => {
                    return Err(ChunkError::NoSpace {
                        chunk: id,
                        full,
                        width: scheme.width(),
                        causes: causes.join("; "),
                    });
                }
                Some(WriteOutcome::Failed {
                    durable,
                    needed,
                    available,
                }) => {
                    return Err(ChunkError::NotEnoughNodes {
                        chunk: id,
                        durable,
                        needed,
                        available,
                        width: scheme.width(),
                        causes: causes.join("; "),
                    });
                }
                None => {}
            }
        }
        unreachable!("a quorum decides once every shard has answered")
    }

    async fn send_shard(&self, node: NodeId, shard: Bytes, reserved: bool) -> Result<(), RpcError> {
        let options = if reserved {
            message::encode(&PutOptions { reserved })
        } else {
            Bytes::new()
        };
        let request = message::request::<ShardService>(OP_PUT, options, shard);
        self.call(node, request, SHARD_DEADLINE).await.map(|_| ())
    }

    /// The dedup question: asks every holder the map says is up whether it has an
    /// intact shard of the chunk, and of which encoding ([`DedupQuorum`]). The chunk is
    /// stored only when k holders confirm shards of one encoding; a holder that is slow
    /// or stopped counts as not having its shard once the others have decided, or at
    /// [`HAS_DEADLINE`]. A "no" only makes the chunk be written again, which restores
    /// the missing shards. Every up holder is asked, even after the decision, so each
    /// sees the chunk touched.
    async fn stored(
        self: &Arc<Self>,
        view: &ClusterView,
        holders: &[NodeId],
        first: ShardName,
    ) -> bool {
        let mut asked = tokio::task::JoinSet::new();
        for (i, node) in holders.iter().enumerate().filter(|(_, n)| view.is_up(**n)) {
            let (store, node) = (self.clone(), *node);
            let name = ShardName {
                index: shard_index(i),
                ..first
            };
            asked.spawn(async move { store.has(node, name).await });
        }
        if asked.is_empty() {
            return false;
        }
        let mut quorum = DedupQuorum::new(first.k, asked.len());
        let deadline = tokio::time::Instant::now() + HAS_DEADLINE;
        let stored = loop {
            let answer = match tokio::time::timeout_at(deadline, asked.join_next()).await {
                Ok(Some(Ok(Some(answer)))) => quorum.on_answer(answer),
                Ok(Some(_)) => quorum.on_silence(),
                // Every holder answered without a decision: impossible, but not stored.
                Ok(None) => break false,
                // The rest are silent: each counts as not having its shard.
                Err(_) => break false,
            };
            if let Some(stored) = answer {
                break stored;
            }
        };
        // The questions not answered yet still reach their holders (each ends within
        // HAS_DEADLINE): a question touches the chunk there, and garbage collection
        // spares a shard whose chunk was touched within its grace.
        asked.detach_all();
        stored
    }

    /// The encoding of `node`'s shard if it has one; `None` if it did not answer in
    /// time.
    async fn has(&self, node: NodeId, name: ShardName) -> Option<Option<EncodingTag>> {
        let key = message::encode(&ShardKey::new(name));
        let request = message::request::<ShardService>(OP_HAS, key, Bytes::new());
        let answer = match tokio::time::timeout(
            HAS_DEADLINE,
            self.call(node, request, HAS_DEADLINE),
        )
        .await
        {
            Ok(answer) => answer.ok()?,
            Err(_) => {
                // No answer in time: the connection may be to a node that died (see
                // `Link::call_within`); the next call makes a new one.
                self.forget(node).await;
                return None;
            }
        };
        message::decode::<Found>("Found", &answer.message)
            .ok()
            .map(|f| f.present.then_some(EncodingTag(f.tag)))
    }

    async fn fetch(&self, node: NodeId, name: ShardName) -> Result<Option<Bytes>, RpcError> {
        let key = message::encode(&ShardKey::new(name));
        let request = message::request::<ShardService>(OP_GET, key, Bytes::new());
        let started = Instant::now();
        let answer = self.call(node, request, SHARD_DEADLINE).await?;
        self.hedge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(started.elapsed());
        let found: Found = message::decode("Found", &answer.message)
            .map_err(|e| RpcError::Connection(e.to_string()))?;
        Ok(found.present.then_some(answer.body))
    }

    /// Reads chunk `id`: asks the data shards' holders, then (after the hedge delay, or
    /// at once on a failure) the parity holders, then the holders under past placements
    /// that rebalance may not have moved yet, and decodes from the first k shards that
    /// verify.
    pub async fn get(self: &Arc<Self>, id: ChunkId) -> Result<Vec<u8>, ChunkError> {
        self.get_in(self.scheme, id).await
    }

    /// [`ChunkStore::get`] of the chunk stored in class `scheme` rather than the
    /// store's own.
    pub async fn get_in(
        self: &Arc<Self>,
        scheme: ErasureScheme,
        id: ChunkId,
    ) -> Result<Vec<u8>, ChunkError> {
        let view = self.view();
        let asks = where_to_ask(&view.shard_homes(view.map.pg_of(&id), scheme.width())?);
        let k = usize::from(scheme.k());
        let (tx, mut rx) = mpsc::channel(asks.len());
        let ask = |(i, node): (usize, NodeId)| {
            let (me, tx) = (self.clone(), tx.clone());
            if let Some(down) = down(&view, node) {
                let _ = tx.try_send((i, node, Err(down)));
                return;
            }
            tokio::spawn(async move {
                let result = me.fetch(node, scheme.shard_name(id, shard_index(i))).await;
                let _ = tx.send((i, node, result)).await;
            });
        };
        for &first in asks.iter().take(k) {
            ask(first);
        }
        let mut next = k.min(asks.len());
        let mut shards: Vec<(usize, NodeId, Bytes)> = Vec::new();
        let mut answered = 0;
        let mut causes = Vec::new();
        let mut decoder = ChunkDecoder::new()?;
        let hedge = self
            .hedge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .delay();
        loop {
            let event = match tokio::time::timeout(hedge, rx.recv()).await {
                // A slow holder: ask one more, and keep waiting for both.
                Err(_) if next < asks.len() => {
                    ask(asks[next]);
                    next += 1;
                    continue;
                }
                Err(_) => rx.recv().await,
                Ok(event) => event,
            };
            let Some(event) = event else { break };
            let mut want_more =
                !self.absorb(scheme, id, event, &mut shards, &mut causes, &mut answered);
            if shards.len() >= k {
                let views: Vec<ShardBytes> = shards
                    .iter()
                    .map(|(i, _, bytes)| ShardBytes::contiguous(bytes, Some(shard_index(*i))))
                    .collect();
                match decoder.decode(id, &views) {
                    Ok(decoded) => {
                        for rejected in &decoded.rejected {
                            let (i, node, _) = shards[rejected.position];
                            self.found_bad(BadShard {
                                chunk: id,
                                scheme,
                                index: shard_index(i).get(),
                                node,
                                reason: rejected.reason.to_string(),
                            });
                        }
                        return Ok(decoded.data.to_vec());
                    }
                    Err(err) => {
                        causes.push(err.to_string());
                        want_more = true;
                    }
                }
            }
            if want_more && next < asks.len() {
                ask(asks[next]);
                next += 1;
            }
            if answered == next && next == asks.len() {
                break;
            }
        }
        Err(ChunkError::Unreadable {
            chunk: id,
            found: shards.len(),
            needed: k,
            causes: causes.join("; "),
        })
    }

    /// Takes one shard answer; `false` if the read should ask one holder more for it.
    fn absorb(
        &self,
        scheme: ErasureScheme,
        chunk: ChunkId,
        (i, node, result): (usize, NodeId, Result<Option<Bytes>, RpcError>),
        shards: &mut Vec<(usize, NodeId, Bytes)>,
        causes: &mut Vec<String>,
        answered: &mut usize,
    ) -> bool {
        *answered += 1;
        match result {
            // A second copy of one shard (its old and its new home both answered) adds
            // nothing to decode from, and asks for nothing more either.
            Ok(Some(_)) if shards.iter().any(|(have, _, _)| *have == i) => true,
            Ok(Some(bytes)) => {
                shards.push((i, node, bytes));
                true
            }
            Ok(None) => {
                causes.push(format!("shard {i} missing on node {node}"));
                false
            }
            Err(err) => {
                if let RpcError::Remote(refusal) = &err
                    && refusal.code == code::DAMAGED
                {
                    self.found_bad(BadShard {
                        chunk,
                        scheme,
                        index: shard_index(i).get(),
                        node,
                        reason: refusal.message.clone(),
                    });
                }
                causes.push(format!("shard {i} on node {node}: {err}"));
                false
            }
        }
    }
}
