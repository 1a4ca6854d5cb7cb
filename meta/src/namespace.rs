//! The namespace as a deterministic state machine on fjall: [`Namespace::apply`] runs
//! one [`Op`] as one write transaction — committed whole when it succeeds, rolled back
//! whole when it fails with an [`Errno`] — so a replicated log can drive it unchanged.
//! Reads run on a snapshot.

use std::collections::BTreeMap;
use std::path::Path;

use fjall::{
    KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace,
    SingleWriterWriteTx,
};

use crate::acl::{self, Acl};
use crate::constants::{
    DEFAULT_VOLUME, EXTENT_PAGE_SPAN, MAX_DEPTH, MAX_EXTENTS_PER_COMMIT, MAX_FILE_SIZE,
    MAX_FORCED_DELETE, MAX_INLINE, MAX_K, MAX_LINKS, MAX_M, MAX_NAME, MAX_OBJECT_CHUNKS,
    MAX_SYMLINK, MAX_VOLUME_NAME, MAX_XATTR_NAME, MAX_XATTR_VALUE, POINT_READ_PAGES,
};
use crate::records::{
    APPLIED, CLUSTER_MAP, ENROLLED, InodeRecord, NEXT_INO, QUOTAS_COUNTED, RESERVED, USED_TOKEN,
    VolumeRecord, counted_bytes, decode_dirent, decode_extent, decode_extent_page, decode_inode,
    decode_object, decode_quota, decode_session, decode_volume, dirent_value, encode_extent_page,
    encode_inode, encode_object, encode_quota, encode_session, encode_volume, extent_inode,
    extent_page_key, held_key, inode_key, named_key, page_of, session_key,
};
use crate::types::{
    Attr, Context, Errno, Extent, FileType, InodeId, Nanos, Op, Outcome, RenameMode, Usage,
    XattrMode,
};

/// Memtable bound of the keyspaces read by prefix scans (extent pages, directory entries).
/// A scan walks every version of every key in its range that the memtable still holds,
/// and a file rewritten often leaves many: a small memtable is flushed (and its old
/// versions compacted away) before scans get slow.
const SCANNED_MEMTABLE: u64 = 1 << 20;
/// Storage class of the default volume when the caller names none.
pub const DEFAULT_K: u8 = 4;
/// See [`DEFAULT_K`].
pub const DEFAULT_M: u8 = 2;

/// A failure of the storage under the namespace (not of the operation).
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// fjall failed.
    #[error("metadata store: {0}")]
    Store(#[from] fjall::Error),
    /// Stored bytes that are not what the namespace wrote.
    #[error("metadata store is corrupt: {0}")]
    Corrupt(String),
}

/// A page of chunk ids ([`Namespace::volume_chunks`]) and the cursor of the next
/// page (`None` after the last).
pub type ChunkPage = (Vec<[u8; 32]>, Option<Vec<u8>>);

/// Records per keyspace.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Census {
    /// Inodes.
    pub inodes: u64,
    /// Directory entries.
    pub dirents: u64,
    /// Symlink targets.
    pub symlinks: u64,
    /// Extent pages.
    pub extents: u64,
    /// Files with inline data.
    pub inline: u64,
    /// Extended attributes.
    pub xattrs: u64,
    /// Volumes.
    pub volumes: u64,
    /// Files with opens not yet released.
    pub opens: u64,
    /// Client sessions.
    pub sessions: u64,
    /// (session, file) pairs with opens the session holds.
    pub held: u64,
    /// Objects.
    pub objects: u64,
    /// Volumes' quota records (one a volume).
    pub quotas: u64,
    /// Files holding a reserve.
    pub reserves: u64,
}

/// How an applied operation reaches stable storage.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Durability {
    /// Synced before `apply` returns.
    EveryOp,
    /// Left to fjall's journal (crash-safe, but the last operations may be lost).
    Buffered,
}

/// The keyspaces of one namespace.
#[derive(Clone)]
struct Spaces {
    inodes: SingleWriterTxKeyspace,
    dirents: SingleWriterTxKeyspace,
    symlinks: SingleWriterTxKeyspace,
    extents: SingleWriterTxKeyspace,
    inline: SingleWriterTxKeyspace,
    xattrs: SingleWriterTxKeyspace,
    volumes: SingleWriterTxKeyspace,
    opens: SingleWriterTxKeyspace,
    sessions: SingleWriterTxKeyspace,
    held: SingleWriterTxKeyspace,
    objects: SingleWriterTxKeyspace,
    quotas: SingleWriterTxKeyspace,
    reserves: SingleWriterTxKeyspace,
    replies: SingleWriterTxKeyspace,
    meta: SingleWriterTxKeyspace,
}

impl Spaces {
    /// Every keyspace with its name, in a fixed order (what a snapshot carries).
    fn all(&self) -> [(&'static str, &SingleWriterTxKeyspace); 15] {
        [
            ("inodes", &self.inodes),
            ("dirents", &self.dirents),
            ("symlinks", &self.symlinks),
            ("extent_pages", &self.extents),
            ("inline", &self.inline),
            ("xattrs", &self.xattrs),
            ("volumes", &self.volumes),
            ("opens", &self.opens),
            ("sessions", &self.sessions),
            ("held", &self.held),
            ("objects", &self.objects),
            ("quotas", &self.quotas),
            ("reserves", &self.reserves),
            ("replies", &self.replies),
            ("meta", &self.meta),
        ]
    }
}

/// A change that a client may send again (after a timeout, or to a new leader): its
/// session, its sequence number in that session, and the lowest sequence number whose
/// answer the client still waits for. The answer is remembered until the client has
/// it, so the change is applied once however often it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Once {
    /// The client's session.
    pub session: u64,
    /// This change's number in the session, from 1 (a 0 is taken for no number).
    pub seq: u64,
    /// Every change numbered below this has been answered to the client.
    pub acked: u64,
}

/// What [`Namespace::apply_logged`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Logged {
    /// Applied now, with this result.
    Applied(Result<Outcome, Errno>),
    /// Applied before (the same [`Once`]): the answer given then.
    Repeated(Vec<u8>),
}

/// A namespace: one filesystem tree.
pub struct Namespace {
    db: SingleWriterTxDatabase,
    spaces: Spaces,
    durability: Durability,
}

type Applied<T> = Result<Result<T, Errno>, MetaError>;

/// Checks a name for a new or looked-up entry.
fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.len() > MAX_NAME {
        return Err(Errno::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Errno::Inval);
    }
    Ok(())
}

/// Checks an extended attribute's name.
fn check_xattr_name(name: &[u8]) -> Result<(), Errno> {
    if name.is_empty() || name.contains(&0) {
        return Err(Errno::Inval);
    }
    if name.len() > MAX_XATTR_NAME {
        return Err(Errno::Range);
    }
    Ok(())
}

/// An object record read back: id, length, chunks.
type ObjectEntry = ([u8; 32], u64, Vec<[u8; 32]>);

/// An `objects` entry: the id, length and chunks.
fn object_entry(item: fjall::Guard) -> Result<ObjectEntry, MetaError> {
    let (key, value) = item.into_inner()?;
    let id: [u8; 32] = key[..]
        .try_into()
        .map_err(|_| MetaError::Corrupt("an object key".into()))?;
    let (len, chunks) =
        decode_object(&value).ok_or_else(|| MetaError::Corrupt("an object record".into()))?;
    Ok((id, len, chunks))
}

/// What a new inode is made as.
#[derive(Clone, Copy)]
struct Shape {
    kind: FileType,
    mode: u16,
    /// A symlink's target length; 0 otherwise.
    size: u64,
    /// A device node's device; 0 otherwise.
    rdev: u32,
}

impl Shape {
    fn new(kind: FileType, mode: u16) -> Self {
        Self {
            kind,
            mode,
            size: 0,
            rdev: 0,
        }
    }
}

/// `?` for the inner result: returns an `Ok(Err(errno))` from the enclosing function.
macro_rules! errno {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(errno) => return Ok(Err(errno)),
        }
    };
}

