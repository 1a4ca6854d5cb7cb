//! Writing and reading chunks across the cluster: a chunk is encoded into k + m shards
//! sent to their k + m nodes at once, and the write returns as soon as k are durable;
//! a read asks the data shards' holders first, hedges slow ones, and decodes from the
//! first k shards that verify.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hive_codec::{
    ChunkDecoder, ChunkEncoder, ClusterMap, CodecError, CompressionConfig, ErasureScheme,
    PlacementError, ShardBytes, chunk_id,
};
use hive_wire::net::message;
use hive_wire::net::shard_service::{Found, OP_GET, OP_HAS, OP_PUT, ShardKey, ShardService};
use hive_wire::net::{Client, Connection, Identity, RpcError};
use hive_wire::{ChunkId, NodeId, ShardIndex};
use tokio::sync::{Mutex, mpsc};

use crate::quorum::{HedgeTimer, WriteOutcome, WriteQuorum};

/// How long one shard request may take before it counts as failed.
pub const SHARD_DEADLINE: Duration = Duration::from_secs(30);

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

/// The nodes of a cluster and connections to them.
pub struct ChunkStore {
    map: ClusterMap,
    addresses: HashMap<NodeId, SocketAddr>,
    client: Client,
    connections: Mutex<HashMap<NodeId, Connection>>,
    scheme: ErasureScheme,
    compression: CompressionConfig,
    owed: Arc<Owed>,
    hedge: std::sync::Mutex<HedgeTimer>,
}

/// Shards owed to repair, and a signal when the count grows.
#[derive(Default)]
struct Owed {
    count: AtomicU64,
    grew: tokio::sync::Notify,
}

impl Owed {
    fn add(&self, n: u64) {
        if n > 0 {
            self.count.fetch_add(n, Ordering::SeqCst);
            self.grew.notify_waiters();
        }
    }
}

fn shard_index(i: usize) -> ShardIndex {
    ShardIndex(u8::try_from(i).expect("invariant: at most 48 shards"))
}

impl ChunkStore {
    /// A chunk store over the nodes of `map`, reached at `addresses` through `client`,
    /// writing with `scheme`.
    pub fn new(
        map: ClusterMap,
        addresses: HashMap<NodeId, SocketAddr>,
        client: Client,
        scheme: ErasureScheme,
        compression: CompressionConfig,
    ) -> Self {
        Self {
            map,
            addresses,
            client,
            connections: Mutex::new(HashMap::new()),
            scheme,
            compression,
            owed: Arc::new(Owed::default()),
            hedge: std::sync::Mutex::new(HedgeTimer::default()),
        }
    }

