//! The cluster control service's messages: heartbeats from nodes to the map authority
//! (with each node's scrub and repair figures), the cluster map (fetched and watched by
//! nodes and clients), cluster status, reports of shards owed to repair, and the
//! administrator's orders: mark a node out, set the repair rate, scrub now.
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
    /// Version 2 added the scheme (k, m) to owed shards. Version 3 added the storage
    /// classes and repair rate to the map, scrub and repair figures to heartbeats and
    /// status, and the orders `OP_NODE_OUT`, `OP_REPAIR_RATE` and `OP_SCRUB`.
    /// Version 4 added the chunk stream bytes to a store's figures. Version 5 added
    /// `OP_RESERVE`. Version 6 added the past placements to the map, and rebalance's
    /// figures to repair's; took the weight and domain out of heartbeats, put the
    /// failure-domain labels in the map, and added `OP_NODE_SET`, `OP_NODE_REMOVE` and
    /// the removed state. Version 7 added the shard copies rebalance has left to make
    /// to repair's figures, and `OP_NODE_IN` (a node that joins is out until then).
    const VERSION: u16 = 7;
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
/// Marks a node out: its placement slots move to other nodes and repair rebuilds its
/// shards there. Message: [`NodeOrder`]; answer: [`HeartbeatAck`] (the new epoch).
/// Administrators only, to the authority only.
pub const OP_NODE_OUT: u16 = 5;
/// Sets the rate every node's repair may write at. Message: [`RepairRate`]; answer:
/// [`HeartbeatAck`] (the new epoch). Administrators only, to the authority only.
pub const OP_REPAIR_RATE: u16 = 6;
/// Starts a scrub pass over every store of the node asked, now. Message:
/// [`ScrubOrder`]; answer: [`ScrubTicket`]. Administrators only, any node.
pub const OP_SCRUB: u16 = 7;
/// The room a node keeps for reservations (fallocate): a shard put not drawing on a
/// reservation is refused (`code::FULL`) once it would leave the node less free space
/// than this. Message: [`Reserve`]; answer: none. Nodes only (the metadata node sends
/// it, to every node).
pub const OP_RESERVE: u16 = 8;
/// Sets a node's placement weight or failure domain: the only way either changes (a
/// heartbeat carries liveness and address only). Message: [`NodeSet`]; answer:
/// [`HeartbeatAck`] (the new epoch). Administrators only, to the authority only.
pub const OP_NODE_SET: u16 = 9;
/// Removes a node from the cluster for good: refused while it is in placement or still
/// holds shards, unless forced for a node that is not heard from. Message:
/// [`NodeRemove`]; answer: [`HeartbeatAck`] (the new epoch). Administrators only, to
/// the authority only.
pub const OP_NODE_REMOVE: u16 = 10;
/// Puts a node that is out (a node that joined is out until then, and one an
/// administrator marked out stays out) into placement: its slots of every group are
/// taken from others, and rebalance moves their shards to it. Refused for a node not
/// heard from or removed. Message: [`NodeOrder`]; answer: [`HeartbeatAck`] (the new
/// epoch). Administrators only, to the authority only.
pub const OP_NODE_IN: u16 = 11;

/// An administrator removes a node.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRemove {
    /// The node.
    pub node: u64,
    /// Remove it although it is in placement or holds shards (a dead node: repair
    /// rebuilds its shards from the others).
    pub force: bool,
}

/// An administrator's change to a node's placement.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeSet {
    /// The node.
    pub node: u64,
    /// Its new weight, if it changes.
    pub weight: Option<u32>,
    /// Its new failure-domain labels, if they change.
    pub labels: Option<String>,
}

/// The room a node keeps for reservations, in bytes of shards, across its stores.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    /// Bytes.
    pub bytes: u64,
}