impl Namespace {
    /// Opens (or creates, with an empty root directory owned by root, mode 0755) the
    /// namespace in `path`.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, MetaError> {
        Self::open_with_class(path, durability, (DEFAULT_K, DEFAULT_M))
    }

    /// [`Namespace::open`], giving a new namespace's default volume the storage class
    /// `(k, m)`; an existing namespace keeps the class it was made with.
    pub fn open_with_class(
        path: &Path,
        durability: Durability,
        (k, m): (u8, u8),
    ) -> Result<Self, MetaError> {
        assert!(
            (1..=MAX_K).contains(&k) && m <= MAX_M,
            "the caller checks the default class {k}+{m}"
        );
        let db = SingleWriterTxDatabase::builder(path).open()?;
        let spaces = Spaces {
            inodes: db.keyspace("inodes", KeyspaceCreateOptions::default)?,
            dirents: db.keyspace("dirents", || {
                KeyspaceCreateOptions::default().max_memtable_size(SCANNED_MEMTABLE)
            })?,
            symlinks: db.keyspace("symlinks", KeyspaceCreateOptions::default)?,
            extents: db.keyspace("extent_pages", || {
                KeyspaceCreateOptions::default().max_memtable_size(SCANNED_MEMTABLE)
            })?,
            inline: db.keyspace("inline", KeyspaceCreateOptions::default)?,
            xattrs: db.keyspace("xattrs", KeyspaceCreateOptions::default)?,
            volumes: db.keyspace("volumes", KeyspaceCreateOptions::default)?,
            opens: db.keyspace("opens", KeyspaceCreateOptions::default)?,
            sessions: db.keyspace("sessions", KeyspaceCreateOptions::default)?,
            held: db.keyspace("held", KeyspaceCreateOptions::default)?,
            objects: db.keyspace("objects", KeyspaceCreateOptions::default)?,
            quotas: db.keyspace("quotas", KeyspaceCreateOptions::default)?,
            reserves: db.keyspace("reserves", KeyspaceCreateOptions::default)?,
            replies: db.keyspace("replies", KeyspaceCreateOptions::default)?,
            meta: db.keyspace("meta", KeyspaceCreateOptions::default)?,
        };
        let namespace = Self {
            db,
            spaces,
            durability,
        };
        if namespace.spaces.meta.get(NEXT_INO)?.is_none() {
            let mut tx = namespace.db.write_tx();
            let root = InodeRecord {
                attr: Attr::root(),
                parent: InodeId::ROOT,
                volume: InodeId::ROOT,
            };
            let default = VolumeRecord {
                root: InodeId::ROOT,
                k,
                m,
                from: None,
                uid: 0,
                gid: 0,
                created: Nanos(0),
            };
            tx.insert(
                &namespace.spaces.volumes,
                DEFAULT_VOLUME,
                encode_volume(&default),
            );
            tx.insert(
                &namespace.spaces.inodes,
                inode_key(InodeId::ROOT),
                encode_inode(&root),
            );
            tx.insert(&namespace.spaces.meta, NEXT_INO, 2u64.to_le_bytes());
            tx.durability(Some(PersistMode::SyncAll)).commit()?;
        }
        if namespace.db.keyspace_exists(V1_EXTENTS) {
            namespace.convert_v1_extents()?;
        }
        if namespace.spaces.meta.get(QUOTAS_COUNTED)?.is_none() {
            namespace.count_usage()?;
        }
        Ok(namespace)
    }

    /// Counts every volume's usage from its inodes, in one transaction: a namespace
    /// made before quotas (or just made) then keeps its counts with every change.
    fn count_usage(&self) -> Result<(), MetaError> {
        let mut tx = self.db.write_tx();
        let mut usage: BTreeMap<InodeId, Usage> = BTreeMap::new();
        for item in tx.iter(&self.spaces.inodes) {
            let (key, value) = item.into_inner()?;
            let ino = InodeId(u64::from_be_bytes(
                key[..]
                    .try_into()
                    .map_err(|_| MetaError::Corrupt("an inode key".into()))?,
            ));
            let record = decode_inode(ino, &value)
                .ok_or_else(|| MetaError::Corrupt(format!("the record of {ino}")))?;
            let counted = usage.entry(record.volume).or_default();
            counted.bytes += counted_bytes(&record.attr);
            counted.files += 1;
        }
        for (root, counted) in usage {
            let limits = read_usage(&tx, &self.spaces, root)?;
            let record = Usage {
                max_bytes: limits.max_bytes,
                max_files: limits.max_files,
                ..counted
            };
            tx.insert(&self.spaces.quotas, inode_key(root), encode_quota(&record));
        }
        tx.insert(&self.spaces.meta, QUOTAS_COUNTED, []);
        tx.durability(Some(PersistMode::SyncAll)).commit()?;
        Ok(())
    }

    /// Moves version 1 extent records (one per extent) into pages, in one transaction,
    /// and empties their keyspace: a namespace written before extent pages opens whole.
    fn convert_v1_extents(&self) -> Result<(), MetaError> {
        let v1 = self
            .db
            .keyspace(V1_EXTENTS, KeyspaceCreateOptions::default)?;
        let mut tx = self.db.write_tx();
        let mut files: std::collections::BTreeMap<InodeId, Vec<Extent>> = Default::default();
        let mut keys = Vec::new();
        for item in tx.iter(&v1) {
            let (key, value) = item.into_inner()?;
            let extent = decode_extent(&key, &value)
                .ok_or_else(|| MetaError::Corrupt(format!("version 1 extent {key:?}")))?;
            let ino = InodeId(u64::from_be_bytes(
                key[..8].try_into().expect("16-byte key"),
            ));
            files.entry(ino).or_default().push(extent);
            keys.push(key);
        }
        if keys.is_empty() {
            return Ok(());
        }
        for key in keys {
            tx.remove(&v1, key);
        }
        let mut t = Tx {
            tx: &mut tx,
            s: &self.spaces,
            deltas: BTreeMap::new(),
        };
        for (ino, extents) in files {
            t.write_pages(ino, &[], &paged(&extents));
        }
        tx.durability(Some(PersistMode::SyncAll)).commit()?;
        Ok(())
    }

    /// Applies `op` for `ctx` as one transaction.
    pub fn apply(&self, ctx: Context, op: &Op) -> Applied<Outcome> {
        let tx = self.db.write_tx();
        self.apply_in(tx, ctx, op)
    }

    /// Applies `op` for `ctx` as the log entry `stamp` names (what a replicated log's
    /// state machine does), in one transaction that also records `stamp` (read back by
    /// [`Namespace::stamp`]), so after a crash the namespace and the record of what it
    /// has applied agree. An operation that fails with an errno changes nothing but
    /// the stamp. With `once`, a change already applied for the same session and
    /// sequence is not applied again: the answer `answer` made of its result then is
    /// given back; answers the client no longer waits for are forgotten.
    pub fn apply_logged(
        &self,
        ctx: Context,
        op: &Op,
        stamp: &[u8],
        once: Option<Once>,
        answer: impl FnOnce(&Result<Outcome, Errno>) -> Vec<u8>,
    ) -> Result<Logged, MetaError> {
        // Sequence 0 is the session's low mark, never a change's number.
        let once = once.filter(|o| o.seq > 0);
        let mut tx = self.db.write_tx();
        if let Some(once) = once
            && let Some(given) = tx.get(&self.spaces.replies, reply_key(once.session, once.seq))?
        {
            tx.insert(&self.spaces.meta, APPLIED, stamp);
            tx.durability(self.mode()).commit()?;
            return Ok(Logged::Repeated(given.to_vec()));
        }
        let result = self.run(&mut tx, ctx, op)?;
        if result.is_err() {
            // The errno rolls the operation back; its stamp and answer are recorded.
            tx.rollback();
            tx = self.db.write_tx();
        }
        tx.insert(&self.spaces.meta, APPLIED, stamp);
        if let Some(once) = once {
            // Point removals from the session's low mark (key sequence 0) up to what
            // the client has: a range scan would walk every answer removed before
            // (their tombstones), over and over.
            let low_key = reply_key(once.session, 0);
            let low = match tx.get(&self.spaces.replies, low_key)? {
                Some(v) => v
                    .as_ref()
                    .try_into()
                    .map(u64::from_le_bytes)
                    .map_err(|_| MetaError::Corrupt("a session's answer mark".into()))?,
                None => 1,
            };
            let to = once.acked.min(low.saturating_add(MAX_ANSWERS_FORGOTTEN));
            for seq in low.max(1)..to {
                tx.remove(&self.spaces.replies, reply_key(once.session, seq));
            }
            if to > low {
                tx.insert(&self.spaces.replies, low_key, to.to_le_bytes());
            }
            tx.insert(
                &self.spaces.replies,
                reply_key(once.session, once.seq),
                answer(&result),
            );
        }
        tx.durability(self.mode()).commit()?;
        Ok(Logged::Applied(result))
    }

    /// Records `stamp` alone: a log entry that changes nothing in the namespace (a
    /// leader's first entry, a membership change).
    pub fn set_stamp(&self, stamp: &[u8]) -> Result<(), MetaError> {
        let mut tx = self.db.write_tx();
        tx.insert(&self.spaces.meta, APPLIED, stamp);
        tx.durability(self.mode()).commit()?;
        Ok(())
    }

    /// The stamp of the last log entry applied, if any was.
    pub fn stamp(&self) -> Result<Option<Vec<u8>>, MetaError> {
        Ok(self.spaces.meta.get(APPLIED)?.map(|v| v.to_vec()))
    }

    /// Every record of the namespace, from one snapshot, as bytes that
    /// [`Namespace::import`] takes: a replica's snapshot for another replica. Per
    /// keyspace, in a fixed order: its name's length (u8) and name, its record count
    /// (u64), then each record's key length (u32), key, value length (u32), value
    /// (little-endian). Held in memory whole. With it, the stamp it holds (from the
    /// same snapshot).
    pub fn export(&self) -> Result<(Vec<u8>, Option<Vec<u8>>), MetaError> {
        self.export_records(true)
    }

    /// What must be the same on every replica that applied the same log: the export
    /// without the stamp, and the stamp apart.
    pub fn state(&self) -> Result<(Vec<u8>, Option<Vec<u8>>), MetaError> {
        self.export_records(false)
    }

    fn export_records(&self, with_stamp: bool) -> Result<(Vec<u8>, Option<Vec<u8>>), MetaError> {
        let snapshot = self.db.read_tx();
        let stamp = snapshot
            .get(&self.spaces.meta, APPLIED)?
            .map(|v| v.to_vec());
        let mut out = Vec::new();
        for (name, space) in self.spaces.all() {
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            let count_at = out.len();
            out.extend_from_slice(&0u64.to_le_bytes());
            let mut count = 0u64;
            for item in snapshot.iter(space) {
                let (key, value) = item.into_inner()?;
                if !with_stamp && name == "meta" && &key[..] == APPLIED {
                    continue;
                }
                for part in [&key[..], &value[..]] {
                    let len = u32::try_from(part.len())
                        .map_err(|_| MetaError::Corrupt("a record over 4 GiB".into()))?;
                    out.extend_from_slice(&len.to_le_bytes());
                    out.extend_from_slice(part);
                }
                count += 1;
            }
            out[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
        }
        Ok((out, stamp))
    }

    /// Replaces every record of the namespace with those of `snapshot` (made by
    /// [`Namespace::export`]), in one synced transaction; a malformed snapshot is
    /// refused whole and changes nothing.
    pub fn import(&self, snapshot: &[u8]) -> Result<(), MetaError> {
        let records = parse_export(snapshot)
            .ok_or_else(|| MetaError::Corrupt("a namespace snapshot".into()))?;
        let spaces = self.spaces.all();
        let mut tx = self.db.write_tx();
        for (_, space) in spaces {
            let mut keys = Vec::new();
            for item in tx.iter(space) {
                keys.push(item.key()?);
            }
            for key in keys {
                tx.remove(space, key);
            }
        }
        for (name, key, value) in records {
            let (_, space) = spaces
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| MetaError::Corrupt(format!("a snapshot keyspace {name:?}")))?;
            tx.insert(space, key, value);
        }
        tx.durability(Some(PersistMode::SyncAll)).commit()?;
        Ok(())
    }

    fn mode(&self) -> Option<PersistMode> {
        match self.durability {
            Durability::EveryOp => Some(PersistMode::SyncData),
            Durability::Buffered => None,
        }
    }

    /// Applies `op` in `tx` and commits it, or rolls it back on an errno.
    fn apply_in(&self, mut tx: SingleWriterWriteTx<'_>, ctx: Context, op: &Op) -> Applied<Outcome> {
        match self.run(&mut tx, ctx, op)? {
            Ok(outcome) => {
                tx.durability(self.mode()).commit()?;
                Ok(Ok(outcome))
            }
            Err(errno) => {
                tx.rollback();
                Ok(Err(errno))
            }
        }
    }

    /// Applies `op` in `tx`, which the caller commits, or rolls back on an errno.
    ///
    /// An operation that panics (a bug met by some input) is refused with EIO and
    /// changes nothing: the caller rolls `tx` back as for any errno. Applied from a
    /// replicated log, the same entry panics alike on every replica and on every
    /// replay, so letting the panic stop the state machine would stop the whole
    /// metadata group for good over one request. The panic's message and place are
    /// printed by the panic hook, in the service's log.
    fn run(&self, tx: &mut SingleWriterWriteTx<'_>, ctx: Context, op: &Op) -> Applied<Outcome> {
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            #[cfg(test)]
            if tests::PANIC_NEXT.with(|p| p.replace(false)) {
                panic!("a panic planted by a test");
            }
            let mut t = Tx {
                tx: &mut *tx,
                s: &self.spaces,
                deltas: BTreeMap::new(),
            };
            Ok(match t.apply(ctx, op)? {
                Ok(outcome) => t.settle_usage()?.map(|()| outcome),
                Err(errno) => Err(errno),
            })
        }));
        applied.unwrap_or(Ok(Err(Errno::Io)))
    }

    /// The attributes of `ino`.
    pub fn getattr(&self, ino: InodeId) -> Applied<Attr> {
        let snapshot = self.db.read_tx();
        Ok(read_inode(&snapshot, &self.spaces, ino)?
            .map(|r| r.attr)
            .ok_or(Errno::NoEnt))
    }

    /// The entry `name` of directory `parent`; `..` is its parent, and `.` the inode
    /// itself, whatever its kind.
    pub fn lookup(&self, parent: InodeId, name: &[u8]) -> Applied<Attr> {
        if name.len() > MAX_NAME {
            return Ok(Err(Errno::NameTooLong));
        }
        let snapshot = self.db.read_tx();
        let dir = errno!(read_inode(&snapshot, &self.spaces, parent)?.ok_or(Errno::NoEnt));
        // An inode itself (of any kind), and a directory's parent (a volume's root is
        // its own parent): the kernel asks for them to turn a file handle back into a
        // file.
        if name == b"." {
            return Ok(Ok(dir.attr));
        }
        if dir.attr.kind != FileType::Dir {
            return Ok(Err(Errno::NotDir));
        }
        if name == b".." {
            return Ok(read_inode(&snapshot, &self.spaces, dir.parent)?
                .map(|r| r.attr)
                .ok_or(Errno::NoEnt));
        }
        let Some(value) = snapshot.get(&self.spaces.dirents, named_key(parent, name))? else {
            return Ok(Err(Errno::NoEnt));
        };
        let (child, _) = decode_dirent(&value)
            .ok_or_else(|| MetaError::Corrupt(format!("entry {name:?} of {parent}")))?;
        Ok(read_inode(&snapshot, &self.spaces, child)?
            .map(|r| r.attr)
            .ok_or(Errno::NoEnt))
    }

    /// The entries of directory `ino`, sorted by name (without `.` and `..`).
    pub fn readdir(&self, ino: InodeId) -> Applied<Vec<(Vec<u8>, InodeId, FileType)>> {
        let snapshot = self.db.read_tx();
        let dir = errno!(read_inode(&snapshot, &self.spaces, ino)?.ok_or(Errno::NoEnt));
        if dir.attr.kind != FileType::Dir {
            return Ok(Err(Errno::NotDir));
        }
        let mut entries = Vec::new();
        for item in snapshot.prefix(&self.spaces.dirents, inode_key(ino)) {
            let (key, value) = item.into_inner()?;
            let (child, kind) = decode_dirent(&value)
                .ok_or_else(|| MetaError::Corrupt(format!("an entry of {ino}")))?;
            entries.push((key[8..].to_vec(), child, kind));
        }
        Ok(Ok(entries))
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<(Vec<u8>, VolumeRecord)>, MetaError> {
        read_volumes(&self.db.read_tx(), &self.spaces)
    }

    /// How many records each keyspace holds: for checks that nothing leaks (a removed
    /// inode leaves no extents, inline data or xattrs behind). Reads everything.
    pub fn census(&self) -> Result<Census, MetaError> {
        let snapshot = self.db.read_tx();
        let count = |space: &SingleWriterTxKeyspace| -> Result<u64, MetaError> {
            let mut n = 0;
            for item in snapshot.iter(space) {
                item.key()?;
                n += 1;
            }
            Ok(n)
        };
        Ok(Census {
            inodes: count(&self.spaces.inodes)?,
            dirents: count(&self.spaces.dirents)?,
            symlinks: count(&self.spaces.symlinks)?,
            extents: count(&self.spaces.extents)?,
            inline: count(&self.spaces.inline)?,
            xattrs: count(&self.spaces.xattrs)?,
            volumes: count(&self.spaces.volumes)?,
            opens: count(&self.spaces.opens)?,
            sessions: count(&self.spaces.sessions)?,
            held: count(&self.spaces.held)?,
            objects: count(&self.spaces.objects)?,
            quotas: count(&self.spaces.quotas)?,
            reserves: count(&self.spaces.reserves)?,
        })
    }

    /// Garbage collection's mark: the chunk of every extent of every file (files
    /// unlinked but still open included: their extents stay until the last release),
    /// and every object's manifest and chunks, read from one snapshot, so a chunk
    /// referenced throughout the mark is seen however files change meanwhile. The
    /// references are counted first, from the same snapshot; `make(count)` makes the
    /// set to hold them and `add` puts each in, with the bytes the reference covers
    /// (an extent's length; an object's length shared among its chunks, its manifest
    /// covering none) and the storage classes (k, m) it is referenced in: a file's
    /// volume's class (and the class it is being re-encoded from), or none, meaning
    /// any class, for an object (stored in whatever class its writer chose) and for a
    /// file whose volume the snapshot does not name.
    pub fn mark<S>(
        &self,
        make: impl FnOnce(u64) -> S,
        mut add: impl FnMut(&mut S, &[u8; 32], u64, &[(u8, u8)]),
    ) -> Result<S, MetaError> {
        let snapshot = self.db.read_tx();
        let pages = || {
            snapshot.iter(&self.spaces.extents).map(|item| {
                let (key, value) = item.into_inner()?;
                decode_extent_page(&key, &value)
                    .map(|(_, extents)| (extent_inode(&key), extents))
                    .ok_or_else(|| MetaError::Corrupt("an extent page".into()))
            })
        };
        let objects = || snapshot.iter(&self.spaces.objects).map(object_entry);
        let mut count = 0u64;
        for page in pages() {
            count += page?.1.len() as u64;
        }
        for object in objects() {
            count += 1 + object?.2.len() as u64;
        }
        let classes: BTreeMap<InodeId, Vec<(u8, u8)>> = read_volumes(&snapshot, &self.spaces)?
            .into_iter()
            .map(|(_, v)| (v.root, v.classes().collect()))
            .collect();
        let mut set = make(count);
        // Pages come in inode order: one inode read per file.
        let mut file: (InodeId, &[(u8, u8)]) = (InodeId(0), &[]);
        for page in pages() {
            let (ino, extents) = page?;
            if file.0 != ino {
                let volume = read_inode(&snapshot, &self.spaces, ino)?.map(|node| node.volume);
                let class = volume
                    .and_then(|v| classes.get(&v))
                    .map_or(&[][..], |c| &c[..]);
                file = (ino, class);
            }
            for extent in extents {
                add(&mut set, &extent.chunk, u64::from(extent.len), file.1);
            }
        }
        for object in objects() {
            let (id, len, chunks) = object?;
            add(&mut set, &id, 0, &[]);
            let count = chunks.len() as u64;
            for (n, chunk) in (0..).zip(&chunks) {
                // The length shared out evenly, so the shares sum to it.
                let share = len * (n + 1) / count - len * n / count;
                add(&mut set, chunk, share, &[]);
            }
        }
        Ok(set)
    }

    /// A page of the chunks the files of the volume rooted at `root` refer to, for a
    /// re-encode: the extent pages after key `after` (empty: from the start), up to
    /// about `max` extents (whole pages; at most 4 x `max` pages looked at), and the
    /// key to go on from; `None` at the end.
    /// Files unlinked but open count, as for [`Namespace::mark`]; a chunk a file refers
    /// to twice comes twice.
    pub fn volume_chunks(
        &self,
        root: InodeId,
        after: &[u8],
        max: usize,
    ) -> Result<ChunkPage, MetaError> {
        use std::ops::Bound;
        let snapshot = self.db.read_tx();
        let from = if after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(after.to_vec())
        };
        let mut chunks = Vec::new();
        let mut file: (InodeId, bool) = (InodeId(0), false);
        // Other volumes' pages are passed over, but no more than this many a call.
        let mut budget = max.saturating_mul(4).max(1);
        let mut last: Option<Vec<u8>> = None;
        for item in snapshot.range(&self.spaces.extents, (from, Bound::Unbounded)) {
            let (key, value) = item.into_inner()?;
            if budget == 0 && last.is_some() {
                // This page is looked at next time.
                return Ok((chunks, last));
            }
            budget = budget.saturating_sub(1);
            last = Some(key.to_vec());
            let ino = extent_inode(&key);
            if file.0 != ino {
                let volume = read_inode(&snapshot, &self.spaces, ino)?.map(|node| node.volume);
                file = (ino, volume == Some(root));
            }
            if !file.1 {
                continue;
            }
            let (_, extents) = decode_extent_page(&key, &value)
                .ok_or_else(|| MetaError::Corrupt("an extent page".into()))?;
            chunks.extend(extents.iter().map(|e| e.chunk));
            if chunks.len() >= max {
                return Ok((chunks, Some(key.to_vec())));
            }
        }
        Ok((chunks, None))
    }

    /// What the volume rooted at `root` holds, and its limits.
    pub fn usage(&self, root: InodeId) -> Result<Usage, MetaError> {
        read_usage(&self.db.read_tx(), &self.spaces, root)
    }

    /// The recorded objects: id and length, in id order.
    pub fn objects(&self) -> Result<Vec<([u8; 32], u64)>, MetaError> {
        let snapshot = self.db.read_tx();
        let mut out = Vec::new();
        for item in snapshot.iter(&self.spaces.objects) {
            let (id, len, _) = object_entry(item)?;
            out.push((id, len));
        }
        Ok(out)
    }

    /// The extents of file `ino`, by offset.
    pub fn extents(&self, ino: InodeId) -> Applied<Vec<Extent>> {
        let snapshot = self.db.read_tx();
        let node = errno!(read_inode(&snapshot, &self.spaces, ino)?.ok_or(Errno::NoEnt));
        if node.attr.kind != FileType::File {
            return Ok(Err(Errno::Inval));
        }
        Ok(Ok(read_extents(
            &snapshot,
            &self.spaces,
            ino,
            node.attr.size,
        )?))
    }

    /// The inline bytes of file `ino` (empty if it has none).
    pub fn inline(&self, ino: InodeId) -> Applied<Vec<u8>> {
        let snapshot = self.db.read_tx();
        errno!(read_inode(&snapshot, &self.spaces, ino)?.ok_or(Errno::NoEnt));
        Ok(Ok(snapshot
            .get(&self.spaces.inline, inode_key(ino))?
            .map(|v| v.to_vec())
            .unwrap_or_default()))
    }

    /// The extended attributes of `ino`, by name.
    pub fn xattrs(&self, ino: InodeId) -> Applied<Vec<(Vec<u8>, Vec<u8>)>> {
        let snapshot = self.db.read_tx();
        errno!(read_inode(&snapshot, &self.spaces, ino)?.ok_or(Errno::NoEnt));
        let mut out = Vec::new();
        for item in snapshot.prefix(&self.spaces.xattrs, inode_key(ino)) {
            let (key, value) = item.into_inner()?;
            out.push((key[8..].to_vec(), value.to_vec()));
        }
        Ok(Ok(out))
    }

    /// The attributes, inline bytes and extents of file `ino`, from one snapshot.
    pub fn content(&self, ino: InodeId) -> Applied<(Attr, Vec<u8>, Vec<Extent>)> {
        let snapshot = self.db.read_tx();
        let node = errno!(read_inode(&snapshot, &self.spaces, ino)?.ok_or(Errno::NoEnt));
        if node.attr.kind != FileType::File {
            return Ok(Err(Errno::Inval));
        }
        let inline = snapshot
            .get(&self.spaces.inline, inode_key(ino))?
            .map(|v| v.to_vec())
            .unwrap_or_default();
        let extents = read_extents(&snapshot, &self.spaces, ino, node.attr.size)?;
        Ok(Ok((node.attr, inline, extents)))
    }

    /// The bytes of file `ino` reserved by fallocate and not yet written.
    pub fn reserve(&self, ino: InodeId) -> Result<u64, MetaError> {
        read_reserve(&self.db.read_tx(), &self.spaces, ino)
    }

    /// The sum of every file's reserve: logical bytes the cluster must keep room for.
    pub fn reserved(&self) -> Result<u64, MetaError> {
        read_reserved(&self.db.read_tx(), &self.spaces)
    }

    /// The root of the volume `ino` belongs to.
    pub fn volume_root(&self, ino: InodeId) -> Applied<InodeId> {
        let snapshot = self.db.read_tx();
        Ok(read_inode(&snapshot, &self.spaces, ino)?
            .map(|r| r.volume)
            .ok_or(Errno::NoEnt))
    }

    /// The volume named `name`, if there is one.
    pub fn volume(&self, name: &[u8]) -> Result<Option<VolumeRecord>, MetaError> {
        let Some(value) = self.spaces.volumes.get(name)? else {
            return Ok(None);
        };
        decode_volume(&value)
            .map(Some)
            .ok_or_else(|| MetaError::Corrupt(format!("volume {name:?}")))
    }

    /// The cluster map the group keeps (see [`Op::KeepMap`]): its epoch and bytes.
    pub fn cluster_map(&self) -> Result<Option<(u64, Vec<u8>)>, MetaError> {
        match self.spaces.meta.get(CLUSTER_MAP)? {
            None => Ok(None),
            Some(value) => kept_map(&value).map(|(epoch, map)| Some((epoch, map.to_vec()))),
        }
    }

    /// Whether any session's time is up at `now` (a read: `ExpireSessions` then ends
    /// them).
    pub fn sessions_expired(&self, now: Nanos) -> Result<bool, MetaError> {
        let snapshot = self.db.read_tx();
        for item in snapshot.iter(&self.spaces.sessions) {
            let (key, value) = item.into_inner()?;
            let (_, until, _) = session_record(&key, &value)?;
            if until <= now.0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Makes every operation applied so far durable (one sync for all of them): what a
    /// namespace opened with [`Durability::Buffered`] calls before answering a batch.
    pub fn persist(&self) -> Result<(), MetaError> {
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    /// The target of symlink `ino`.
    pub fn readlink(&self, ino: InodeId) -> Applied<Vec<u8>> {
        let snapshot = self.db.read_tx();
        let node = errno!(read_inode(&snapshot, &self.spaces, ino)?.ok_or(Errno::NoEnt));
        if node.attr.kind != FileType::Symlink {
            return Ok(Err(Errno::Inval));
        }
        Ok(snapshot
            .get(&self.spaces.symlinks, inode_key(ino))?
            .map(|t| t.to_vec())
            .ok_or(Errno::NoEnt))
    }
}

/// The extents of a file after `new` is laid over `old` (each sorted by offset, `new`
/// not overlapping itself): what `new` covers is cut out of `old`.
fn overlay(old: &[Extent], new: &[Extent]) -> Vec<Extent> {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let mut pieces = Vec::new();
    for e in old {
        pieces.clear();
        pieces.push(*e);
        for n in new
            .iter()
            .filter(|n| n.offset < e.end() && n.end() > e.offset)
        {
            let mut rest = Vec::with_capacity(pieces.len() + 1);
            for p in pieces.drain(..) {
                cut_out(p, n.offset, n.end(), &mut rest);
            }
            pieces = rest;
        }
        out.extend_from_slice(&pieces);
    }
    out.extend_from_slice(new);
    out.sort_by_key(|e| e.offset);
    out
}

/// Pushes onto `out` the parts of `e` outside `[from, to)`: all of it, a head, a tail,
/// both, or nothing.
fn cut_out(e: Extent, from: u64, to: u64, out: &mut Vec<Extent>) {
    if e.end() <= from || e.offset >= to {
        out.push(e);
        return;
    }
    if e.offset < from {
        out.push(Extent {
            len: u32::try_from(from - e.offset).expect("within an extent"),
            ..e
        });
    }
    if e.end() > to {
        let skip = u32::try_from(to - e.offset).expect("within an extent");
        out.push(Extent {
            offset: to,
            len: e.len - skip,
            chunk: e.chunk,
            chunk_offset: e.chunk_offset + skip,
        });
    }
}

/// The extents of a file with `[from, to)` punched out of them.
fn punched(old: &[Extent], from: u64, to: u64) -> Vec<Extent> {
    let mut out = Vec::with_capacity(old.len() + 1);
    for e in old {
        cut_out(*e, from, to, &mut out);
    }
    out
}

/// The extents of a file cut at `size`.
fn truncated(old: &[Extent], size: u64) -> Vec<Extent> {
    old.iter()
        .filter(|e| e.offset < size)
        .map(|e| Extent {
            len: u32::try_from(e.end().min(size) - e.offset).expect("within an extent"),
            ..*e
        })
        .collect()
}

/// `extents` (sorted, apart) cut at page boundaries: how they are stored and read.
/// A `meta` record holding one u64 (LE) under `key`.
fn counter(key: &[u8], value: &[u8]) -> Result<u64, MetaError> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| {
        MetaError::Corrupt(format!(
            "meta record {:?} has {} bytes, not 8",
            String::from_utf8_lossy(key),
            value.len()
        ))
    })?;
    Ok(u64::from_le_bytes(bytes))
}

