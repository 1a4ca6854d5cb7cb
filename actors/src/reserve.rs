//! Reservations (fallocate) held on the nodes. The namespace records each file's
//! reserve and their sum (`Op::Allocate`); the metadata node turns the sum into shard
//! bytes and tells every node its share (`OP_RESERVE`), right after each reservation
//! and every [`RESERVE_REFRESH`]. A node then refuses a shard put that does not draw on
//! a reservation once it would leave less free space than its share (`code::FULL`).

use std::collections::HashMap;
use std::sync::Arc;

use hive_wire::NodeId;
use hive_wire::net::Client;
use hive_wire::net::control::{ControlClient, MapMessage, MapNode, state};
use tokio::sync::{mpsc, oneshot, watch};

use crate::MetaStore;
use crate::constants::{RESERVE_MARGIN_PERCENT, RESERVE_ORDERS, RESERVE_REFRESH, RESERVE_SPARE};

/// An order to tell the nodes now, answered once they were told (or why some were not).
type Order = oneshot::Sender<Result<(), String>>;

/// Where reservations are sent to be made known to the nodes.
#[derive(Clone)]
pub struct Reservations {
    orders: mpsc::Sender<Order>,
}

impl Reservations {
    /// Tells every node its room now; returns once each up node has it.
    pub async fn tell(&self) -> Result<(), String> {
        let (order, answer) = oneshot::channel();
        self.orders
            .send(order)
            .await
            .map_err(|_| "the reservation keeper has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the reservation keeper has stopped".to_string())?
    }
}

/// What the keeper needs.
pub struct ReserveArgs {
    /// This node's endpoint, with its node identity (only nodes may set the room).
    pub client: Arc<Client>,
    /// The cluster map this node follows.
    pub map: watch::Receiver<Arc<MapMessage>>,
    /// The namespace.
    pub meta: Arc<MetaStore>,
}

/// Starts the keeper and hands the metadata service its orders.
pub fn start(args: ReserveArgs) {
    let (orders, queue) = mpsc::channel(RESERVE_ORDERS);
    args.meta.keep_reservations(Reservations { orders });
    tokio::spawn(run(args, queue));
}

async fn run(args: ReserveArgs, mut queue: mpsc::Receiver<Order>) {
    let mut told = None;
    // What each node was last told, where it said it heard.
    let mut holding = HashMap::new();
    loop {
        let order = tokio::select! {
            order = queue.recv() => match order {
                Some(order) => Some(order),
                None => return,
            },
            () = tokio::time::sleep(RESERVE_REFRESH) => None,
        };
        // Only the group's leader speaks for the namespace; an order comes from it.
        if order.is_none() && !args.meta.leading() {
            continue;
        }
        let result = tell(&args, &mut holding, order.is_none()).await;
        match (&result, order) {
            (_, Some(order)) => {
                let _ = order.send(result.clone().map(|_| ()));
            }
            (Err(e), None) => tracing::warn!("reservations: {e}"),
            (Ok(_), None) => {}
        }
        if let Ok(bytes) = result
            && told != Some(bytes)
        {
            tracing::info!("reservations: {bytes} bytes of shards kept across the nodes");
            told = Some(bytes);
        }
    }
}

