//! A mounted volume: what the FUSE handlers call. Namespace operations go to the
//! metadata service; file content is written back through a bounded per-file buffer
//! into chunks (put through the [`ChunkStore`]) and committed as extents, and read from
//! extents through a bounded chunk cache with read-ahead.
//!
//! Inode numbers here are the namespace's; the FUSE layer maps the volume root to 1.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hive_codec::{Chunker, ErasureScheme};
use hive_wire::net::control::ControlClient;
use hive_wire::net::meta::{
    AttrMessage, EntryMessage, ExtentMessage, META_DEADLINE, MetaCall, MetaClient, MetaOp,
    MetaReply, UsageMessage, kind as meta_kind,
};
use tokio::sync::Semaphore;

use super::cache::ChunkCache;
use super::compaction::COMPACTIONS;
use super::dirty::Dirty;
use super::reads::ACCESS_RECORDS;
use super::unsaved::Names;
use crate::chunk_io::ChunkStore;
use crate::volumes::Classes;

pub use crate::errno;

/// Free space counted as room for one more inode, where a volume has no inode quota.
pub const INODE_SPACE: u64 = 4096;

/// A failed call, as the FUSE layer answers it.
#[derive(Debug)]
pub enum FsError {
    /// The namespace refused it with this errno.
    Errno(i32),
    /// The cluster failed; answered EIO and logged with this reason.
    Io(String),
}

impl FsError {
    /// The errno to answer with.
    pub fn code(&self) -> i32 {
        match self {
            FsError::Errno(e) => *e,
            FsError::Io(_) => errno::EIO,
        }
    }
}

impl From<crate::chunk_io::ChunkError> for FsError {
    /// A cluster out of space is ENOSPC (logged like EIO, with its cause); any other
    /// failure to store a chunk is EIO.
    fn from(e: crate::chunk_io::ChunkError) -> Self {
        match e {
            crate::chunk_io::ChunkError::NoSpace { .. } => {
                eprintln!("hive mount: no space: {e}");
                FsError::Errno(errno::ENOSPC)
            }
            other => FsError::Io(other.to_string()),
        }
    }
}

/// Of the cluster's free space (in logical bytes), the part fallocate may reserve, in
/// percent: the rest absorbs the headers of the reserved range's shards and how
/// unevenly its chunks fall on the nodes.
pub const ALLOCATABLE_PERCENT: u64 = 90;

/// Who makes a call.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    /// User on this host.
    pub uid: u32,
    /// Group on this host.
    pub gid: u32,
    /// Permission bits what it creates does not get (unless a default ACL decides).
    pub umask: u16,
}

/// What the mount runs as (chunk puts done on behalf of the kernel, commits on release).
pub(super) const SYSTEM: Caller = Caller {
    uid: 0,
    gid: 0,
    umask: 0,
};

pub(super) type Result<T> = std::result::Result<T, FsError>;

/// A file's content as of one metadata snapshot.
#[derive(Clone)]
pub(super) struct Content {
    pub(super) attr: AttrMessage,
    pub(super) inline: Arc<Vec<u8>>,
    pub(super) extents: Arc<Vec<ExtentMessage>>,
}

/// What the mount keeps of a file between calls.
#[derive(Default)]
pub(super) struct FileState {
    /// Opens not yet released.
    pub(super) handles: u32,
    pub(super) dirty: Dirty,
    /// When this mount last wrote to the file (ns since the epoch), while the write is
    /// not yet committed: stat shows it, as POSIX wants mtime to change with write(2).
    pub(super) written_at: Option<i64>,
    /// Dropped whenever the file changes ([`FileState::changed`]), fetched again on
    /// the next read or open.
    pub(super) content: Option<Content>,
    /// Counts the changes to the stored content this mount made or saw: a read that
    /// assembled bytes without the lock uses them only if this did not move meanwhile.
    pub(super) version: u64,
}

