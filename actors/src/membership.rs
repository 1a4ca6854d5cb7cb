//! Membership as a pure state machine: heartbeats and clock ticks in, map epochs out.
//! The map authority's actor only feeds it and publishes what it returns.
//!
//! A node joins the map with its first heartbeat (state Up, joined at the new epoch),
//! is marked Down when it has been silent for longer than the timeout, Up again when
//! it heartbeats, and Out when it has been silent for longer than the out grace (if
//! one is set) or when an administrator says so. An Out node stays out: its placement
//! slots move to other nodes and repair rebuilds its shards there. A storage class a
//! node reports holding joins the map's classes (the census visits each), and an
//! administrator sets the repair rate. Every change of the map makes exactly one new
//! epoch; epochs only grow.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hive_codec::constants::{MAX_PLACEMENT_HISTORY, MAX_WEIGHT};
use hive_codec::domain::{LabelError, domain_of, host_labels};
use hive_codec::{ClusterMap, ClusterView, ErasureScheme, NodeInfo, NodeState, PlacementError};
use hive_wire::net::control::{NodeHealth, StoreFigures};
use hive_wire::{Epoch, NodeId};

/// What a node says of itself in a heartbeat: liveness, where it is, and its figures.
/// Never its weight or failure domain: only an administrator sets those
/// ([`Membership::set_node`]), so a misconfigured or compromised node cannot move
/// placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// Where it serves shards.
    pub addr: SocketAddr,
    /// Its store.
    pub store: StoreFigures,
    /// Its scrub and repair, and the classes it holds shards of.
    pub health: NodeHealth,
}

/// One node as membership tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    /// Its store as of its last heartbeat.
    pub store: StoreFigures,
    /// Its scrub and repair as of its last heartbeat.
    pub health: NodeHealth,
    /// How long ago it last heartbeat; `None` if not since this authority started.
    pub silent_for: Option<Duration>,
}

/// Why an administrator's change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The node is not in the map.
    #[error("node {0} is not in the cluster map")]
    UnknownNode(NodeId),
    /// Too few nodes would be left for a storage class.
    #[error(
        "{doing} would leave {left} nodes in placement, and storage class {k}+{m} puts each chunk's {width} shards on {width} different nodes; add a node first"
    )]
    TooFewNodes {
        /// What was asked, like "marking node 5 out".
        doing: String,
        /// The node.
        node: NodeId,
        /// Nodes that would be left.
        left: usize,
        /// The class's k.
        k: u8,
        /// The class's m.
        m: u8,
        /// k + m.
        width: usize,
    },
    /// A removal refused.
    #[error("node {node} is not removed: {why}")]
    Remove {
        /// The node.
        node: NodeId,
        /// Why not.
        why: RemoveRefusal,
    },
    /// A node put in that cannot be.
    #[error("node {node} is not put in: it is {why}")]
    In {
        /// The node.
        node: NodeId,
        /// Its state, in words.
        why: &'static str,
    },
    /// A weight past the maximum.
    #[error("weight {0} is more than the largest allowed, {MAX_WEIGHT}")]
    Weight(u32),
    /// Failure-domain labels that do not parse.
    #[error("--domain: {0}")]
    Labels(#[from] LabelError),
    /// The map could not be made.
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

/// Why a node cannot be removed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RemoveRefusal {
    /// It still holds placement slots.
    #[error(
        "it is in placement; drain it first with 'hive node out' (its shards are copied off while it serves reads; 'hive rebalance --wait' says when), or give --force for a dead node"
    )]
    InPlacement,
    /// It has not heartbeat lately, so what it holds is unknown.
    #[error(
        "it has not been heard from, so whether it still holds shards is unknown; give --force to remove it anyway (repair rebuilds what only it held)"
    )]
    NotHeard,
    /// It still holds shards.
    #[error("it still holds {0} shards; 'hive rebalance --wait' waits until they have moved")]
    Holds(u64),
    /// Forced, but it runs.
    #[error(
        "it is running, and --force is for a dead node; drain it with 'hive node out', then remove it"
    )]
    Running,
}

/// The weight a node joins with.
pub const DEFAULT_WEIGHT: u32 = 1;

/// The map authority's membership state.
pub struct Membership {
    view: ClusterView,
    seen: HashMap<NodeId, Instant>,
    figures: HashMap<NodeId, (StoreFigures, NodeHealth)>,
    timeout: Duration,
    out_after: Option<Duration>,
    started: Instant,
    marked_down: Vec<NodeId>,
    marked_out: Vec<NodeId>,
    /// The epoch the current placement began in (as far as this authority knows: the
    /// loaded map's epoch after a restart). Past placements are forgotten once every
    /// node reports a settled census at or past it.
    placed_since: Epoch,
}

impl Membership {
    /// Membership over `view` (a map loaded from disk, or an empty one) as of `now`.
    /// Nodes the map knows get one `timeout` from `now` to heartbeat before they are
    /// marked down.
    pub fn new(view: ClusterView, now: Instant, timeout: Duration) -> Self {
        Self {
            placed_since: view.map.epoch(),
            view,
            seen: HashMap::new(),
            figures: HashMap::new(),
            timeout,
            out_after: None,
            started: now,
            marked_down: Vec::new(),
            marked_out: Vec::new(),
        }
    }

