//! Every node's two control actors that talk to the map authority: the heartbeater
//! (says the node is alive, with its store's figures, every [`HEARTBEAT_INTERVAL`]) and
//! the map follower (watches for new map epochs and publishes them inside the node).
//!
//! Each keeps at most one message in its own mailbox: the next beat or poll is sent
//! only after the current one finished.

use std::net::SocketAddr;
use std::sync::Arc;

use hive_codec::{ClusterView, NodeState};
use hive_wire::net::control::{
    Class, ControlClient, Heartbeat, MAP_WATCH_WAIT, MapMessage, NodeHealth, StoreFigures,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;

use crate::Shards;
use crate::constants::{HEARTBEAT_INTERVAL, MAP_RETRY};
use crate::repairer::RepairState;

/// The heartbeater's one message: beat now.
pub struct Beat;

/// What the heartbeater needs; cloned for every (re)start.
#[derive(Clone)]
pub struct HeartbeatArgs {
    /// The authority.
    pub authority: Arc<ControlClient>,
    /// The node's stores, for their figures.
    pub shards: Shards,
    /// Where the node serves shards.
    pub addr: SocketAddr,
    /// The repairer's figures.
    pub repair: Arc<RepairState>,
}

/// The heartbeater's state: its arguments and whether the last beat got through.
pub struct HeartbeatState {
    args: HeartbeatArgs,
    reached: Option<bool>,
}

/// Sends heartbeats.
pub struct Heartbeater;

impl Actor for Heartbeater {
    type Msg = Beat;
    type State = HeartbeatState;
    type Arguments = HeartbeatArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Beat>,
        args: HeartbeatArgs,
    ) -> Result<HeartbeatState, ActorProcessingErr> {
        let _ = myself.send_message(Beat);
        Ok(HeartbeatState {
            args,
            reached: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Beat>,
        _beat: Beat,
        state: &mut HeartbeatState,
    ) -> Result<(), ActorProcessingErr> {
        let stats = state.args.shards.stats().await?;
        let classes = state
            .args
            .shards
            .classes()
            .await?
            .into_iter()
            .map(|(k, m)| Class { k, m })
            .collect();
        let health = NodeHealth {
            classes,
            scrub: state.args.shards.scrub_figures(),
            repair: state.args.repair.figures(),
        };
        let beat = Heartbeat {
            addr: state.args.addr.to_string(),
            store: StoreFigures {
                capacity: stats.capacity,
                used: stats.used,
                live: stats.live,
                shards: stats.shards,
                stream: stats.stream,
            },
            health,
        };
        let authority = state.args.authority.addr();
        match state.args.authority.heartbeat(&beat).await {
            Ok(_) if state.reached != Some(true) => {
                tracing::info!("heartbeat: reached the map authority at {authority}");
                state.reached = Some(true);
            }
            Ok(_) => {}
            Err(err) if state.reached != Some(false) => {
                tracing::warn!("heartbeat: map authority at {authority} unreachable: {err}");
                state.reached = Some(false);
            }
            Err(_) => {}
        }
        myself.send_after(HEARTBEAT_INTERVAL, || Beat);
        Ok(())
    }
}

/// The follower's one message: ask for a newer map.
pub struct Poll;

/// What the follower needs; cloned for every (re)start.
#[derive(Clone)]
pub struct FollowerArgs {
    /// The authority.
    pub authority: Arc<ControlClient>,
    /// Where the node's current map goes (what its control service answers map
    /// questions with, on a node that is not the authority).
    pub current: watch::Sender<Arc<MapMessage>>,
}

/// Follows the cluster map.
pub struct MapFollower;

impl Actor for MapFollower {
    type Msg = Poll;
    type State = FollowerArgs;
    type Arguments = FollowerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Poll>,
        args: FollowerArgs,
    ) -> Result<FollowerArgs, ActorProcessingErr> {
        let _ = myself.send_message(Poll);
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Poll>,
        _poll: Poll,
        state: &mut FollowerArgs,
    ) -> Result<(), ActorProcessingErr> {
        let known = state.current.borrow().epoch;
        match state.authority.map(known, MAP_WATCH_WAIT).await {
            Ok(message) => {
                match ClusterView::from_message(&message) {
                    Ok(view) if view.map.epoch().0 > known => {
                        let down: Vec<String> = view
                            .map
                            .nodes()
                            .iter()
                            .filter(|n| n.state != NodeState::Up)
                            .map(|n| n.id.to_string())
                            .collect();
                        tracing::info!(
                            "map: following epoch {} ({} nodes; not up: [{}])",
                            view.map.epoch().0,
                            view.map.nodes().len(),
                            down.join(", ")
                        );
                        state.current.send_replace(Arc::new(message));
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!("map: the authority sent an unusable map: {err}"),
                }
                let _ = myself.send_message(Poll);
            }
            Err(err) => {
                tracing::debug!("map: watch failed: {err}");
                myself.send_after(MAP_RETRY, || Poll);
            }
        }
        Ok(())
    }
}
