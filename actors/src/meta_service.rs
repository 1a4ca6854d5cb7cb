//! The metadata service: the namespace (`hive_meta::Namespace`) served over the RPC
//! transport to mounts and to volume administration.
//!
//! Changes go through one writer thread that applies them in arrival order, each as its
//! own transaction, and makes a whole batch durable with one sync before any of its
//! callers is answered (group commit). Reads run on snapshots, off the async threads.
//! A failed sync poisons the service: every later change is refused, saying why.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hive_meta::{Context, Errno, InodeId, MetaError, Namespace, Nanos, Op, Outcome};
use hive_wire::net::auth::{Access, Operation, authorise};
use hive_wire::net::message::{self, check_version};
use hive_wire::net::meta::{Meta, MetaCall, MetaOp, MetaReply, MetaRequest, OP_CALL};
use hive_wire::net::rpc::{Handler, Peer, Refusal, Request, Response, code};
use tokio::sync::{Semaphore, oneshot};

use crate::constants::{META_BATCH, META_INFLIGHT, META_QUEUE};
use crate::meta_convert::{attr_message, entry_message, extent_message, op_from, volume_message};
use crate::reserve::Reservations;

/// One change waiting for the writer.
struct Change {
    ctx: Context,
    op: Op,
    done: oneshot::Sender<Result<Result<Outcome, Errno>, String>>,
}

/// The namespace with its writer thread.
pub struct MetaStore {
    namespace: Arc<Namespace>,
    changes: flume::Sender<Change>,
    /// Where reservations are made known to the nodes, once the node has a cluster.
    reservations: OnceLock<Reservations>,
}

impl MetaStore {
    /// Serves `namespace` (opened with `Durability::Buffered`: the writer syncs each
    /// batch); starts its writer thread.
    pub fn start(namespace: Namespace) -> std::io::Result<Arc<Self>> {
        let namespace = Arc::new(namespace);
        let (changes, queue) = flume::bounded(META_QUEUE);
        let writer = namespace.clone();
        std::thread::Builder::new()
            .name("meta-writer".into())
            .spawn(move || write_loop(&writer, &queue))?;
        Ok(Arc::new(Self {
            namespace,
            changes,
            reservations: OnceLock::new(),
        }))
    }

    /// Makes reservations known to the nodes through `reservations` from now on (once).
    pub(crate) fn keep_reservations(&self, reservations: Reservations) {
        let _ = self.reservations.set(reservations);
    }

    /// Applies `op` for `ctx`, durably, in arrival order with every other change.
    async fn apply(&self, ctx: Context, op: Op) -> Result<Result<Outcome, Errno>, Refusal> {
        let (done, answer) = oneshot::channel();
        self.changes
            .send_async(Change { ctx, op, done })
            .await
            .map_err(|_| Refusal::new(code::UNAVAILABLE, "the metadata writer has stopped"))?;
        answer
            .await
            .map_err(|_| Refusal::new(code::UNAVAILABLE, "the metadata writer has stopped"))?
            .map_err(|e| Refusal::new(code::INTERNAL, e))
    }

    /// Ends client sessions whose time is up, looking every `period`: what a crashed
    /// client held open is released (an unlinked file it had open goes). First every
    /// session gets its whole lease again from now (`Op::ResumeSessions`): while the
    /// service was away no client could renew, and none loses its session for that.
    pub fn expire_sessions(
        self: Arc<Self>,
        period: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let ctx = Context {
                uid: 0,
                gid: 0,
                now: now(),
                umask: 0,
            };
            if let Err(e) = self.apply(ctx, Op::ResumeSessions).await {
                // Nothing expires until they were resumed.
                tracing::error!("resuming the sessions failed: {}", e.message);
                return;
            }
            let mut ticker = tokio::time::interval(period);
            loop {
                ticker.tick().await;
                let at = now();
                // A read first: the writer (and its sync) only when something expired.
                match self.read(move |ns| ns.sessions_expired(at)).await {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(e) => {
                        tracing::warn!("looking for expired sessions: {}", e.message);
                        continue;
                    }
                }
                let ctx = Context {
                    uid: 0,
                    gid: 0,
                    now: at,
                    umask: 0,
                };
                if let Err(e) = self.apply(ctx, Op::ExpireSessions).await {
                    tracing::warn!("expiring sessions: {}", e.message);
                }
            }
        })
    }

    /// Runs a read on a blocking thread.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Namespace) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, Refusal> {
        let namespace = self.namespace.clone();
        tokio::task::spawn_blocking(move || f(&namespace))
            .await
            .map_err(|e| Refusal::new(code::INTERNAL, format!("metadata read failed: {e}")))?
            .map_err(|e| Refusal::new(code::INTERNAL, e.to_string()))
    }
}