/// A kept cluster map record: its epoch and bytes.
fn kept_map(value: &[u8]) -> Result<(u64, &[u8]), MetaError> {
    let Some((epoch, map)) = value.split_first_chunk::<8>() else {
        return Err(MetaError::Corrupt(format!(
            "the kept cluster map record has {} bytes",
            value.len()
        )));
    };
    Ok((u64::from_le_bytes(*epoch), map))
}

fn paged(extents: &[Extent]) -> Vec<Extent> {
    let mut out = Vec::with_capacity(extents.len());
    for e in extents {
        let mut piece = *e;
        while page_of(piece.offset) != page_of(piece.end() - 1) {
            let head = (page_of(piece.offset) + 1) * EXTENT_PAGE_SPAN - piece.offset;
            let head = u32::try_from(head).expect("below the extent's length");
            out.push(Extent { len: head, ..piece });
            piece = Extent {
                offset: piece.offset + u64::from(head),
                len: piece.len - head,
                chunk_offset: piece.chunk_offset + head,
                ..piece
            };
        }
        out.push(piece);
    }
    out
}

/// The pages `extents` touch, in order, each once.
fn pages_of(extents: &[Extent]) -> Vec<u64> {
    let mut pages: Vec<u64> = extents
        .iter()
        .flat_map(|e| page_of(e.offset)..=page_of(e.end() - 1))
        .collect();
    pages.dedup();
    pages
}