    /// Marks a node out once it has been silent for `grace` (a node down that long is
    /// not coming back soon; its shards are rebuilt elsewhere).
    pub fn with_out_after(mut self, grace: Option<Duration>) -> Self {
        self.out_after = grace;
        self
    }

    /// The current map and addresses.
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// Takes `node`'s heartbeat at `now`; the new epoch if the map changed (the node
    /// joined, came back, or moved address, domain or weight; or every node has now
    /// settled the current placement, and the past ones are forgotten). An `Out` node
    /// stays out.
    pub fn on_heartbeat(
        &mut self,
        now: Instant,
        node: NodeId,
        beat: Beat,
    ) -> Result<Option<Epoch>, PlacementError> {
        let changed = self.take_beat(now, node, beat)?;
        Ok(self.forget_settled()?.or(changed))
    }

    /// Forgets the past placements once rebalance is done: no node is down, and every
    /// node that is up reports a census round that found its groups whole on their
    /// holders and nothing on past holders, under an epoch at or past the current
    /// placement's. The new epoch if it did.
    fn forget_settled(&mut self) -> Result<Option<Epoch>, PlacementError> {
        if self.view.history.is_empty() {
            return Ok(None);
        }
        let settled = self.view.map.nodes().iter().all(|n| match n.state {
            NodeState::Out | NodeState::Removed | NodeState::Lost => true,
            NodeState::Down => false,
            NodeState::Up => self
                .figures
                .get(&n.id)
                .is_some_and(|(_, health)| health.repair.settled_epoch >= self.placed_since.0),
        });
        if !settled {
            return Ok(None);
        }
        tracing::info!(
            "rebalance settled: every node's census finds its shards where placement epoch {} puts them; forgetting {} past placements",
            self.placed_since,
            self.view.history.len()
        );
        self.view.history.clear();
        let next = Epoch(self.view.map.epoch().0 + 1);
        self.bump(next)?;
        Ok(Some(next))
    }

