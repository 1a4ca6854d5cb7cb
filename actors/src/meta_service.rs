//! The metadata service: the namespace (`hive_meta::Namespace`), replicated by the
//! metadata group (`crate::group`), served over the RPC transport to mounts and to
//! volume administration.
//!
//! Changes go through the group's log: stamped with the leader's clock and the caller,
//! committed on a majority (each replica syncs its log before it counts), applied on
//! every replica, answered with what they did. Reads are answered by the leader after
//! a read barrier, on snapshots, off the async threads. A replica that does not lead
//! answers `NotLeader` with the leader it knows.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hive_meta::{Context, Errno, InodeId, MetaError, Namespace, Nanos};
use hive_wire::limits::MAX_VOLUME_CHUNKS_PAGE;
use hive_wire::net::auth::{Access, Operation, authorise};
use hive_wire::net::control::MapMessage;
use hive_wire::net::message::{self, check_version};
use hive_wire::net::meta::{
    Change, LoggedChange, Meta, MetaCall, MetaOp, MetaReply, MetaRequest, OP_CALL, OnceMessage,
};
use hive_wire::net::rpc::{Handler, Peer, Refusal, Request, Response, code};
use tokio::sync::Semaphore;

use crate::constants::{META_INFLIGHT, SLOW_META_CALL};
use crate::group::{Group, GroupError};
use crate::meta_convert::{attr_message, entry_message, extent_message, op_from, volume_message};
use crate::reserve::Reservations;

/// Why a request was not answered here.
enum Denied {
    /// Another replica leads: the client asks it.
    NotLeader(Option<u64>, Option<String>),
    /// Refused, saying why.
    Refused(Refusal),
}

impl From<Refusal> for Denied {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

impl From<GroupError> for Denied {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::NotLeader(leader, addr) => Self::NotLeader(leader, addr),
            GroupError::Failed(why) => Self::Refused(Refusal::new(code::UNAVAILABLE, why)),
            GroupError::Refused(why) => Self::Refused(Refusal::new(code::BAD_REQUEST, why)),
        }
    }
}

impl Denied {
    /// The denial as a refusal (for callers inside the node, which do not redirect).
    fn refusal(self) -> Refusal {
        match self {
            Self::Refused(r) => r,
            Self::NotLeader(leader, _) => Refusal::new(
                code::UNAVAILABLE,
                match leader {
                    Some(id) => {
                        format!("this replica does not lead the metadata group; node {id} does")
                    }
                    None => "the metadata group has no leader now".to_string(),
                },
            ),
        }
    }
}

/// The namespace as one replica of the metadata group serves it.
pub struct MetaStore {
    namespace: Arc<Namespace>,
    group: Arc<Group>,
    /// Where reservations are made known to the nodes, once the node has a cluster.
    reservations: OnceLock<Reservations>,
}

impl MetaStore {
    /// Serves `namespace` (opened with `Durability::Buffered`: the group's log is what
    /// makes a change durable), the state machine of replica `group`.
    pub fn new(namespace: Arc<Namespace>, group: Arc<Group>) -> Arc<Self> {
        Arc::new(Self {
            namespace,
            group,
            reservations: OnceLock::new(),
        })
    }

    /// The replica.
    pub fn group(&self) -> &Arc<Group> {
        &self.group
    }

    /// Whether this replica leads the group now (only the leader runs garbage
    /// collection, tells the nodes their reservations and expires sessions).
    pub fn leading(&self) -> bool {
        self.group.leading().is_some()
    }

    /// Nothing if this replica leads the group; otherwise a refusal naming the
    /// leader, for a service that runs on the leader only.
    pub fn refuse_unless_leading(&self) -> Result<(), Refusal> {
        if self.leading() {
            return Ok(());
        }
        Err(Denied::from(self.group.redirect()).refusal())
    }

    /// Makes reservations known to the nodes through `reservations` from now on (once).
    pub(crate) fn keep_reservations(&self, reservations: Reservations) {
        let _ = self.reservations.set(reservations);
    }

    /// Commits `change` for `ctx` through the group; the answer it was applied with.
    async fn commit(
        &self,
        ctx: Context,
        change: Change,
        once: Option<OnceMessage>,
    ) -> Result<MetaReply, Denied> {
        let logged = LoggedChange {
            uid: ctx.uid,
            gid: ctx.gid,
            umask: ctx.umask,
            now: ctx.now.0,
            change,
            once,
        };
        let answer = self.group.write(&logged).await?;
        message::decode("MetaReply", &answer)
            .map_err(|e| Denied::Refused(Refusal::new(code::INTERNAL, e.to_string())))
    }

