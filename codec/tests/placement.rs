//! Placement properties over 4096 placement groups.

use std::collections::{HashMap, HashSet};

use hive_codec::{ClusterMap, NodeInfo, NodeState, PlacementError};
use hive_wire::{Epoch, FailureDomain, NodeId, PgId};

const PG_BITS: u8 = 12;
const WIDTH: usize = 6;

fn node(id: u64, domain: u32, weight: u32) -> NodeInfo {
    NodeInfo {
        id: NodeId(id),
        domain: FailureDomain(domain),
        weight,
        state: NodeState::Up,
        joined: Epoch(id),
    }
}

/// `n` nodes, each its own failure domain, weights cycling through `weights`.
fn nodes(n: u64, weights: &[u32]) -> Vec<NodeInfo> {
    (0..n)
        .map(|i| {
            node(
                i,
                u32::try_from(i).expect("small"),
                weights[i as usize % weights.len()],
            )
        })
        .collect()
}

fn map(nodes: Vec<NodeInfo>) -> ClusterMap {
    ClusterMap::new(Epoch(1), PG_BITS, nodes).expect("valid map")
}

fn table(map: &ClusterMap) -> Vec<Vec<NodeId>> {
    (0..map.pg_count())
        .map(|pg| {
            map.place(PgId(u32::try_from(pg).expect("small")), WIDTH)
                .expect("enough nodes")
        })
        .collect()
}

/// Shard slots (group, index) whose node differs between two tables.
fn moved(before: &[Vec<NodeId>], after: &[Vec<NodeId>]) -> usize {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| b.iter().zip(a).filter(|(x, y)| x != y).count())
        .sum()
}

#[test]
fn every_group_gets_distinct_nodes_deterministically() {
    let m = map(nodes(9, &[1, 2]));
    let t = table(&m);
    for (pg, placed) in t.iter().enumerate() {
        let distinct: HashSet<_> = placed.iter().collect();
        assert_eq!(distinct.len(), WIDTH, "group {pg}: {placed:?}");
    }
    // The same map given in another order places identically.
    let mut shuffled = m.nodes().to_vec();
    shuffled.reverse();
    assert_eq!(
        table(&ClusterMap::new(Epoch(1), PG_BITS, shuffled).expect("valid")),
        t
    );
}

#[test]
fn failure_domains_are_spread_when_there_are_enough() {
    // 8 domains for 6 shards: never two shards in one domain.
    let spread = map((0..16)
        .map(|i| node(i, u32::try_from(i % 8).expect("small"), 1))
        .collect());
    // 4 domains for 6 shards: at most ceil(6 / 4) = 2 per domain.
    let tight = map((0..12)
        .map(|i| node(i, u32::try_from(i % 4).expect("small"), 1))
        .collect());
    for (m, cap) in [(spread, 1), (tight, 2)] {
        let domain: HashMap<NodeId, FailureDomain> =
            m.nodes().iter().map(|n| (n.id, n.domain)).collect();
        for placed in table(&m) {
            let mut per_domain: HashMap<FailureDomain, usize> = HashMap::new();
            for id in &placed {
                *per_domain.entry(domain[id]).or_default() += 1;
            }
            assert!(per_domain.values().all(|&c| c <= cap), "{placed:?}");
        }
    }
}

/// Fraction of all shard slots that move when a node of `new_weight` joins `before`,
/// divided by the new node's fair share of slots.
fn movement_on_join(before_nodes: Vec<NodeInfo>, new_weight: u32) -> f64 {
    let total: u32 = before_nodes.iter().map(|x| x.weight).sum();
    let id = before_nodes.len() as u64;
    let before = table(&map(before_nodes.clone()));
    let mut after_nodes = before_nodes;
    after_nodes.push(node(id, u32::try_from(id).expect("small"), new_weight));
    let after = table(&map(after_nodes));
    let fraction = moved(&before, &after) as f64 / (before.len() * WIDTH) as f64;
    fraction / (f64::from(new_weight) / f64::from(total + new_weight))
}