/// The writer: takes what is queued (up to [`META_BATCH`]), applies it, syncs once,
/// answers. After a failed sync it answers every change with the failure and stops.
fn write_loop(namespace: &Namespace, queue: &flume::Receiver<Change>) {
    let mut batch = Vec::with_capacity(META_BATCH);
    while let Ok(first) = queue.recv() {
        batch.push(first);
        while batch.len() < META_BATCH {
            match queue.try_recv() {
                Ok(change) => batch.push(change),
                Err(_) => break,
            }
        }
        let results: Vec<_> = batch
            .iter()
            .map(|c| namespace.apply(c.ctx, &c.op))
            .collect();
        let synced = namespace.persist();
        let failed = synced
            .as_ref()
            .err()
            .map(|e| format!("the metadata store failed to sync and refuses all changes: {e}"));
        for (change, result) in batch.drain(..).zip(results) {
            let answer = match (&failed, result) {
                (Some(why), _) => Err(why.clone()),
                (None, Ok(result)) => Ok(result),
                (None, Err(e)) => Err(e.to_string()),
            };
            let _ = change.done.send(answer);
        }
        if let Some(why) = failed {
            tracing::error!("{why}");
            while let Ok(change) = queue.recv() {
                let _ = change.done.send(Err(why.clone()));
            }
            return;
        }
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
        MetaCall::Mount | MetaCall::ListVolumes => vec![],
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
            | MetaOp::Rmdir { parent, .. } => vec![*parent],
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
            | MetaOp::Release { ino, .. } => vec![*ino],
            MetaOp::CreateVolume { .. }
            | MetaOp::DeleteVolume { .. }
            | MetaOp::PutObject { .. }
            | MetaOp::DeleteObject { .. }
            | MetaOp::SetQuota { .. }
            | MetaOp::RenewSession { .. }
            | MetaOp::EndSession { .. } => vec![],
        },
    }
}

/// What the caller needs to be allowed: administration, or an access to its volume.
fn operation_of<'a>(call: &MetaCall, volume: &'a str) -> Operation<'a> {
    let access = match call {
        MetaCall::ListVolumes
        | MetaCall::Apply(
            MetaOp::CreateVolume { .. }
            | MetaOp::DeleteVolume { .. }
            | MetaOp::PutObject { .. }
            | MetaOp::DeleteObject { .. }
            | MetaOp::SetQuota { .. },
        ) => {
            return Operation::Administer;
        }
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
    let ctx = Context {
        uid: asked.uid,
        gid: asked.gid,
        now: now(),
        umask: asked.umask & 0o777,
    };
    match asked.call {
        MetaCall::ListVolumes => {
            let volumes = store
                .read(|ns| {
                    let reserved = ns.reserved()?;
                    ns.volumes()?
                        .iter()
                        .map(|(name, v)| Ok(volume_message(name, v, &ns.usage(v.root)?, reserved)))
                        .collect::<Result<Vec<_>, MetaError>>()
                })
                .await?;
            Ok(MetaReply::Volumes(volumes))
        }
        MetaCall::Apply(
            op @ (MetaOp::CreateVolume { .. }
            | MetaOp::DeleteVolume { .. }
            | MetaOp::PutObject { .. }
            | MetaOp::DeleteObject { .. }
            | MetaOp::SetQuota { .. }),
        ) => change(store, ctx, op).await,
        call => in_volume(store, ctx, &asked.volume, call).await,
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
) -> Result<MetaReply, Refusal> {
    let name = volume_name.to_string();
    let checked = store
        .read(move |ns| check_and_read(ns, &name, call))
        .await?;
    match checked {
        Checked::Reply(reply) => Ok(reply),
        Checked::Outside(ino) => Err(Refusal::new(
            code::FORBIDDEN,
            format!("inode {ino} is not in volume {volume_name:?}"),
        )),
        Checked::Change(op) => change(store, ctx, op).await,
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
        // Volume administration is answered by `handle`, never inside a volume.
        MetaCall::ListVolumes => errno(Errno::Inval),
    };
    Ok(Checked::Reply(reply))
}

/// Applies the change `op` asks for, or refuses a malformed one with its errno.
async fn change(store: &MetaStore, ctx: Context, op: MetaOp) -> Result<MetaReply, Refusal> {
    let op = match op_from(op) {
        Ok(op) => op,
        Err(e) => return Ok(errno(e)),
    };
    if !matches!(op, Op::Allocate { .. }) {
        return Ok(reply_of(store.apply(ctx, op).await?));
    }
    // A reservation is held once the nodes keep room for it: told before the answer.
    let Some(reservations) = store.reservations.get() else {
        return Ok(errno(Errno::OpNotSupp));
    };
    let result = store.apply(ctx, op).await?;
    if result.is_ok()
        && let Err(e) = reservations.tell().await
    {
        // The reservation is recorded; the nodes not told now (down, or unreachable)
        // are told at the keeper's next refresh.
        tracing::warn!("fallocate: {e}");
    }
    Ok(reply_of(result))
}

fn reply_of(result: Result<Outcome, Errno>) -> MetaReply {
    match result {
        Ok(Outcome::Attr(attr)) => MetaReply::Attr(attr_message(&attr)),
        Ok(Outcome::Done) => MetaReply::Done,
        Err(e) => errno(e),
    }
}
