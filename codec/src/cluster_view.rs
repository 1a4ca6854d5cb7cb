//! A cluster map together with where its nodes listen: what a client or a node needs
//! to reach the holders of a chunk. With feature `net`, converted to and from the
//! control service's [`MapMessage`](hive_wire::net::control::MapMessage).

use std::collections::HashMap;
use std::net::SocketAddr;

use hive_wire::NodeId;

use crate::config::ErasureScheme;
use crate::placement::{ClusterMap, NodeState};

/// A map, its nodes' addresses, and the settings that travel with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    /// The map.
    pub map: ClusterMap,
    /// Where each node serves shards.
    pub addresses: HashMap<NodeId, SocketAddr>,
    /// The storage classes shards are stored in, sorted, each once.
    pub classes: Vec<ErasureScheme>,
    /// Bytes of rebuilt shards each node's repair may write per second (0: no limit).
    pub repair_rate: u64,
}

/// The repair rate of a new map: 64 MiB/s per node, enough to rebuild a lost 1 TB node
/// across ten survivors in under half an hour without starving foreground I/O.
pub const DEFAULT_REPAIR_RATE: u64 = 64 << 20;

impl ClusterView {
    /// A view of `map` with `addresses`, no storage classes yet and the default repair
    /// rate.
    pub fn new(map: ClusterMap, addresses: HashMap<NodeId, SocketAddr>) -> Self {
        Self {
            map,
            addresses,
            classes: Vec::new(),
            repair_rate: DEFAULT_REPAIR_RATE,
        }
    }

    /// Nodes up in this view that were not up in `older`, or that moved: a node that
    /// came back is a new process, and a connection to its old one is dead (QUIC would
    /// only notice at its idle timeout), so callers connect afresh.
    pub fn returned_since(&self, older: &ClusterView) -> Vec<NodeId> {
        self.map
            .nodes()
            .iter()
            .filter(|n| n.state == NodeState::Up)
            .filter(|n| {
                !older.is_up(n.id) || older.addresses.get(&n.id) != self.addresses.get(&n.id)
            })
            .map(|n| n.id)
            .collect()
    }

    /// Whether `node` is marked up (a node the map does not know is not).
    pub fn is_up(&self, node: NodeId) -> bool {
        self.map
            .node(node)
            .is_some_and(|n| n.state == NodeState::Up)
    }
}

#[cfg(feature = "net")]
mod message {
    use std::collections::HashMap;

    use hive_wire::net::control::{Class, MapMessage, MapNode, state};
    use hive_wire::{Epoch, FailureDomain, NodeId};

    use super::ClusterView;
    use crate::config::ErasureScheme;
    use crate::error::CodecError;
    use crate::placement::{ClusterMap, NodeInfo, NodeState, PlacementError};

    /// Why a map message could not be taken.
    #[derive(Debug, thiserror::Error)]
    pub enum ViewError {
        /// A node's state byte is unknown.
        #[error("node {node}: unknown state {state}")]
        State {
            /// The node.
            node: NodeId,
            /// The byte.
            state: u8,
        },
        /// A node's address does not parse.
        #[error("node {node}: address {addr:?} is not ip:port")]
        Address {
            /// The node.
            node: NodeId,
            /// The text.
            addr: String,
        },
        /// The map is not valid.
        #[error(transparent)]
        Placement(#[from] PlacementError),
        /// A storage class is not a valid scheme.
        #[error("storage class: {0}")]
        Class(#[from] CodecError),
    }

    fn state_code(state: NodeState) -> u8 {
        match state {
            NodeState::Up => state::UP,
            NodeState::Down => state::DOWN,
            NodeState::Out => state::OUT,
        }
    }

    impl ClusterView {
        /// Reads a map message (untrusted bytes already decoded).
        pub fn from_message(message: &MapMessage) -> Result<Self, ViewError> {
            let mut nodes = Vec::with_capacity(message.nodes.len());
            let mut addresses = HashMap::with_capacity(message.nodes.len());
            for n in &message.nodes {
                let id = NodeId(n.id);
                let state = match n.state {
                    state::UP => NodeState::Up,
                    state::DOWN => NodeState::Down,
                    state::OUT => NodeState::Out,
                    other => {
                        return Err(ViewError::State {
                            node: id,
                            state: other,
                        });
                    }
                };
                let addr = n.addr.parse().map_err(|_| ViewError::Address {
                    node: id,
                    addr: n.addr.clone(),
                })?;
                addresses.insert(id, addr);
                nodes.push(NodeInfo {
                    id,
                    domain: FailureDomain(n.domain),
                    weight: n.weight,
                    state,
                    joined: Epoch(n.joined),
                });
            }
            let map = ClusterMap::new(Epoch(message.epoch), message.pg_bits, nodes)?;
            let mut classes = message
                .classes
                .iter()
                .map(|c| ErasureScheme::new(c.k, c.m))
                .collect::<Result<Vec<_>, _>>()?;
            classes.sort_unstable_by_key(|c| (c.k(), c.m()));
            classes.dedup();
            Ok(Self {
                map,
                addresses,
                classes,
                repair_rate: message.repair_rate,
            })
        }

        /// The map as a message.
        pub fn to_message(&self) -> MapMessage {
            MapMessage {
                epoch: self.map.epoch().0,
                pg_bits: self.map.pg_bits(),
                nodes: self
                    .map
                    .nodes()
                    .iter()
                    .map(|n| MapNode {
                        id: n.id.0,
                        domain: n.domain.0,
                        weight: n.weight,
                        state: state_code(n.state),
                        joined: n.joined.0,
                        addr: self
                            .addresses
                            .get(&n.id)
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                    })
                    .collect(),
                classes: self
                    .classes
                    .iter()
                    .map(|c| Class { k: c.k(), m: c.m() })
                    .collect(),
                repair_rate: self.repair_rate,
            }
        }
    }
}

#[cfg(feature = "net")]
pub use message::ViewError;