fn decode_page(ino: InodeId, key: &[u8], value: &[u8]) -> Result<Vec<Extent>, MetaError> {
    decode_extent_page(key, value)
        .map(|(_, extents)| extents)
        .ok_or_else(|| MetaError::Corrupt(format!("an extent page of {ino}")))
}

/// The extents of pages `pages` (ascending) of file `ino`, by point reads.
fn read_pages(
    from: &impl Readable,
    s: &Spaces,
    ino: InodeId,
    pages: impl Iterator<Item = u64>,
) -> Result<Vec<Extent>, MetaError> {
    let mut out = Vec::new();
    for page in pages {
        let key = extent_page_key(ino, page);
        if let Some(value) = from.get(&s.extents, key)? {
            out.extend(decode_page(ino, &key, &value)?);
        }
    }
    Ok(out)
}

/// The extents of file `ino` from page `first` on, by one range scan.
fn read_pages_from(
    from: &impl Readable,
    s: &Spaces,
    ino: InodeId,
    first: u64,
) -> Result<Vec<Extent>, MetaError> {
    read_page_range(from, s, ino, first, u64::MAX)
}

/// The extents of pages `first..=last` of file `ino`, by one range scan.
fn read_page_range(
    from: &impl Readable,
    s: &Spaces,
    ino: InodeId,
    first: u64,
    last: u64,
) -> Result<Vec<Extent>, MetaError> {
    let mut out = Vec::new();
    let range = extent_page_key(ino, first)..=extent_page_key(ino, last);
    for item in from.range(&s.extents, range) {
        let (key, value) = item.into_inner()?;
        out.extend(decode_page(ino, &key, &value)?);
    }
    Ok(out)
}

/// All extents of file `ino` of size `size` (none lie past it), by offset.
fn read_extents(
    from: &impl Readable,
    s: &Spaces,
    ino: InodeId,
    size: u64,
) -> Result<Vec<Extent>, MetaError> {
    let pages = size.div_ceil(EXTENT_PAGE_SPAN);
    if pages <= POINT_READ_PAGES {
        return read_pages(from, s, ino, 0..pages);
    }
    read_pages_from(from, s, ino, 0)
}

/// Every volume, by name.
fn read_volumes(
    from: &impl Readable,
    s: &Spaces,
) -> Result<Vec<(Vec<u8>, VolumeRecord)>, MetaError> {
    let mut out = Vec::new();
    for item in from.iter(&s.volumes) {
        let (key, value) = item.into_inner()?;
        let record =
            decode_volume(&value).ok_or_else(|| MetaError::Corrupt(format!("volume {key:?}")))?;
        out.push((key.to_vec(), record));
    }
    Ok(out)
}

fn read_inode(
    from: &impl Readable,
    s: &Spaces,
    ino: InodeId,
) -> Result<Option<InodeRecord>, MetaError> {
    match from.get(&s.inodes, inode_key(ino))? {
        None => Ok(None),
        Some(bytes) => decode_inode(ino, &bytes)
            .map(Some)
            .ok_or_else(|| MetaError::Corrupt(format!("the record of {ino}"))),
    }
}

/// The keyspace of version 1 extent records, converted to pages when a namespace opens.
const V1_EXTENTS: &str = "extents";

/// One operation's transaction.
struct Tx<'a, 'db> {
    tx: &'a mut SingleWriterWriteTx<'db>,
    s: &'a Spaces,
    /// What the transaction changed in each volume's usage (by root): bytes, inodes.
    deltas: BTreeMap<InodeId, (i128, i128)>,
}

/// Answers forgotten in one change at most (the rest with the next ones): a client
/// whose acknowledged mark leaps does not make one change do unbounded work.
const MAX_ANSWERS_FORGOTTEN: u64 = 4096;

/// The key of a remembered answer: session, then sequence number (u64 BE each).
/// Sequence 0 holds the session's low mark: the lowest sequence whose answer may
/// still be kept.
fn reply_key(session: u64, seq: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&session.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// One record of an exported namespace: its keyspace, key and value.
type ExportedRecord = (String, Vec<u8>, Vec<u8>);

/// The records of an exported namespace; `None` if malformed.
fn parse_export(mut bytes: &[u8]) -> Option<Vec<ExportedRecord>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        *bytes = rest;
        Some(head)
    }
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let len = usize::from(*take(&mut bytes, 1)?.first()?);
        let name = String::from_utf8(take(&mut bytes, len)?.to_vec()).ok()?;
        let count = u64::from_le_bytes(take(&mut bytes, 8)?.try_into().ok()?);
        for _ in 0..count {
            let mut part = || -> Option<Vec<u8>> {
                let len = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().ok()?);
                Some(take(&mut bytes, usize::try_from(len).ok()?)?.to_vec())
            };
            let key = part()?;
            let value = part()?;
            records.push((name.clone(), key, value));
        }
    }
    Some(records)
}

/// A session's id, when it expires and its ttl, from its record.
fn session_record(key: &[u8], value: &[u8]) -> Result<(u64, i64, i64), MetaError> {
    let session = key
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| MetaError::Corrupt("a session key".into()))?;
    let (until, ttl) =
        decode_session(value).ok_or_else(|| MetaError::Corrupt(format!("session {session}")))?;
    Ok((session, until, ttl))
}

/// The bytes of file `ino` reserved by fallocate and not yet written.
fn read_reserve(from: &impl Readable, s: &Spaces, ino: InodeId) -> Result<u64, MetaError> {
    read_u64(from, &s.reserves, &inode_key(ino), "a file's reserve")
}

/// The sum of every file's reserve.
fn read_reserved(from: &impl Readable, s: &Spaces) -> Result<u64, MetaError> {
    read_u64(from, &s.meta, RESERVED, "the reserved sum")
}

/// A u64 (little-endian) record, 0 if absent.
fn read_u64(
    from: &impl Readable,
    space: &SingleWriterTxKeyspace,
    key: &[u8],
    what: &str,
) -> Result<u64, MetaError> {
    match from.get(space, key)? {
        None => Ok(0),
        Some(bytes) => bytes
            .as_ref()
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| MetaError::Corrupt(what.to_string())),
    }
}

/// A volume's usage record (zeros and no limits if it has none yet).
fn read_usage(from: &impl Readable, s: &Spaces, root: InodeId) -> Result<Usage, MetaError> {
    match from.get(&s.quotas, inode_key(root))? {
        None => Ok(Usage::default()),
        Some(bytes) => decode_quota(&bytes)
            .ok_or_else(|| MetaError::Corrupt(format!("the quota record of volume root {root}"))),
    }
}

impl Tx<'_, '_> {
    fn inode(&self, ino: InodeId) -> Applied<InodeRecord> {
        Ok(read_inode(&*self.tx, self.s, ino)?.ok_or(Errno::NoEnt))
    }

    /// Directory `ino`: it must exist and be one.
    fn dir(&self, ino: InodeId) -> Applied<InodeRecord> {
        let dir = errno!(self.inode(ino)?);
        if dir.attr.kind != FileType::Dir {
            return Ok(Err(Errno::NotDir));
        }
        Ok(Ok(dir))
    }

    fn entry(
        &self,
        parent: InodeId,
        name: &[u8],
    ) -> Result<Option<(InodeId, FileType)>, MetaError> {
        match self.tx.get(&self.s.dirents, named_key(parent, name))? {
            None => Ok(None),
            Some(value) => decode_dirent(&value)
                .map(Some)
                .ok_or_else(|| MetaError::Corrupt(format!("entry {name:?} of {parent}"))),
        }
    }

    fn is_empty(&self, dir: InodeId) -> Result<bool, MetaError> {
        Ok(!self.holds_any(&self.s.dirents, dir)?)
    }

    /// Whether `space` has a key under inode `ino` (its entries, extent pages, ...).
    fn holds_any(&self, space: &SingleWriterTxKeyspace, ino: InodeId) -> Result<bool, MetaError> {
        match self.tx.prefix(space, inode_key(ino)).next() {
            None => Ok(false),
            Some(item) => item.into_inner().map(|_| true).map_err(MetaError::from),
        }
    }

    /// Writes an inode record, counting what it changes in its volume's usage.
    fn put(&mut self, record: &InodeRecord) -> Result<(), MetaError> {
        let old = read_inode(&*self.tx, self.s, record.attr.ino)?;
        let (bytes, files) = old.map_or((0, 0), |o| (counted_bytes(&o.attr), 1));
        self.count(record.volume, counted_bytes(&record.attr), 1);
        self.uncount(record.volume, bytes, files);
        self.tx.insert(
            &self.s.inodes,
            inode_key(record.attr.ino),
            encode_inode(record),
        );
        Ok(())
    }

    fn count(&mut self, volume: InodeId, bytes: u64, files: u64) {
        let d = self.deltas.entry(volume).or_default();
        d.0 += i128::from(bytes);
        d.1 += i128::from(files);
    }

    fn uncount(&mut self, volume: InodeId, bytes: u64, files: u64) {
        let d = self.deltas.entry(volume).or_default();
        d.0 -= i128::from(bytes);
        d.1 -= i128::from(files);
    }

    /// Applies the transaction's usage changes to each volume's record: EDQUOT if one
    /// grew past its limit (the caller rolls everything back). A volume whose root is
    /// gone loses its record.
    fn settle_usage(&mut self) -> Applied<()> {
        let deltas = std::mem::take(&mut self.deltas);
        for (root, (bytes, files)) in deltas {
            if (bytes, files) == (0, 0) {
                continue;
            }
            if read_inode(&*self.tx, self.s, root)?.is_none() {
                self.tx.remove(&self.s.quotas, inode_key(root));
                continue;
            }
            let before = read_usage(&*self.tx, self.s, root)?;
            let add = |used: u64, d: i128| {
                u64::try_from((i128::from(used) + d).max(0)).unwrap_or(u64::MAX)
            };
            let after = Usage {
                bytes: add(before.bytes, bytes),
                files: add(before.files, files),
                ..before
            };
            if before.exceeded_by(&after) {
                return Ok(Err(Errno::DQuot));
            }
            self.tx
                .insert(&self.s.quotas, inode_key(root), encode_quota(&after));
        }
        Ok(Ok(()))
    }

    fn drop_inode(&mut self, ino: InodeId) -> Result<(), MetaError> {
        if let Some(old) = read_inode(&*self.tx, self.s, ino)? {
            self.uncount(old.volume, counted_bytes(&old.attr), 1);
        }
        self.change_reserve(ino, |_| 0)?;
        self.tx.remove(&self.s.inodes, inode_key(ino));
        self.tx.remove(&self.s.symlinks, inode_key(ino));
        self.tx.remove(&self.s.inline, inode_key(ino));
        self.tx.remove(&self.s.opens, inode_key(ino));
        for space in [&self.s.extents, &self.s.xattrs] {
            let keys: Vec<_> = self
                .tx
                .prefix(space, inode_key(ino))
                .map(|item| item.key())
                .collect::<Result<_, _>>()?;
            for key in keys {
                self.tx.remove(space, key);
            }
        }
        Ok(())
    }

