//! The metadata group's storage: its Raft log in fjall (`hive_meta::log::Log`), synced
//! before openraft hears it is flushed, and its state machine, the namespace, which
//! records with each entry it applies the entry's log id, so after a crash it knows
//! where to go on from and never applies an entry twice.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bincode::Options;
use hive_meta::log::Log;
use hive_meta::{Context, Logged, Namespace, Nanos, Once, Op};
use hive_wire::net::message;
use hive_wire::net::meta::{Change, LoggedChange, MetaReply};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

use super::{GroupTypes, ReplyBytes, codec};
use crate::meta_convert::{op_from, reply_of};

type NodeId = u64;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// Runs blocking storage work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, hive_meta::MetaError> + Send + 'static,
    fail: impl FnOnce(String) -> StorageError<NodeId>,
) -> Result<T, StorageError<NodeId>> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(e) => Err(fail(format!("a storage task failed: {e}"))),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    codec().serialize(value).map_err(|e| e.to_string())
}

fn decode<T: for<'a> Deserialize<'a>>(what: &str, bytes: &[u8]) -> Result<T, hive_meta::MetaError> {
    codec()
        .deserialize(bytes)
        .map_err(|e| hive_meta::MetaError::Corrupt(format!("{what}: {e}")))
}

fn io_error(e: String) -> openraft::AnyError {
    openraft::AnyError::error(e)
}

/// The Raft log, in its own fjall database.
#[derive(Clone)]
pub struct LogStore {
    log: Arc<Log>,
}

impl LogStore {
    /// Opens (or creates) the log in `path`.
    pub fn open(path: &Path) -> Result<Self, hive_meta::MetaError> {
        Ok(Self {
            log: Arc::new(Log::open(path)?),
        })
    }

    /// Whether this replica has ever voted or logged: one that has not may join a new
    /// group; one that has belongs to one already.
    pub fn is_blank(&self) -> Result<bool, hive_meta::MetaError> {
        Ok(self.log.state(VOTE)?.is_none() && self.log.last()?.is_none())
    }

    fn state<T: for<'a> Deserialize<'a>>(
        &self,
        key: &str,
    ) -> Result<Option<T>, hive_meta::MetaError> {
        self.log
            .state(key)?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }
}

impl RaftLogReader<GroupTypes> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<GroupTypes>>, StorageError<NodeId>> {
        let from = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        let log = self.log.clone();
        blocking(
            move || {
                log.range(from, to)?
                    .into_iter()
                    .map(|(_, bytes)| decode("a log entry", &bytes))
                    .collect()
            },
            |e| StorageIOError::read_logs(io_error(e)).into(),
        )
        .await
    }
}

impl RaftLogStorage<GroupTypes> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<GroupTypes>, StorageError<NodeId>> {
        let store = self.clone();
        blocking(
            move || {
                let purged: Option<LogId<NodeId>> = store.state(PURGED)?;
                let last = match store.log.last()? {
                    Some((_, bytes)) => {
                        Some(decode::<Entry<GroupTypes>>("a log entry", &bytes)?.log_id)
                    }
                    None => purged,
                };
                Ok(LogState {
                    last_purged_log_id: purged,
                    last_log_id: last,
                })
            },
            |e| StorageIOError::read_logs(io_error(e)).into(),
        )
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(vote).map_err(|e| StorageIOError::write_vote(io_error(e)))?;
        let log = self.log.clone();
        blocking(
            move || log.set_state(VOTE, &bytes),
            |e| StorageIOError::write_vote(io_error(e)).into(),
        )
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let store = self.clone();
        blocking(
            move || store.state(VOTE),
            |e| StorageIOError::read_vote(io_error(e)).into(),
        )
        .await
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(&committed).map_err(|e| StorageIOError::write(io_error(e)))?;
        let log = self.log.clone();
        blocking(
            move || log.set_state(COMMITTED, &bytes),
            |e| StorageIOError::write(io_error(e)).into(),
        )
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let store = self.clone();
        blocking(
            move || Ok(store.state::<Option<LogId<NodeId>>>(COMMITTED)?.flatten()),
            |e| StorageIOError::read(io_error(e)).into(),
        )
        .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<GroupTypes>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<GroupTypes>> + Send,
        I::IntoIter: Send,
    {
        let encoded = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, encode(&e)?)))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| StorageIOError::write_logs(io_error(e)))?;
        let log = self.log.clone();
        // Synced before openraft hears it: an entry counts toward a commit only once
        // it is on stable storage.
        let synced = blocking(
            move || log.append(&encoded),
            |e| StorageIOError::write_logs(io_error(e)).into(),
        )
        .await;
        match synced {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let log = self.log.clone();
        blocking(
            move || log.truncate_from(log_id.index),
            |e| StorageIOError::write_logs(io_error(e)).into(),
        )
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(&log_id).map_err(|e| StorageIOError::write_logs(io_error(e)))?;
        let store = self.clone();
        blocking(
            move || {
                let from = store
                    .state::<LogId<NodeId>>(PURGED)?
                    .map_or(0, |l| l.index + 1);
                store
                    .log
                    .purge_through((from, log_id.index), PURGED, &bytes)
            },
            |e| StorageIOError::write_logs(io_error(e)).into(),
        )
        .await
    }
}