    fn take_beat(
        &mut self,
        now: Instant,
        node: NodeId,
        beat: Beat,
    ) -> Result<Option<Epoch>, PlacementError> {
        if self.is_removed(node) {
            return Ok(None);
        }
        self.seen.insert(node, now);
        self.figures.insert(node, (beat.store, beat.health.clone()));
        let next = Epoch(self.view.map.epoch().0 + 1);
        let learned = self.learn_classes(&beat.health);
        // The common case, a node that is up and unchanged, copies nothing.
        let updated = match self.view.map.node(node) {
            None => {
                // A new node: out of placement, and of weight 0 so that it takes no
                // part in it (no key, no share of the total weight: nothing moves),
                // until an administrator puts it in (`set_in`). Its host is its
                // failure domain until an administrator says otherwise.
                let (labels, domain) = host_labels(beat.addr.ip());
                self.view.labels.insert(node, labels);
                NodeInfo {
                    id: node,
                    domain,
                    weight: 0,
                    state: NodeState::Out,
                    joined: next,
                }
            }
            Some(n) => {
                let state = match n.state {
                    NodeState::Down => NodeState::Up,
                    NodeState::Lost => NodeState::Out,
                    other => other,
                };
                let updated = NodeInfo { state, ..*n };
                if updated == *n && self.view.addresses.get(&node) == Some(&beat.addr) {
                    if learned {
                        self.bump(next)?;
                        return Ok(Some(next));
                    }
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

    /// Marks down every Up node silent for longer than the timeout at `now`, or else
    /// marks out every Down node silent for longer than the out grace; the new epoch if
    /// any was ([`Membership::marked_down`] and [`Membership::marked_out`] then name
    /// them). An Out node silent for longer than the timeout becomes Lost (no longer
    /// asked for the shards it may keep), and Out again with its next heartbeat.
    pub fn on_tick(&mut self, now: Instant) -> Result<Option<Epoch>, PlacementError> {
        self.marked_down.clear();
        self.marked_out.clear();
        if let Some(grace) = self.out_after {
            let out: Vec<NodeId> = self
                .view
                .map
                .nodes()
                .iter()
                .filter(|n| n.state == NodeState::Down && self.silence(now, n.id) > grace)
                .map(|n| n.id)
                .collect();
            let mut changed = None;
            for node in out {
                match self.set_out(node) {
                    Ok(Some(epoch)) => {
                        self.marked_out.push(node);
                        changed = Some(epoch);
                    }
                    Ok(None) => {}
                    // Too few nodes would be left: it stays down.
                    Err(MembershipError::Placement(e)) => return Err(e),
                    Err(_) => {}
                }
            }
            if changed.is_some() {
                return Ok(changed);
            }
        }
        let silent = |state: NodeState| -> Vec<NodeId> {
            self.view
                .map
                .nodes()
                .iter()
                .filter(|n| n.state == state && self.silence(now, n.id) > self.timeout)
                .map(|n| n.id)
                .collect()
        };
        let (down, lost) = (silent(NodeState::Up), silent(NodeState::Out));
        let mut next = None;
        if !lost.is_empty() {
            next = Some(self.set_state(&lost, NodeState::Lost)?);
        }
        if !down.is_empty() {
            next = Some(self.set_state(&down, NodeState::Down)?);
            self.marked_down = down;
        }
        Ok(next)
    }

    /// How long `node` has been silent at `now` (since the authority started, if it
    /// has not heartbeat since).
    fn silence(&self, now: Instant, node: NodeId) -> Duration {
        let last = self.seen.get(&node).copied().unwrap_or(self.started);
        now.saturating_duration_since(last)
    }

    /// The nodes the last [`Membership::on_tick`] marked down.
    pub fn marked_down(&self) -> &[NodeId] {
        &self.marked_down
    }

    /// The nodes the last [`Membership::on_tick`] marked out.
    pub fn marked_out(&self) -> &[NodeId] {
        &self.marked_out
    }

    /// Marks `node` out (an administrator's order, or the out grace); the new epoch,
    /// or `None` if it was out already. Refused if a storage class would be left with
    /// fewer nodes than it has shards.
    pub fn set_out(&mut self, node: NodeId) -> Result<Option<Epoch>, MembershipError> {
        let Some(info) = self.view.map.node(node) else {
            return Err(MembershipError::UnknownNode(node));
        };
        if !info.state.placed() {
            return Ok(None);
        }
        self.check_leaving(node, format!("marking node {node} out"))?;
        // A node down is silent: out and not asked, until it heartbeats again.
        let state = match info.state {
            NodeState::Down => NodeState::Lost,
            _ => NodeState::Out,
        };
        Ok(Some(self.set_state(&[node], state)?))
    }

    /// Puts `node` into placement (an administrator's order: a node that joined is out
    /// until then, and one marked out stays out until then); the new epoch, or `None`
    /// if it was in already. A node of weight 0 (one that joined) gets weight 1 and
    /// joins placement at the new epoch, last in join order, so it moves what a join
    /// moves and no more. Refused for a node that is not heard from (lost: start it
    /// first) or removed.
    pub fn set_in(&mut self, node: NodeId) -> Result<Option<Epoch>, MembershipError> {
        let Some(&info) = self.view.map.node(node) else {
            return Err(MembershipError::UnknownNode(node));
        };
        match info.state {
            NodeState::Up | NodeState::Down => Ok(None),
            NodeState::Out => {
                let next = Epoch(self.view.map.epoch().0 + 1);
                let admitted = match info.weight {
                    0 => NodeInfo {
                        weight: DEFAULT_WEIGHT,
                        joined: next,
                        state: NodeState::Up,
                        ..info
                    },
                    _ => NodeInfo {
                        state: NodeState::Up,
                        ..info
                    },
                };
                let nodes = self
                    .view
                    .map
                    .nodes()
                    .iter()
                    .map(|n| if n.id == node { admitted } else { *n })
                    .collect();
                self.replace(next, nodes)?;
                Ok(Some(next))
            }
            NodeState::Lost => Err(MembershipError::In {
                node,
                why: "not heard from (lost); start it first",
            }),
            NodeState::Removed => Err(MembershipError::In {
                node,
                why: "removed from the cluster for good",
            }),
        }
    }

    /// Refused if taking `node` out of placement would leave a storage class fewer
    /// nodes than it has shards.
    fn check_leaving(&self, node: NodeId, doing: String) -> Result<(), MembershipError> {
        let left = self
            .view
            .map
            .nodes()
            .iter()
            .filter(|n| n.id != node && n.weight > 0 && n.state.placed())
            .count();
        match self.view.classes.iter().find(|c| c.width() > left) {
            Some(class) => Err(MembershipError::TooFewNodes {
                doing,
                node,
                left,
                k: class.k(),
                m: class.m(),
                width: class.width(),
            }),
            None => Ok(()),
        }
    }

    /// Whether `node` was removed (its heartbeats change nothing).
    pub fn is_removed(&self, node: NodeId) -> bool {
        self.view
            .map
            .node(node)
            .is_some_and(|n| n.state == NodeState::Removed)
    }

    /// An administrator removes `node` for good, as of `now`; the new epoch, or `None`
    /// if it was removed already. Without `force`, refused while it is in placement
    /// (drain it first: mark it out, and rebalance moves its shards off), while it is
    /// not heard from (what it holds is unknown), or while it still holds shards. With
    /// `force`, only a node not heard from for the heartbeat timeout is removed (a dead
    /// node: repair rebuilds its shards from the others); a running one is refused.
    /// Never when a storage class would be left too few nodes.
    pub fn remove_node(
        &mut self,
        now: Instant,
        node: NodeId,
        force: bool,
    ) -> Result<Option<Epoch>, MembershipError> {
        let Some(&info) = self.view.map.node(node) else {
            return Err(MembershipError::UnknownNode(node));
        };
        if info.state == NodeState::Removed {
            return Ok(None);
        }
        let heard = self
            .seen
            .get(&node)
            .is_some_and(|t| now.saturating_duration_since(*t) <= self.timeout);
        let placed = info.state.placed() && info.weight > 0;
        let holds = self.figures.get(&node).map_or(0, |(store, _)| store.shards);
        let refusal = match (force, heard) {
            (true, true) => Some(RemoveRefusal::Running),
            (true, false) => None,
            (false, _) if placed => Some(RemoveRefusal::InPlacement),
            (false, false) => Some(RemoveRefusal::NotHeard),
            (false, true) if holds > 0 => Some(RemoveRefusal::Holds(holds)),
            (false, true) => None,
        };
        if let Some(why) = refusal {
            return Err(MembershipError::Remove { node, why });
        }
        if placed {
            self.check_leaving(node, format!("removing node {node}"))?;
        }
        Ok(Some(self.set_state(&[node], NodeState::Removed)?))
    }

    /// An administrator sets `node`'s weight, its failure-domain labels, or both; the
    /// new epoch, or `None` if nothing changed. Refused for an unknown node, a weight
    /// past [`MAX_WEIGHT`], labels that do not parse, or a weight of 0 that would leave
    /// a storage class too few nodes. Slots move as for a join or an out, and
    /// rebalance moves their shards.
    pub fn set_node(
        &mut self,
        node: NodeId,
        weight: Option<u32>,
        labels: Option<&str>,
    ) -> Result<Option<Epoch>, MembershipError> {
        let Some(&info) = self.view.map.node(node) else {
            return Err(MembershipError::UnknownNode(node));
        };
        let mut updated = info;
        if let Some(weight) = weight {
            if weight > MAX_WEIGHT {
                return Err(MembershipError::Weight(weight));
            }
            if weight == 0 && info.weight > 0 {
                self.check_leaving(node, format!("setting node {node}'s weight to 0"))?;
            }
            updated.weight = weight;
        }
        if let Some(labels) = labels {
            updated.domain = domain_of(labels)?;
        }
        let relabelled =
            labels.is_some_and(|l| self.view.labels.get(&node).map(String::as_str) != Some(l));
        if updated == info && !relabelled {
            return Ok(None);
        }
        if let Some(labels) = labels {
            self.view.labels.insert(node, labels.to_string());
        }
        let nodes = self
            .view
            .map
            .nodes()
            .iter()
            .map(|n| if n.id == node { updated } else { *n })
            .collect();
        let next = Epoch(self.view.map.epoch().0 + 1);
        self.replace(next, nodes)?;
        Ok(Some(next))
    }

    /// A new epoch with `nodes` in `state`.
    fn set_state(&mut self, nodes: &[NodeId], state: NodeState) -> Result<Epoch, PlacementError> {
        let updated = self
            .view
            .map
            .nodes()
            .iter()
            .map(|n| NodeInfo {
                state: if nodes.contains(&n.id) {
                    state
                } else {
                    n.state
                },
                ..*n
            })
            .collect();
        let next = Epoch(self.view.map.epoch().0 + 1);
        self.replace(next, updated)?;
        Ok(next)
    }

    /// Sets the repair rate; the new epoch, or `None` if it is unchanged.
    pub fn set_repair_rate(
        &mut self,
        bytes_per_second: u64,
    ) -> Result<Option<Epoch>, PlacementError> {
        if self.view.repair_rate == bytes_per_second {
            return Ok(None);
        }
        self.view.repair_rate = bytes_per_second;
        let next = Epoch(self.view.map.epoch().0 + 1);
        self.bump(next)?;
        Ok(Some(next))
    }

    /// Moves the epoch past `seen` (an epoch given before this map was restored from
    /// a copy that trailed it), with the same nodes, unless the map is past it already:
    /// no epoch is ever given twice.
    pub fn skip_past(&mut self, seen: Epoch) -> Result<Option<Epoch>, PlacementError> {
        if seen < self.view.map.epoch() {
            return Ok(None);
        }
        let next = Epoch(seen.0.saturating_add(1));
        if next <= self.view.map.epoch() {
            return Ok(None);
        }
        self.bump(next)?;
        Ok(Some(next))
    }

    /// Adds storage classes the map lacks (known from configuration before any shard
    /// of them is stored); the new epoch if any was added.
    pub fn add_classes(
        &mut self,
        classes: &[ErasureScheme],
    ) -> Result<Option<Epoch>, PlacementError> {
        if !self.add(classes.iter().copied()) {
            return Ok(None);
        }
        let next = Epoch(self.view.map.epoch().0 + 1);
        self.bump(next)?;
        Ok(Some(next))
    }

    /// Adds the classes a heartbeat names that the map lacks; whether any was added.
    fn learn_classes(&mut self, health: &NodeHealth) -> bool {
        let named = health
            .classes
            .iter()
            .filter_map(|c| ErasureScheme::new(c.k, c.m).ok());
        self.add(named)
    }

    fn add(&mut self, classes: impl Iterator<Item = ErasureScheme>) -> bool {
        let mut added = false;
        for class in classes {
            if !self.view.classes.contains(&class) {
                self.view.classes.push(class);
                added = true;
            }
        }
        self.view.classes.sort_unstable_by_key(|c| (c.k(), c.m()));
        added
    }

    /// A new epoch with the same nodes (the classes or the repair rate changed).
    fn bump(&mut self, epoch: Epoch) -> Result<(), PlacementError> {
        let nodes = self.view.map.nodes().to_vec();
        self.replace(epoch, nodes)
    }

    fn replace(&mut self, epoch: Epoch, nodes: Vec<NodeInfo>) -> Result<(), PlacementError> {
        let map = ClusterMap::new(epoch, self.view.map.pg_bits(), nodes)?;
        assert!(
            map.epoch() > self.view.map.epoch(),
            "invariant: map epochs only grow"
        );
        let before = self.view.history.len();
        if !self.view.map.same_placement(&map) {
            self.placed_since = map.epoch();
        }
        if self.view.advance(map) && before == MAX_PLACEMENT_HISTORY {
            tracing::warn!(
                "placement changed {MAX_PLACEMENT_HISTORY} times before rebalance settled; reads no longer look under the oldest placement"
            );
        }
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
                        store: self.figures.get(&n.id).map(|f| f.0).unwrap_or_default(),
                        health: self
                            .figures
                            .get(&n.id)
                            .map(|f| f.1.clone())
                            .unwrap_or_default(),
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
        ClusterView::new(
            ClusterMap::new(Epoch(0), 4, Vec::new()).expect("empty map"),
            HashMap::new(),
        )
    }

    fn beat(port: u16) -> Beat {
        Beat {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            store: StoreFigures::default(),
            health: NodeHealth::default(),
        }
    }

    fn state(m: &Membership, node: u64) -> NodeState {
        m.view().map.node(NodeId(node)).expect("in the map").state
    }

    /// Node `n` heartbeats at `at` and an administrator puts it in; the epoch after.
    fn join(m: &mut Membership, at: Instant, n: u64) -> Epoch {
        m.on_heartbeat(at, NodeId(n), beat(n as u16))
            .expect("joins");
        m.set_in(NodeId(n)).expect("in");
        m.view().map.epoch()
    }

    #[test]
    fn first_heartbeat_joins_out_an_admin_puts_it_in_and_repeats_change_nothing() {
        let t0 = Instant::now();
        let mut m = Membership::new(empty(), t0, TIMEOUT);
        assert_eq!(m.on_heartbeat(t0, NodeId(1), beat(1)), Ok(Some(Epoch(1))));
        assert_eq!(state(&m, 1), NodeState::Out, "out until put in");
        let weight = |m: &Membership, n: u64| m.view().map.node(NodeId(n)).map(|n| n.weight);
        assert_eq!(weight(&m, 1), Some(0), "no part in placement");
        assert_eq!(m.set_in(NodeId(1)), Ok(Some(Epoch(2))));
        assert_eq!(state(&m, 1), NodeState::Up);
        assert_eq!(weight(&m, 1), Some(DEFAULT_WEIGHT));
        assert_eq!(
            m.view().map.node(NodeId(1)).map(|n| n.joined),
            Some(Epoch(2)),
            "it joins placement when put in"
        );
        assert_eq!(m.set_in(NodeId(1)), Ok(None), "in already");
        assert_eq!(m.on_heartbeat(t0, NodeId(2), beat(2)), Ok(Some(Epoch(3))));
        assert_eq!(m.on_heartbeat(t0, NodeId(1), beat(1)), Ok(None));
        assert_eq!(
            m.view().map.node(NodeId(2)).map(|n| n.joined),
            Some(Epoch(3))
        );
        assert!(matches!(
            m.set_in(NodeId(9)),
            Err(MembershipError::UnknownNode(_))
        ));
        // Silent past the timeout while out: lost, and not put in until heard again.
        let past = t0 + TIMEOUT + Duration::from_millis(1);
        m.on_heartbeat(past, NodeId(1), beat(1)).expect("beats");
        m.on_tick(past).expect("tick");
        assert_eq!(state(&m, 2), NodeState::Lost);
        let err = m.set_in(NodeId(2)).expect_err("lost");
        assert!(err.to_string().contains("start it first"), "{err}");
        m.on_heartbeat(past, NodeId(2), beat(2)).expect("beats");
        assert!(m.set_in(NodeId(2)).expect("heard again").is_some());
        assert_eq!(state(&m, 2), NodeState::Up);
        assert_eq!(
            m.view().addresses.get(&NodeId(2)),
            Some(&SocketAddr::from(([127, 0, 0, 1], 2)))
        );
    }

    #[test]
    fn silence_past_the_timeout_marks_down_and_a_heartbeat_brings_back() {
        let t0 = Instant::now();
        let mut m = Membership::new(empty(), t0, TIMEOUT);
        join(&mut m, t0, 1);
        join(&mut m, t0, 2);
        let later = t0 + TIMEOUT;
        m.on_heartbeat(later, NodeId(2), beat(2)).expect("beats");
        // Exactly at the timeout nothing happens; just past it node 1 is down.
        assert_eq!(m.on_tick(later), Ok(None));
        let past = later + Duration::from_millis(1);
        assert_eq!(m.on_tick(past), Ok(Some(Epoch(5))));
        assert_eq!(state(&m, 1), NodeState::Down);
        assert_eq!(state(&m, 2), NodeState::Up);
        // Down stays down without a new epoch per tick.
        assert_eq!(m.on_tick(past + TIMEOUT), Ok(Some(Epoch(6))));
        assert_eq!(state(&m, 2), NodeState::Down);
        assert_eq!(m.on_tick(past + TIMEOUT * 2), Ok(None));
        assert_eq!(
            m.on_heartbeat(past + TIMEOUT * 2, NodeId(1), beat(1)),
            Ok(Some(Epoch(7)))
        );
        assert_eq!(state(&m, 1), NodeState::Up);
    }

    #[test]
    fn a_loaded_map_gives_its_nodes_one_timeout_to_heartbeat() {
        let t0 = Instant::now();
        let mut m = Membership::new(empty(), t0, TIMEOUT);
        join(&mut m, t0, 7);
        let restarted = t0 + Duration::from_secs(3600);
        let mut m = Membership::new(m.view().clone(), restarted, TIMEOUT);
        assert_eq!(m.on_tick(restarted + TIMEOUT), Ok(None));
        assert_eq!(m.liveness(restarted)[0].1.silent_for, None);
        assert_eq!(
            m.on_tick(restarted + TIMEOUT + Duration::from_millis(1)),
            Ok(Some(Epoch(3)))
        );
    }

    #[test]
    fn a_moved_node_makes_a_new_epoch_and_an_out_node_stays_out() {
        let t0 = Instant::now();
        let mut m = Membership::new(empty(), t0, TIMEOUT);
        join(&mut m, t0, 1);
        let mut moved = beat(1);
        moved.addr = SocketAddr::from(([127, 0, 0, 2], 1));
        assert_eq!(
            m.on_heartbeat(t0, NodeId(1), moved.clone()),
            Ok(Some(Epoch(3)))
        );
        let mut nodes = m.view().map.nodes().to_vec();
        nodes[0].state = NodeState::Out;
        let view = ClusterView::new(
            ClusterMap::new(Epoch(4), 4, nodes).expect("map"),
            m.view().addresses.clone(),
        );
        let mut m = Membership::new(view, t0, TIMEOUT);
        assert_eq!(m.on_heartbeat(t0, NodeId(1), moved), Ok(None));
        assert_eq!(state(&m, 1), NodeState::Out);
    }

    #[test]
    fn an_epoch_seen_elsewhere_moves_the_map_past_it_with_the_same_nodes() {
        let t0 = Instant::now();
        let mut m = Membership::new(empty(), t0, TIMEOUT);
        join(&mut m, t0, 1);
        let nodes = m.view().map.nodes().to_vec();
        assert_eq!(m.skip_past(Epoch(9)), Ok(Some(Epoch(10))));
        assert_eq!(m.view().map.epoch(), Epoch(10));
        assert_eq!(m.view().map.nodes(), nodes.as_slice());
        // An epoch it is past already changes nothing: epochs only grow.
        assert_eq!(m.skip_past(Epoch(3)), Ok(None));
        assert_eq!(m.skip_past(Epoch(10)), Ok(Some(Epoch(11))));
        assert_eq!(m.view().map.epoch(), Epoch(11));
    }

    fn with_class(port: u16, k: u8, m: u8) -> Beat {
        let mut b = beat(port);
        b.health.classes = vec![hive_wire::net::control::Class { k, m }];
        b
    }

    #[test]
    fn classes_join_the_map_and_an_admin_marks_out_only_what_placement_allows() {
        let t0 = Instant::now();
        let mut m = Membership::new(empty(), t0, TIMEOUT);
        for n in 1..=4 {
            join(&mut m, t0, n);
        }
        let before = m.view().map.epoch();
        let epoch = m
            .on_heartbeat(t0, NodeId(1), with_class(1, 2, 1))
            .expect("beat")
            .expect("a new class is a new epoch");
        assert!(epoch > before);
        assert_eq!(
            m.view().classes,
            vec![ErasureScheme::new(2, 1).expect("2+1")]
        );
        assert_eq!(m.on_heartbeat(t0, NodeId(2), with_class(2, 2, 1)), Ok(None));
        // Four nodes hold 2+1 chunks: one may go out, the second would leave two.
        assert!(m.set_out(NodeId(4)).expect("allowed").is_some());
        assert_eq!(state(&m, 4), NodeState::Out);
        assert_eq!(m.set_out(NodeId(4)), Ok(None), "out already");
        let err = m.set_out(NodeId(3)).expect_err("too few left");
        assert!(err.to_string().contains("leave 2 nodes"), "{err}");
        assert_eq!(state(&m, 3), NodeState::Up);
        assert!(matches!(
            m.set_out(NodeId(9)),
            Err(MembershipError::UnknownNode(_))
        ));
        assert_eq!(m.set_repair_rate(m.view().repair_rate), Ok(None));
        assert!(m.set_repair_rate(5).expect("rate").is_some());
        assert_eq!(m.view().repair_rate, 5);
    }

    #[test]
    fn only_an_administrator_sets_weight_and_domain() {
        let t0 = Instant::now();
        let mut m = Membership::new(empty(), t0, TIMEOUT);
        for n in 1..=4 {
            join(&mut m, t0, n);
        }
        m.add_classes(&[ErasureScheme::new(2, 1).expect("2+1")])
            .expect("classes");
        let node = |m: &Membership, n: u64| *m.view().map.node(NodeId(n)).expect("in the map");
        let (labels, domain) = host_labels("127.0.0.1".parse().expect("ip"));
        assert_eq!((node(&m, 2).weight, node(&m, 2).domain), (1, domain));
        assert_eq!(m.view().labels.get(&NodeId(2)), Some(&labels));
        let set = m
            .set_node(NodeId(2), Some(3), Some("rack=r2,host=h2"))
            .expect("allowed")
            .expect("a new epoch");
        let placed = node(&m, 2);
        assert_eq!(placed.weight, 3);
        assert_eq!(Some(placed.domain), domain_of("rack=r2").ok());
        assert_eq!(
            m.view().history.len(),
            1,
            "slots moved: the old placement kept"
        );
        // Heartbeats, also from a new address, leave weight and domain as set.
        let mut moved = beat(2);
        moved.addr = SocketAddr::from(([127, 0, 0, 9], 2));
        assert!(
            m.on_heartbeat(t0, NodeId(2), moved)
                .expect("beat")
                .is_some()
        );
        let after = node(&m, 2);
        assert_eq!((after.weight, after.domain), (placed.weight, placed.domain));
        assert_eq!(
            m.set_node(NodeId(2), Some(3), Some("rack=r2,host=h2")),
            Ok(None)
        );
        assert!(m.view().map.epoch() > set);
        // Refusals change nothing.
        assert!(matches!(
            m.set_node(NodeId(2), Some(MAX_WEIGHT + 1), None),
            Err(MembershipError::Weight(_))
        ));
        assert!(matches!(
            m.set_node(NodeId(2), None, Some("rack")),
            Err(MembershipError::Labels(_))
        ));
        assert!(matches!(
            m.set_node(NodeId(9), Some(1), None),
            Err(MembershipError::UnknownNode(_))
        ));
        m.set_node(NodeId(4), Some(0), None)
            .expect("three left for 2+1");
        let err = m.set_node(NodeId(3), Some(0), None).expect_err("two left");
        assert!(
            err.to_string().contains("weight to 0 would leave 2 nodes"),
            "{err}"
        );
        assert_eq!(node(&m, 3).weight, 1);
    }

    #[test]
    fn a_node_is_removed_only_once_drained_or_dead() {
        let t0 = Instant::now();
        let mut m = Membership::new(empty(), t0, TIMEOUT);
        for n in 1..=5 {
            join(&mut m, t0, n);
        }
        m.add_classes(&[ErasureScheme::new(2, 1).expect("2+1")])
            .expect("classes");
        let why = |r: Result<Option<Epoch>, MembershipError>| match r {
            Err(MembershipError::Remove { why, .. }) => why,
            other => panic!("not a removal refusal: {other:?}"),
        };
        // In placement, and running: drain first; --force is for dead nodes.
        assert_eq!(
            why(m.remove_node(t0, NodeId(5), false)),
            RemoveRefusal::InPlacement
        );
        assert_eq!(
            why(m.remove_node(t0, NodeId(5), true)),
            RemoveRefusal::Running
        );
        // Out but still holding shards: wait for rebalance.
        m.set_out(NodeId(5)).expect("out");
        let mut holding = beat(5);
        holding.store.shards = 7;
        m.on_heartbeat(t0, NodeId(5), holding).expect("beat");
        assert_eq!(
            why(m.remove_node(t0, NodeId(5), false)),
            RemoveRefusal::Holds(7)
        );
        // Empty: removed, for good; its heartbeats change nothing.
        m.on_heartbeat(t0, NodeId(5), beat(5)).expect("beat");
        let epoch = m.remove_node(t0, NodeId(5), false).expect("drained");
        assert!(epoch.is_some());
        assert_eq!(state(&m, 5), NodeState::Removed);
        assert!(m.is_removed(NodeId(5)));
        assert_eq!(m.remove_node(t0, NodeId(5), false), Ok(None));
        let mut moved = beat(5);
        moved.addr = SocketAddr::from(([127, 0, 0, 9], 5));
        assert_eq!(m.on_heartbeat(t0, NodeId(5), moved), Ok(None));
        assert_eq!(state(&m, 5), NodeState::Removed);
        // A dead node in placement: not heard from, so only with --force.
        let later = t0 + TIMEOUT * 2;
        for n in 1..=3 {
            m.on_heartbeat(later, NodeId(n), beat(n as u16))
                .expect("beats");
        }
        assert_eq!(
            why(m.remove_node(later, NodeId(4), false)),
            RemoveRefusal::InPlacement
        );
        m.remove_node(later, NodeId(4), true).expect("forced");
        assert_eq!(state(&m, 4), NodeState::Removed);
        // Never below a class's width.
        let after = later + TIMEOUT * 2;
        let err = m.remove_node(after, NodeId(3), true).expect_err("two left");
        assert!(err.to_string().contains("would leave 2 nodes"), "{err}");
    }

    fn settled(port: u16, epoch: Epoch) -> Beat {
        let mut b = beat(port);
        b.health.repair.settled_epoch = epoch.0;
        b
    }

    #[test]
    fn a_placement_change_is_remembered_until_every_node_settles_it() {
        let t0 = Instant::now();
        let mut m = Membership::new(empty(), t0, TIMEOUT);
        m.add_classes(&[ErasureScheme::new(2, 1).expect("2+1")])
            .expect("classes");
        for n in 1..=3 {
            join(&mut m, t0, n);
        }
        assert!(
            m.view().history.is_empty(),
            "maps too small to place a chunk are not remembered"
        );
        let joined = join(&mut m, t0, 4);
        assert_eq!(m.view().history.len(), 1);
        // The map before placed three: the fourth was in it, out until put in.
        assert_eq!(m.view().history[0].nodes().len(), 4);
        assert_eq!(
            m.view().history[0].node(NodeId(4)).map(|n| n.state),
            Some(NodeState::Out)
        );
        // Settled before the join, or not every node: the past placement stays.
        for n in 1..=4 {
            m.on_heartbeat(t0, NodeId(n), settled(n as u16, Epoch(joined.0 - 1)))
                .expect("beats");
        }
        for n in 1..=3 {
            m.on_heartbeat(t0, NodeId(n), settled(n as u16, joined))
                .expect("beats");
        }
        assert_eq!(m.view().history.len(), 1);
        // A down node holds it too: its shards may be the only past copies.
        let later = t0 + TIMEOUT + Duration::from_millis(1);
        for n in 1..=3 {
            m.on_heartbeat(later, NodeId(n), settled(n as u16, joined))
                .expect("beats");
        }
        m.on_tick(later).expect("tick");
        assert_eq!(state(&m, 4), NodeState::Down);
        assert_eq!(m.view().history.len(), 1);
        let epoch = m
            .on_heartbeat(later, NodeId(4), settled(4, joined))
            .expect("beats")
            .expect("new epoch");
        assert!(m.view().history.is_empty(), "every node settled");
        assert!(epoch > joined);
        assert_eq!(
            m.on_heartbeat(later, NodeId(4), settled(4, joined)),
            Ok(None)
        );
    }

    #[test]
    fn a_node_down_past_the_out_grace_is_marked_out() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(60);
        let mut m = Membership::new(empty(), t0, TIMEOUT).with_out_after(Some(grace));
        for n in 1..=4 {
            join(&mut m, t0, n);
        }
        // Nodes 1..3 keep beating; node 4 goes silent.
        let beat_all = |m: &mut Membership, at: Instant| {
            for n in 1..=3 {
                m.on_heartbeat(at, NodeId(n), beat(n as u16))
                    .expect("beats");
            }
        };
        let down_at = t0 + TIMEOUT + Duration::from_millis(1);
        beat_all(&mut m, down_at);
        assert!(m.on_tick(down_at).expect("tick").is_some());
        assert_eq!(m.marked_down(), &[NodeId(4)]);
        assert_eq!(state(&m, 4), NodeState::Down);
        let before_grace = t0 + grace;
        beat_all(&mut m, before_grace);
        assert_eq!(m.on_tick(before_grace), Ok(None));
        let past = t0 + grace + Duration::from_millis(1);
        beat_all(&mut m, past);
        assert!(m.on_tick(past).expect("tick").is_some());
        assert_eq!(m.marked_out(), &[NodeId(4)]);
        assert_eq!(state(&m, 4), NodeState::Lost, "out, and silent: not asked");
        assert_eq!(m.on_tick(past), Ok(None));
        // Back: out (it may keep shards rebalance has not moved), and asked again.
        assert!(
            m.on_heartbeat(past, NodeId(4), beat(4))
                .expect("beat")
                .is_some()
        );
        assert_eq!(state(&m, 4), NodeState::Out);
        // Silent again past the timeout: lost, without a new placement.
        let placement = m.view().map.clone();
        let silent = past + TIMEOUT + Duration::from_millis(1);
        beat_all(&mut m, silent);
        assert!(m.on_tick(silent).expect("tick").is_some());
        assert_eq!(state(&m, 4), NodeState::Lost);
        assert!(m.view().map.same_placement(&placement));
    }
}