    /// Replaces the pages of file `ino` that held `old` with pages holding `new` (both
    /// paged, sorted, apart): a page left empty goes, an unchanged one is not written.
    fn write_pages(&mut self, ino: InodeId, old: &[Extent], new: &[Extent]) {
        debug_assert!(new.windows(2).all(|w| w[0].end() <= w[1].offset));
        let in_page = |extents: &[Extent], page: u64| -> std::ops::Range<usize> {
            let from = extents.partition_point(|e| page_of(e.offset) < page);
            let to = extents.partition_point(|e| page_of(e.offset) <= page);
            from..to
        };
        let mut pages = pages_of(old);
        pages.extend(pages_of(new));
        pages.sort_unstable();
        pages.dedup();
        for page in pages {
            let (was, now) = (&old[in_page(old, page)], &new[in_page(new, page)]);
            let key = extent_page_key(ino, page);
            if now.is_empty() {
                self.tx.remove(&self.s.extents, key);
            } else if was != now {
                self.tx
                    .insert(&self.s.extents, key, encode_extent_page(now));
            }
        }
    }

    /// The regular file `ino`.
    fn file(&self, ino: InodeId) -> Applied<InodeRecord> {
        let node = errno!(self.inode(ino)?);
        match node.attr.kind {
            FileType::File => Ok(Ok(node)),
            FileType::Dir => Ok(Err(Errno::IsDir)),
            _ => Ok(Err(Errno::Inval)),
        }
    }

    fn link_entry(&mut self, parent: InodeId, name: &[u8], child: InodeId, kind: FileType) {
        self.tx.insert(
            &self.s.dirents,
            named_key(parent, name),
            dirent_value(child, kind),
        );
    }

    fn unlink_entry(&mut self, parent: InodeId, name: &[u8]) {
        self.tx.remove(&self.s.dirents, named_key(parent, name));
    }

