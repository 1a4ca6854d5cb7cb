//! Membership as a pure state machine: heartbeats and clock ticks in, map epochs out.
//! The map authority's actor only feeds it and publishes what it returns.
//!
//! A node joins the map with its first heartbeat (state Up, joined at the new epoch),
//! is marked Down when it has been silent for longer than the timeout, and Up again when
//! it heartbeats. Every change of the map makes exactly one new epoch; epochs only grow.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hive_codec::{ClusterMap, ClusterView, NodeInfo, NodeState, PlacementError};
use hive_wire::net::control::StoreFigures;
use hive_wire::{Epoch, FailureDomain, NodeId};

/// What a node says of itself in a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// Where it serves shards.
    pub addr: SocketAddr,
    /// Its failure domain.
    pub domain: FailureDomain,
    /// Its placement weight.
    pub weight: u32,
    /// Its store.
    pub store: StoreFigures,
}

/// One node as membership tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Its store as of its last heartbeat.
    pub store: StoreFigures,
    /// How long ago it last heartbeat; `None` if not since this authority started.
    pub silent_for: Option<Duration>,
}

/// The map authority's membership state.
pub struct Membership {
    view: ClusterView,
    seen: HashMap<NodeId, Instant>,
    figures: HashMap<NodeId, StoreFigures>,
    timeout: Duration,
    started: Instant,
    marked_down: Vec<NodeId>,
}

impl Membership {
    /// Membership over `view` (a map loaded from disk, or an empty one) as of `now`.
    /// Nodes the map knows get one `timeout` from `now` to heartbeat before they are
    /// marked down.
    pub fn new(view: ClusterView, now: Instant, timeout: Duration) -> Self {
        Self {
            view,
            seen: HashMap::new(),
            figures: HashMap::new(),
            timeout,
            started: now,
            marked_down: Vec::new(),
        }
    }

    /// The current map and addresses.
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// Takes `node`'s heartbeat at `now`; the new epoch if the map changed (the node
    /// joined, came back, or moved address, domain or weight). An `Out` node stays out.
    pub fn on_heartbeat(
        &mut self,
        now: Instant,
        node: NodeId,
        beat: Beat,
    ) -> Result<Option<Epoch>, PlacementError> {
        self.seen.insert(node, now);
        self.figures.insert(node, beat.store);
        let next = Epoch(self.view.map.epoch().0 + 1);
        // The common case, a node that is up and unchanged, copies nothing.
        let updated = match self.view.map.node(node) {
            None => NodeInfo {
                id: node,
                domain: beat.domain,
                weight: beat.weight,
                state: NodeState::Up,
                joined: next,
            },
            Some(n) => {
                let state = match n.state {
                    NodeState::Down => NodeState::Up,
                    other => other,
                };
                let updated = NodeInfo {
                    state,
                    domain: beat.domain,
                    weight: beat.weight,
                    ..*n
                };
                if updated == *n && self.view.addresses.get(&node) == Some(&beat.addr) {
                    return Ok(None);
                }
                updated
            }
        };
        let mut nodes: Vec<NodeInfo> = self
            .view
            .map
            .nodes()
            .iter()
            .filter(|n| n.id != node)
            .copied()
            .collect();
        nodes.push(updated);
        self.view.addresses.insert(node, beat.addr);
        self.replace(next, nodes)?;
        Ok(Some(next))
    }

    /// Marks down every Up node silent for longer than the timeout at `now`; the new
    /// epoch if any was ([`Membership::marked_down`] then names them).
    pub fn on_tick(&mut self, now: Instant) -> Result<Option<Epoch>, PlacementError> {
        let silent = |n: &NodeInfo| {
            let last = self.seen.get(&n.id).copied().unwrap_or(self.started);
            n.state == NodeState::Up && now.saturating_duration_since(last) > self.timeout
        };
        let down: Vec<NodeId> = self
            .view
            .map
            .nodes()
            .iter()
            .filter(|n| silent(n))
            .map(|n| n.id)
            .collect();
        if down.is_empty() {
            return Ok(None);
        }
        let nodes = self
            .view
            .map
            .nodes()
            .iter()
            .map(|n| NodeInfo {
                state: if down.contains(&n.id) {
                    NodeState::Down
                } else {
                    n.state
                },
                ..*n
            })
            .collect();
        let next = Epoch(self.view.map.epoch().0 + 1);
        self.replace(next, nodes)?;
        self.marked_down = down;
        Ok(Some(next))
    }

    /// The nodes the last [`Membership::on_tick`] that changed the map marked down.
    pub fn marked_down(&self) -> &[NodeId] {
        &self.marked_down
    }

    fn replace(&mut self, epoch: Epoch, nodes: Vec<NodeInfo>) -> Result<(), PlacementError> {
        let map = ClusterMap::new(epoch, self.view.map.pg_bits(), nodes)?;
        assert!(
            map.epoch() > self.view.map.epoch(),
            "invariant: map epochs only grow"
        );
        self.view.map = map;
        Ok(())
    }