impl FileState {
    /// The stored content changed (a commit, a truncation, an allocation, an open that
    /// may see another mount's writes): fetch it again before the next use.
    pub(super) fn changed(&mut self) {
        self.content = None;
        self.version = self.version.wrapping_add(1);
    }
}

/// The cluster's services a mount uses.
pub struct Services {
    /// The metadata service.
    pub meta: Arc<MetaClient>,
    /// The nodes' shard services.
    pub chunks: Arc<ChunkStore>,
    /// The map authority (for statfs).
    pub control: Arc<ControlClient>,
}

/// A mounted volume.
pub struct Volume {
    name: String,
    root: u64,
    meta: Arc<MetaClient>,
    pub(super) chunks: Arc<ChunkStore>,
    /// The classes chunks are written and read in (see `classes`).
    pub(super) classes: std::sync::RwLock<Classes>,
    control: Arc<ControlClient>,
    pub(super) chunker: Chunker,
    files: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<FileState>>>>,
    pub(super) cache: Arc<ChunkCache>,
    /// Uncommitted bytes across files.
    pub(super) buffered: AtomicU64,
    /// The session holding this mount's opens (see `session`).
    pub(super) session: u64,
    /// How long the session outlives its last renewal.
    pub(super) lease: Duration,
    /// Compactions allowed to start (see `compaction`).
    pub(super) compactions: Arc<Semaphore>,
    /// Names seen, for naming files whose bytes could not be stored (see `unsaved`).
    pub(super) names: Names,
    /// Bytes of each file reserved by fallocate and not yet written, as this mount
    /// last learned them: writes to such a file may use the room nodes keep for
    /// reservations (see [`Volume::reserved`]).
    reserves: Mutex<HashMap<u64, u64>>,
    /// Whether reads record access times (relatime; off for noatime and read-only
    /// mounts).
    pub(super) access_times: bool,
    /// Access-time records allowed in flight (see `reads`).
    pub(super) accesses: Arc<Semaphore>,
    /// Inodes known to have no `security.capability` (see [`Volume::getxattr`]).
    caps_absent: CapsAbsent,
}

/// The extended attribute the kernel asks for before every write.
const CAPABILITY: &[u8] = b"security.capability";
/// How long the mount trusts that an inode has no `security.capability`: as long as
/// the kernel trusts a name (a capability set through another mount is seen within
/// it, as a rename there would be).
pub const CAPS_ABSENT_FOR: Duration = Duration::from_secs(1);
/// Inodes whose missing `security.capability` the mount keeps at most.
pub const CAPS_ABSENT_KEPT: usize = 4096;

/// Inodes seen without a `security.capability`, each until when it is trusted.
#[derive(Default)]
struct CapsAbsent(Mutex<HashMap<u64, std::time::Instant>>);

impl CapsAbsent {
    fn holds(&self, ino: u64) -> bool {
        self.holds_at(ino, std::time::Instant::now())
    }

    fn holds_at(&self, ino: u64, now: std::time::Instant) -> bool {
        self.lock().get(&ino).is_some_and(|until| *until > now)
    }

    fn note(&self, ino: u64) {
        self.note_at(ino, std::time::Instant::now());
    }

    fn note_at(&self, ino: u64, now: std::time::Instant) {
        let mut kept = self.lock();
        if kept.len() >= CAPS_ABSENT_KEPT {
            kept.retain(|_, until| *until > now);
        }
        if kept.len() < CAPS_ABSENT_KEPT {
            kept.insert(ino, now + CAPS_ABSENT_FOR);
        }
    }