#[test]
fn adding_a_node_of_equal_weight_moves_at_most_a_quarter_more_than_its_share() {
    for n in [6, 8, 12, 20, 32] {
        let ratio = movement_on_join(nodes(n, &[1]), 1);
        assert!(
            (0.75..=1.25).contains(&ratio),
            "{n} nodes: moved {ratio:.3} x 1/(N+1) of all slots"
        );
    }
}

#[test]
fn adding_a_node_to_mixed_weights_stays_bounded() {
    // With unequal weights every node's target share shifts when one joins, which
    // reorders a few groups besides those the new node enters (measured 1.4-1.7x).
    for (n, weights, new_weight) in [
        (12, &[1, 2, 3][..], 2),
        (24, &[1, 2][..], 1),
        (48, &[1, 2, 3, 4][..], 2),
    ] {
        let ratio = movement_on_join(nodes(n, weights), new_weight);
        assert!(
            (0.75..=1.8).contains(&ratio),
            "{n} nodes, weights {weights:?}: moved {ratio:.3} x the new node's share"
        );
    }
}

#[test]
fn taking_a_node_out_moves_only_its_own_slots() {
    for (n, weights, domains) in [
        (12, &[1][..], 12),
        (16, &[1, 2][..], 8),
        (9, &[3, 1][..], 3),
    ] {
        let all: Vec<NodeInfo> = (0..n)
            .map(|i| {
                node(
                    i,
                    u32::try_from(i % domains).expect("small"),
                    weights[i as usize % weights.len()],
                )
            })
            .collect();
        let before = table(&map(all.clone()));
        for victim in [0, n / 2, n - 1] {
            let mut after_nodes = all.clone();
            after_nodes[victim as usize].state = NodeState::Out;
            let after = table(&map(after_nodes));
            let mut own = 0;
            for (b, a) in before.iter().zip(&after) {
                for (x, y) in b.iter().zip(a) {
                    if *x == NodeId(victim) {
                        own += 1;
                        assert_ne!(y, x, "an out node kept a slot");
                    } else {
                        assert_eq!(x, y, "node {victim} out moved another node's slot");
                    }
                }
                assert!(!a.contains(&NodeId(victim)));
            }
            assert!(own > 0, "node {victim} held no slot at all");
        }
    }
}

#[test]
fn down_nodes_keep_their_slots() {
    let all = nodes(10, &[1]);
    let before = table(&map(all.clone()));
    let mut after_nodes = all;
    after_nodes[3].state = NodeState::Down;
    assert_eq!(table(&map(after_nodes)), before);
}

#[test]
fn shares_follow_weights_within_ten_percent() {
    for (n, weights) in [
        (10, &[1][..]),
        (12, &[1, 2, 3][..]),
        (20, &[1, 2][..]),
        (24, &[1, 2, 3][..]),
    ] {
        let all = nodes(n, weights);
        let total: u32 = all.iter().map(|x| x.weight).sum();
        let t = table(&map(all.clone()));
        let mut held: HashMap<NodeId, usize> = HashMap::new();
        for id in t.iter().flatten() {
            *held.entry(*id).or_default() += 1;
        }
        for node in &all {
            let share = held.get(&node.id).copied().unwrap_or(0) as f64 / (t.len() * WIDTH) as f64;
            let target = f64::from(node.weight) / f64::from(total);
            assert!(
                (share / target - 1.0).abs() <= 0.10,
                "{n} nodes, weights {weights:?}: node {} has {share:.4}, weight share {target:.4}",
                node.id
            );
        }
    }
}

#[test]
fn too_few_nodes_is_a_clear_error() {
    let mut all = nodes(6, &[1]);
    all[0].state = NodeState::Out;
    let err = map(all)
        .place(PgId(0), WIDTH)
        .expect_err("5 usable nodes for 6 shards");
    assert_eq!(
        err,
        PlacementError::NotEnoughNodes {
            usable: 5,
            needed: 6
        }
    );
    assert!(err.to_string().contains("only 5 nodes are usable"), "{err}");
}

#[test]
fn chunks_spread_over_all_groups() {
    let m = map(nodes(6, &[1]));
    let mut seen = HashSet::new();
    for i in 0u32..100_000 {
        seen.insert(m.pg_of(&hive_codec::chunk_id(&i.to_le_bytes())));
    }
    assert_eq!(seen.len() as u64, m.pg_count());
}