/// What the namespace records with each entry it applies.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
struct Stamp {
    applied: Option<LogId<NodeId>>,
    membership: Membership,
}

/// The log index a namespace's stamp records as applied last.
pub fn applied_index(stamp: &[u8]) -> Option<u64> {
    decode::<Stamp>("the applied stamp", stamp)
        .ok()?
        .applied
        .map(|l| l.index)
}

/// A snapshot as kept on disk: its meta, then the namespace's export.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// The state machine: the namespace, with the last snapshot kept in a file beside the
/// log.
#[derive(Clone)]
pub struct Machine {
    namespace: Arc<Namespace>,
    snapshot_file: PathBuf,
}

impl Machine {
    /// The state machine over `namespace`, keeping its snapshot in `snapshot_file`.
    pub fn new(namespace: Arc<Namespace>, snapshot_file: PathBuf) -> Self {
        Self {
            namespace,
            snapshot_file,
        }
    }

    fn stamp(&self) -> Result<Stamp, hive_meta::MetaError> {
        match self.namespace.stamp()? {
            None => Ok(Stamp::default()),
            Some(bytes) => decode("the applied stamp", &bytes),
        }
    }

    /// Applies entries in order, on the calling (blocking) thread.
    fn apply_all(
        &self,
        entries: Vec<Entry<GroupTypes>>,
    ) -> Result<Vec<ReplyBytes>, hive_meta::MetaError> {
        let mut stamp = self.stamp()?;
        let mut replies = Vec::with_capacity(entries.len());
        for entry in entries {
            stamp.applied = Some(entry.log_id);
            if let EntryPayload::Membership(m) = &entry.payload {
                stamp.membership = StoredMembership::new(Some(entry.log_id), m.clone());
            }
            let bytes = encode(&stamp).map_err(hive_meta::MetaError::Corrupt)?;
            let reply = match entry.payload {
                EntryPayload::Normal(change) => self.apply_change(&change.0, &bytes)?,
                EntryPayload::Blank | EntryPayload::Membership(_) => {
                    self.namespace.set_stamp(&bytes)?;
                    message::encode(&MetaReply::Done).to_vec()
                }
            };
            replies.push(ReplyBytes(reply));
        }
        Ok(replies)
    }

    /// Applies one logged change; its answer, encoded.
    fn apply_change(&self, change: &[u8], stamp: &[u8]) -> Result<Vec<u8>, hive_meta::MetaError> {
        let refuse = |errno: hive_meta::Errno| -> Result<Vec<u8>, hive_meta::MetaError> {
            self.namespace.set_stamp(stamp)?;
            Ok(message::encode(&MetaReply::Errno(errno.code())).to_vec())
        };
        let Ok(logged) = message::decode::<LoggedChange>("LoggedChange", change) else {
            tracing::error!("a metadata log entry does not decode; it changes nothing");
            return refuse(hive_meta::Errno::Inval);
        };
        let op = match logged.change {
            Change::Client(op) => match op_from(op) {
                Ok(op) => op,
                Err(errno) => return refuse(errno),
            },
            Change::ResumeSessions => Op::ResumeSessions,
            Change::ExpireSessions => Op::ExpireSessions,
            Change::Enroll(e) => Op::Enroll {
                token: e.token,
                expires: e.expires,
                role: e.role,
                floor: e.floor,
            },
            Change::ClusterMap(map) => Op::KeepMap {
                epoch: map.epoch,
                map: message::encode(&*map).to_vec(),
            },
        };
        let ctx = Context {
            uid: logged.uid,
            gid: logged.gid,
            now: Nanos(logged.now),
            umask: logged.umask,
        };
        let once = logged.once.map(|o| Once {
            session: o.session,
            seq: o.seq,
            acked: o.acked,
        });
        let answer = |result: &Result<hive_meta::Outcome, hive_meta::Errno>| {
            message::encode(&reply_of(result.clone())).to_vec()
        };
        Ok(
            match self.namespace.apply_logged(ctx, &op, stamp, once, answer)? {
                Logged::Applied(result) => message::encode(&reply_of(result)).to_vec(),
                Logged::Repeated(given) => given,
            },
        )
    }

