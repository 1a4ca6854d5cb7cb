//! The map authority: a ractor actor that owns [`Membership`], persists every new map
//! epoch before anyone can see it, and publishes it on a watch channel that the
//! control service's map watches read.
//!
//! Where the node is given the metadata group, the map also lives there: [`keep`]
//! commits each published epoch to the group (the highest epoch wins), and an
//! authority whose map file is missing or damaged starts again from the group's copy,
//! never from an empty map (see [`Restore`]). Epochs only grow: a node that follows
//! an epoch past the authority's (a copy that trailed the lost file) moves the
//! authority past it ([`AuthorityMsg::Behind`]).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hive_codec::{ClusterMap, ClusterView};
use hive_wire::net::control::{MapMessage, NodeStatus, OwedShard, StatusMessage};
use hive_wire::net::meta::{MetaCall, MetaClient, MetaReply};
use hive_wire::net::rpc::RpcError;
use hive_wire::{Epoch, NodeId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;

use crate::constants::{
    MAP_CONFIRM_PATIENCE, MAP_GROUP_RETRY, MAX_EPOCH_LEAP, MEMBERSHIP_TICK, OWED_KEPT,
};
use crate::map_file;
use crate::membership::{Beat, Membership, MembershipError};

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
    /// An administrator puts a node into placement; the epoch after, or why not.
    NodeIn(NodeId, RpcReplyPort<Result<u64, String>>),
    /// An administrator sets a node's weight or failure-domain labels; answered with the
    /// current epoch, or why not.
    NodeSet(
        NodeId,
        Option<u32>,
        Option<String>,
        RpcReplyPort<Result<u64, String>>,
    ),
    /// An administrator removes a node (forced or not); answered with the current
    /// epoch, or why not.
    NodeRemove(NodeId, bool, RpcReplyPort<Result<u64, String>>),
    /// An administrator sets the repair rate; answered with the current epoch.
    RepairRate(u64, RpcReplyPort<Result<u64, String>>),
    /// The metadata group's copy of the map (`None`: it keeps none).
    Kept(Option<Box<MapMessage>>),
    /// A node follows this epoch, past the authority's own.
    Behind(u64),
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
    /// The metadata group that keeps a copy of the map, if this node has one.
    pub group: Option<Arc<MetaClient>>,
}

/// Why the authority waits for the metadata group's copy of the map before it
/// publishes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restore {
    /// The map file is missing: the group's copy, or a new map if it keeps none (a
    /// new cluster).
    Missing,
    /// The map file was damaged (set aside): the group's copy, or nothing until an
    /// operator restores the file.
    Damaged,
    /// The map file was read and its map published, but the group's copy may be
    /// newer (a file put back from an old backup, or a copy that gained epochs a
    /// node moved it past): the copy if newer, else the file, or the file once the
    /// group has not answered by `until`. Changing the map before that could give an
    /// epoch number the copy already has to other contents.
    Confirming { until: Instant },
}

/// The authority's state.
pub struct AuthorityState {
    membership: Membership,
    args: AuthorityArgs,
    /// Shards reported owed since start, and the most recent of them.
    owed_total: u64,
    owed: VecDeque<OwedShard>,
    /// Waiting for the group's copy: nothing is published or changed meanwhile.
    restoring: Option<Restore>,
    /// The task asking the group for its copy.
    asking: Option<tokio::task::JoinHandle<()>>,
}

/// The map authority actor.
pub struct MapAuthority;

/// An empty map of `2^pg_bits` groups at epoch 0.
fn empty(pg_bits: u8) -> Result<ClusterView, ActorProcessingErr> {
    Ok(ClusterView::new(
        ClusterMap::new(Epoch(0), pg_bits, Vec::new())?,
        Default::default(),
    ))
}

