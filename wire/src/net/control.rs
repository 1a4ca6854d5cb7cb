//! The cluster control service's messages: heartbeats from nodes to the map authority,
//! the cluster map (fetched and watched by nodes and clients), cluster status, and
//! reports of shards owed to repair.
//!
//! Node ids never travel in these messages where the caller's certificate already says
//! who it is: a heartbeat is from the node its certificate names.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rkyv::{Archive, Deserialize, Serialize};

use super::message::{MessageSet, encode};
use super::pki::Identity;
use super::rpc::{Client, Link, RpcError};
use crate::NodeId;

/// The control message set.
pub struct Control;

impl MessageSet for Control {
    const PROTOCOL: u16 = 3;
    /// Version 2 added the scheme (k, m) to owed shards.
    const VERSION: u16 = 2;
    const NAME: &'static str = "cluster control";
}

/// A node says it is alive. Message: [`Heartbeat`]; answer: [`HeartbeatAck`]. Nodes
/// only, to the map authority only.
pub const OP_HEARTBEAT: u16 = 1;
/// The current cluster map, or a newer one than the caller knows (a watch). Message:
/// [`MapQuery`]; answer: [`MapMessage`]. Every node answers it: the authority with its
/// map, the others with the latest map they followed.
pub const OP_MAP: u16 = 2;
/// The cluster's status. Message: none; answer: [`StatusMessage`]. Authority only.
pub const OP_STATUS: u16 = 3;
/// Shards a writer could not store after their chunk was acknowledged. Message:
/// [`OwedReport`]; answer: none. Authority only.
pub const OP_OWED: u16 = 4;

/// Node states as they travel: see `NodeState` in the codec.
pub mod state {
    /// Serving.
    pub const UP: u8 = 0;
    /// Missed its heartbeats; keeps its placement slots.
    pub const DOWN: u8 = 1;
    /// Removed; its slots moved to others.
    pub const OUT: u8 = 2;
}

/// A store's space figures, in bytes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreFigures {
    /// Bytes the store can hold.
    pub capacity: u64,
    /// Bytes written (live, garbage and headers).
    pub used: u64,
    /// Bytes of shards stored (what the index points at).
    pub live: u64,
    /// Shards stored.
    pub shards: u64,
}

/// One node's heartbeat.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// Where the node serves shards, as `ip:port`.
    pub addr: String,
    /// Its failure domain.
    pub domain: u32,
    /// Its placement weight.
    pub weight: u32,
    /// Its store.
    pub store: StoreFigures,
}

/// The authority's answer to a heartbeat.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatAck {
    /// The current map epoch.
    pub epoch: u64,
}

/// Asks for the map.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapQuery {
    /// The epoch the caller has (0: none). The answer comes once the map is newer, or
    /// after `wait_ms` with the current map.
    pub known_epoch: u64,
    /// How long the authority may hold the question, in milliseconds (0: answer now).
    pub wait_ms: u32,
}

/// One node of the map.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MapNode {
    /// Node id.
    pub id: u64,
    /// Failure domain.
    pub domain: u32,
    /// Placement weight.
    pub weight: u32,
    /// One of [`state`].
    pub state: u8,
    /// The epoch it joined.
    pub joined: u64,
    /// Where it serves shards, as `ip:port`.
    pub addr: String,
}

/// The cluster map.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MapMessage {
    /// The map's epoch; every change makes a new, larger one.
    pub epoch: u64,
    /// 2^pg_bits placement groups.
    pub pg_bits: u8,
    /// The nodes, in any order.
    pub nodes: Vec<MapNode>,
}

/// One node's status.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Node id.
    pub id: u64,
    /// Its store as of its last heartbeat.
    pub store: StoreFigures,
    /// Milliseconds since its last heartbeat; `u64::MAX` if none since the authority
    /// started.
    pub heartbeat_age_ms: u64,
}

/// The cluster's status.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    /// The map.
    pub map: MapMessage,
    /// Per node.
    pub nodes: Vec<NodeStatus>,
    /// Shards reported owed to repair since the authority started.
    pub shards_owed: u64,
}

/// One shard owed to repair.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwedShard {
    /// The chunk.
    pub chunk: [u8; 32],
    /// Data shards of the chunk's scheme.
    pub k: u8,
    /// Parity shards of the chunk's scheme.
    pub m: u8,
    /// The shard index.
    pub index: u8,
    /// The node that should hold it.
    pub node: u64,
}

/// Shards owed to repair.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OwedReport {
    /// The shards.
    pub shards: Vec<OwedShard>,
}

/// How long a watch may wait at the authority for a newer map before answering with the
/// current one (then the watcher asks again).
pub const MAP_WATCH_WAIT: Duration = Duration::from_secs(20);
/// Deadline of a control call that does not wait for a change.
pub const CONTROL_DEADLINE: Duration = Duration::from_secs(5);
/// A client of one node's control service (the map authority's, or another node's for
/// the map alone).
pub struct ControlClient {
    link: Link,
}

impl ControlClient {
    /// Talks to node `node` at `addr` through `client`.
    pub fn new(client: Arc<Client>, addr: SocketAddr, node: NodeId) -> Self {
        Self {
            link: Link::new(client, addr, Identity::node(node)),
        }
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.link.addr()
    }

    async fn call(&self, op: u16, message: Bytes, deadline: Duration) -> Result<Bytes, RpcError> {
        let request = super::message::request::<Control>(op, message, Bytes::new());
        Ok(self.link.call(request, deadline).await?.message)
    }

    fn decode<T>(what: &'static str, bytes: &[u8]) -> Result<T, RpcError>
    where
        T: Archive,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + Deserialize<T, rkyv::rancor::Strategy<rkyv::de::Pool, rkyv::rancor::Error>>,
    {
        super::message::decode(what, bytes).map_err(|e| RpcError::Connection(e.to_string()))
    }

    /// Sends a heartbeat (nodes only); answers the current epoch.
    pub async fn heartbeat(&self, beat: &Heartbeat) -> Result<HeartbeatAck, RpcError> {
        let answer = self
            .call(OP_HEARTBEAT, encode(beat), CONTROL_DEADLINE)
            .await?;
        Self::decode("HeartbeatAck", &answer)
    }

    /// The map, once it is newer than `known_epoch` or after `wait`.
    pub async fn map(&self, known_epoch: u64, wait: Duration) -> Result<MapMessage, RpcError> {
        let query = MapQuery {
            known_epoch,
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        };
        let answer = self
            .call(OP_MAP, encode(&query), wait + CONTROL_DEADLINE)
            .await?;
        Self::decode("MapMessage", &answer)
    }

    /// The cluster's status.
    pub async fn status(&self) -> Result<StatusMessage, RpcError> {
        let answer = self.call(OP_STATUS, Bytes::new(), CONTROL_DEADLINE).await?;
        Self::decode("StatusMessage", &answer)
    }

    /// Reports shards owed to repair.
    pub async fn report_owed(&self, shards: Vec<OwedShard>) -> Result<(), RpcError> {
        self.call(OP_OWED, encode(&OwedReport { shards }), CONTROL_DEADLINE)
            .await
            .map(|_| ())
    }
}