    fn forget(&self, ino: u64) {
        self.lock().remove(&ino);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, std::time::Instant>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Volume {
    /// Serves volume `name` rooted at inode `root` through `services`, its opens held
    /// by `session` (see [`Volume::start_session`]).
    pub fn new(
        name: String,
        root: u64,
        services: Services,
        chunker: Chunker,
        session: u64,
        lease: Duration,
    ) -> Self {
        let Services {
            meta,
            chunks,
            control,
        } = services;
        // Changes are numbered in the session, so one sent again (after a timeout,
        // or to a new leader of the metadata group) is applied once.
        meta.set_session(session);
        Self {
            session,
            lease,
            name,
            root,
            meta,
            classes: std::sync::RwLock::new(Classes {
                write: chunks.scheme(),
                from: None,
            }),
            chunks,
            control,
            chunker,
            files: Mutex::new(HashMap::new()),
            cache: Arc::new(ChunkCache::default()),
            buffered: AtomicU64::new(0),
            compactions: Arc::new(Semaphore::new(COMPACTIONS)),
            names: Names::default(),
            reserves: Mutex::new(HashMap::new()),
            access_times: true,
            accesses: Arc::new(Semaphore::new(ACCESS_RECORDS)),
            caps_absent: CapsAbsent::default(),
        }
    }

    /// The volume with reads recording access times (`true`, relatime) or not.
    pub fn with_access_times(mut self, on: bool) -> Self {
        self.access_times = on;
        self
    }

    /// The class chunks were written in before a re-encode under way, which reads
    /// also look in (none by default).
    pub fn reencoding_from(self, from: Option<ErasureScheme>) -> Self {
        self.classes.write().unwrap_or_else(|e| e.into_inner()).from = from;
        self
    }

    /// Whether file `ino` has bytes reserved (as this mount knows).
    pub(super) fn reserved(&self, ino: u64) -> bool {
        let reserves = self.reserves.lock().unwrap_or_else(|e| e.into_inner());
        reserves.contains_key(&ino)
    }

    /// Notes that `bytes` of file `ino` were written: they came out of its reserve.
    pub(super) fn drew(&self, ino: u64, bytes: u64) {
        self.note_reserve(ino, |left| left.saturating_sub(bytes));
    }

    /// Changes this mount's note of file `ino`'s reserve to `to(what it was)`, as the
    /// namespace changes the reserve (a file with none is not noted).
    fn note_reserve(&self, ino: u64, to: impl FnOnce(u64) -> u64) {
        let mut reserves = self.reserves.lock().unwrap_or_else(|e| e.into_inner());
        match to(reserves.get(&ino).copied().unwrap_or(0)) {
            0 => reserves.remove(&ino),
            bytes => reserves.insert(ino, bytes),
        };
    }

    /// The volume's root inode.
    pub fn root(&self) -> u64 {
        self.root
    }

    pub(super) async fn call(&self, caller: Caller, call: MetaCall) -> Result<MetaReply> {
        self.call_within(caller, call, META_DEADLINE).await
    }

    /// [`Volume::call`], answered within `deadline` (a timeout drops the connection).
    pub(super) async fn call_within(
        &self,
        caller: Caller,
        call: MetaCall,
        deadline: Duration,
    ) -> Result<MetaReply> {
        let who = (caller.uid, caller.gid, caller.umask);
        match self.meta.call_within(&self.name, who, call, deadline).await {
            Ok(MetaReply::Errno(e)) => Err(FsError::Errno(e)),
            Ok(reply) => Ok(reply),
            Err(e) => Err(FsError::Io(format!("metadata service: {e}"))),
        }
    }

    async fn attr_call(&self, caller: Caller, call: MetaCall) -> Result<AttrMessage> {
        match self.call(caller, call).await? {
            MetaReply::Attr(attr) => Ok(attr),
            other => Err(unexpected(&other)),
        }
    }

    pub(super) async fn apply(&self, caller: Caller, op: MetaOp) -> Result<MetaReply> {
        self.call(caller, MetaCall::Apply(op)).await
    }

    pub(super) fn state(&self, ino: u64) -> Option<Arc<tokio::sync::Mutex<FileState>>> {
        self.files
            .lock()
            .expect("invariant: the file table lock is never poisoned")
            .get(&ino)
            .cloned()
    }

    /// Every file the mount keeps state for.
    pub(super) fn files_snapshot(&self) -> Vec<(u64, Arc<tokio::sync::Mutex<FileState>>)> {
        self.files
            .lock()
            .expect("invariant: the file table lock is never poisoned")
            .iter()
            .map(|(ino, state)| (*ino, state.clone()))
            .collect()
    }

    pub(super) fn state_or_new(&self, ino: u64) -> Arc<tokio::sync::Mutex<FileState>> {
        self.files
            .lock()
            .expect("invariant: the file table lock is never poisoned")
            .entry(ino)
            .or_default()
            .clone()
    }

    /// `attr` with what this mount has written to the file and not yet committed.
    async fn with_local(&self, mut attr: AttrMessage) -> AttrMessage {
        if let Some(state) = self.state(attr.ino) {
            let state = state.lock().await;
            attr.size = attr.size.max(state.dirty.end());
            if let Some(at) = state.written_at {
                attr.mtime = attr.mtime.max(at);
                attr.ctime = attr.ctime.max(at);
            }
        }
        attr
    }

    /// The entry `name` in `parent` (`.` and `..`: the directory and its parent).
    pub async fn lookup(&self, caller: Caller, parent: u64, name: &[u8]) -> Result<AttrMessage> {
        let attr = self
            .attr_call(
                caller,
                MetaCall::Lookup {
                    parent,
                    name: name.to_vec(),
                },
            )
            .await?;
        if name != b"." && name != b".." {
            self.names.saw(attr.ino, parent, name);
        }
        Ok(self.with_local(attr).await)
    }

    /// The attributes of `ino`.
    pub async fn getattr(&self, caller: Caller, ino: u64) -> Result<AttrMessage> {
        let attr = self.attr_call(caller, MetaCall::GetAttr { ino }).await?;
        Ok(self.with_local(attr).await)
    }

    /// Changes attributes; a new size first commits what is buffered below it.
    #[allow(clippy::too_many_arguments)]
    pub async fn setattr(
        &self,
        caller: Caller,
        ino: u64,
        mode: Option<u16>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<i64>,
        mtime: Option<i64>,
    ) -> Result<AttrMessage> {
        let op = MetaOp::SetAttr {
            ino,
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        let Some(size) = size else {
            let attr = self.attr_call(caller, MetaCall::Apply(op)).await?;
            return Ok(self.with_local(attr).await);
        };
        let state = self.state_or_new(ino);
        let mut file = state.lock().await;
        file.dirty.truncate(size);
        self.commit(ino, &mut file, true).await?;
        file.changed();
        let attr = self.attr_call(caller, MetaCall::Apply(op)).await;
        if attr.is_ok() {
            // The namespace keeps no more reserved than the file's new length.
            self.note_reserve(ino, |left| left.min(size));
        }
        self.forget_if_idle(ino, &file);
        attr
    }

    /// Creates a directory.
    pub async fn mkdir(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        mode: u16,
    ) -> Result<AttrMessage> {
        let op = MetaOp::Mkdir {
            parent,
            name: name.to_vec(),
            mode,
        };
        let attr = self.attr_call(caller, MetaCall::Apply(op)).await?;
        self.names.saw(attr.ino, parent, name);
        Ok(attr)
    }

    /// Creates and opens a regular file.
    pub async fn create(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        mode: u16,
    ) -> Result<AttrMessage> {
        // Made and opened in one metadata change (one commit of the group, not two).
        let op = MetaOp::CreateOpen {
            parent,
            name: name.to_vec(),
            mode,
            session: self.session,
        };
        let attr = self.attr_call(caller, MetaCall::Apply(op)).await?;
        self.names.saw(attr.ino, parent, name);
        self.opened(attr.ino).await;
        Ok(attr)
    }

    /// Creates a node of `kind` (one of `meta::kind`) without opening it: a regular
    /// file, a FIFO, a socket or a device node.
    pub async fn mknod(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        kind: u8,
        mode: u16,
        rdev: u32,
    ) -> Result<AttrMessage> {
        let entry = name;
        let name = name.to_vec();
        let op = if kind == meta_kind::FILE {
            MetaOp::Create { parent, name, mode }
        } else {
            MetaOp::Mknod {
                parent,
                name,
                kind,
                mode,
                rdev,
            }
        };
        let attr = self.attr_call(caller, MetaCall::Apply(op)).await?;
        self.names.saw(attr.ino, parent, entry);
        Ok(attr)
    }

    /// Makes sure `ino` is at least `end` bytes long and reserves the bytes it grows
    /// by (fallocate without a mode): ENOSPC if the cluster cannot keep room for them
    /// beside every other reservation, EDQUOT past the volume's byte quota.
    pub async fn allocate(&self, caller: Caller, ino: u64, end: u64) -> Result<()> {
        let state = self.state_or_new(ino);
        let mut file = state.lock().await;
        // What is buffered lands first, so the reserve counts from the stored size.
        self.commit(ino, &mut file, true).await?;
        // Not `getattr`: it takes the file's lock, held here.
        let attr = self.attr_call(caller, MetaCall::GetAttr { ino }).await?;
        if end <= attr.size {
            return Ok(());
        }
        let (_, free) = self.cluster_space().await?;
        let room = free / 100 * ALLOCATABLE_PERCENT;
        let op = MetaOp::Allocate { ino, end, room };
        self.attr_call(caller, MetaCall::Apply(op)).await?;
        file.changed();
        self.note_reserve(ino, |left| left.saturating_add(end - attr.size));
        Ok(())
    }

    /// Deallocates `[offset, offset + len)` of `ino` (fallocate's punch hole): it
    /// reads as zeros after, and the size stays. What is buffered is committed first,
    /// so no earlier write lands in the hole later.
    pub async fn punch(&self, caller: Caller, ino: u64, offset: u64, len: u64) -> Result<()> {
        let state = self.state_or_new(ino);
        let mut file = state.lock().await;
        self.commit(ino, &mut file, true).await?;
        let op = MetaOp::Punch { ino, offset, len };
        let result = self.attr_call(caller, MetaCall::Apply(op)).await;
        file.changed();
        result.map(|_| ())
    }

    /// Creates a symbolic link.
    pub async fn symlink(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        target: &[u8],
    ) -> Result<AttrMessage> {
        let op = MetaOp::Symlink {
            parent,
            name: name.to_vec(),
            target: target.to_vec(),
        };
        self.attr_call(caller, MetaCall::Apply(op)).await
    }

    /// Adds a hard link.
    pub async fn link(
        &self,
        caller: Caller,
        ino: u64,
        parent: u64,
        name: &[u8],
    ) -> Result<AttrMessage> {
        let op = MetaOp::Link {
            ino,
            parent,
            name: name.to_vec(),
        };
        let attr = self.attr_call(caller, MetaCall::Apply(op)).await?;
        self.names.saw(ino, parent, name);
        Ok(self.with_local(attr).await)
    }

    /// Removes a name of a non-directory.
    pub async fn unlink(&self, caller: Caller, parent: u64, name: &[u8]) -> Result<()> {
        let op = MetaOp::Unlink {
            parent,
            name: name.to_vec(),
        };
        self.apply(caller, op).await.map(|_| ())
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, caller: Caller, parent: u64, name: &[u8]) -> Result<()> {
        let op = MetaOp::Rmdir {
            parent,
            name: name.to_vec(),
        };
        self.apply(caller, op).await.map(|_| ())
    }

    /// Renames (POSIX: atomic, over an existing target), or as `mode` (one of
    /// `rename_mode`) says: refusing an existing target, or exchanging the two.
    pub async fn rename(
        &self,
        caller: Caller,
        (from, from_name): (u64, &[u8]),
        (to, to_name): (u64, &[u8]),
        mode: u8,
    ) -> Result<()> {
        let op = MetaOp::Rename {
            from,
            from_name: from_name.to_vec(),
            to,
            to_name: to_name.to_vec(),
            mode,
        };
        self.apply(caller, op).await?;
        let exchange = mode == hive_wire::net::meta::rename_mode::EXCHANGE;
        self.names
            .renamed((from, from_name), (to, to_name), exchange);
        Ok(())
    }

    /// A symlink's target.
    pub async fn readlink(&self, caller: Caller, ino: u64) -> Result<Vec<u8>> {
        match self.call(caller, MetaCall::ReadLink { ino }).await? {
            MetaReply::Bytes(target) => Ok(target),
            other => Err(unexpected(&other)),
        }
    }

    /// A directory's entries.
    pub async fn readdir(&self, caller: Caller, ino: u64) -> Result<Vec<EntryMessage>> {
        match self.call(caller, MetaCall::ReadDir { ino }).await? {
            MetaReply::Entries(entries) => Ok(entries),
            other => Err(unexpected(&other)),
        }
    }

    /// An extended attribute. That an inode has no `security.capability` is kept for
    /// [`CAPS_ABSENT_FOR`]: the kernel asks for it before every write(2) to know
    /// whether the write must drop capabilities, and one metadata call per write made
    /// small writes run at the metadata service's pace (about 3,000 a second).
    pub async fn getxattr(&self, caller: Caller, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        let capability = name == CAPABILITY;
        if capability && self.caps_absent.holds(ino) {
            return Err(FsError::Errno(crate::errno::ENODATA));
        }
        let call = MetaCall::GetXattr {
            ino,
            name: name.to_vec(),
        };
        match self.call(caller, call).await {
            Ok(MetaReply::Bytes(value)) => Ok(value),
            Ok(other) => Err(unexpected(&other)),
            Err(FsError::Errno(crate::errno::ENODATA)) if capability => {
                self.caps_absent.note(ino);
                Err(FsError::Errno(crate::errno::ENODATA))
            }
            Err(e) => Err(e),
        }
    }

    /// The names of an inode's extended attributes.
    pub async fn listxattr(&self, caller: Caller, ino: u64) -> Result<Vec<Vec<u8>>> {
        match self.call(caller, MetaCall::ListXattr { ino }).await? {
            MetaReply::Names(names) => Ok(names),
            other => Err(unexpected(&other)),
        }
    }

    /// Sets an extended attribute (`mode`: one of `xattr_mode`).
    pub async fn setxattr(
        &self,
        caller: Caller,
        ino: u64,
        name: &[u8],
        value: &[u8],
        mode: u8,
    ) -> Result<()> {
        if name == CAPABILITY {
            self.caps_absent.forget(ino);
        }
        let op = MetaOp::SetXattr {
            ino,
            name: name.to_vec(),
            value: value.to_vec(),
            mode,
        };
        self.apply(caller, op).await.map(|_| ())
    }

    /// Removes an extended attribute.
    pub async fn removexattr(&self, caller: Caller, ino: u64, name: &[u8]) -> Result<()> {
        if name == CAPABILITY {
            self.caps_absent.forget(ino);
        }
        let op = MetaOp::RemoveXattr {
            ino,
            name: name.to_vec(),
        };
        self.apply(caller, op).await.map(|_| ())
    }

    /// What df shows: the volume's quota and usage where it has a quota, otherwise the
    /// cluster's space divided by the class's overhead (k + m) / k; inodes likewise.
    pub async fn statfs(&self) -> Result<StatFs> {
        let volume = match self.call(SYSTEM, MetaCall::Mount).await? {
            MetaReply::Mounted(volume) => volume,
            other => return Err(unexpected(&other)),
        };
        let (capacity, free) = self.cluster_space().await?;
        // Room kept for reservations is not free for anyone else.
        let free = free.saturating_sub(volume.reserved);
        Ok(StatFs::of(&volume.usage, capacity, free))
    }

    /// The cluster's capacity and free space as this volume can use them: raw store
    /// space divided by its class's overhead, (k + m) / k.
    async fn cluster_space(&self) -> Result<(u64, u64)> {
        let status = self
            .control
            .status()
            .await
            .map_err(|e| FsError::Io(format!("cluster status: {e}")))?;
        let (mut capacity, mut used) = (0u64, 0u64);
        for node in &status.nodes {
            capacity += node.store.capacity;
            used += node.store.used.min(node.store.capacity);
        }
        let scheme = self.classes().write;
        let (k, width) = (scheme.k() as u64, scheme.width() as u64);
        Ok((capacity / width * k, (capacity - used) / width * k))
    }

    /// Opens file `ino`: its content is fetched afresh (close-to-open consistency).
    pub async fn open(&self, caller: Caller, ino: u64) -> Result<()> {
        let op = MetaOp::Open {
            ino,
            session: self.session,
        };
        self.apply(caller, op).await?;
        self.opened(ino).await;
        Ok(())
    }

    /// Notes an open the metadata service has recorded: one more handle, and the
    /// content fetched afresh (close-to-open consistency).
    async fn opened(&self, ino: u64) {
        let state = self.state_or_new(ino);
        let mut file = state.lock().await;
        file.handles += 1;
        file.changed();
    }

    /// Closes one open of `ino`: commits what is buffered; the last close tells the
    /// metadata service (an unlinked file goes with it).
    pub async fn release(self: &Arc<Self>, ino: u64) -> Result<()> {
        let state = self.state_or_new(ino);
        let mut file = state.lock().await;
        file.handles = file.handles.saturating_sub(1);
        let committed = self.commit(ino, &mut file, true).await;
        let op = MetaOp::Release {
            ino,
            session: self.session,
        };
        let released = self.apply(SYSTEM, op).await;
        if file.handles == 0 && committed.is_ok() {
            self.compact_later(ino);
        }
        self.forget_if_idle(ino, &file);
        committed.and(released.map(|_| ()))
    }

    /// Commits what is buffered for `ino` (close and fsync): it returns once the data
    /// is acknowledged at k and the extents are committed.
    pub async fn flush(&self, ino: u64) -> Result<()> {
        let Some(state) = self.state(ino) else {
            return Ok(());
        };
        let mut file = state.lock().await;
        self.commit(ino, &mut file, true).await
    }

    pub(super) fn forget_if_idle(&self, ino: u64, file: &FileState) {
        if file.handles == 0 && file.dirty.is_empty() {
            self.files
                .lock()
                .expect("invariant: the file table lock is never poisoned")
                .remove(&ino);
        }
    }

    pub(super) async fn content(&self, ino: u64, file: &mut FileState) -> Result<Content> {
        if let Some(content) = &file.content {
            return Ok(content.clone());
        }
        let content = self.fetch_content(ino).await?;
        file.content = Some(content.clone());
        Ok(content)
    }

    /// The file's content as the metadata service has it now.
    pub(super) async fn fetch_content(&self, ino: u64) -> Result<Content> {
        match self.call(SYSTEM, MetaCall::Content { ino }).await? {
            MetaReply::Content {
                attr,
                inline,
                extents,
                reserved,
            } => {
                self.note_reserve(ino, |_| reserved);
                Ok(Content {
                    attr,
                    inline: Arc::new(inline),
                    extents: Arc::new(extents),
                })
            }
            other => Err(unexpected(&other)),
        }
    }
}

/// `t` as nanoseconds since the Unix epoch (negative before it).
pub(super) fn nanos(t: std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Now, as [`nanos`].
pub(super) fn now_nanos() -> i64 {
    nanos(std::time::SystemTime::now())
}

pub(super) fn unexpected(reply: &MetaReply) -> FsError {
    FsError::Io(format!(
        "the metadata service answered with an unexpected {}",
        match reply {
            MetaReply::Errno(_) => "errno",
            MetaReply::Done => "done",
            MetaReply::Attr(_) => "attribute set",
            MetaReply::Mounted(_) => "volume",
            MetaReply::Entries(_) => "listing",
            MetaReply::Bytes(_) => "byte string",
            MetaReply::Names(_) => "name list",
            MetaReply::Volumes(_) => "volume list",
            MetaReply::Chunks { .. } => "chunk list",
            MetaReply::NotLeader { .. } => "redirect",
            MetaReply::Group(_) => "metadata group",
            MetaReply::Digest { .. } => "digest",
            MetaReply::ClusterMap(_) => "cluster map",
            MetaReply::Enrolled { .. } => "enrolled id",
            MetaReply::Content { .. } => "content",
        }
    ))
}

/// What statfs reports, in bytes and inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Bytes the volume may hold: its quota, or the cluster's capacity.
    pub total: u64,
    /// Bytes it may still take: under its quota and within the cluster's free space.
    pub free: u64,
    /// Inodes it may hold: its quota, or those it holds plus [`StatFs::free_files`].
    pub files: u64,
    /// Inodes it may still make: under its quota, or without one, one per 4 KiB of
    /// free space.
    pub free_files: u64,
}

impl StatFs {
    /// The figures for a volume with `usage`, on a cluster with `capacity` bytes of
    /// which `free` are free (both after the class's overhead).
    pub fn of(usage: &UsageMessage, capacity: u64, free: u64) -> Self {
        let (total, free) = if usage.max_bytes > 0 {
            let left = usage.max_bytes.saturating_sub(usage.bytes);
            (usage.max_bytes, left.min(free))
        } else {
            (capacity, free)
        };
        let (files, free_files) = if usage.max_files > 0 {
            (usage.max_files, usage.max_files.saturating_sub(usage.files))
        } else {
            let free_files = free / INODE_SPACE;
            (usage.files + free_files, free_files)
        };
        Self {
            total,
            free,
            files,
            free_files,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_shows_the_quota_or_else_the_cluster() {
        let used = UsageMessage {
            bytes: 6 << 20,
            files: 3,
            max_bytes: 0,
            max_files: 0,
        };
        let gib = 1 << 30;
        // No quota: the cluster's space; inodes, one per 4 KiB free.
        let fs = StatFs::of(&used, 4 * gib, gib);
        assert_eq!((fs.total, fs.free), (4 * gib, gib));
        assert_eq!((fs.files, fs.free_files), (3 + gib / 4096, gib / 4096));
        // A quota: its figures, and never more free than the cluster has.
        let limited = UsageMessage {
            max_bytes: 8 << 20,
            max_files: 10,
            ..used
        };
        let fs = StatFs::of(&limited, 4 * gib, gib);
        assert_eq!(
            (fs.total, fs.free, fs.files, fs.free_files),
            (8 << 20, 2 << 20, 10, 7)
        );
        assert_eq!(StatFs::of(&limited, 4 * gib, 1 << 20).free, 1 << 20);
        // Over a lowered quota: nothing free, nothing negative.
        let over = UsageMessage {
            max_bytes: 1 << 20,
            max_files: 2,
            ..used
        };
        let fs = StatFs::of(&over, 4 * gib, gib);
        assert_eq!((fs.free, fs.free_files), (0, 0));
    }

    #[test]
    fn a_missing_capability_is_trusted_for_a_while_within_a_bound() {
        let caps = CapsAbsent::default();
        let now = std::time::Instant::now();
        caps.note_at(7, now);
        assert!(caps.holds_at(7, now));
        assert!(!caps.holds_at(8, now), "never seen");
        assert!(!caps.holds_at(7, now + CAPS_ABSENT_FOR), "expired");
        caps.forget(7);
        assert!(!caps.holds_at(7, now), "a set or remove forgets");
        for ino in 0..CAPS_ABSENT_KEPT as u64 {
            caps.note_at(ino, now);
        }
        caps.note_at(u64::MAX, now);
        assert!(!caps.holds_at(u64::MAX, now), "past the bound: not kept");
        // Once the others expire, room is made.
        caps.note_at(u64::MAX, now + CAPS_ABSENT_FOR);
        assert!(caps.holds_at(u64::MAX, now + CAPS_ABSENT_FOR));
        assert_eq!(caps.lock().len(), 1);
    }
}