    /// Ends client sessions whose time is up, looking every `period`, while this
    /// replica leads: what a crashed client held open is released (an unlinked file it
    /// had open goes). Each time it starts to lead, every session first gets its whole
    /// lease again from now (`ResumeSessions`): while no leader served (an outage, an
    /// election) no client could renew, and none loses its session for that.
    pub fn expire_sessions(
        self: Arc<Self>,
        period: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            let mut resumed_in = None;
            loop {
                ticker.tick().await;
                let Some(term) = self.group.leading() else {
                    continue;
                };
                let ctx = service_context(now());
                if resumed_in != Some(term) {
                    match self.commit(ctx, Change::ResumeSessions, None).await {
                        Ok(_) => resumed_in = Some(term),
                        // Nothing expires until they were resumed.
                        Err(e) => tracing::warn!("resuming the sessions: {}", e.refusal().message),
                    }
                    continue;
                }
                // A read first: the log only when something expired.
                match self.read(move |ns| ns.sessions_expired(ctx.now)).await {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(e) => {
                        tracing::warn!("looking for expired sessions: {}", e.message);
                        continue;
                    }
                }
                if let Err(e) = self.commit(ctx, Change::ExpireSessions, None).await {
                    tracing::warn!("expiring sessions: {}", e.refusal().message);
                }
            }
        })
    }

    /// Runs a read on a blocking thread, linearizably: only on the leader, after a
    /// read barrier.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Namespace) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, Refusal> {
        self.read_here(f).await.map_err(Denied::refusal)
    }

    /// A linearizable read (see [`MetaStore::read`]).
    async fn read_here<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Namespace) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, Denied> {
        self.group.read_barrier().await?;
        self.read_local(f).await
    }

    /// A read of this replica's state if it leads, without a barrier: what a change
    /// checks before it is committed (the commit confirms the leadership).
    async fn read_leading<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Namespace) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, Denied> {
        if self.group.leading().is_none() {
            return Err(self.group.redirect().into());
        }
        self.read_local(f).await
    }

    async fn read_local<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Namespace) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, Denied> {
        let namespace = self.namespace.clone();
        Ok(tokio::task::spawn_blocking(move || f(&namespace))
            .await
            .map_err(|e| Refusal::new(code::INTERNAL, format!("metadata read failed: {e}")))?
            .map_err(|e| Refusal::new(code::INTERNAL, e.to_string()))?)
    }
}

/// The caller of the service's own changes: root, at `now`.
fn service_context(now: Nanos) -> Context {
    Context {
        uid: 0,
        gid: 0,
        now,
        umask: 0,
    }
}

/// Serves the metadata service from `store`.
pub fn meta_service(store: Arc<MetaStore>) -> Handler {
    let inflight = Arc::new(Semaphore::new(META_INFLIGHT));
    Arc::new(move |peer: Peer, request: Request| {
        let (store, inflight) = (store.clone(), inflight.clone());
        Box::pin(async move {
            let _permit = inflight
                .acquire_owned()
                .await
                .map_err(|_| Refusal::new(code::UNAVAILABLE, "the node is stopping"))?;
            check_version::<Meta>(&request)?;
            if request.op != OP_CALL {
                return Err(Refusal::new(
                    code::BAD_REQUEST,
                    format!("unknown metadata operation {}", request.op),
                ));
            }
            let asked: MetaRequest = message::decode("MetaRequest", &request.body)
                .map_err(|e| Refusal::new(code::BAD_REQUEST, e.to_string()))?;
            let reply = handle(&store, &peer, asked).await?;
            Ok(Response {
                message: Bytes::new(),
                body: message::encode(&reply),
            })
        })
    })
}