    /// Shards whose write failed after their chunk was acknowledged: owed to repair.
    pub fn shards_owed(&self) -> u64 {
        self.owed.count.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` shards are owed (shard writes still in flight after an
    /// acknowledged chunk may fail later).
    pub async fn owed_at_least(&self, n: u64) {
        loop {
            let grew = self.owed.grew.notified();
            if self.shards_owed() >= n {
                return;
            }
            grew.await;
        }
    }

    /// The nodes holding `chunk`'s shards, in shard-index order.
    pub fn holders(&self, chunk: &ChunkId) -> Result<Vec<NodeId>, ChunkError> {
        Ok(self.map.place(self.map.pg_of(chunk), self.scheme.width())?)
    }

    async fn connection(&self, node: NodeId) -> Result<Connection, RpcError> {
        if let Some(c) = self.connections.lock().await.get(&node) {
            return Ok(c.clone());
        }
        let addr = *self
            .addresses
            .get(&node)
            .ok_or_else(|| RpcError::Connection(format!("no address for node {node}")))?;
        let connection = self
            .client
            .connect(addr, Some(Identity::node(node)))
            .await?;
        self.connections
            .lock()
            .await
            .insert(node, connection.clone());
        Ok(connection)
    }

    async fn forget(&self, node: NodeId) {
        self.connections.lock().await.remove(&node);
    }

    /// Writes `data` as one chunk and returns its id once k shards are durable. A chunk
    /// its first holder already has is not sent again (dedup).
    pub async fn put(self: &Arc<Self>, data: &[u8]) -> Result<ChunkId, ChunkError> {
        let id = chunk_id(data);
        let holders = self.holders(&id)?;
        if self.has(holders[0], id, shard_index(0)).await {
            return Ok(id);
        }
        let mut encoder = ChunkEncoder::new(self.scheme, self.compression)?;
        let encoded = encoder.encode(id, data)?;
        let shards: Vec<Bytes> = (0..encoded.width())
            .map(|i| Bytes::from(encoded.shard_to_vec(i)))
            .collect();
        let (tx, mut rx) = mpsc::channel(shards.len());
        for (i, (node, shard)) in holders.iter().zip(shards).enumerate() {
            let (me, tx, node) = (self.clone(), tx.clone(), *node);
            tokio::spawn(async move {
                let result = me.send_shard(node, shard).await;
                let _ = tx.send((i, node, result)).await;
            });
        }
        drop(tx);
        let mut quorum = WriteQuorum::new(self.scheme.k(), self.scheme.m());
        let mut causes = Vec::new();
        while let Some((i, node, result)) = rx.recv().await {
            let outcome = match result {
                Ok(()) => quorum.on_shard_durable(shard_index(i)),
                Err(err) => {
                    causes.push(format!("shard {i} on node {node}: {err}"));
                    quorum.on_shard_failed(shard_index(i))
                }
            };
            match outcome {
                Some(WriteOutcome::Acked) => {
                    // The remaining shards finish in the background; failures there are
                    // owed to repair.
                    let owed = self.owed.clone();
                    owed.add(quorum.owed().len() as u64);
                    tokio::spawn(async move {
                        while let Some((_, _, result)) = rx.recv().await {
                            if result.is_err() {
                                owed.add(1);
                            }
                        }
                    });
                    return Ok(id);
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
                        width: self.scheme.width(),
                        causes: causes.join("; "),
                    });
                }
                None => {}
            }
        }
        unreachable!("a quorum decides once every shard has answered")
    }

    async fn send_shard(&self, node: NodeId, shard: Bytes) -> Result<(), RpcError> {
        let connection = self.connection(node).await?;
        let request = message::request::<ShardService>(OP_PUT, Bytes::new(), shard);
        let result = connection.call(request, SHARD_DEADLINE).await.map(|_| ());
        if result.is_err() {
            self.forget(node).await;
        }
        result
    }

    async fn has(&self, node: NodeId, chunk: ChunkId, index: ShardIndex) -> bool {
        let Ok(connection) = self.connection(node).await else {
            return false;
        };
        let key = message::encode(&ShardKey::new(chunk, index));
        let request = message::request::<ShardService>(OP_HAS, key, Bytes::new());
        match connection.call(request, SHARD_DEADLINE).await {
            Ok(answer) => {
                message::decode::<Found>("Found", &answer.message).is_ok_and(|f| f.present)
            }
            Err(_) => false,
        }
    }

    async fn fetch(
        &self,
        node: NodeId,
        chunk: ChunkId,
        index: ShardIndex,
    ) -> Result<Option<Bytes>, RpcError> {
        let connection = self.connection(node).await?;
        let key = message::encode(&ShardKey::new(chunk, index));
        let request = message::request::<ShardService>(OP_GET, key, Bytes::new());
        let started = Instant::now();
        let answer = connection.call(request, SHARD_DEADLINE).await;
        if answer.is_err() {
            self.forget(node).await;
        }
        let answer = answer?;
        self.hedge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(started.elapsed());
        let found: Found = message::decode("Found", &answer.message)
            .map_err(|e| RpcError::Connection(e.to_string()))?;
        Ok(found.present.then_some(answer.body))
    }

    /// Reads chunk `id`: asks the data shards' holders, then (after the hedge delay, or
    /// at once on a failure) the parity holders, and decodes from the first k shards
    /// that verify.
    pub async fn get(self: &Arc<Self>, id: ChunkId) -> Result<Vec<u8>, ChunkError> {
        let holders = self.holders(&id)?;
        let k = usize::from(self.scheme.k());
        let (tx, mut rx) = mpsc::channel(holders.len());
        let ask = |i: usize| {
            let (me, tx, node) = (self.clone(), tx.clone(), holders[i]);
            tokio::spawn(async move {
                let result = me.fetch(node, id, shard_index(i)).await;
                let _ = tx.send((i, node, result)).await;
            });
        };
        for i in 0..k {
            ask(i);
        }
        let mut next = k;
        let mut shards: Vec<(usize, Bytes)> = Vec::new();
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
                Err(_) if next < holders.len() => {
                    ask(next);
                    next += 1;
                    continue;
                }
                Err(_) => rx.recv().await,
                Ok(event) => event,
            };
            let Some(event) = event else { break };
            let mut want_more = !self.absorb(event, &mut shards, &mut causes, &mut answered);
            if shards.len() >= k {
                let views: Vec<ShardBytes> = shards
                    .iter()
                    .map(|(i, bytes)| ShardBytes::contiguous(bytes, Some(shard_index(*i))))
                    .collect();
                match decoder.decode(id, &views) {
                    Ok(decoded) => return Ok(decoded.data.to_vec()),
                    Err(err) => {
                        causes.push(err.to_string());
                        want_more = true;
                    }
                }
            }
            if want_more && next < holders.len() {
                ask(next);
                next += 1;
            }
            if answered == next && next == holders.len() {
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

    /// Takes one shard answer; `true` if it brought a shard.
    fn absorb(
        &self,
        (i, node, result): (usize, NodeId, Result<Option<Bytes>, RpcError>),
        shards: &mut Vec<(usize, Bytes)>,
        causes: &mut Vec<String>,
        answered: &mut usize,
    ) -> bool {
        *answered += 1;
        match result {
            Ok(Some(bytes)) => {
                shards.push((i, bytes));
                true
            }
            Ok(None) => {
                causes.push(format!("shard {i} missing on node {node}"));
                false
            }
            Err(err) => {
                causes.push(format!("shard {i} on node {node}: {err}"));
                false
            }
        }
    }
}