/// Tells each node that is not down or out its room; the reserved shard bytes. A
/// `refresh` leaves out the nodes already told they keep nothing, when they still keep
/// nothing: a node that restarted keeps nothing too. `holding` is what each node was
/// last told.
async fn tell(
    args: &ReserveArgs,
    holding: &mut HashMap<NodeId, u64>,
    refresh: bool,
) -> Result<u64, String> {
    let (reserved, overhead) = args
        .meta
        .read(|ns| {
            let overhead = ns
                .volumes()?
                .iter()
                .map(|(_, v)| (u64::from(v.k) + u64::from(v.m), u64::from(v.k)))
                .filter(|(_, k)| *k > 0)
                .max_by(|(wa, ka), (wb, kb)| (wa * kb).cmp(&(wb * ka)))
                .unwrap_or((1, 1));
            Ok((ns.reserved()?, overhead))
        })
        .await
        .map_err(|e| format!("reading the reserved sum: {}", e.message))?;
    let shard_bytes = scale(reserved, overhead.0, overhead.1);
    let map = args.map.borrow().clone();
    let mut calls = tokio::task::JoinSet::new();
    for (entry, bytes) in rooms(&map, shard_bytes) {
        let node = NodeId(entry.id);
        if refresh && bytes == 0 && holding.get(&node) == Some(&0) {
            continue;
        }
        let Ok(addr) = entry.addr.parse() else {
            continue;
        };
        let peer = ControlClient::new(args.client.clone(), addr, node);
        calls.spawn(async move { (node, bytes, peer.reserve(bytes).await) });
    }
    let mut failed = Vec::new();
    while let Some(done) = calls.join_next().await {
        match done {
            Ok((node, bytes, Ok(()))) => {
                holding.insert(node, bytes);
            }
            Ok((node, _, Err(e))) => {
                holding.remove(&node);
                failed.push(format!("node {node}: {e}"));
            }
            Err(e) => failed.push(format!("a call failed: {e}")),
        }
    }
    if failed.is_empty() {
        Ok(shard_bytes)
    } else {
        Err(format!(
            "not every node was told its room: {}",
            failed.join("; ")
        ))
    }
}

/// `bytes` × `num` / `den`, rounded up, saturating.
fn scale(bytes: u64, num: u64, den: u64) -> u64 {
    let scaled = (u128::from(bytes) * u128::from(num)).div_ceil(u128::from(den.max(1)));
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

/// The room each node that is not down or out keeps for `shard_bytes` of reserved
/// shards: its weight's share of them, [`RESERVE_MARGIN_PERCENT`] more, and
/// [`RESERVE_SPARE`]; nothing when nothing is reserved.
pub fn rooms(map: &MapMessage, shard_bytes: u64) -> Vec<(&MapNode, u64)> {
    let serving: Vec<_> = map.nodes.iter().filter(|n| n.state == state::UP).collect();
    let total: u64 = serving.iter().map(|n| u64::from(n.weight)).sum();
    serving
        .into_iter()
        .map(|n| {
            let room = if shard_bytes == 0 || total == 0 {
                0
            } else {
                let share = scale(shard_bytes, u64::from(n.weight), total);
                scale(share, 100 + RESERVE_MARGIN_PERCENT, 100).saturating_add(RESERVE_SPARE)
            };
            (n, room)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, weight: u32, state: u8) -> MapNode {
        MapNode {
            id,
            domain: id as u32,
            weight,
            state,
            joined: 1,
            addr: format!("127.0.0.1:{}", 7000 + id),
            labels: String::new(),
        }
    }

    fn map(nodes: Vec<MapNode>) -> MapMessage {
        MapMessage {
            epoch: 1,
            pg_bits: 4,
            nodes,
            classes: vec![],
            repair_rate: 0,
            history: Vec::new(),
        }
    }

    #[test]
    fn each_up_node_keeps_its_weights_share_with_a_margin() {
        let m = map(vec![
            node(1, 1, state::UP),
            node(2, 3, state::UP),
            node(3, 1, state::DOWN),
            node(4, 1, state::OUT),
        ]);
        let rooms: Vec<_> = (rooms(&m, 400 << 20).into_iter())
            .map(|(n, room)| (NodeId(n.id), room))
            .collect();
        assert_eq!(
            rooms,
            vec![
                (NodeId(1), (125 << 20) + RESERVE_SPARE),
                (NodeId(2), (375 << 20) + RESERVE_SPARE),
            ]
        );
        assert!(super::rooms(&m, 0).iter().all(|(_, room)| *room == 0));
    }

    #[test]
    fn scaling_rounds_up_and_saturates() {
        assert_eq!(scale(10, 6, 4), 15);
        assert_eq!(scale(11, 6, 4), 17);
        assert_eq!(scale(u64::MAX, 6, 4), u64::MAX);
        assert_eq!(scale(5, 1, 0), 5);
    }
}
