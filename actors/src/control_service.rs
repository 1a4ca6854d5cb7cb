//! The control service. The map authority serves all of it: heartbeats, the map (with
//! watches that wait for a newer epoch), status and owed-shard reports. Every other
//! node serves the map it follows (so clients can learn the map while the authority is
//! unreachable) and refuses the rest, naming the authority. Every node also takes an
//! administrator's scrub order and the metadata node's word on the room it keeps for
//! reservations.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hive_wire::NodeId;
use hive_wire::net::auth::{Operation, authorise};
use hive_wire::net::control::{
    Control, Heartbeat, HeartbeatAck, MAP_WATCH_WAIT, MapMessage, MapQuery, NodeOrder, NodeRemove,
    NodeSet, OP_HEARTBEAT, OP_MAP, OP_NODE_IN, OP_NODE_OUT, OP_NODE_REMOVE, OP_NODE_SET, OP_OWED,
    OP_REPAIR_RATE, OP_RESERVE, OP_SCRUB, OP_STATUS, OwedReport, RepairRate, Reserve, ScrubOrder,
    ScrubTicket, state,
};
use hive_wire::net::message::{self, check_version};
use hive_wire::net::rpc::{Handler, Peer, Refusal, Request, Response, code};
use hive_wire::net::{Identity, Role};
use ractor::{ActorRef, call};
use tokio::sync::{Semaphore, watch};

use crate::Shards;
use crate::authority::AuthorityMsg;
use crate::constants::CONTROL_INFLIGHT;
use crate::membership::Beat;

/// Where a node's control service sends what only the authority answers.
#[derive(Clone)]
pub enum Authority {
    /// This node is the authority, registered under this ractor name (so a restarted
    /// authority actor is found again).
    Here(String),
    /// Another node is.
    Elsewhere(NodeId),
}

/// Serves the control service, with maps from `published` (the authority's own, or the
/// one this node follows).
pub fn control_service(
    authority: Authority,
    published: watch::Receiver<Arc<MapMessage>>,
    shards: Shards,
) -> Handler {
    let inflight = Arc::new(Semaphore::new(CONTROL_INFLIGHT));
    Arc::new(move |peer: Peer, request: Request| {
        let (authority, published, inflight, shards) = (
            authority.clone(),
            published.clone(),
            inflight.clone(),
            shards.clone(),
        );
        Box::pin(async move {
            // Bounds what waits in the authority's mailbox (ractor's are unbounded).
            let _permit = inflight
                .acquire_owned()
                .await
                .map_err(|_| Refusal::new(code::UNAVAILABLE, "the node is stopping"))?;
            match request.op {
                OP_SCRUB => return scrub(&shards, &peer, &request),
                OP_RESERVE => return reserve(&shards, &peer, &request),
                _ => {}
            }
            handle(&authority, published, &peer, request).await
        })
    })
}

/// The metadata node's word on the room this node keeps for reservations.
fn reserve(shards: &Shards, peer: &Peer, request: &Request) -> Result<Response, Refusal> {
    check_version::<Control>(request)?;
    authorise(peer, Operation::NodeInternal)?;
    let order: Reserve = message::decode("Reserve", &request.message).map_err(bad)?;
    shards.keep_for_reservations(order.bytes);
    Ok(Response::default())
}

/// An administrator's order to scrub this node's stores now.
fn scrub(shards: &Shards, peer: &Peer, request: &Request) -> Result<Response, Refusal> {
    check_version::<Control>(request)?;
    authorise(peer, Operation::Administer)?;
    let order: ScrubOrder = message::decode("ScrubOrder", &request.message).map_err(bad)?;
    let ticket = shards.order_scrub(order.bytes_per_second);
    tracing::info!(
        "scrub: ordered at {} bytes/s (0: no limit), ticket {ticket}",
        order.bytes_per_second
    );
    Ok(Response {
        message: message::encode(&ScrubTicket { ticket }),
        body: Bytes::new(),
    })
}

/// An administrator's answer from the authority: the epoch, or why it refused.
fn refused_or_epoch(answer: Result<u64, String>) -> Result<Response, Refusal> {
    let epoch = answer.map_err(|why| Refusal::new(code::BAD_REQUEST, why))?;
    Ok(Response {
        message: message::encode(&HeartbeatAck { epoch }),
        body: Bytes::new(),
    })
}

fn bad(e: message::MessageError) -> Refusal {
    Refusal::new(code::BAD_REQUEST, e.to_string())
}

fn authority_ref(authority: &Authority) -> Result<ActorRef<AuthorityMsg>, Refusal> {
    let name = match authority {
        Authority::Here(name) => name,
        Authority::Elsewhere(node) => {
            return Err(Refusal::new(
                code::UNSUPPORTED,
                format!("this node is not the map authority; node {node} is"),
            ));
        }
    };
    ractor::registry::where_is(name.as_str())
        .map(ActorRef::from)
        .ok_or_else(|| {
            Refusal::new(
                code::UNAVAILABLE,
                "the map authority is restarting; try again",
            )
        })
}

fn unavailable(e: impl std::fmt::Display) -> Refusal {
    Refusal::new(code::UNAVAILABLE, format!("the map authority failed: {e}"))
}