fn now() -> Nanos {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Nanos(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
}

fn errno(e: Errno) -> MetaReply {
    MetaReply::Errno(e.code())
}

/// The inodes a call names, which must all be in the caller's volume.
fn inodes_of(call: &MetaCall) -> Vec<u64> {
    match call {
        MetaCall::Mount
        | MetaCall::ListVolumes
        | MetaCall::VolumeChunks { .. }
        | MetaCall::Group
        | MetaCall::Digest
        | MetaCall::AddMember { .. }
        | MetaCall::RemoveMember { .. }
        | MetaCall::KeepMap(_)
        | MetaCall::ClusterMap
        | MetaCall::Enroll(_) => vec![],
        MetaCall::GetAttr { ino }
        | MetaCall::ReadDir { ino }
        | MetaCall::ReadLink { ino }
        | MetaCall::Content { ino }
        | MetaCall::GetXattr { ino, .. }
        | MetaCall::ListXattr { ino } => vec![*ino],
        MetaCall::Lookup { parent, .. } => vec![*parent],
        MetaCall::Apply(op) => match op {
            MetaOp::Mkdir { parent, .. }
            | MetaOp::Create { parent, .. }
            | MetaOp::Mknod { parent, .. }
            | MetaOp::Symlink { parent, .. }
            | MetaOp::Unlink { parent, .. }
            | MetaOp::Rmdir { parent, .. }
            | MetaOp::CreateOpen { parent, .. } => vec![*parent],
            MetaOp::Link { ino, parent, .. } => vec![*ino, *parent],
            MetaOp::Rename { from, to, .. } => vec![*from, *to],
            MetaOp::SetAttr { ino, .. }
            | MetaOp::CommitExtents { ino, .. }
            | MetaOp::Allocate { ino, .. }
            | MetaOp::ReplaceExtents { ino, .. }
            | MetaOp::WriteInline { ino, .. }
            | MetaOp::SetXattr { ino, .. }
            | MetaOp::RemoveXattr { ino, .. }
            | MetaOp::Open { ino, .. }
            | MetaOp::Release { ino, .. }
            | MetaOp::Accessed { ino, .. }
            | MetaOp::Punch { ino, .. } => vec![*ino],
            MetaOp::CreateVolume { .. }
            | MetaOp::DeleteVolume { .. }
            | MetaOp::SetVolumeClass { .. }
            | MetaOp::FinishVolumeClass { .. }
            | MetaOp::PutObject { .. }
            | MetaOp::DeleteObject { .. }
            | MetaOp::SetQuota { .. }
            | MetaOp::RenewSession { .. }
            | MetaOp::EndSession { .. } => vec![],
        },
    }
}

/// Whether `op` is volume administration: a change that works in no volume's tree
/// (the request names no volume), which only administrators may ask for.
fn administers(op: &MetaOp) -> bool {
    matches!(
        op,
        MetaOp::CreateVolume { .. }
            | MetaOp::DeleteVolume { .. }
            | MetaOp::SetVolumeClass { .. }
            | MetaOp::FinishVolumeClass { .. }
            | MetaOp::PutObject { .. }
            | MetaOp::DeleteObject { .. }
            | MetaOp::SetQuota { .. }
    )
}

/// What the caller needs to be allowed: administration, or an access to its volume.
fn operation_of<'a>(call: &MetaCall, volume: &'a str) -> Operation<'a> {
    let access = match call {
        MetaCall::KeepMap(_) | MetaCall::ClusterMap | MetaCall::Enroll(_) => {
            return Operation::NodeInternal;
        }
        MetaCall::ListVolumes
        | MetaCall::Group
        | MetaCall::Digest
        | MetaCall::AddMember { .. }
        | MetaCall::RemoveMember { .. }
        | MetaCall::VolumeChunks { .. } => return Operation::Administer,
        MetaCall::Apply(op) if administers(op) => return Operation::Administer,
        MetaCall::Mount => Access::Mount,
        MetaCall::Apply(_) => Access::Write,
        _ => Access::Read,
    };
    Operation::Volume {
        name: volume,
        access,
    }
}

async fn handle(store: &MetaStore, peer: &Peer, asked: MetaRequest) -> Result<MetaReply, Refusal> {
    authorise(peer, operation_of(&asked.call, &asked.volume))?;
    let started = std::time::Instant::now();
    let what = call_name(&asked.call);
    let answered = answer(store, asked).await;
    let took = started.elapsed();
    if took >= SLOW_META_CALL {
        let how = match &answered {
            Ok(_) => "answered".to_string(),
            Err(Denied::NotLeader(..)) => "sent elsewhere".to_string(),
            Err(Denied::Refused(r)) => format!("refused: {}", r.message),
        };
        tracing::warn!("metadata: a {what} call took {took:.1?} ({how})");
    }
    match answered {
        Ok(reply) => Ok(reply),
        Err(Denied::NotLeader(leader, addr)) => Ok(MetaReply::NotLeader { leader, addr }),
        Err(Denied::Refused(refusal)) => Err(refusal),
    }
}