    fn next_ino(&mut self) -> Result<InodeId, MetaError> {
        let next = self
            .tx
            .get(&self.s.meta, NEXT_INO)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_le_bytes))
            .ok_or_else(|| MetaError::Corrupt("the inode counter".into()))?;
        self.tx
            .insert(&self.s.meta, NEXT_INO, (next + 1).to_le_bytes());
        Ok(InodeId(next))
    }

    /// Changes file `ino`'s reserve to `to(what it is)`, and the sum of every reserve
    /// with it.
    fn change_reserve(
        &mut self,
        ino: InodeId,
        to: impl FnOnce(u64) -> u64,
    ) -> Result<(), MetaError> {
        let was = read_reserve(&*self.tx, self.s, ino)?;
        let bytes = to(was);
        if was == bytes {
            return Ok(());
        }
        let total = (read_reserved(&*self.tx, self.s)? + bytes).saturating_sub(was);
        self.tx.insert(&self.s.meta, RESERVED, total.to_le_bytes());
        if bytes == 0 {
            self.tx.remove(&self.s.reserves, inode_key(ino));
        } else {
            self.tx
                .insert(&self.s.reserves, inode_key(ino), bytes.to_le_bytes());
        }
        Ok(())
    }

    /// Grows file `ino` to `end` and reserves what it grows by: see `Op::Allocate`.
    fn allocate(&mut self, ctx: Context, ino: InodeId, end: u64, room: u64) -> Applied<Outcome> {
        let mut node = errno!(self.file(ino)?);
        if end > MAX_FILE_SIZE {
            return Ok(Err(Errno::FBig));
        }
        if end <= node.attr.size {
            return Ok(Ok(Outcome::Attr(node.attr)));
        }
        let grow = end - node.attr.size;
        if grow > room.saturating_sub(read_reserved(&*self.tx, self.s)?) {
            return Ok(Err(Errno::NoSpc));
        }
        self.change_reserve(ino, |reserve| reserve.saturating_add(grow))?;
        node.attr.size = end;
        node.attr.mtime = ctx.now;
        node.attr.ctime = ctx.now;
        self.put(&node)?;
        Ok(Ok(Outcome::Attr(node.attr)))
    }

    /// Marks a directory changed (an entry added or removed) at `now`.
    fn touch(dir: &mut InodeRecord, now: Nanos) {
        dir.attr.mtime = now;
        dir.attr.ctime = now;
    }

    /// Creates a new inode named `name` in `parent`.
    fn make(
        &mut self,
        ctx: Context,
        parent: InodeId,
        name: &[u8],
        shape: Shape,
    ) -> Applied<InodeRecord> {
        let Shape {
            kind,
            mode,
            size,
            rdev,
        } = shape;
        errno!(check_name(name));
        let mut dir = errno!(self.dir(parent)?);
        if self.entry(parent, name)?.is_some() {
            return Ok(Err(Errno::Exist));
        }
        if kind == FileType::Dir && dir.attr.nlink >= MAX_LINKS {
            return Ok(Err(Errno::MLink));
        }
        // A directory's default ACL decides a new inode's access ACL and mode; without
        // one the caller's umask does (symlinks have neither).
        let inherited = match self
            .tx
            .get(&self.s.xattrs, named_key(parent, acl::DEFAULT))?
        {
            Some(value) if kind != FileType::Symlink => Some(
                Acl::parse(&value)
                    .map_err(|_| MetaError::Corrupt(format!("default ACL of {parent}")))?,
            ),
            _ => None,
        };
        let ino = self.next_ino()?;
        let mode = match &inherited {
            Some(default) => {
                let (access, mode) = default.inherit(mode & 0o7777);
                if !access.is_minimal() {
                    self.tx
                        .insert(&self.s.xattrs, named_key(ino, acl::ACCESS), access.encode());
                }
                if kind == FileType::Dir {
                    self.tx.insert(
                        &self.s.xattrs,
                        named_key(ino, acl::DEFAULT),
                        default.encode(),
                    );
                }
                mode
            }
            None if kind == FileType::Symlink => mode,
            None => mode & 0o7777 & !ctx.umask,
        };
        let (mode, gid) = setgid_inherited(&dir.attr, kind, mode, ctx.gid);
        let record = InodeRecord {
            attr: Attr {
                ino,
                kind,
                mode: mode & 0o7777,
                uid: ctx.uid,
                gid,
                size,
                nlink: if kind == FileType::Dir { 2 } else { 1 },
                atime: ctx.now,
                mtime: ctx.now,
                ctime: ctx.now,
                btime: ctx.now,
                rdev,
            },
            parent: if kind == FileType::Dir {
                parent
            } else {
                InodeId(0)
            },
            volume: dir.volume,
        };
        if kind == FileType::Dir {
            dir.attr.nlink += 1;
        }
        Self::touch(&mut dir, ctx.now);
        self.put(&dir)?;
        self.put(&record)?;
        self.link_entry(parent, name, ino, kind);
        Ok(Ok(record))
    }

    /// Drops one link of non-directory `ino`; the inode goes with its last one.
    fn release(&mut self, ino: InodeId, now: Nanos) -> Applied<()> {
        let mut node = errno!(self.inode(ino)?);
        node.attr.nlink = node.attr.nlink.saturating_sub(1);
        if node.attr.nlink == 0 && self.opens(ino)? == 0 {
            self.drop_inode(ino)?;
        } else {
            // Still named elsewhere, or open: an open file with no name is an orphan
            // until its last release.
            node.attr.ctime = now;
            self.put(&node)?;
        }
        Ok(Ok(()))
    }

    /// Opens of `ino` not yet released.
    fn opens(&self, ino: InodeId) -> Result<u32, MetaError> {
        match self.tx.get(&self.s.opens, inode_key(ino))? {
            None => Ok(0),
            Some(v) => v
                .as_ref()
                .try_into()
                .map(u32::from_le_bytes)
                .map_err(|_| MetaError::Corrupt(format!("the open count of {ino}"))),
        }
    }

    /// Takes `n` opens of `ino` back; the inode goes with its last open if it has no
    /// name left. An inode that is gone already (a volume deleted by force) is skipped.
    fn release_opens(&mut self, ino: InodeId, n: u32) -> Result<(), MetaError> {
        let Some(node) = self.inode(ino)?.ok() else {
            return Ok(());
        };
        let left = self.opens(ino)?.saturating_sub(n);
        self.set_opens(ino, left);
        if left == 0 && node.attr.nlink == 0 {
            self.drop_inode(ino)?;
        }
        Ok(())
    }

    /// Opens of `ino` that `session` holds.
    fn held(&self, session: u64, ino: InodeId) -> Result<u32, MetaError> {
        match self.tx.get(&self.s.held, held_key(session, ino))? {
            None => Ok(0),
            Some(v) => v
                .as_ref()
                .try_into()
                .map(u32::from_le_bytes)
                .map_err(|_| MetaError::Corrupt(format!("session {session}'s opens of {ino}"))),
        }
    }

    fn set_held(&mut self, session: u64, ino: InodeId, n: u32) {
        if n == 0 {
            self.tx.remove(&self.s.held, held_key(session, ino));
        } else {
            self.tx
                .insert(&self.s.held, held_key(session, ino), n.to_le_bytes());
        }
    }

    /// Releases every open `session` holds and forgets the session.
    /// [`Op::Enroll`]: admits `token` and gives `role` its next id.
    fn enroll(
        &mut self,
        now: Nanos,
        token: [u8; 16],
        expires: u64,
        role: u8,
        floor: u64,
    ) -> Result<Result<Outcome, Errno>, MetaError> {
        let used = [USED_TOKEN, &token[..]].concat();
        if self.tx.contains_key(&self.s.meta, &used)? {
            return Ok(Err(Errno::Exist));
        }
        let now = u64::try_from(now.0 / 1_000_000_000).unwrap_or(0);
        let mut forgotten = Vec::new();
        for item in self.tx.prefix(&self.s.meta, USED_TOKEN) {
            let (key, value) = item.into_inner()?;
            if counter(&key, &value)? < now {
                forgotten.push(key);
            }
        }
        for key in forgotten {
            self.tx.remove(&self.s.meta, key);
        }
        self.tx.insert(&self.s.meta, used, expires.to_le_bytes());
        let given = [ENROLLED, &[role][..]].concat();
        let last = match self.tx.get(&self.s.meta, &given)? {
            Some(value) => counter(&given, &value)?,
            None => 0,
        };
        let Some(id) = last.max(floor).checked_add(1) else {
            return Ok(Err(Errno::NoSpc));
        };
        self.tx.insert(&self.s.meta, given, id.to_le_bytes());
        Ok(Ok(Outcome::Id(id)))
    }

    fn end_session(&mut self, session: u64) -> Result<(), MetaError> {
        let mut held = Vec::new();
        for item in self.tx.prefix(&self.s.held, session_key(session)) {
            let (key, value) = item.into_inner()?;
            let corrupt = || MetaError::Corrupt(format!("session {session}'s opens"));
            let ino = InodeId(u64::from_be_bytes(
                key.get(8..16)
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(corrupt)?,
            ));
            let n = u32::from_le_bytes(value.as_ref().try_into().map_err(|_| corrupt())?);
            held.push((key, ino, n));
        }
        for (key, ino, n) in held {
            self.tx.remove(&self.s.held, key);
            self.release_opens(ino, n)?;
        }
        self.tx.remove(&self.s.sessions, session_key(session));
        let mut answers = Vec::new();
        for item in self.tx.prefix(&self.s.replies, session_key(session)) {
            answers.push(item.key()?);
        }
        for key in answers {
            self.tx.remove(&self.s.replies, key);
        }
        Ok(())
    }

    fn set_opens(&mut self, ino: InodeId, opens: u32) {
        if opens == 0 {
            self.tx.remove(&self.s.opens, inode_key(ino));
        } else {
            self.tx
                .insert(&self.s.opens, inode_key(ino), opens.to_le_bytes());
        }
    }

    fn create_volume(&mut self, ctx: Context, name: &[u8], k: u8, m: u8) -> Applied<Outcome> {
        errno!(check_name(name));
        if name.len() > MAX_VOLUME_NAME {
            return Ok(Err(Errno::NameTooLong));
        }
        if !(1..=MAX_K).contains(&k) || m > MAX_M {
            return Ok(Err(Errno::Inval));
        }
        if self.tx.contains_key(&self.s.volumes, name)? {
            return Ok(Err(Errno::Exist));
        }
        let root = self.next_ino()?;
        let record = InodeRecord {
            attr: Attr {
                ino: root,
                kind: FileType::Dir,
                mode: 0o755,
                uid: ctx.uid,
                gid: ctx.gid,
                size: 0,
                nlink: 2,
                atime: ctx.now,
                mtime: ctx.now,
                ctime: ctx.now,
                btime: ctx.now,
                rdev: 0,
            },
            parent: root,
            volume: root,
        };
        self.put(&record)?;
        let volume = VolumeRecord {
            root,
            k,
            m,
            from: None,
            uid: ctx.uid,
            gid: ctx.gid,
            created: ctx.now,
        };
        self.tx
            .insert(&self.s.volumes, name.to_vec(), encode_volume(&volume));
        Ok(Ok(Outcome::Attr(record.attr)))
    }

    fn delete_volume(&mut self, name: &[u8], force: bool) -> Applied<Outcome> {
        errno!(check_name(name));
        let volume = errno!(self.volume_named(name)?);
        if name == DEFAULT_VOLUME {
            return Ok(Err(Errno::Perm));
        }
        if !force && !self.is_empty(volume.root)? {
            return Ok(Err(Errno::NotEmpty));
        }
        let doomed = errno!(self.tree(volume.root)?);
        for dir in &doomed {
            let names: Vec<_> = self
                .tx
                .prefix(&self.s.dirents, inode_key(*dir))
                .map(|item| item.key())
                .collect::<Result<_, _>>()?;
            for key in names {
                self.tx.remove(&self.s.dirents, key);
            }
        }
        for ino in &doomed {
            self.drop_inode(*ino)?;
        }
        self.tx.remove(&self.s.volumes, name.to_vec());
        Ok(Ok(Outcome::Done))
    }

    /// The volume named `name` (ENOENT if none).
    fn volume_named(&self, name: &[u8]) -> Applied<VolumeRecord> {
        let Some(bytes) = self.tx.get(&self.s.volumes, name)? else {
            return Ok(Err(Errno::NoEnt));
        };
        let volume =
            decode_volume(&bytes).ok_or_else(|| MetaError::Corrupt(format!("volume {name:?}")))?;
        Ok(Ok(volume))
    }

    fn set_volume_class(&mut self, name: &[u8], k: u8, m: u8) -> Applied<Outcome> {
        let mut volume = errno!(self.volume_named(name)?);
        if !(1..=MAX_K).contains(&k) || m > MAX_M {
            return Ok(Err(Errno::Inval));
        }
        if (volume.k, volume.m) == (k, m) {
            return Ok(Ok(Outcome::Done));
        }
        if volume.from.is_some() {
            return Ok(Err(Errno::Busy));
        }
        volume.from = Some((volume.k, volume.m));
        (volume.k, volume.m) = (k, m);
        self.tx
            .insert(&self.s.volumes, name.to_vec(), encode_volume(&volume));
        Ok(Ok(Outcome::Done))
    }

    fn finish_volume_class(&mut self, name: &[u8], k: u8, m: u8) -> Applied<Outcome> {
        let mut volume = errno!(self.volume_named(name)?);
        if (volume.k, volume.m) != (k, m) {
            return Ok(Err(Errno::Stale));
        }
        if volume.from.take().is_some() {
            self.tx
                .insert(&self.s.volumes, name.to_vec(), encode_volume(&volume));
        }
        Ok(Ok(Outcome::Done))
    }

    /// Whether the volume rooted at `root` writes its chunks in `class` now (ESTALE if
    /// not; ENOENT if no volume has that root).
    fn writes_in(&self, root: InodeId, class: (u8, u8)) -> Applied<()> {
        let volumes = read_volumes(&*self.tx, self.s)?;
        Ok(match volumes.iter().find(|(_, v)| v.root == root) {
            Some((_, v)) if (v.k, v.m) == class => Ok(()),
            Some(_) => Err(Errno::Stale),
            None => Err(Errno::NoEnt),
        })
    }

    /// Every inode under `root` and `root` itself, each once (at most
    /// [`MAX_FORCED_DELETE`]).
    fn tree(&self, root: InodeId) -> Applied<std::collections::BTreeSet<InodeId>> {
        let mut seen = std::collections::BTreeSet::from([root]);
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for item in self.tx.prefix(&self.s.dirents, inode_key(dir)) {
                let (key, value) = item.into_inner()?;
                let (child, kind) = decode_dirent(&value)
                    .ok_or_else(|| MetaError::Corrupt(format!("entry {key:?}")))?;
                if seen.insert(child) && kind == FileType::Dir {
                    dirs.push(child);
                }
                if seen.len() > MAX_FORCED_DELETE {
                    return Ok(Err(Errno::TooBig));
                }
            }
        }
        Ok(Ok(seen))
    }

    /// Whether directory `dir` is `ancestor` or lies under it.
    fn is_within(&self, mut dir: InodeId, ancestor: InodeId) -> Result<bool, MetaError> {
        for _ in 0..MAX_DEPTH {
            if dir == ancestor {
                return Ok(true);
            }
            let record = read_inode(&*self.tx, self.s, dir)?
                .ok_or_else(|| MetaError::Corrupt(format!("the parent chain of {dir}")))?;
            // A volume's root is its own parent.
            if record.parent == dir {
                return Ok(false);
            }
            dir = record.parent;
        }
        Err(MetaError::Corrupt(format!(
            "the parent chain of {dir} is longer than {MAX_DEPTH} (a cycle?)"
        )))
    }

    fn apply(&mut self, ctx: Context, op: &Op) -> Applied<Outcome> {
        match op {
            Op::Mkdir { parent, name, mode } => {
                let made =
                    errno!(self.make(ctx, *parent, name, Shape::new(FileType::Dir, *mode))?);
                Ok(Ok(Outcome::Attr(made.attr)))
            }
            Op::Create { parent, name, mode } => {
                let made =
                    errno!(self.make(ctx, *parent, name, Shape::new(FileType::File, *mode))?);
                Ok(Ok(Outcome::Attr(made.attr)))
            }
            Op::Mknod {
                parent,
                name,
                kind,
                mode,
                rdev,
            } => {
                if !kind.is_special() {
                    return Ok(Err(Errno::Inval));
                }
                let rdev = if matches!(kind, FileType::CharDev | FileType::BlockDev) {
                    *rdev
                } else {
                    0
                };
                let made = errno!(self.make(
                    ctx,
                    *parent,
                    name,
                    Shape {
                        rdev,
                        ..Shape::new(*kind, *mode)
                    },
                )?);
                Ok(Ok(Outcome::Attr(made.attr)))
            }
            Op::Symlink {
                parent,
                name,
                target,
            } => {
                if target.is_empty() {
                    return Ok(Err(Errno::NoEnt));
                }
                if target.len() > MAX_SYMLINK || target.contains(&0) {
                    return Ok(Err(Errno::NameTooLong));
                }
                let size = target.len() as u64;
                let made = errno!(self.make(
                    ctx,
                    *parent,
                    name,
                    Shape {
                        size,
                        ..Shape::new(FileType::Symlink, 0o777)
                    },
                )?);
                self.tx
                    .insert(&self.s.symlinks, inode_key(made.attr.ino), target.clone());
                Ok(Ok(Outcome::Attr(made.attr)))
            }
            Op::Link { ino, parent, name } => {
                let mut node = errno!(self.inode(*ino)?);
                if node.attr.kind == FileType::Dir {
                    return Ok(Err(Errno::Perm));
                }
                errno!(check_name(name));
                let mut dir = errno!(self.dir(*parent)?);
                if dir.volume != node.volume {
                    return Ok(Err(Errno::XDev));
                }
                if self.entry(*parent, name)?.is_some() {
                    return Ok(Err(Errno::Exist));
                }
                if node.attr.nlink >= MAX_LINKS {
                    return Ok(Err(Errno::MLink));
                }
                node.attr.nlink += 1;
                node.attr.ctime = ctx.now;
                Self::touch(&mut dir, ctx.now);
                self.put(&node)?;
                self.put(&dir)?;
                self.link_entry(*parent, name, *ino, node.attr.kind);
                Ok(Ok(Outcome::Attr(node.attr)))
            }
            Op::Unlink { parent, name } => {
                errno!(check_name(name));
                let mut dir = errno!(self.dir(*parent)?);
                let Some((child, kind)) = self.entry(*parent, name)? else {
                    return Ok(Err(Errno::NoEnt));
                };
                if kind == FileType::Dir {
                    return Ok(Err(Errno::IsDir));
                }
                self.unlink_entry(*parent, name);
                errno!(self.release(child, ctx.now)?);
                Self::touch(&mut dir, ctx.now);
                self.put(&dir)?;
                Ok(Ok(Outcome::Done))
            }
            Op::Rmdir { parent, name } => {
                errno!(check_name(name));
                let mut dir = errno!(self.dir(*parent)?);
                let Some((child, kind)) = self.entry(*parent, name)? else {
                    return Ok(Err(Errno::NoEnt));
                };
                if kind != FileType::Dir {
                    return Ok(Err(Errno::NotDir));
                }
                if !self.is_empty(child)? {
                    return Ok(Err(Errno::NotEmpty));
                }
                self.unlink_entry(*parent, name);
                self.drop_inode(child)?;
                dir.attr.nlink -= 1;
                Self::touch(&mut dir, ctx.now);
                self.put(&dir)?;
                Ok(Ok(Outcome::Done))
            }
            Op::Rename {
                from,
                from_name,
                to,
                to_name,
                mode,
            } => self.rename(ctx, *from, from_name, *to, to_name, *mode),
            Op::CommitExtents {
                ino,
                extents,
                class,
            } => self.commit_extents(ctx, *ino, extents, *class),
            Op::Allocate { ino, end, room } => self.allocate(ctx, *ino, *end, *room),
            Op::ReplaceExtents {
                ino,
                ctime,
                extents,
                class,
            } => self.replace_extents(*ino, *ctime, extents, *class),
            Op::WriteInline { ino, offset, data } => {
                let mut node = errno!(self.file(*ino)?);
                let end = offset.saturating_add(data.len() as u64);
                if end > MAX_INLINE {
                    return Ok(Err(Errno::FBig));
                }
                if self.holds_any(&self.s.extents, *ino)? {
                    return Ok(Err(Errno::Inval));
                }
                let mut content = self
                    .tx
                    .get(&self.s.inline, inode_key(*ino))?
                    .map(|v| v.to_vec())
                    .unwrap_or_default();
                // Bytes between the inline data and the offset read as zeros.
                let (start, end) = (
                    usize::try_from(*offset).expect("below the inline size"),
                    usize::try_from(end).expect("below the inline size"),
                );
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[start..end].copy_from_slice(data);
                // A record exists only for non-empty inline data.
                if !content.is_empty() {
                    self.tx.insert(&self.s.inline, inode_key(*ino), content);
                }
                node.attr.size = node.attr.size.max(end as u64);
                node.attr.mtime = ctx.now;
                node.attr.ctime = ctx.now;
                self.put(&node)?;
                Ok(Ok(Outcome::Attr(node.attr)))
            }
            Op::SetXattr {
                ino,
                name,
                value,
                mode,
            } => {
                let mut node = errno!(self.inode(*ino)?);
                errno!(check_xattr_name(name));
                if value.len() > MAX_XATTR_VALUE {
                    return Ok(Err(Errno::TooBig));
                }
                let exists = self
                    .tx
                    .contains_key(&self.s.xattrs, named_key(*ino, name))?;
                match (mode, exists) {
                    (XattrMode::Create, true) => return Ok(Err(Errno::Exist)),
                    (XattrMode::Replace, false) => return Ok(Err(Errno::NoData)),
                    _ => {}
                }
                let mut value = value.clone();
                if name == acl::ACCESS || name == acl::DEFAULT {
                    let parsed = errno!(Acl::parse(&value));
                    if name == acl::DEFAULT && node.attr.kind != FileType::Dir {
                        return Ok(Err(Errno::Inval));
                    }
                    if name == acl::ACCESS {
                        // The mode says what the ACL's owner, mask and other say; an
                        // ACL that says no more than the mode is not kept.
                        node.attr.mode = (node.attr.mode & !0o777) | parsed.mode_bits();
                        if parsed.is_minimal() {
                            self.tx.remove(&self.s.xattrs, named_key(*ino, name));
                            node.attr.ctime = ctx.now;
                            self.put(&node)?;
                            return Ok(Ok(Outcome::Done));
                        }
                    }
                    value = parsed.encode();
                }
                self.tx.insert(&self.s.xattrs, named_key(*ino, name), value);
                node.attr.ctime = ctx.now;
                self.put(&node)?;
                Ok(Ok(Outcome::Done))
            }
            Op::CreateVolume { name, k, m } => self.create_volume(ctx, name, *k, *m),
            Op::DeleteVolume { name, force } => self.delete_volume(name, *force),
            Op::SetVolumeClass { name, k, m } => self.set_volume_class(name, *k, *m),
            Op::FinishVolumeClass { name, k, m } => self.finish_volume_class(name, *k, *m),
            Op::PutObject { id, len, chunks } => {
                if chunks.len() > MAX_OBJECT_CHUNKS {
                    return Ok(Err(Errno::Inval));
                }
                self.tx
                    .insert(&self.s.objects, id, encode_object(*len, chunks));
                Ok(Ok(Outcome::Done))
            }
            Op::SetQuota {
                name,
                max_bytes,
                max_files,
            } => {
                let volume = errno!(self.volume_named(name)?);
                let usage = Usage {
                    max_bytes: *max_bytes,
                    max_files: *max_files,
                    ..read_usage(&*self.tx, self.s, volume.root)?
                };
                self.tx
                    .insert(&self.s.quotas, inode_key(volume.root), encode_quota(&usage));
                Ok(Ok(Outcome::Done))
            }
            Op::DeleteObject { id } => {
                if !self.tx.contains_key(&self.s.objects, id)? {
                    return Ok(Err(Errno::NoEnt));
                }
                self.tx.remove(&self.s.objects, id);
                Ok(Ok(Outcome::Done))
            }
            Op::Open { ino, session } => self.open(*ino, *session),
            Op::CreateOpen {
                parent,
                name,
                mode,
                session,
            } => {
                let made =
                    errno!(self.make(ctx, *parent, name, Shape::new(FileType::File, *mode))?);
                self.open(made.attr.ino, *session)
            }
            Op::Release { ino, session } => {
                errno!(self.file(*ino)?);
                let opens = self.opens(*ino)?;
                if opens == 0 {
                    return Ok(Err(Errno::Inval));
                }
                if *session != 0 {
                    let held = self.held(*session, *ino)?;
                    if held == 0 {
                        return Ok(Err(Errno::Inval));
                    }
                    self.set_held(*session, *ino, held - 1);
                }
                self.release_opens(*ino, 1)?;
                Ok(Ok(Outcome::Done))
            }
            Op::RenewSession {
                session,
                ttl,
                start,
            } => {
                if *session == 0 || ttl.0 < 0 {
                    return Ok(Err(Errno::Inval));
                }
                let key = session_key(*session);
                if !start && !self.tx.contains_key(&self.s.sessions, key)? {
                    return Ok(Err(Errno::NoEnt));
                }
                let until = ctx.now.0.saturating_add(ttl.0);
                self.tx
                    .insert(&self.s.sessions, key, encode_session(until, ttl.0));
                Ok(Ok(Outcome::Done))
            }
            Op::ResumeSessions => {
                let mut resumed = Vec::new();
                for item in self.tx.iter(&self.s.sessions) {
                    let (key, value) = item.into_inner()?;
                    let (_, until, ttl) = session_record(&key, &value)?;
                    let at_least = ctx.now.0.saturating_add(ttl);
                    if until < at_least {
                        resumed.push((key, encode_session(at_least, ttl)));
                    }
                }
                for (key, value) in resumed {
                    self.tx.insert(&self.s.sessions, key, value);
                }
                Ok(Ok(Outcome::Done))
            }
            Op::Punch { ino, offset, len } => self.punch(ctx, *ino, *offset, *len),
            Op::Accessed { ino, atime } => {
                let mut node = errno!(self.inode(*ino)?);
                if *atime > node.attr.atime {
                    node.attr.atime = *atime;
                    self.put(&node)?;
                }
                Ok(Ok(Outcome::Attr(node.attr)))
            }
            Op::EndSession { session } => {
                if !self
                    .tx
                    .contains_key(&self.s.sessions, session_key(*session))?
                {
                    return Ok(Err(Errno::NoEnt));
                }
                self.end_session(*session)?;
                Ok(Ok(Outcome::Done))
            }
            Op::ExpireSessions => {
                let mut expired = Vec::new();
                for item in self.tx.iter(&self.s.sessions) {
                    let (key, value) = item.into_inner()?;
                    let (session, until, _) = session_record(&key, &value)?;
                    if until <= ctx.now.0 {
                        expired.push(session);
                    }
                }
                for session in expired {
                    self.end_session(session)?;
                }
                Ok(Ok(Outcome::Done))
            }
            Op::Enroll {
                token,
                expires,
                role,
                floor,
            } => self.enroll(ctx.now, *token, *expires, *role, *floor),
            Op::KeepMap { epoch, map } => {
                if let Some(kept) = self.tx.get(&self.s.meta, CLUSTER_MAP)? {
                    let (kept, _) = kept_map(&kept)?;
                    if kept >= *epoch {
                        return Ok(Ok(Outcome::Done));
                    }
                }
                let mut value = Vec::with_capacity(8 + map.len());
                value.extend_from_slice(&epoch.to_le_bytes());
                value.extend_from_slice(map);
                self.tx.insert(&self.s.meta, CLUSTER_MAP, value);
                Ok(Ok(Outcome::Done))
            }
            Op::RemoveXattr { ino, name } => {
                let mut node = errno!(self.inode(*ino)?);
                errno!(check_xattr_name(name));
                if !self
                    .tx
                    .contains_key(&self.s.xattrs, named_key(*ino, name))?
                {
                    return Ok(Err(Errno::NoData));
                }
                self.tx.remove(&self.s.xattrs, named_key(*ino, name));
                node.attr.ctime = ctx.now;
                self.put(&node)?;
                Ok(Ok(Outcome::Done))
            }
            Op::SetAttr {
                ino,
                mode,
                uid,
                gid,
                size,
                atime,
                mtime,
            } => {
                let mut node = errno!(self.inode(*ino)?);
                if let Some(size) = size {
                    match node.attr.kind {
                        FileType::Dir => return Ok(Err(Errno::IsDir)),
                        kind if kind != FileType::File => return Ok(Err(Errno::Inval)),
                        _ if *size > MAX_FILE_SIZE => return Ok(Err(Errno::FBig)),
                        _ => {
                            // Only pages from the cut on change.
                            let old = read_pages_from(&*self.tx, self.s, *ino, page_of(*size))?;
                            let cut = truncated(&old, *size);
                            self.write_pages(*ino, &old, &cut);
                            if let Some(data) = self.tx.get(&self.s.inline, inode_key(*ino))?
                                && data.len() as u64 > *size
                            {
                                let keep = usize::try_from(*size).expect("below the inline size");
                                if keep == 0 {
                                    self.tx.remove(&self.s.inline, inode_key(*ino));
                                } else {
                                    self.tx.insert(
                                        &self.s.inline,
                                        inode_key(*ino),
                                        data[..keep].to_vec(),
                                    );
                                }
                            }
                            node.attr.size = *size;
                            node.attr.mtime = ctx.now;
                            self.change_reserve(*ino, |reserve| reserve.min(*size))?;
                        }
                    }
                }
                if let Some(mode) = mode {
                    node.attr.mode = mode & 0o7777;
                    // An access ACL follows a chmod (owner, mask, other).
                    let key = named_key(*ino, acl::ACCESS);
                    if let Some(value) = self.tx.get(&self.s.xattrs, &key)? {
                        let access = Acl::parse(&value)
                            .map_err(|_| MetaError::Corrupt(format!("access ACL of {ino}")))?;
                        self.tx
                            .insert(&self.s.xattrs, key, access.chmod(node.attr.mode).encode());
                    }
                }
                if let Some(uid) = uid {
                    node.attr.uid = *uid;
                }
                if let Some(gid) = gid {
                    node.attr.gid = *gid;
                }
                if let Some(atime) = atime {
                    node.attr.atime = *atime;
                }
                if let Some(mtime) = mtime {
                    node.attr.mtime = *mtime;
                }
                node.attr.ctime = ctx.now;
                self.put(&node)?;
                Ok(Ok(Outcome::Attr(node.attr)))
            }
        }
    }

    fn commit_extents(
        &mut self,
        ctx: Context,
        ino: InodeId,
        new: &[Extent],
        class: (u8, u8),
    ) -> Applied<Outcome> {
        let mut node = errno!(self.file(ino)?);
        errno!(self.writes_in(node.volume, class)?);
        if new.len() > MAX_EXTENTS_PER_COMMIT {
            return Ok(Err(Errno::TooBig));
        }
        if !new.iter().all(Extent::within_limit) {
            return Ok(Err(Errno::FBig));
        }
        let mut sorted = new.to_vec();
        sorted.sort_by_key(|e| e.offset);
        let overlapping = sorted.windows(2).any(|w| w[0].end() > w[1].offset);
        if overlapping || sorted.iter().any(|e| e.len == 0) {
            return Ok(Err(Errno::Inval));
        }
        // Only the pages the new extents touch change.
        let sorted = paged(&sorted);
        let old = read_pages(&*self.tx, self.s, ino, pages_of(&sorted).into_iter())?;
        let merged = overlay(&old, &sorted);
        self.write_pages(ino, &old, &merged);
        self.tx.remove(&self.s.inline, inode_key(ino));
        let written: u64 = sorted.iter().map(|e| u64::from(e.len)).sum();
        self.change_reserve(ino, |reserve| reserve.saturating_sub(written))?;
        let end = sorted.last().map_or(0, Extent::end);
        node.attr.size = node.attr.size.max(end);
        node.attr.mtime = ctx.now;
        node.attr.ctime = ctx.now;
        self.put(&node)?;
        Ok(Ok(Outcome::Attr(node.attr)))
    }

    /// Opens regular file `ino` for `session` (0: none).
    fn open(&mut self, ino: InodeId, session: u64) -> Applied<Outcome> {
        let node = errno!(self.file(ino)?);
        if session != 0
            && !self
                .tx
                .contains_key(&self.s.sessions, session_key(session))?
        {
            return Ok(Err(Errno::Inval));
        }
        let opens = self.opens(ino)?;
        if opens == u32::MAX {
            return Ok(Err(Errno::MFile));
        }
        if session != 0 {
            // What a session holds is part of the total, so it cannot overflow.
            let held = self.held(session, ino)?;
            self.set_held(session, ino, held + 1);
        }
        self.set_opens(ino, opens + 1);
        Ok(Ok(Outcome::Attr(node.attr)))
    }

    fn punch(&mut self, ctx: Context, ino: InodeId, offset: u64, len: u64) -> Applied<Outcome> {
        let mut node = errno!(self.file(ino)?);
        if len == 0 {
            return Ok(Err(Errno::Inval));
        }
        // Nothing lies past the size: the range ends there at the latest.
        let end = offset.saturating_add(len).min(node.attr.size);
        if offset < end {
            let old = read_page_range(&*self.tx, self.s, ino, page_of(offset), page_of(end - 1))?;
            self.write_pages(ino, &old, &punched(&old, offset, end));
            if let Some(data) = self.tx.get(&self.s.inline, inode_key(ino))?
                && (data.len() as u64) > offset
            {
                let mut data = data.to_vec();
                let from = usize::try_from(offset).expect("below the inline size");
                let to = usize::try_from(end).unwrap_or(usize::MAX).min(data.len());
                data[from..to].fill(0);
                self.tx.insert(&self.s.inline, inode_key(ino), data);
            }
        }
        node.attr.mtime = ctx.now;
        node.attr.ctime = ctx.now;
        self.put(&node)?;
        Ok(Ok(Outcome::Attr(node.attr)))
    }

    fn replace_extents(
        &mut self,
        ino: InodeId,
        ctime: Nanos,
        new: &[Extent],
        class: (u8, u8),
    ) -> Applied<Outcome> {
        let node = errno!(self.file(ino)?);
        errno!(self.writes_in(node.volume, class)?);
        if node.attr.ctime != ctime {
            return Ok(Err(Errno::Again));
        }
        if new.len() > MAX_EXTENTS_PER_COMMIT {
            return Ok(Err(Errno::TooBig));
        }
        if !new.iter().all(Extent::within_limit) {
            return Ok(Err(Errno::FBig));
        }
        let mut sorted = new.to_vec();
        sorted.sort_by_key(|e| e.offset);
        let overlapping = sorted.windows(2).any(|w| w[0].end() > w[1].offset);
        let outside = sorted
            .iter()
            .any(|e| e.len == 0 || e.end() > node.attr.size);
        if overlapping || outside || self.tx.contains_key(&self.s.inline, inode_key(ino))? {
            return Ok(Err(Errno::Inval));
        }
        let old = read_extents(&*self.tx, self.s, ino, node.attr.size)?;
        self.write_pages(ino, &old, &paged(&sorted));
        Ok(Ok(Outcome::Attr(node.attr)))
    }

    fn rename(
        &mut self,
        ctx: Context,
        from: InodeId,
        from_name: &[u8],
        to: InodeId,
        to_name: &[u8],
        mode: RenameMode,
    ) -> Applied<Outcome> {
        errno!(check_name(from_name));
        errno!(check_name(to_name));
        let source_dir = errno!(self.dir(from)?);
        let target_dir = errno!(self.dir(to)?);
        if source_dir.volume != target_dir.volume {
            return Ok(Err(Errno::XDev));
        }
        let Some((moving, kind)) = self.entry(from, from_name)? else {
            return Ok(Err(Errno::NoEnt));
        };
        match mode {
            RenameMode::Replace => {}
            RenameMode::NoReplace => {
                if self.entry(to, to_name)?.is_some() {
                    return Ok(Err(Errno::Exist));
                }
            }
            RenameMode::Exchange => {
                let Some(other) = self.entry(to, to_name)? else {
                    return Ok(Err(Errno::NoEnt));
                };
                return self.exchange(ctx, (from, from_name, moving, kind), (to, to_name, other));
            }
        }
        if from == to && from_name == to_name {
            return Ok(Ok(Outcome::Done));
        }
        if kind == FileType::Dir && self.is_within(to, moving)? {
            return Ok(Err(Errno::Inval));
        }
        let replaced = self.entry(to, to_name)?;
        if let Some((target, target_kind)) = replaced {
            if target == moving {
                // Two names of one inode: POSIX says do nothing.
                return Ok(Ok(Outcome::Done));
            }
            match (kind, target_kind) {
                (FileType::Dir, FileType::Dir) if !self.is_empty(target)? => {
                    return Ok(Err(Errno::NotEmpty));
                }
                (FileType::Dir, FileType::Dir) => {}
                (FileType::Dir, _) => return Ok(Err(Errno::NotDir)),
                (_, FileType::Dir) => return Ok(Err(Errno::IsDir)),
                _ => {}
            }
        }
        if kind == FileType::Dir && replaced.is_none() && from != to {
            let dir = errno!(self.dir(to)?);
            if dir.attr.nlink >= MAX_LINKS {
                return Ok(Err(Errno::MLink));
            }
        }
        // Every check passed: change the tree.
        if let Some((target, target_kind)) = replaced {
            if target_kind == FileType::Dir {
                self.drop_inode(target)?;
                let mut dir = errno!(self.dir(to)?);
                dir.attr.nlink -= 1;
                self.put(&dir)?;
            } else {
                errno!(self.release(target, ctx.now)?);
            }
        }
        self.unlink_entry(from, from_name);
        self.link_entry(to, to_name, moving, kind);
        let mut node = errno!(self.inode(moving)?);
        node.attr.ctime = ctx.now;
        if kind == FileType::Dir && from != to {
            node.parent = to;
            let mut old = errno!(self.dir(from)?);
            old.attr.nlink -= 1;
            self.put(&old)?;
            let mut new = errno!(self.dir(to)?);
            new.attr.nlink += 1;
            self.put(&new)?;
        }
        self.put(&node)?;
        for dir in [from, to] {
            let mut d = errno!(self.dir(dir)?);
            Self::touch(&mut d, ctx.now);
            self.put(&d)?;
        }
        Ok(Ok(Outcome::Done))
    }

    /// Swaps the inodes of two names (RENAME_EXCHANGE): `a` is (directory, name, inode,
    /// kind), `b` is (directory, name, (inode, kind)); both names exist.
    fn exchange(
        &mut self,
        ctx: Context,
        a: (InodeId, &[u8], InodeId, FileType),
        b: (InodeId, &[u8], (InodeId, FileType)),
    ) -> Applied<Outcome> {
        let (a_dir, a_name, a_ino, a_kind) = a;
        let (b_dir, b_name, (b_ino, b_kind)) = b;
        if a_ino == b_ino {
            return Ok(Ok(Outcome::Done));
        }
        // Neither directory may end up inside itself.
        if (a_kind == FileType::Dir && self.is_within(b_dir, a_ino)?)
            || (b_kind == FileType::Dir && self.is_within(a_dir, b_ino)?)
        {
            return Ok(Err(Errno::Inval));
        }
        // A directory moving between parents moves a link (its "..") with it.
        let moved = |kind: FileType| i64::from(kind == FileType::Dir && a_dir != b_dir);
        let a_gain = moved(b_kind) - moved(a_kind);
        for (dir, gain) in [(a_dir, a_gain), (b_dir, -a_gain)] {
            if gain > 0 && errno!(self.dir(dir)?).attr.nlink >= MAX_LINKS {
                return Ok(Err(Errno::MLink));
            }
        }
        // Every check passed: change the tree.
        self.link_entry(a_dir, a_name, b_ino, b_kind);
        self.link_entry(b_dir, b_name, a_ino, a_kind);
        for (ino, kind, parent) in [(a_ino, a_kind, b_dir), (b_ino, b_kind, a_dir)] {
            let mut node = errno!(self.inode(ino)?);
            node.attr.ctime = ctx.now;
            if kind == FileType::Dir {
                node.parent = parent;
            }
            self.put(&node)?;
        }
        for (dir, gain) in [(a_dir, a_gain), (b_dir, -a_gain)] {
            let mut d = errno!(self.dir(dir)?);
            d.attr.nlink = d
                .attr
                .nlink
                .checked_add_signed(i32::try_from(gain).expect("a gain of at most one"))
                .expect("a directory keeps its own links");
            Self::touch(&mut d, ctx.now);
            self.put(&d)?;
        }
        Ok(Ok(Outcome::Done))
    }
}