#[test]
fn data_shards_spread_over_every_node_even_when_all_nodes_hold_every_group() {
    // Six nodes, six shards (4+2): every node is in every group; what varies is which
    // shard index it holds. Each should hold a data shard (index < 4) in about 4/6 of
    // the groups, so reads spread over all nodes.
    let map = map(nodes(6, &[1]));
    let groups = table(&map);
    let mut data: HashMap<NodeId, usize> = HashMap::new();
    for holders in &groups {
        for node in &holders[..4] {
            *data.entry(*node).or_default() += 1;
        }
    }
    for (node, count) in data {
        let share = count as f64 / groups.len() as f64;
        assert!(
            (0.6..0.73).contains(&share),
            "node {node} holds a data shard in {share:.3} of groups (expected about 0.667)"
        );
    }
}

/// Six nodes, then two joins and two marked out in quick succession: under the last map
/// every group's shard homes still name, for each shard index, the node that held it
/// under the first map, and under each map in between. A down node changes nothing.
#[test]
fn past_placements_keep_every_shard_findable_until_forgotten() {
    use hive_codec::{ClusterView, ErasureScheme};
    let mut view = ClusterView::new(map(nodes(6, &[1])), Default::default());
    view.classes = vec![ErasureScheme::new(4, 2).expect("4+2")];
    let mut tables = vec![table(&view.map)];
    let next = |view: &mut ClusterView, change: &dyn Fn(&mut Vec<NodeInfo>)| {
        let mut n = view.map.nodes().to_vec();
        change(&mut n);
        let epoch = Epoch(view.map.epoch().0 + 1);
        view.advance(ClusterMap::new(epoch, PG_BITS, n).expect("valid map"))
    };
    assert!(
        next(&mut view, &|n| n.push(node(6, 6, 1))),
        "a join moves slots"
    );
    tables.push(table(&view.map));
    assert!(next(&mut view, &|n| n.push(node(7, 7, 1))));
    tables.push(table(&view.map));
    assert!(next(&mut view, &|n| n[0].state = NodeState::Out));
    tables.push(table(&view.map));
    assert!(next(&mut view, &|n| n[1].state = NodeState::Out));
    tables.push(table(&view.map));
    assert!(
        !next(&mut view, &|n| n[2].state = NodeState::Down),
        "a down node keeps its slots: nothing to remember"
    );
    assert_eq!(view.history.len(), 4);
    let (first, last) = (&tables[0], &tables[tables.len() - 1]);
    assert!(
        moved(first, last) > first.len() * 2,
        "more than m slots of a group moved somewhere"
    );
    for pg in 0..view.map.pg_count() {
        let homes = view
            .shard_homes(PgId(u32::try_from(pg).expect("small")), WIDTH)
            .expect("placeable");
        for (i, slot) in homes.iter().enumerate() {
            assert_eq!(slot[0], last[pg as usize][i], "the current holder first");
            for t in &tables {
                assert!(slot.contains(&t[pg as usize][i]), "group {pg} shard {i}");
            }
            let distinct: HashSet<&NodeId> = slot.iter().collect();
            assert_eq!(distinct.len(), slot.len(), "each node once per shard");
        }
    }
}

/// A weight set to 0 and back, again and again, keeps each placement once in the
/// history, and never the current one.
#[test]
fn a_placement_met_again_is_remembered_once() {
    use hive_codec::{ClusterView, ErasureScheme};
    let mut view = ClusterView::new(map(nodes(7, &[1])), Default::default());
    view.classes = vec![ErasureScheme::new(4, 2).expect("4+2")];
    let all_in = view.map.clone();
    for (round, weight) in [0, 1, 0, 1, 0].into_iter().enumerate() {
        let mut n = view.map.nodes().to_vec();
        n[6].weight = weight;
        let epoch = Epoch(view.map.epoch().0 + 1);
        assert!(view.advance(ClusterMap::new(epoch, PG_BITS, n).expect("valid map")));
        assert_eq!(
            view.history.len(),
            1,
            "round {round}: two placements, one current"
        );
        assert!(!view.history[0].same_placement(&view.map), "round {round}");
    }
    assert!(view.history[0].same_placement(&all_in));
}