/// A call's kind, for the log.
fn call_name(call: &MetaCall) -> &'static str {
    match call {
        MetaCall::Apply(_) => "change",
        MetaCall::Group | MetaCall::Digest => "group state",
        MetaCall::AddMember { .. } | MetaCall::RemoveMember { .. } => "membership",
        MetaCall::KeepMap(_) | MetaCall::ClusterMap => "cluster map",
        MetaCall::Enroll(_) => "enrollment",
        _ => "read or session",
    }
}

async fn answer(store: &MetaStore, asked: MetaRequest) -> Result<MetaReply, Denied> {
    let ctx = Context {
        uid: asked.uid,
        gid: asked.gid,
        now: now(),
        umask: asked.umask & 0o777,
    };
    match asked.call {
        MetaCall::ListVolumes => {
            let volumes = store
                .read_here(|ns| {
                    let reserved = ns.reserved()?;
                    ns.volumes()?
                        .iter()
                        .map(|(name, v)| Ok(volume_message(name, v, &ns.usage(v.root)?, reserved)))
                        .collect::<Result<Vec<_>, MetaError>>()
                })
                .await?;
            Ok(MetaReply::Volumes(volumes))
        }
        MetaCall::Group => {
            // The leader knows how far each member is: a follower that knows the
            // leader sends the caller there; without a leader, it answers itself.
            let state = store.group.state();
            match state.leader {
                Some(leader) if leader != state.replica => Err(store.group.redirect().into()),
                _ => Ok(MetaReply::Group(state)),
            }
        }
        MetaCall::Digest => {
            // This replica's own state, whoever leads: what replicas compare.
            let (digest, applied) = store
                .read_local(|ns| {
                    let (records, stamp) = ns.state()?;
                    Ok((hive_codec::chunk_id(&records).0, stamp))
                })
                .await?;
            Ok(MetaReply::Digest {
                replica: store.group.state().replica,
                applied: applied
                    .as_deref()
                    .and_then(crate::group::store::applied_index),
                digest,
            })
        }
        MetaCall::AddMember { node, addr } => {
            store.group.add_member(node, addr).await?;
            Ok(MetaReply::Group(store.group.state()))
        }
        MetaCall::RemoveMember { node } => {
            store.group.remove_member(node).await?;
            Ok(MetaReply::Group(store.group.state()))
        }
        MetaCall::KeepMap(map) => store.commit(ctx, Change::ClusterMap(map), None).await,
        MetaCall::Enroll(e) => store.commit(ctx, Change::Enroll(e), None).await,
        MetaCall::ClusterMap => {
            let kept = store.read_here(|ns| ns.cluster_map()).await?;
            let map = kept
                .map(|(_, bytes)| message::decode::<MapMessage>("MapMessage", &bytes))
                .transpose()
                .map_err(|e| {
                    Denied::Refused(Refusal::new(
                        code::INTERNAL,
                        format!("the cluster map the group keeps does not decode: {e}"),
                    ))
                })?;
            Ok(MetaReply::ClusterMap(map.map(Box::new)))
        }
        MetaCall::Apply(op) if administers(&op) => change(store, ctx, op, asked.once).await,
        call => in_volume(store, ctx, &asked.volume, call, asked.once).await,
    }
}

/// What a request inside a volume comes to after its checks and reads, all done in
/// one pass on a blocking thread.
enum Checked {
    /// Answered: a read, or a refusal by errno.
    Reply(MetaReply),
    /// Refused: an inode outside the volume.
    Outside(u64),
    /// A change, checked, for the writer.
    Change(MetaOp),
}

/// Answers `call`, which works inside `volume`.
async fn in_volume(
    store: &MetaStore,
    ctx: Context,
    volume_name: &str,
    call: MetaCall,
    once: Option<OnceMessage>,
) -> Result<MetaReply, Denied> {
    let name = volume_name.to_string();
    let is_change = matches!(call, MetaCall::Apply(_));
    let check = move |ns: &Namespace| check_and_read(ns, &name, call);
    // A change's checks (the volume, which an inode never leaves) read the leader's
    // own state, which holds every change answered; the commit then confirms it
    // leads. A read needs the barrier.
    let checked = if is_change {
        store.read_leading(check).await?
    } else {
        store.read_here(check).await?
    };
    match checked {
        Checked::Reply(reply) => Ok(reply),
        Checked::Outside(ino) => Err(Denied::Refused(Refusal::new(
            code::FORBIDDEN,
            format!("inode {ino} is not in volume {volume_name:?}"),
        ))),
        Checked::Change(op) => change(store, ctx, op, once).await,
    }
}