/// Node states as they travel: see `NodeState` in the codec.
pub mod state {
    /// Serving.
    pub const UP: u8 = 0;
    /// Missed its heartbeats; keeps its placement slots.
    pub const DOWN: u8 = 1;
    /// Out of placement; its slots moved to others (it may still run, and keep
    /// shards rebalance has not moved yet).
    pub const OUT: u8 = 2;
    /// Removed by an administrator: out of placement for good, never asked again, its
    /// heartbeats refused. The map keeps it as a tombstone (placement's history).
    pub const REMOVED: u8 = 3;
    /// Out of placement and not heard from: not asked for shards until it heartbeats
    /// again (then it is out).
    pub const LOST: u8 = 4;
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
    /// Bytes of chunk streams the shards hold (after compression, before parity).
    pub stream: u64,
}

/// A storage class: k data + m parity shards per chunk.
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub struct Class {
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
}

/// A node's scrub: every stored shard read and verified in the background.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrubFigures {
    /// Passes finished over all of the node's stores since it started.
    pub passes: u64,
    /// Bytes verified in the pass under way (0 between passes).
    pub pass_done: u64,
    /// Bytes the pass under way covers.
    pub pass_total: u64,
    /// Bytes verified since the node started.
    pub bytes: u64,
    /// Damaged shards found (and dropped, for repair to rebuild) since it started.
    pub damaged: u64,
    /// The rate the pass under way reads at, bytes per second (0: no limit).
    pub rate: u64,
    /// The ticket of the last ordered pass every store finished (see [`ScrubTicket`]).
    pub ordered: u64,
    /// How long the last finished pass took, in microseconds (the slowest store's).
    pub pass_micros: u64,
}

/// The answer to a scrub order: the pass is done once the node's
/// [`ScrubFigures::ordered`] reaches this ticket.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubTicket {
    /// The order's number on that node since it started.
    pub ticket: u64,
}

/// How many of a class's chunks have `healthy` intact shards on their holders, as the
/// node's last census of the placement groups it is primary for found them.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCount {
    /// The class.
    pub class: Class,
    /// Intact shards on their holders: k + m is whole, below k unreadable.
    pub healthy: u8,
    /// Chunks.
    pub chunks: u64,
}

/// A node's part in finding and rebuilding missing shards.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct RepairFigures {
    /// Placement groups (per class) this node is primary for.
    pub groups: u64,
    /// Of those, censused in the round under way.
    pub censused: u64,
    /// Census rounds finished.
    pub rounds: u64,
    /// Chunks by healthy shard count, from the last census of each group.
    pub health: Vec<HealthCount>,
    /// Chunks found short of shards and not yet rebuilt.
    pub queued: u64,
    /// Shard bytes those still need.
    pub queued_bytes: u64,
    /// Shards rebuilt since the node started.
    pub shards_rebuilt: u64,
    /// Bytes of shards rebuilt since the node started.
    pub bytes_rebuilt: u64,
    /// Chunks found with fewer than k intact shards (unreadable) in the last round.
    pub unreadable: u64,
    /// Rebuilds that failed (and will be tried again next round).
    pub failed: u64,
    /// Shards copied from a past placement's holder to their holder since the node
    /// started (rebalance).
    pub shards_moved: u64,
    /// Bytes of those.
    pub bytes_moved: u64,
    /// Shards deleted from past holders once every holder the map names had its own.
    pub copies_dropped: u64,
    /// Shard copies from past holders the round under way planned and has not made
    /// yet (rebalance's work left, as far as the round's census has looked).
    pub moves_queued: u64,
    /// Their bytes, estimated (chunks average 1 MiB).
    pub moves_queued_bytes: u64,
    /// The map epoch of this node's last census round that found every group it is
    /// primary for whole on its current holders and nothing left on past holders (0:
    /// none yet). The map authority forgets past placements once every node is settled
    /// past them.
    pub settled_epoch: u64,
}

/// What a node says of its health in a heartbeat.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeHealth {
    /// The storage classes of the shards it holds.
    pub classes: Vec<Class>,
    /// Its scrub.
    pub scrub: ScrubFigures,
    /// Its census and repair.
    pub repair: RepairFigures,
}

/// One node's heartbeat.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// Where the node serves shards, as `ip:port`.
    pub addr: String,
    /// Its store.
    pub store: StoreFigures,
    /// Its scrub and repair.
    pub health: NodeHealth,
}

/// An order about one node: out of placement (`OP_NODE_OUT`) or in (`OP_NODE_IN`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeOrder {
    /// The node.
    pub node: u64,
}

