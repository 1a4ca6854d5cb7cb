//! Where shards live: chunk → placement group → an ordered list of k + m nodes.
//!
//! Pure and deterministic: every client and node computes the same answer from the same
//! cluster map, with integer hashing and only IEEE basic arithmetic (no `ln`, whose last
//! bit differs between platforms).
//!
//! How a group picks its nodes:
//! 1. Every node with weight > 0 draws a key from a hash of (group, node). Keys follow
//!    Pareto πps sampling: `key = odds(u) / odds(p)`, with `u` uniform in (0, 1) and
//!    `p = width * weight / total weight` the share the node should get. The `width`
//!    smallest keys win. Unlike plain straw2 over the first `width` draws, this keeps
//!    every node's share close to its weight share even when weights differ a lot.
//! 2. Nodes are considered in the order they joined the cluster. A node takes a free
//!    slot, or the slot of the worst-keyed member it beats. So the final set is the best
//!    `width` keys, and a node that joins last changes at most one slot per group: the
//!    one it takes. (Slots are shard indexes, so a moved slot is a moved shard.)
//! 3. Failure domains: at most `ceil(width / domains)` members per domain; a node whose
//!    domain is full can only take the slot of a worse member of its own domain. If the
//!    domains cannot fill every slot, the best remaining nodes fill the rest.
//! 4. A node marked `Out` keeps its place in this history (its weight still counts), and
//!    each of its slots goes to the best node not already a member. So taking a node out
//!    moves its slots and nothing else. `Down` nodes keep their slots: being down is
//!    temporary and repair, not placement, covers it.

use std::collections::HashSet;

use hive_wire::{ChunkId, Epoch, FailureDomain, NodeId, PgId};
use twox_hash::XxHash3_64;

/// Most placement-group bits: 2^24 groups is far past any cluster's need and keeps the
/// per-epoch placement table in memory.
pub const MAX_PG_BITS: u8 = 24;

/// Seed of the (group, node) hash, fixed forever: changing it moves every shard.
const PLACEMENT_SEED: u64 = 0x6869_7665_6673_0001;

/// Largest share a node can be asked to take, kept below 1 so its odds stay finite.
const MAX_SHARE: f64 = 1.0 - 1.0e-9;

/// Whether a node takes part in placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Serving.
    Up,
    /// Not answering; keeps its slots until it returns or is marked out.
    Down,
    /// Leaving or gone; its slots go to other nodes.
    Out,
    /// Removed by an administrator: out for good, and never asked for shards again.
    Removed,
    /// Out and not heard from: not asked for shards until it heartbeats again, when it
    /// is `Out` (placement treats the two alike).
    Lost,
}

impl NodeState {
    /// Whether a node in this state holds placement slots (`Out` and `Removed` do
    /// not; their slots went to others).
    pub fn placed(self) -> bool {
        !matches!(self, NodeState::Out | NodeState::Removed | NodeState::Lost)
    }
}

/// One node as the cluster map describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node.
    pub id: NodeId,
    /// What it fails together with.
    pub domain: FailureDomain,
    /// Relative capacity; 0 takes no new slots at all.
    pub weight: u32,
    /// Whether it serves.
    pub state: NodeState,
    /// The map epoch in which it joined; orders placement history.
    pub joined: Epoch,
}

/// Why a placement could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Fewer usable nodes than shards per chunk.
    #[error(
        "cannot place {needed} shards on distinct nodes: only {usable} nodes are usable (weight > 0 and not out)"
    )]
    NotEnoughNodes {
        /// Usable nodes in the map.
        usable: usize,
        /// Shards to place.
        needed: usize,
    },
    /// The same node id twice in a map.
    #[error("node {0} appears twice in the cluster map")]
    DuplicateNode(NodeId),
    /// Too many placement-group bits.
    #[error("{0} placement-group bits requested; at most {MAX_PG_BITS} are supported")]
    TooManyPgBits(u8),
    /// A group outside the map's range.
    #[error("placement group {pg} is outside this map's {count} groups")]
    NoSuchPg {
        /// The group asked for.
        pg: PgId,
        /// Groups in the map.
        count: u64,
    },
}

/// The nodes of a cluster at one epoch, and the placement they imply.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterMap {
    epoch: Epoch,
    pg_bits: u8,
    /// In join order: (joined, id).
    nodes: Vec<NodeInfo>,
}

/// A node as one placement group sees it.
#[derive(Clone, Copy)]
struct Candidate {
    node: usize,
    key: f64,
}