    fn read_snapshot(&self) -> Result<Option<StoredSnapshot>, hive_meta::MetaError> {
        match std::fs::read(&self.snapshot_file) {
            Ok(bytes) => decode("the stored snapshot", &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(hive_meta::MetaError::Corrupt(format!(
                "reading the snapshot: {e}"
            ))),
        }
    }

    /// Keeps `snapshot` as the current one: written beside, synced, renamed over.
    fn keep_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), hive_meta::MetaError> {
        let bytes = encode(snapshot).map_err(hive_meta::MetaError::Corrupt)?;
        hive_wire::files::replace(&self.snapshot_file, &bytes)
            .map_err(|e| hive_meta::MetaError::Corrupt(format!("writing the snapshot: {e}")))
    }

    /// Makes a snapshot of the namespace as applied now, and keeps it.
    fn build(&self) -> Result<StoredSnapshot, hive_meta::MetaError> {
        // Everything applied so far on stable storage first: the log before the
        // snapshot may be purged once it exists.
        self.namespace.persist()?;
        let (data, stamp) = self.namespace.export()?;
        let stamp: Stamp = match stamp {
            Some(bytes) => decode("the applied stamp", &bytes)?,
            None => Stamp::default(),
        };
        let snapshot_id = match stamp.applied {
            Some(id) => format!(
                "{}-{}-{}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => "empty".to_string(),
        };
        let snapshot = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: stamp.applied,
                last_membership: stamp.membership,
                snapshot_id,
            },
            data,
        };
        self.keep_snapshot(&snapshot)?;
        Ok(snapshot)
    }
}

fn snapshot_of(stored: StoredSnapshot) -> Snapshot<GroupTypes> {
    Snapshot {
        meta: stored.meta,
        snapshot: Box::new(Cursor::new(stored.data)),
    }
}

impl RaftSnapshotBuilder<GroupTypes> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<GroupTypes>, StorageError<NodeId>> {
        let machine = self.clone();
        let stored = blocking(
            move || machine.build(),
            |e| StorageIOError::write_snapshot(None, io_error(e)).into(),
        )
        .await?;
        tracing::info!("metadata snapshot {} made", stored.meta.snapshot_id);
        Ok(snapshot_of(stored))
    }
}

impl RaftStateMachine<GroupTypes> for Machine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let machine = self.clone();
        let stamp = blocking(
            move || machine.stamp(),
            |e| StorageIOError::read_state_machine(io_error(e)).into(),
        )
        .await?;
        Ok((stamp.applied, stamp.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ReplyBytes>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<GroupTypes>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let machine = self.clone();
        blocking(
            move || machine.apply_all(entries),
            |e| StorageIOError::write_state_machine(io_error(e)).into(),
        )
        .await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let machine = self.clone();
        let id = meta.snapshot_id.clone();
        blocking(
            move || {
                machine.namespace.import(&stored.data)?;
                let stamp = Stamp {
                    applied: stored.meta.last_log_id,
                    membership: stored.meta.last_membership.clone(),
                };
                machine
                    .namespace
                    .set_stamp(&encode(&stamp).map_err(hive_meta::MetaError::Corrupt)?)?;
                machine.namespace.persist()?;
                machine.keep_snapshot(&stored)
            },
            |e| StorageIOError::write_snapshot(None, io_error(e)).into(),
        )
        .await?;
        tracing::info!("metadata snapshot {id} installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<GroupTypes>>, StorageError<NodeId>> {
        let machine = self.clone();
        let stored = blocking(
            move || machine.read_snapshot(),
            |e| StorageIOError::read_snapshot(None, io_error(e)).into(),
        )
        .await?;
        Ok(stored.map(snapshot_of))
    }
}