/// Sets the repair rate.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairRate {
    /// Bytes of rebuilt shards each node may write per second (0: no limit).
    pub bytes_per_second: u64,
}

/// Starts a scrub pass.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubOrder {
    /// Bytes per second the pass may read (0: no limit).
    pub bytes_per_second: u64,
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
    /// Its failure-domain labels (`hive_codec::domain`), of which `domain` is the hash.
    pub labels: String,
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
    /// The storage classes shards are stored in (the census visits each).
    pub classes: Vec<Class>,
    /// Bytes of rebuilt shards each node's repair may write per second (0: no limit).
    pub repair_rate: u64,
    /// Earlier placements whose shards rebalance may not have moved yet, newest first.
    pub history: Vec<PastMap>,
}

/// A placement the map had before: shards stored under it stay where it put them until
/// rebalance moves them, so reads that miss ask its holders too.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PastMap {
    /// The epoch it was made in.
    pub epoch: u64,
    /// 2^pg_bits placement groups.
    pub pg_bits: u8,
    /// Its nodes (addresses empty: the current map has them).
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
    /// Its scrub and repair as of its last heartbeat.
    pub health: NodeHealth,
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

    /// Tells the node the room it keeps for reservations (nodes only).
    pub async fn reserve(&self, bytes: u64) -> Result<(), RpcError> {
        self.call(OP_RESERVE, encode(&Reserve { bytes }), CONTROL_DEADLINE)
            .await
            .map(|_| ())
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

    /// Marks `node` out (administrators); answers the new epoch.
    pub async fn node_out(&self, node: NodeId) -> Result<u64, RpcError> {
        let answer = self
            .call(
                OP_NODE_OUT,
                encode(&NodeOrder { node: node.0 }),
                CONTROL_DEADLINE,
            )
            .await?;
        Self::decode::<HeartbeatAck>("HeartbeatAck", &answer).map(|a| a.epoch)
    }

    /// Puts `node` into placement (administrators); answers the new epoch.
    pub async fn node_in(&self, node: NodeId) -> Result<u64, RpcError> {
        let answer = self
            .call(
                OP_NODE_IN,
                encode(&NodeOrder { node: node.0 }),
                CONTROL_DEADLINE,
            )
            .await?;
        Self::decode::<HeartbeatAck>("HeartbeatAck", &answer).map(|a| a.epoch)
    }

    /// Sets `node`'s weight or failure domain (administrators); answers the new epoch.
    pub async fn set_node(&self, order: &NodeSet) -> Result<u64, RpcError> {
        let answer = self
            .call(OP_NODE_SET, encode(order), CONTROL_DEADLINE)
            .await?;
        Self::decode::<HeartbeatAck>("HeartbeatAck", &answer).map(|a| a.epoch)
    }

    /// Removes `node` for good (administrators); answers the new epoch.
    pub async fn remove_node(&self, node: NodeId, force: bool) -> Result<u64, RpcError> {
        let order = NodeRemove {
            node: node.0,
            force,
        };
        let answer = self
            .call(OP_NODE_REMOVE, encode(&order), CONTROL_DEADLINE)
            .await?;
        Self::decode::<HeartbeatAck>("HeartbeatAck", &answer).map(|a| a.epoch)
    }

    /// Sets every node's repair rate (administrators); answers the new epoch.
    pub async fn set_repair_rate(&self, bytes_per_second: u64) -> Result<u64, RpcError> {
        let order = RepairRate { bytes_per_second };
        let answer = self
            .call(OP_REPAIR_RATE, encode(&order), CONTROL_DEADLINE)
            .await?;
        Self::decode::<HeartbeatAck>("HeartbeatAck", &answer).map(|a| a.epoch)
    }

    /// Starts a scrub pass on this node now (administrators); its ticket.
    pub async fn scrub(&self, bytes_per_second: u64) -> Result<u64, RpcError> {
        let order = ScrubOrder { bytes_per_second };
        let answer = self
            .call(OP_SCRUB, encode(&order), CONTROL_DEADLINE)
            .await?;
        Self::decode::<ScrubTicket>("ScrubTicket", &answer).map(|t| t.ticket)
    }
}
