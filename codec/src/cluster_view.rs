//! A cluster map together with where its nodes listen: what a client or a node needs
//! to reach the holders of a chunk. With feature `net`, converted to and from the
//! control service's [`MapMessage`](hive_wire::net::control::MapMessage).

use std::collections::HashMap;
use std::net::SocketAddr;

use hive_wire::{NodeId, PgId};

use crate::config::ErasureScheme;
use crate::constants::MAX_PLACEMENT_HISTORY;
use crate::placement::{ClusterMap, NodeState, PlacementError};

/// A map, its nodes' addresses, and the settings that travel with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    /// The map.
    pub map: ClusterMap,
    /// Where each node serves shards.
    pub addresses: HashMap<NodeId, SocketAddr>,
    /// Each node's failure-domain labels ([`crate::domain`]); the map's domains are
    /// their hashes. Nodes without any have none recorded.
    pub labels: HashMap<NodeId, String>,
    /// The storage classes shards are stored in, sorted, each once.
    pub classes: Vec<ErasureScheme>,
    /// Bytes of rebuilt shards each node's repair may write per second (0: no limit).
    pub repair_rate: u64,
    /// Earlier placements whose shards rebalance may not have moved yet, newest first,
    /// at most [`MAX_PLACEMENT_HISTORY`]; each placed differently from the one after it.
    pub history: Vec<ClusterMap>,
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
            labels: HashMap::new(),
            classes: Vec::new(),
            repair_rate: DEFAULT_REPAIR_RATE,
            history: Vec::new(),
        }
    }

    /// Replaces the map with `next`. If `next` places shards differently and the old map
    /// could place the narrowest storage class, the old map joins the history (shards
    /// stored under it stay where it put them until rebalance moves them); whether it
    /// did. Each placement is kept once, and none equal to the current one. Past
    /// [`MAX_PLACEMENT_HISTORY`] the oldest entry is dropped.
    pub fn advance(&mut self, next: ClusterMap) -> bool {
        let old = std::mem::replace(&mut self.map, next);
        let placed_any = self
            .classes
            .iter()
            .map(ErasureScheme::width)
            .min()
            .is_some_and(|width| old.place(PgId(0), width).is_ok());
        if old.same_placement(&self.map) || !placed_any {
            return false;
        }
        // A placement met again (a weight set and set back) is kept once, where it
        // was last in force; the current one needs no entry at all.
        let current = &self.map;
        self.history
            .retain(|past| !past.same_placement(&old) && !past.same_placement(current));
        self.history.insert(0, old);
        self.history.truncate(MAX_PLACEMENT_HISTORY);
        true
    }

    /// Where each shard of group `pg` may be, by shard index: the current holder first,
    /// then the holder of that index under each past placement, newest first, each node
    /// once per index. A past placement that cannot place `width` shards adds nothing.
    pub fn shard_homes(&self, pg: PgId, width: usize) -> Result<Vec<Vec<NodeId>>, PlacementError> {
        let mut homes: Vec<Vec<NodeId>> = self
            .map
            .place(pg, width)?
            .into_iter()
            .map(|node| vec![node])
            .collect();
        for past in &self.history {
            let Ok(holders) = past.place(pg, width) else {
                continue;
            };
            for (slot, node) in homes.iter_mut().zip(holders) {
                if !slot.contains(&node) {
                    slot.push(node);
                }
            }
        }
        Ok(homes)
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

    /// Whether `node` may answer for shards it keeps: it is up, or out (taken out of
    /// placement, still heartbeating, with shards rebalance may not have moved yet).
    /// Down, lost, removed and unknown nodes are not asked.
    pub fn may_answer(&self, node: NodeId) -> bool {
        self.map
            .node(node)
            .is_some_and(|n| matches!(n.state, NodeState::Up | NodeState::Out))
    }

    /// Whether `node` is marked out.
    pub fn is_out(&self, node: NodeId) -> bool {
        self.map
            .node(node)
            .is_some_and(|n| n.state == NodeState::Out)
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

    use hive_wire::net::control::{Class, MapMessage, MapNode, PastMap, state};
    use hive_wire::{Epoch, FailureDomain, NodeId};

    use super::ClusterView;
    use crate::config::ErasureScheme;
    use crate::constants::MAX_PLACEMENT_HISTORY;
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
        /// More past placements than a map keeps.
        #[error("{0} past placements; a map keeps at most {MAX_PLACEMENT_HISTORY}")]
        History(usize),
    }

    fn state_code(state: NodeState) -> u8 {
        match state {
            NodeState::Up => state::UP,
            NodeState::Down => state::DOWN,
            NodeState::Out => state::OUT,
            NodeState::Removed => state::REMOVED,
            NodeState::Lost => state::LOST,
        }
    }

    /// A node of a map message, as placement sees it.
    fn node_info(n: &MapNode) -> Result<NodeInfo, ViewError> {
        let id = NodeId(n.id);
        let state = match n.state {
            state::UP => NodeState::Up,
            state::DOWN => NodeState::Down,
            state::OUT => NodeState::Out,
            state::REMOVED => NodeState::Removed,
            state::LOST => NodeState::Lost,
            other => {
                return Err(ViewError::State {
                    node: id,
                    state: other,
                });
            }
        };
        Ok(NodeInfo {
            id,
            domain: FailureDomain(n.domain),
            weight: n.weight,
            state,
            joined: Epoch(n.joined),
        })
    }

    /// A node as a map message carries it (`addr` and `labels` empty where they are
    /// not known).
    fn map_node(n: &NodeInfo, addr: String, labels: String) -> MapNode {
        MapNode {
            id: n.id.0,
            domain: n.domain.0,
            weight: n.weight,
            state: state_code(n.state),
            joined: n.joined.0,
            addr,
            labels,
        }
    }

    impl ClusterView {
        /// Reads a map message (untrusted bytes already decoded).
        pub fn from_message(message: &MapMessage) -> Result<Self, ViewError> {
            let mut nodes = Vec::with_capacity(message.nodes.len());
            let mut addresses = HashMap::with_capacity(message.nodes.len());
            let mut labels = HashMap::new();
            for n in &message.nodes {
                let info = node_info(n)?;
                let addr = n.addr.parse().map_err(|_| ViewError::Address {
                    node: info.id,
                    addr: n.addr.clone(),
                })?;
                addresses.insert(info.id, addr);
                if !n.labels.is_empty() {
                    labels.insert(info.id, n.labels.clone());
                }
                nodes.push(info);
            }
            let map = ClusterMap::new(Epoch(message.epoch), message.pg_bits, nodes)?;
            if message.history.len() > MAX_PLACEMENT_HISTORY {
                return Err(ViewError::History(message.history.len()));
            }
            let history = message
                .history
                .iter()
                .map(|past| {
                    let nodes = past.nodes.iter().map(node_info).collect::<Result<_, _>>()?;
                    Ok(ClusterMap::new(Epoch(past.epoch), past.pg_bits, nodes)?)
                })
                .collect::<Result<Vec<_>, ViewError>>()?;
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
                labels,
                classes,
                repair_rate: message.repair_rate,
                history,
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
                    .map(|n| {
                        let addr = self.addresses.get(&n.id).map(ToString::to_string);
                        let labels = self.labels.get(&n.id).cloned();
                        map_node(n, addr.unwrap_or_default(), labels.unwrap_or_default())
                    })
                    .collect(),
                classes: self
                    .classes
                    .iter()
                    .map(|c| Class { k: c.k(), m: c.m() })
                    .collect(),
                repair_rate: self.repair_rate,
                history: self
                    .history
                    .iter()
                    .map(|past| PastMap {
                        epoch: past.epoch().0,
                        pg_bits: past.pg_bits(),
                        nodes: past
                            .nodes()
                            .iter()
                            .map(|n| map_node(n, String::new(), String::new()))
                            .collect(),
                    })
                    .collect(),
            }
        }
    }
}

#[cfg(feature = "net")]
pub use message::ViewError;
