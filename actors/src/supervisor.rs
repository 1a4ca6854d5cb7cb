//! The node supervisor: starts the node's control actors linked to itself and restarts
//! one that fails, from the same arguments. More than [`MAX_RESTARTS`] restarts within
//! [`RESTART_WINDOW`] means something is persistently wrong: the supervisor stops, and
//! the node with it.

use std::collections::VecDeque;
use std::time::Instant;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::authority::{AuthorityArgs, MapAuthority};
use crate::constants::{MAX_RESTARTS, RESTART_WINDOW};
use crate::heartbeat::{FollowerArgs, HeartbeatArgs, Heartbeater, MapFollower};

/// One supervised control actor and what it starts from.
#[derive(Clone)]
pub enum Child {
    /// The map authority (on the one node that holds the map).
    Authority {
        /// Its registry name, which the control service looks up.
        name: String,
        /// Its arguments.
        args: AuthorityArgs,
    },
    /// The heartbeater.
    Heartbeater(HeartbeatArgs),
    /// The map follower.
    Follower(FollowerArgs),
}

impl Child {
    fn name(&self) -> String {
        match self {
            Child::Authority { name, .. } => name.clone(),
            Child::Heartbeater(_) => "heartbeater".into(),
            Child::Follower(_) => "map-follower".into(),
        }
    }

    async fn start(&self, supervisor: ActorCell) -> Result<ActorCell, ActorProcessingErr> {
        Ok(match self.clone() {
            Child::Authority { name, args } => {
                MapAuthority::spawn_linked(Some(name), MapAuthority, args, supervisor)
                    .await?
                    .0
                    .get_cell()
            }
            Child::Heartbeater(args) => {
                Heartbeater::spawn_linked(None, Heartbeater, args, supervisor)
                    .await?
                    .0
                    .get_cell()
            }
            Child::Follower(args) => MapFollower::spawn_linked(None, MapFollower, args, supervisor)
                .await?
                .0
                .get_cell(),
        })
    }
}

/// The supervisor's state.
pub struct SupervisorState {
    children: Vec<(Child, ActorCell)>,
    restarts: VecDeque<Instant>,
}

/// Supervises the node's control actors.
pub struct NodeSupervisor;

impl Actor for NodeSupervisor {
    type Msg = ();
    type State = SupervisorState;
    type Arguments = Vec<Child>;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        children: Vec<Child>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut started = Vec::with_capacity(children.len());
        for child in children {
            let cell = child.start(myself.get_cell()).await?;
            started.push((child, cell));
        }
        Ok(SupervisorState {
            children: started,
            restarts: VecDeque::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<()>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        for (_, cell) in &state.children {
            cell.stop(None);
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let Some(slot) = state
            .children
            .iter()
            .position(|(_, c)| c.get_id() == cell.get_id())
        else {
            return Ok(());
        };
        let now = Instant::now();
        state
            .restarts
            .retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        let name = state.children[slot].0.name();
        if state.restarts.len() >= MAX_RESTARTS {
            tracing::error!(
                "supervisor: {name} failed ({why}) after {MAX_RESTARTS} restarts within {RESTART_WINDOW:?}; stopping"
            );
            myself.stop(Some(format!("{name} keeps failing: {why}")));
            return Ok(());
        }
        state.restarts.push_back(now);
        tracing::warn!("supervisor: {name} failed ({why}); restarting it");
        let child = state.children[slot].0.clone();
        let cell = child.start(myself.get_cell()).await?;
        state.children[slot].1 = cell;
        Ok(())
    }
}