impl Candidate {
    /// Whether `self` ranks before `other` (smaller key, then smaller id, so ties are
    /// broken the same way everywhere).
    fn beats(&self, other: &Candidate, nodes: &[NodeInfo]) -> bool {
        (self.key, nodes[self.node].id) < (other.key, nodes[other.node].id)
    }
}

impl ClusterMap {
    /// A map of `2^pg_bits` placement groups over `nodes` (any order).
    pub fn new(
        epoch: Epoch,
        pg_bits: u8,
        mut nodes: Vec<NodeInfo>,
    ) -> Result<Self, PlacementError> {
        if pg_bits > MAX_PG_BITS {
            return Err(PlacementError::TooManyPgBits(pg_bits));
        }
        let mut seen = HashSet::with_capacity(nodes.len());
        if let Some(dup) = nodes.iter().find(|n| !seen.insert(n.id)) {
            return Err(PlacementError::DuplicateNode(dup.id));
        }
        nodes.sort_by_key(|n| (n.joined, n.id));
        Ok(Self {
            epoch,
            pg_bits,
            nodes,
        })
    }

    /// The map's epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The nodes, in join order.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// Placement groups are `2^pg_bits`.
    pub fn pg_bits(&self) -> u8 {
        self.pg_bits
    }

    /// The node `id`, if the map has it.
    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Whether `other` places every group as this map does: the same groups and the
    /// same weighted nodes with the same weights, domains, join epochs and out marks.
    /// Down and up place alike (a down node keeps its slots), and a node of weight 0
    /// takes no part in placement (a node that joined and is not in yet), so only a
    /// change that moves slots makes two maps differ.
    pub fn same_placement(&self, other: &ClusterMap) -> bool {
        let placed = |n: &NodeInfo| (n.id, n.domain, n.weight, n.joined, n.state.placed());
        let weighted = |map: &ClusterMap| {
            map.nodes
                .iter()
                .filter(|n| n.weight > 0)
                .map(placed)
                .collect::<Vec<_>>()
        };
        self.pg_bits == other.pg_bits && weighted(self) == weighted(other)
    }

    /// Number of placement groups.
    pub fn pg_count(&self) -> u64 {
        1 << self.pg_bits
    }

    /// The placement group of a chunk: the low bits of its id, which BLAKE3 makes uniform.
    pub fn pg_of(&self, chunk: &ChunkId) -> PgId {
        let b = chunk.as_bytes();
        let low = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let mask = u32::try_from(self.pg_count() - 1).expect("invariant: pg_bits <= 24");
        PgId(low & mask)
    }

    /// The `width` distinct nodes of group `pg`, in shard-index order.
    pub fn place(&self, pg: PgId, width: usize) -> Result<Vec<NodeId>, PlacementError> {
        if u64::from(pg.get()) >= self.pg_count() {
            return Err(PlacementError::NoSuchPg {
                pg,
                count: self.pg_count(),
            });
        }
        let usable = self
            .nodes
            .iter()
            .filter(|n| n.weight > 0 && n.state.placed())
            .count();
        if usable < width {
            return Err(PlacementError::NotEnoughNodes {
                usable,
                needed: width,
            });
        }
        let candidates = self.candidates(pg, width);
        let mut slots = self.choose(&candidates, width);
        self.replace_out_members(&candidates, &mut slots);
        // Slots fill in join order, so early nodes would hold the low (data) shard
        // indexes of most groups, and take most reads. Rotating each group's slots by
        // the group number spreads shard indexes evenly; it is the same for every
        // epoch, so it moves nothing when membership changes.
        let rotation = usize::try_from(pg.get()).unwrap_or(0) % width;
        slots.rotate_left(rotation);
        Ok(slots.into_iter().map(|c| self.nodes[c.node].id).collect())
    }