    /// Every node of the map with its last figures and silence, as of `now`.
    pub fn liveness(&self, now: Instant) -> Vec<(NodeId, Liveness)> {
        self.view
            .map
            .nodes()
            .iter()
            .map(|n| {
                (
                    n.id,
                    Liveness {
                        store: self.figures.get(&n.id).copied().unwrap_or_default(),
                        silent_for: self
                            .seen
                            .get(&n.id)
                            .map(|t| now.saturating_duration_since(*t)),
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(3);

    fn empty() -> ClusterView {
        ClusterView {
            map: ClusterMap::new(Epoch(0), 4, Vec::new()).expect("empty map"),
            addresses: HashMap::new(),
        }
    }

    fn beat(port: u16) -> Beat {
        Beat {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            domain: FailureDomain(u32::from(port)),
            weight: 1,
            store: StoreFigures::default(),
        }
    }

    fn state(m: &Membership, node: u64) -> NodeState {
        m.view().map.node(NodeId(node)).expect("in the map").state
    }

    #[test]
    fn first_heartbeat_joins_and_repeats_change_nothing() {
        let t0 = Instant::now();
        let mut m = Membership::new(empty(), t0, TIMEOUT);
        assert_eq!(m.on_heartbeat(t0, NodeId(1), beat(1)), Ok(Some(Epoch(1))));
        assert_eq!(m.on_heartbeat(t0, NodeId(2), beat(2)), Ok(Some(Epoch(2))));
        assert_eq!(m.on_heartbeat(t0, NodeId(1), beat(1)), Ok(None));
        assert_eq!(
            m.view().map.node(NodeId(2)).map(|n| n.joined),
            Some(Epoch(2))
        );
        assert_eq!(
            m.view().addresses.get(&NodeId(2)),
            Some(&SocketAddr::from(([127, 0, 0, 1], 2)))
        );
    }

    #[test]
    fn silence_past_the_timeout_marks_down_and_a_heartbeat_brings_back() {
        let t0 = Instant::now();
        let mut m = Membership::new(empty(), t0, TIMEOUT);
        m.on_heartbeat(t0, NodeId(1), beat(1)).expect("joins");
        m.on_heartbeat(t0, NodeId(2), beat(2)).expect("joins");
        let later = t0 + TIMEOUT;
        m.on_heartbeat(later, NodeId(2), beat(2)).expect("beats");
        // Exactly at the timeout nothing happens; just past it node 1 is down.
        assert_eq!(m.on_tick(later), Ok(None));
        let past = later + Duration::from_millis(1);
        assert_eq!(m.on_tick(past), Ok(Some(Epoch(3))));
        assert_eq!(state(&m, 1), NodeState::Down);
        assert_eq!(state(&m, 2), NodeState::Up);
        // Down stays down without a new epoch per tick.
        assert_eq!(m.on_tick(past + TIMEOUT), Ok(Some(Epoch(4))));
        assert_eq!(state(&m, 2), NodeState::Down);
        assert_eq!(m.on_tick(past + TIMEOUT * 2), Ok(None));
        assert_eq!(
            m.on_heartbeat(past + TIMEOUT * 2, NodeId(1), beat(1)),
            Ok(Some(Epoch(5)))
        );
        assert_eq!(state(&m, 1), NodeState::Up);
    }

    #[test]
    fn a_loaded_map_gives_its_nodes_one_timeout_to_heartbeat() {
        let t0 = Instant::now();
        let mut m = Membership::new(empty(), t0, TIMEOUT);
        m.on_heartbeat(t0, NodeId(7), beat(7)).expect("joins");
        let restarted = t0 + Duration::from_secs(3600);
        let mut m = Membership::new(m.view().clone(), restarted, TIMEOUT);
        assert_eq!(m.on_tick(restarted + TIMEOUT), Ok(None));
        assert_eq!(m.liveness(restarted)[0].1.silent_for, None);
        assert_eq!(
            m.on_tick(restarted + TIMEOUT + Duration::from_millis(1)),
            Ok(Some(Epoch(2)))
        );
    }

    #[test]
    fn a_moved_node_makes_a_new_epoch_and_an_out_node_stays_out() {
        let t0 = Instant::now();
        let mut m = Membership::new(empty(), t0, TIMEOUT);
        m.on_heartbeat(t0, NodeId(1), beat(1)).expect("joins");
        let mut moved = beat(1);
        moved.addr = SocketAddr::from(([127, 0, 0, 2], 1));
        assert_eq!(m.on_heartbeat(t0, NodeId(1), moved), Ok(Some(Epoch(2))));
        let mut nodes = m.view().map.nodes().to_vec();
        nodes[0].state = NodeState::Out;
        let view = ClusterView {
            map: ClusterMap::new(Epoch(3), 4, nodes).expect("map"),
            addresses: m.view().addresses.clone(),
        };
        let mut m = Membership::new(view, t0, TIMEOUT);
        assert_eq!(m.on_heartbeat(t0, NodeId(1), moved), Ok(None));
        assert_eq!(state(&m, 1), NodeState::Out);
    }
}
