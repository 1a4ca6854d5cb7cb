//! The map authority: a ractor actor that owns [`Membership`], persists every new map
//! epoch before anyone can see it, and publishes it on a watch channel that the
//! control service's map watches read.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hive_codec::{ClusterMap, ClusterView};
use hive_wire::net::control::{MapMessage, NodeStatus, OwedShard, StatusMessage};
use hive_wire::{Epoch, NodeId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;

use crate::constants::{MEMBERSHIP_TICK, OWED_KEPT};
use crate::map_file;
use crate::membership::{Beat, Membership};

/// Messages to the map authority.
pub enum AuthorityMsg {
    /// A node's heartbeat; answered with the current epoch.
    Heartbeat(NodeId, Box<Beat>, RpcReplyPort<u64>),
    /// Look for silent nodes.
    Tick,
    /// Shards a writer could not store.
    Owed(Vec<OwedShard>),
    /// The cluster's status.
    Status(RpcReplyPort<StatusMessage>),
    /// An administrator marks a node out; answered with the epoch that did, or why not.
    NodeOut(NodeId, RpcReplyPort<Result<u64, String>>),
    /// An administrator sets the repair rate; answered with the current epoch.
    RepairRate(u64, RpcReplyPort<Result<u64, String>>),
}

/// What the authority starts from; cloned for every (re)start.
#[derive(Clone)]
pub struct AuthorityArgs {
    /// The map file: loaded if present, rewritten (atomically, synced) at every epoch.
    pub path: PathBuf,
    /// Placement-group bits of a new map.
    pub pg_bits: u8,
    /// Silence after which a node is marked down.
    pub timeout: Duration,
    /// Silence after which a down node is marked out (its shards rebuilt elsewhere);
    /// `None`: only an administrator marks nodes out.
    pub out_after: Option<Duration>,
    /// Storage classes known before any shard of them is stored (the default volume's,
    /// when this node also hosts the metadata service).
    pub classes: Vec<hive_codec::ErasureScheme>,
    /// Where each published map goes.
    pub published: watch::Sender<Arc<MapMessage>>,
}

/// The authority's state.
pub struct AuthorityState {
    membership: Membership,
    args: AuthorityArgs,
    /// Shards reported owed since start, and the most recent of them.
    owed_total: u64,
    owed: VecDeque<OwedShard>,
}

/// The map authority actor.
pub struct MapAuthority;

/// Loads the map at `path`, or an empty map of `2^pg_bits` groups at epoch 0.
fn load(path: &Path, pg_bits: u8) -> Result<ClusterView, ActorProcessingErr> {
    match map_file::read(path)? {
        Some(view) => Ok(view),
        None => Ok(ClusterView::new(
            ClusterMap::new(Epoch(0), pg_bits, Vec::new())?,
            Default::default(),
        )),
    }
}

impl AuthorityState {
    /// Persists and publishes the current map (a new epoch).
    fn commit(&self) -> Result<(), ActorProcessingErr> {
        let view = self.membership.view();
        map_file::write(&self.args.path, view)?;
        self.args
            .published
            .send_replace(Arc::new(view.to_message()));
        let map = &view.map;
        let up = map
            .nodes()
            .iter()
            .filter(|n| n.state == hive_codec::NodeState::Up)
            .count();
        tracing::info!(
            "map: new epoch {} ({up} of {} nodes up)",
            map.epoch().0,
            map.nodes().len()
        );
        Ok(())
    }
}

impl Actor for MapAuthority {
    type Msg = AuthorityMsg;
    type State = AuthorityState;
    type Arguments = AuthorityArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: AuthorityArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let view = load(&args.path, args.pg_bits)?;
        args.published.send_replace(Arc::new(view.to_message()));
        tracing::info!(
            "map: authority started at epoch {} with {} nodes",
            view.map.epoch().0,
            view.map.nodes().len()
        );
        myself.send_interval(MEMBERSHIP_TICK, || AuthorityMsg::Tick);
        let mut state = AuthorityState {
            membership: Membership::new(view, Instant::now(), args.timeout)
                .with_out_after(args.out_after),
            args,
            owed_total: 0,
            owed: VecDeque::new(),
        };
        let known = state.args.classes.clone();
        if state.membership.add_classes(&known)?.is_some() {
            state.commit()?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: AuthorityMsg,
        state: &mut AuthorityState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            AuthorityMsg::Heartbeat(node, beat, reply) => {
                let known = state.membership.view().map.node(node).map(|n| n.state);
                let addr = beat.addr;
                if let Some(epoch) = state.membership.on_heartbeat(Instant::now(), node, *beat)? {
                    match known {
                        None => tracing::info!("map: node {node} joined at {addr}"),
                        Some(_) => tracing::info!("map: node {node} is up at {addr}"),
                    }
                    debug_assert_eq!(state.membership.view().map.epoch(), epoch);
                    state.commit()?;
                }
                let _ = reply.send(state.membership.view().map.epoch().0);
            }
            AuthorityMsg::Tick => {
                if state.membership.on_tick(Instant::now())?.is_some() {
                    for node in state.membership.marked_down() {
                        tracing::warn!("map: node {node} is down (no heartbeat)");
                    }
                    for node in state.membership.marked_out() {
                        tracing::warn!(
                            "map: node {node} is out (down past the out grace); its shards are rebuilt elsewhere"
                        );
                    }
                    state.commit()?;
                }
            }
            AuthorityMsg::NodeOut(node, reply) => {
                let answer = match state.membership.set_out(node) {
                    Ok(Some(_)) => {
                        tracing::warn!(
                            "map: node {node} is out (by an administrator); its shards are rebuilt elsewhere"
                        );
                        state.commit()?;
                        Ok(state.membership.view().map.epoch().0)
                    }
                    Ok(None) => Ok(state.membership.view().map.epoch().0),
                    Err(err) => Err(err.to_string()),
                };
                let _ = reply.send(answer);
            }
            AuthorityMsg::RepairRate(rate, reply) => {
                let answer = match state.membership.set_repair_rate(rate) {
                    Ok(changed) => {
                        if changed.is_some() {
                            tracing::info!("map: repair rate set to {rate} bytes/s");
                            state.commit()?;
                        }
                        Ok(state.membership.view().map.epoch().0)
                    }
                    Err(err) => Err(err.to_string()),
                };
                let _ = reply.send(answer);
            }
            AuthorityMsg::Owed(shards) => {
                state.owed_total += shards.len() as u64;
                for shard in shards {
                    tracing::warn!(
                        node = shard.node,
                        "owed: shard {} of chunk {} ({}+{}) on node {}",
                        shard.index,
                        hive_wire::ChunkId(shard.chunk),
                        shard.k,
                        shard.m,
                        NodeId(shard.node)
                    );
                    if state.owed.len() == OWED_KEPT {
                        state.owed.pop_front();
                    }
                    state.owed.push_back(shard);
                }
            }
            AuthorityMsg::Status(reply) => {
                let now = Instant::now();
                let nodes = state
                    .membership
                    .liveness(now)
                    .into_iter()
                    .map(|(id, l)| NodeStatus {
                        id: id.0,
                        store: l.store,
                        health: l.health,
                        heartbeat_age_ms: l.silent_for.map_or(u64::MAX, |d| {
                            u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
                        }),
                    })
                    .collect();
                let _ = reply.send(StatusMessage {
                    map: state.membership.view().to_message(),
                    nodes,
                    shards_owed: state.owed_total,
                });
            }
        }
        Ok(())
    }
}