    /// Every node with weight, with its key for `pg`, in join order.
    fn candidates(&self, pg: PgId, width: usize) -> Vec<Candidate> {
        let total: u64 = self.nodes.iter().map(|n| u64::from(n.weight)).sum();
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.weight > 0)
            .map(|(node, n)| {
                let share = (width as f64 * f64::from(n.weight) / total as f64).min(MAX_SHARE);
                let u = unit_hash(pg, n.id);
                let key = (u / (1.0 - u)) / (share / (1.0 - share));
                Candidate { node, key }
            })
            .collect()
    }

    /// Steps 2 and 3 of the module doc: the join-order history with domain caps, then
    /// a fill of any slot the domains left empty.
    fn choose(&self, candidates: &[Candidate], width: usize) -> Vec<Candidate> {
        let nodes = &self.nodes;
        let domains: HashSet<FailureDomain> =
            candidates.iter().map(|c| nodes[c.node].domain).collect();
        let cap = width.div_ceil(domains.len().max(1));
        let mut slots: Vec<Option<Candidate>> = vec![None; width];
        let in_domain = |slots: &[Option<Candidate>], d: FailureDomain| {
            slots
                .iter()
                .flatten()
                .filter(|m| nodes[m.node].domain == d)
                .count()
        };
        for c in candidates {
            let domain = nodes[c.node].domain;
            let target = if in_domain(&slots, domain) < cap {
                slots
                    .iter()
                    .position(Option::is_none)
                    .or_else(|| worst_slot(&slots, nodes, |_| true))
            } else {
                worst_slot(&slots, nodes, |m| nodes[m.node].domain == domain)
            };
            if let Some(t) = target
                && slots[t].is_none_or(|member| c.beats(&member, nodes))
            {
                slots[t] = Some(*c);
            }
        }
        for t in 0..width {
            if slots[t].is_none() {
                slots[t] = best_outsider(candidates, &slots, nodes, |_| true);
            }
        }
        slots
            .into_iter()
            .map(|s| s.expect("invariant: width <= candidates, so every slot fills"))
            .collect()
    }

    /// Step 4: each member that is out hands its slot to the best non-member that is
    /// not out, preferring one whose domain is below the cap.
    fn replace_out_members(&self, candidates: &[Candidate], slots: &mut [Candidate]) {
        let nodes = &self.nodes;
        let usable = |c: &Candidate| nodes[c.node].state.placed();
        if slots.iter().all(usable) {
            return;
        }
        let domains: HashSet<FailureDomain> = candidates
            .iter()
            .filter(|c| usable(c))
            .map(|c| nodes[c.node].domain)
            .collect();
        let cap = slots.len().div_ceil(domains.len().max(1));
        for t in 0..slots.len() {
            if usable(&slots[t]) {
                continue;
            }
            let members: Vec<Option<Candidate>> = slots.iter().copied().map(Some).collect();
            let count = |d: FailureDomain| {
                slots
                    .iter()
                    .filter(|m| usable(m) && nodes[m.node].domain == d)
                    .count()
            };
            let pick = best_outsider(candidates, &members, nodes, |c| {
                usable(c) && count(nodes[c.node].domain) < cap
            })
            .or_else(|| best_outsider(candidates, &members, nodes, usable))
            .expect("invariant: usable >= width was checked, so a usable outsider exists");
            slots[t] = pick;
        }
    }
}

/// The occupied slot holding the worst-ranked member that satisfies `filter`.
fn worst_slot(
    slots: &[Option<Candidate>],
    nodes: &[NodeInfo],
    filter: impl Fn(&Candidate) -> bool,
) -> Option<usize> {
    let mut worst: Option<(usize, Candidate)> = None;
    for (t, member) in slots.iter().enumerate() {
        if let Some(m) = member
            && filter(m)
            && worst.is_none_or(|(_, w)| w.beats(m, nodes))
        {
            worst = Some((t, *m));
        }
    }
    worst.map(|(t, _)| t)
}

/// The best-ranked candidate that is not a member and satisfies `filter`.
fn best_outsider(
    candidates: &[Candidate],
    members: &[Option<Candidate>],
    nodes: &[NodeInfo],
    filter: impl Fn(&Candidate) -> bool,
) -> Option<Candidate> {
    candidates
        .iter()
        .filter(|c| !members.iter().flatten().any(|m| m.node == c.node) && filter(c))
        .fold(None, |best: Option<Candidate>, c| match best {
            Some(b) if b.beats(c, nodes) => Some(b),
            _ => Some(*c),
        })
}

/// A uniform draw in (0, 1) from (group, node): 53 hash bits, offset by half a step so
/// neither 0 nor 1 can occur.
fn unit_hash(pg: PgId, node: NodeId) -> f64 {
    let mut input = [0u8; 12];
    input[..4].copy_from_slice(&pg.get().to_le_bytes());
    input[4..].copy_from_slice(&node.get().to_le_bytes());
    let bits = XxHash3_64::oneshot_with_seed(PLACEMENT_SEED, &input) >> 11;
    (bits as f64 + 0.5) / (1u64 << 53) as f64
}