/// The set-group-ID bit of a mode.
const SET_GID: u16 = 0o2000;

/// The mode and group of a new inode of `kind` in directory `dir`, asked for with
/// `mode` by a caller whose group is `gid`. In a set-group-ID directory, as on Linux
/// local filesystems, the new inode takes the directory's group rather than the
/// caller's, and a new directory the set-group-ID bit too (the kernel has already
/// cleared that bit from a file's mode when the caller is not in the group).
fn setgid_inherited(dir: &Attr, kind: FileType, mode: u16, gid: u32) -> (u16, u32) {
    if dir.mode & SET_GID == 0 {
        return (mode, gid);
    }
    let mode = if kind == FileType::Dir {
        mode | SET_GID
    } else {
        mode
    };
    (mode, dir.gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{extent_key, extent_value};

    /// An empty directory for a namespace named for `test`, and root's context at time 1.
    fn scratch(test: &str) -> (std::path::PathBuf, Context) {
        let dir = std::env::temp_dir().join(format!("hive-meta-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ctx = Context {
            uid: 0,
            gid: 0,
            now: Nanos(1),
            umask: 0,
        };
        (dir, ctx)
    }

    /// Creates file `name` in the root.
    fn create(name: &[u8]) -> Op {
        Op::Create {
            parent: InodeId::ROOT,
            name: name.to_vec(),
            mode: 0o644,
        }
    }

    thread_local! {
        /// Makes the next operation this thread applies panic.
        pub(super) static PANIC_NEXT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[test]
    fn an_operation_that_panics_is_refused_with_eio_and_the_next_one_applies() {
        let (dir, ctx) = scratch("panic");
        let ns = Namespace::open(&dir, Durability::Buffered).expect("open");
        PANIC_NEXT.with(|p| p.set(true));
        assert_eq!(
            ns.apply(ctx, &create(b"a")).expect("store").map(|_| ()),
            Err(Errno::Io)
        );
        assert_eq!(
            ns.lookup(InodeId::ROOT, b"a").expect("store"),
            Err(Errno::NoEnt)
        );
        // From a log: the stamp and the answer are kept, as for any errno.
        let once = Some(Once {
            session: 7,
            seq: 1,
            acked: 1,
        });
        PANIC_NEXT.with(|p| p.set(true));
        let logged = ns
            .apply_logged(ctx, &create(b"b"), b"stamp-1", once, |r| {
                format!("{r:?}").into_bytes()
            })
            .expect("store");
        assert!(
            matches!(logged, Logged::Applied(Err(Errno::Io))),
            "{logged:?}"
        );
        assert_eq!(ns.stamp().expect("store").as_deref(), Some(&b"stamp-1"[..]));
        let again = ns
            .apply_logged(ctx, &create(b"b"), b"stamp-2", once, |_| Vec::new())
            .expect("store");
        assert!(
            matches!(&again, Logged::Repeated(given) if given == b"Err(Io)"),
            "{again:?}"
        );
        ns.apply(ctx, &create(b"c"))
            .expect("store")
            .expect("the next create");
        assert!(ns.lookup(InodeId::ROOT, b"c").expect("store").is_ok());
        drop(ns);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn version_1_extents_are_converted_to_pages_on_open() {
        let (dir, ctx) = scratch("v1");
        let piece = |offset: u64, len: u32, chunk: u8| Extent {
            offset,
            len,
            chunk: [chunk; 32],
            chunk_offset: 7,
        };
        let extents = vec![
            piece(0, 4096, 1),
            piece(EXTENT_PAGE_SPAN - 10, 20, 2),
            piece(3 * EXTENT_PAGE_SPAN, 5, 3),
        ];
        let f = InodeId(2);
        {
            let ns = Namespace::open(&dir, Durability::Buffered).expect("open");
            ns.apply(ctx, &create(b"f"))
                .expect("store")
                .expect("created");
            let grow = Op::SetAttr {
                ino: f,
                mode: None,
                uid: None,
                gid: None,
                size: Some(3 * EXTENT_PAGE_SPAN + 5),
                atime: None,
                mtime: None,
            };
            ns.apply(ctx, &grow).expect("store").expect("grown");
            // Written as a version 1 namespace would have: one record per extent.
            let v1 = ns
                .db
                .keyspace(V1_EXTENTS, KeyspaceCreateOptions::default)
                .expect("keyspace");
            let mut tx = ns.db.write_tx();
            for e in &extents {
                tx.insert(&v1, extent_key(f, e.offset), extent_value(e));
            }
            tx.durability(Some(PersistMode::SyncAll))
                .commit()
                .expect("commit");
        }
        let ns = Namespace::open(&dir, Durability::Buffered).expect("reopen");
        assert_eq!(ns.extents(f).expect("store"), Ok(paged(&extents)));
        assert_eq!(ns.census().expect("store").extents, 3, "pages 0, 1 and 3");
        let v1 = ns
            .db
            .keyspace(V1_EXTENTS, KeyspaceCreateOptions::default)
            .expect("keyspace");
        assert!(
            ns.db.read_tx().iter(&v1).next().is_none(),
            "version 1 records are gone"
        );
        drop(ns);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sizes_and_extents_past_the_largest_file_are_efbig_and_change_nothing() {
        let (dir, ctx) = scratch("fbig");
        let piece = |offset: u64, len: u32| Extent {
            offset,
            len,
            chunk: [9; 32],
            chunk_offset: 0,
        };
        let ns = Namespace::open(&dir, Durability::Buffered).expect("open");
        ns.apply(ctx, &create(b"f"))
            .expect("store")
            .expect("created");
        let f = InodeId(2);
        let commit = |extents: Vec<Extent>| Op::CommitExtents {
            ino: f,
            extents,
            class: (DEFAULT_K, DEFAULT_M),
        };
        let size = |size: u64| Op::SetAttr {
            ino: f,
            mode: None,
            uid: None,
            gid: None,
            size: Some(size),
            atime: None,
            mtime: None,
        };
        let refused = [
            commit(vec![piece(u64::MAX - 5, 10)]),
            commit(vec![piece(0, 10), piece(MAX_FILE_SIZE - 10, 11)]),
            Op::ReplaceExtents {
                ino: f,
                ctime: Nanos(1),
                extents: vec![piece(u64::MAX, 1)],
                class: (DEFAULT_K, DEFAULT_M),
            },
            size(MAX_FILE_SIZE + 1),
            size(u64::MAX),
            Op::Allocate {
                ino: f,
                end: MAX_FILE_SIZE + 1,
                room: u64::MAX,
            },
            Op::WriteInline {
                ino: f,
                offset: u64::MAX,
                data: vec![1; 8],
            },
        ];
        for op in &refused {
            assert_eq!(
                ns.apply(ctx, op).expect("store").map(|_| ()),
                Err(Errno::FBig),
                "{op:?}"
            );
        }
        assert_eq!(
            ns.extents(f).expect("store"),
            Ok(Vec::new()),
            "nothing changed"
        );
        // Up to the limit is a file like any other.
        let attr = match ns.apply(ctx, &commit(vec![piece(MAX_FILE_SIZE - 10, 10)])) {
            Ok(Ok(Outcome::Attr(attr))) => attr,
            other => panic!("a commit ending at the limit: {other:?}"),
        };
        assert_eq!(attr.size, MAX_FILE_SIZE);
        ns.apply(ctx, &size(MAX_FILE_SIZE))
            .expect("store")
            .expect("a size at the limit");
        drop(ns);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