/// Loads the map at `path`: the view to start from, and whether the metadata group's
/// copy must be waited for. Without a group, a missing file is a new map and a
/// damaged one an error; with one, a damaged file is set aside (renamed) and both
/// wait for the group's copy.
fn load(
    path: &Path,
    pg_bits: u8,
    group: bool,
) -> Result<(ClusterView, Option<Restore>), ActorProcessingErr> {
    match (map_file::read(path), group) {
        (Ok(Some(view)), false) => Ok((view, None)),
        (Ok(Some(view)), true) => Ok((
            view,
            Some(Restore::Confirming {
                until: Instant::now() + MAP_CONFIRM_PATIENCE,
            }),
        )),
        (Ok(None), false) => Ok((empty(pg_bits)?, None)),
        (Err(e), false) => Err(e.into()),
        (Ok(None), true) => {
            tracing::warn!(
                "map: no map file at {}; waiting for the metadata group's copy",
                path.display()
            );
            Ok((empty(pg_bits)?, Some(Restore::Missing)))
        }
        (Err(e), true) => {
            let aside = damaged_name(path);
            std::fs::rename(path, &aside)
                .map_err(|r| format!("{e}; setting it aside as {}: {r}", aside.display()))?;
            tracing::error!(
                "map: {e}; set aside as {}; waiting for the metadata group's copy",
                aside.display()
            );
            Ok((empty(pg_bits)?, Some(Restore::Damaged)))
        }
    }
}

/// Where a damaged map file is set aside: beside it, named for the time, so a second
/// one does not replace the first.
fn damaged_name(path: &Path) -> PathBuf {
    let secs = hive_wire::net::enroll::now_unix();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".damaged-{secs}"));
    path.with_file_name(name)
}

/// Asks `group` for its copy of the map until it answers, and tells `authority`.
async fn ask_group(group: Arc<MetaClient>, authority: ActorRef<AuthorityMsg>) {
    let mut failures = 0u32;
    loop {
        match group.call("", 0, 0, MetaCall::ClusterMap).await {
            Ok(MetaReply::ClusterMap(kept)) => {
                let _ = authority.send_message(AuthorityMsg::Kept(kept));
                return;
            }
            Ok(other) => tracing::error!("map: the metadata group answered {other:?} for its map"),
            Err(e) => group_unreachable("asking the metadata group for its map", &e, failures),
        }
        failures += 1;
        tokio::time::sleep(MAP_GROUP_RETRY).await;
    }
}

/// Logs a failed call to the group: the first, then every tenth.
fn group_unreachable(what: &str, e: &RpcError, failures: u32) {
    if failures.is_multiple_of(10) {
        tracing::warn!("map: {what}: {e}; trying again every {MAP_GROUP_RETRY:?}");
    }
}

/// Commits every map published on `maps` to the metadata group, newest first: the
/// group keeps the highest epoch it was given. Runs for the node's life; a map the
/// group cannot take now is tried again (only the newest: the group keeps one).
pub async fn keep(group: Arc<MetaClient>, mut maps: watch::Receiver<Arc<MapMessage>>) {
    let mut kept = 0;
    let mut failures = 0u32;
    loop {
        let map = maps.borrow_and_update().clone();
        if map.epoch > kept {
            match group
                .call("", 0, 0, MetaCall::KeepMap(Box::new(map.as_ref().clone())))
                .await
            {
                Ok(MetaReply::Done) => {
                    tracing::info!("map: epoch {} kept in the metadata group", map.epoch);
                    kept = map.epoch;
                    failures = 0;
                }
                Ok(other) => {
                    tracing::error!("map: the metadata group answered {other:?} to keep the map");
                    failures += 1;
                }
                Err(e) => {
                    group_unreachable("keeping the map in the metadata group", &e, failures);
                    failures += 1;
                }
            }
            if failures > 0 {
                tokio::time::sleep(MAP_GROUP_RETRY).await;
                continue;
            }
        }
        if maps.changed().await.is_err() {
            return;
        }
    }
}

impl AuthorityState {
    /// Adds the storage classes known from configuration that the map lacks.
    fn add_known_classes(&mut self) -> Result<(), ActorProcessingErr> {
        let known = self.args.classes.clone();
        if self.membership.add_classes(&known)?.is_some() {
            self.commit()?;
        }
        Ok(())
    }