async fn handle(
    authority: &Authority,
    mut published: watch::Receiver<Arc<MapMessage>>,
    peer: &Peer,
    request: Request,
) -> Result<Response, Refusal> {
    check_version::<Control>(&request)?;
    let answer = |bytes: Bytes| Response {
        message: bytes,
        body: Bytes::new(),
    };
    match request.op {
        OP_HEARTBEAT => {
            authorise(peer, Operation::NodeInternal)?;
            let authority = authority_ref(authority)?;
            let Some(Identity {
                role: Role::Node,
                id,
            }) = peer.identity
            else {
                return Err(Refusal::new(code::FORBIDDEN, "only nodes send heartbeats"));
            };
            let removed = published
                .borrow()
                .nodes
                .iter()
                .any(|n| n.id == id && n.state == state::REMOVED);
            if removed {
                return Err(Refusal::new(
                    code::FORBIDDEN,
                    format!("node {} was removed from the cluster", NodeId(id)),
                ));
            }
            let hb: Heartbeat = message::decode("Heartbeat", &request.message).map_err(bad)?;
            let addr = hb.addr.parse().map_err(|_| {
                Refusal::new(code::BAD_REQUEST, format!("{:?} is not ip:port", hb.addr))
            })?;
            let beat = Beat {
                addr,
                store: hb.store,
                health: hb.health,
            };
            let epoch = call!(
                authority,
                AuthorityMsg::Heartbeat,
                NodeId(id),
                Box::new(beat)
            )
            .map_err(unavailable)?;
            Ok(answer(message::encode(&HeartbeatAck { epoch })))
        }
        OP_MAP => {
            authorise(peer, Operation::ShardIo)?;
            let query: MapQuery = message::decode("MapQuery", &request.message).map_err(bad)?;
            // A node that follows an epoch past the authority's own (the authority's
            // copy trailed a lost map file) moves the authority past it.
            let from_node = peer.identity.is_some_and(|i| i.role == Role::Node);
            if from_node
                && query.known_epoch > published.borrow().epoch
                && let Ok(authority) = authority_ref(authority)
            {
                let _ = authority.send_message(AuthorityMsg::Behind(query.known_epoch));
            }
            let wait = Duration::from_millis(u64::from(query.wait_ms)).min(MAP_WATCH_WAIT);
            // Wait for an epoch past the caller's, or answer with the current map.
            let newer = async {
                published
                    .wait_for(|m| m.epoch > query.known_epoch)
                    .await
                    .map(|m| m.clone())
            };
            let waited = tokio::time::timeout(wait, newer).await;
            let map = match waited {
                Ok(Ok(map)) => map,
                _ => published.borrow().clone(),
            };
            Ok(answer(message::encode(map.as_ref())))
        }
        OP_STATUS => {
            authorise(peer, Operation::ShardIo)?;
            let status =
                call!(authority_ref(authority)?, AuthorityMsg::Status).map_err(unavailable)?;
            Ok(answer(message::encode(&status)))
        }
        OP_OWED => {
            authorise(peer, Operation::ShardIo)?;
            let report: OwedReport =
                message::decode("OwedReport", &request.message).map_err(bad)?;
            authority_ref(authority)?
                .send_message(AuthorityMsg::Owed(report.shards))
                .map_err(unavailable)?;
            Ok(answer(Bytes::new()))
        }
        OP_NODE_OUT | OP_NODE_IN => {
            authorise(peer, Operation::Administer)?;
            let order: NodeOrder = message::decode("NodeOrder", &request.message).map_err(bad)?;
            let node = NodeId(order.node);
            let authority = authority_ref(authority)?;
            let answer = if request.op == OP_NODE_IN {
                call!(authority, AuthorityMsg::NodeIn, node)
            } else {
                call!(authority, AuthorityMsg::NodeOut, node)
            };
            refused_or_epoch(answer.map_err(unavailable)?)
        }
        OP_NODE_REMOVE => {
            authorise(peer, Operation::Administer)?;
            let order: NodeRemove = message::decode("NodeRemove", &request.message).map_err(bad)?;
            let answer = call!(
                authority_ref(authority)?,
                AuthorityMsg::NodeRemove,
                NodeId(order.node),
                order.force
            )
            .map_err(unavailable)?;
            refused_or_epoch(answer)
        }
        OP_NODE_SET => {
            authorise(peer, Operation::Administer)?;
            let order: NodeSet = message::decode("NodeSet", &request.message).map_err(bad)?;
            let answer = call!(
                authority_ref(authority)?,
                AuthorityMsg::NodeSet,
                NodeId(order.node),
                order.weight,
                order.labels
            )
            .map_err(unavailable)?;
            refused_or_epoch(answer)
        }
        OP_REPAIR_RATE => {
            authorise(peer, Operation::Administer)?;
            let order: RepairRate = message::decode("RepairRate", &request.message).map_err(bad)?;
            let answer = call!(
                authority_ref(authority)?,
                AuthorityMsg::RepairRate,
                order.bytes_per_second
            )
            .map_err(unavailable)?;
            refused_or_epoch(answer)
        }
        op => Err(Refusal::new(
            code::BAD_REQUEST,
            format!("unknown control operation {op}"),
        )),
    }
}

/// Routes requests to handlers by protocol id; a protocol with no handler is refused.
pub fn route(routes: Vec<(u16, Handler)>) -> Handler {
    let routes: Arc<[(u16, Handler)]> = routes.into();
    Arc::new(move |peer: Peer, request: Request| {
        match routes.iter().find(|(p, _)| *p == request.protocol) {
            Some((_, handler)) => handler(peer, request),
            None => {
                let protocol = request.protocol;
                Box::pin(async move {
                    Err(Refusal::new(
                        code::UNSUPPORTED,
                        format!("no service for protocol {protocol} on this node"),
                    ))
                })
            }
        }
    })
}