/// Checks that the volume exists and holds every inode `call` names, then answers a
/// read, or hands back a change (one blocking task for all of it).
fn check_and_read(ns: &Namespace, volume_name: &str, call: MetaCall) -> Result<Checked, MetaError> {
    let Some(volume) = ns.volume(volume_name.as_bytes())? else {
        return Ok(Checked::Reply(errno(Errno::NoEnt)));
    };
    for ino in inodes_of(&call) {
        match ns.volume_root(InodeId(ino))? {
            Err(e) => return Ok(Checked::Reply(errno(e))),
            Ok(root) if root != volume.root => return Ok(Checked::Outside(ino)),
            Ok(_) => {}
        }
    }
    let reply = match call {
        MetaCall::Apply(op) => return Ok(Checked::Change(op)),
        MetaCall::Mount => MetaReply::Mounted(volume_message(
            volume_name.as_bytes(),
            &volume,
            &ns.usage(volume.root)?,
            ns.reserved()?,
        )),
        MetaCall::GetAttr { ino } => ns
            .getattr(InodeId(ino))?
            .map_or_else(errno, |a| MetaReply::Attr(attr_message(&a))),
        MetaCall::Lookup { parent, name } => ns
            .lookup(InodeId(parent), &name)?
            .map_or_else(errno, |a| MetaReply::Attr(attr_message(&a))),
        MetaCall::ReadDir { ino } => ns.readdir(InodeId(ino))?.map_or_else(errno, |entries| {
            MetaReply::Entries(entries.iter().map(entry_message).collect())
        }),
        MetaCall::ReadLink { ino } => ns
            .readlink(InodeId(ino))?
            .map_or_else(errno, MetaReply::Bytes),
        MetaCall::Content { ino } => {
            let reserved = ns.reserve(InodeId(ino))?;
            ns.content(InodeId(ino))?
                .map_or_else(errno, |(attr, inline, extents)| MetaReply::Content {
                    attr: attr_message(&attr),
                    inline,
                    extents: extents.iter().map(extent_message).collect(),
                    reserved,
                })
        }
        MetaCall::GetXattr { ino, name } => match ns.xattrs(InodeId(ino))? {
            Err(e) => errno(e),
            Ok(all) => all
                .into_iter()
                .find(|(n, _)| *n == name)
                .map_or(errno(Errno::NoData), |(_, v)| MetaReply::Bytes(v)),
        },
        MetaCall::ListXattr { ino } => ns.xattrs(InodeId(ino))?.map_or_else(errno, |all| {
            MetaReply::Names(all.into_iter().map(|(n, _)| n).collect())
        }),
        MetaCall::VolumeChunks { after } => {
            let (chunks, next) = ns.volume_chunks(volume.root, &after, MAX_VOLUME_CHUNKS_PAGE)?;
            MetaReply::Chunks { chunks, next }
        }
        // Administration is answered by `answer`, never inside a volume.
        MetaCall::ListVolumes
        | MetaCall::Group
        | MetaCall::Digest
        | MetaCall::AddMember { .. }
        | MetaCall::RemoveMember { .. }
        | MetaCall::KeepMap(_)
        | MetaCall::ClusterMap
        | MetaCall::Enroll(_) => errno(Errno::Inval),
    };
    Ok(Checked::Reply(reply))
}

/// Applies the change `op` asks for, or refuses a malformed one with its errno.
async fn change(
    store: &MetaStore,
    ctx: Context,
    op: MetaOp,
    once: Option<OnceMessage>,
) -> Result<MetaReply, Denied> {
    if let Err(e) = op_from(op.clone()) {
        return Ok(errno(e));
    }
    let allocate = matches!(op, MetaOp::Allocate { .. });
    if !allocate {
        return store.commit(ctx, Change::Client(op), once).await;
    }
    // A reservation is held once the nodes keep room for it: told before the answer.
    let Some(reservations) = store.reservations.get() else {
        return Ok(errno(Errno::OpNotSupp));
    };
    let result = store.commit(ctx, Change::Client(op), once).await?;
    if !matches!(result, MetaReply::Errno(_))
        && let Err(e) = reservations.tell().await
    {
        // The reservation is recorded; the nodes not told now (down, or unreachable)
        // are told at the keeper's next refresh.
        tracing::warn!("fallocate: {e}");
    }
    Ok(result)
}