    /// Takes the metadata group's copy of the map, if it is newer than the one held
    /// or the authority is waiting for it.
    fn on_kept(&mut self, kept: Option<Box<MapMessage>>) -> Result<(), ActorProcessingErr> {
        let current = self.membership.view().map.epoch().0;
        let file_only = matches!(self.restoring, None | Some(Restore::Confirming { .. }));
        match (kept, self.restoring) {
            (Some(map), restoring) if !file_only || map.epoch > current => {
                let view = ClusterView::from_message(&map)?;
                tracing::warn!(
                    "map: took epoch {} with {} nodes from the metadata group's copy (this authority had {})",
                    map.epoch,
                    map.nodes.len(),
                    match restoring {
                        None | Some(Restore::Confirming { .. }) => format!("epoch {current}"),
                        Some(Restore::Missing) => "no map file".to_string(),
                        Some(Restore::Damaged) => "a damaged map file".to_string(),
                    }
                );
                self.membership = Membership::new(view, Instant::now(), self.args.timeout)
                    .with_out_after(self.args.out_after);
                self.restoring = None;
                self.commit()?;
                self.add_known_classes()?;
            }
            (Some(map), restoring) => {
                tracing::debug!(
                    "map: the metadata group keeps epoch {}; this authority is at {current}",
                    map.epoch
                );
                if restoring.is_some() {
                    self.go_on_from_the_file("the metadata group's copy is not newer")?;
                }
            }
            (None, Some(Restore::Confirming { .. })) => {
                self.go_on_from_the_file("the metadata group keeps no copy yet")?;
            }
            (None, Some(Restore::Missing)) => {
                tracing::info!(
                    "map: no map file and no copy in the metadata group: a new cluster, starting an empty map"
                );
                self.restoring = None;
                self.commit()?;
                self.add_known_classes()?;
            }
            (None, Some(Restore::Damaged)) => {
                tracing::error!(
                    "map: the map file {} was damaged and the metadata group keeps no copy: restore it from a backup and restart this node; until then no map is published",
                    self.args.path.display()
                );
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// Ends the wait for the group's copy with the map the file held, saying `why`.
    fn go_on_from_the_file(&mut self, why: &str) -> Result<(), ActorProcessingErr> {
        tracing::info!(
            "map: {why}; going on from the map file at epoch {}",
            self.membership.view().map.epoch().0
        );
        // Every node gets a full timeout from now: heartbeats were not counted while
        // the authority waited.
        let view = self.membership.view().clone();
        self.membership = Membership::new(view, Instant::now(), self.args.timeout)
            .with_out_after(self.args.out_after);
        self.restoring = None;
        self.add_known_classes()
    }

    /// A node follows epoch `seen`, past this authority's: epochs go on past it,
    /// so none is ever given twice with different contents.
    fn on_behind(&mut self, seen: u64) -> Result<(), ActorProcessingErr> {
        let current = self.membership.view().map.epoch().0;
        if self.restoring.is_some() || seen <= current {
            return Ok(());
        }
        if seen - current > MAX_EPOCH_LEAP {
            tracing::error!(
                "map: a node claims epoch {seen}, more than {MAX_EPOCH_LEAP} past this authority's {current}; ignored"
            );
            return Ok(());
        }
        self.membership.skip_past(Epoch(seen))?;
        tracing::warn!(
            "map: a node follows epoch {seen}, past this authority's {current} (its copy trailed): epochs go on from {}",
            seen + 1
        );
        self.commit()
    }

    /// What the authority does while it waits for the group's copy: nothing changes
    /// the map; heartbeats are answered with epoch 0 and administrators told to wait.
    fn while_restoring(&mut self, message: AuthorityMsg) -> Result<(), ActorProcessingErr> {
        const WAIT: &str =
            "the map authority is waiting for the metadata group's copy of the map; try again";
        match message {
            AuthorityMsg::Kept(kept) => return self.on_kept(kept),
            AuthorityMsg::Heartbeat(_, _, reply) => {
                let _ = reply.send(0);
            }
            AuthorityMsg::NodeOut(_, reply)
            | AuthorityMsg::NodeIn(_, reply)
            | AuthorityMsg::RepairRate(_, reply)
            | AuthorityMsg::NodeRemove(_, _, reply)
            | AuthorityMsg::NodeSet(_, _, _, reply) => {
                let _ = reply.send(Err(WAIT.to_string()));
            }
            AuthorityMsg::Owed(shards) => self.on_owed(shards),
            AuthorityMsg::Status(reply) => self.status(reply),
            AuthorityMsg::Tick => {
                if let Some(Restore::Confirming { until }) = self.restoring
                    && Instant::now() >= until
                {
                    tracing::warn!(
                        "map: the metadata group did not answer for its copy of the map within {MAP_CONFIRM_PATIENCE:?}"
                    );
                    self.go_on_from_the_file("the group may be without a majority")?;
                }
            }
            AuthorityMsg::Behind(_) => {}
        }
        Ok(())
    }

    /// Records shards a writer could not store.
    fn on_owed(&mut self, shards: Vec<OwedShard>) {
        self.owed_total += shards.len() as u64;
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
            if self.owed.len() == OWED_KEPT {
                self.owed.pop_front();
            }
            self.owed.push_back(shard);
        }
    }

    /// Answers with the cluster's status.
    fn status(&self, reply: RpcReplyPort<StatusMessage>) {
        let now = Instant::now();
        let nodes = self
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
            map: self.membership.view().to_message(),
            nodes,
            shards_owed: self.owed_total,
        });
    }

    /// An administrator's order done (`done`): logged (`said`) and committed if it
    /// changed the map. The answer: the map's epoch, or why the order was refused.
    fn ordered(
        &self,
        done: Result<Option<Epoch>, MembershipError>,
        said: impl FnOnce() -> String,
    ) -> Result<Result<u64, String>, ActorProcessingErr> {
        match done {
            Ok(changed) => {
                if changed.is_some() {
                    tracing::warn!("{}", said());
                    self.commit()?;
                }
                Ok(Ok(self.membership.view().map.epoch().0))
            }
            Err(err) => Ok(Err(err.to_string())),
        }
    }

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
        let (view, restoring) = load(&args.path, args.pg_bits, args.group.is_some())?;
        if matches!(restoring, None | Some(Restore::Confirming { .. })) {
            args.published.send_replace(Arc::new(view.to_message()));
            tracing::info!(
                "map: authority started at epoch {} with {} nodes",
                view.map.epoch().0,
                view.map.nodes().len()
            );
        }
        myself.send_interval(MEMBERSHIP_TICK, || AuthorityMsg::Tick);
        // The group's copy is asked for even with a good file: it may be newer (a
        // file restored from an old backup).
        let asking = args
            .group
            .clone()
            .map(|group| tokio::spawn(ask_group(group, myself.clone())));
        let mut state = AuthorityState {
            membership: Membership::new(view, Instant::now(), args.timeout)
                .with_out_after(args.out_after),
            args,
            owed_total: 0,
            owed: VecDeque::new(),
            restoring,
            asking,
        };
        if state.restoring.is_none() {
            state.add_known_classes()?;
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut AuthorityState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(asking) = state.asking.take() {
            asking.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: AuthorityMsg,
        state: &mut AuthorityState,
    ) -> Result<(), ActorProcessingErr> {
        if state.restoring.is_some() {
            return state.while_restoring(message);
        }
        match message {
            AuthorityMsg::Kept(kept) => state.on_kept(kept)?,
            AuthorityMsg::Behind(seen) => state.on_behind(seen)?,
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
                let done = state.membership.set_out(node);
                let answer = state.ordered(done, || {
                    format!(
                        "map: node {node} is out (by an administrator); its shards are rebuilt elsewhere"
                    )
                })?;
                let _ = reply.send(answer);
            }
            AuthorityMsg::NodeIn(node, reply) => {
                let done = state.membership.set_in(node);
                let answer = state.ordered(done, || {
                    format!(
                        "map: node {node} is in placement (by an administrator); rebalance moves the shards of its slots to it"
                    )
                })?;
                let _ = reply.send(answer);
            }
            AuthorityMsg::NodeSet(node, weight, labels, reply) => {
                let answer = match state.membership.set_node(node, weight, labels.as_deref()) {
                    Ok(changed) => {
                        if changed.is_some() {
                            tracing::warn!(
                                "map: node {node} set by an administrator (weight {weight:?}, domain {labels:?}); rebalance moves the shards of the slots that moved"
                            );
                            state.commit()?;
                        }
                        Ok(state.membership.view().map.epoch().0)
                    }
                    Err(err) => Err(err.to_string()),
                };
                let _ = reply.send(answer);
            }
            AuthorityMsg::NodeRemove(node, force, reply) => {
                let answer = match state.membership.remove_node(Instant::now(), node, force) {
                    Ok(changed) => {
                        if changed.is_some() {
                            tracing::warn!(
                                "map: node {node} removed by an administrator{}",
                                if force { " (forced)" } else { "" }
                            );
                            state.commit()?;
                        }
                        Ok(state.membership.view().map.epoch().0)
                    }
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
            AuthorityMsg::Owed(shards) => state.on_owed(shards),
            AuthorityMsg::Status(reply) => state.status(reply),
        }
        Ok(())
    }
}
