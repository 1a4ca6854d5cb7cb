//! The metadata service's messages: namespace lookups and operations for a mounted
//! volume, and volume administration.
//!
//! Every request names the volume it works in; the service checks the caller's grant
//! for that volume and that every inode the request names belongs to it. The request
//! and the answer travel in the frame body (a directory listing can be large).

// rkyv's generated resolvers for enum variants with fields carry no docs; every item
// written here is documented.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rkyv::{Archive, Deserialize, Serialize};

use super::control::MapMessage;
use super::message::{MessageSet, decode, encode, request};
use super::pki::Identity;
use super::rpc::{Client, Link, RpcError};
use crate::NodeId;

/// The metadata message set.
pub struct Meta;

impl MessageSet for Meta {
    const PROTOCOL: u16 = 4;
    /// Version 3 added the object records (`PutObject`, `DeleteObject`), quotas
    /// (`SetQuota`) and each volume's usage. Version 4 added `Allocate`, a file's
    /// reserve to its content, the reserved sum to a volume, and `start` to
    /// `RenewSession`. Version 5 added `once` to a request and `NotLeader` to the
    /// answers (a replicated metadata group). Version 6 added the cluster map's copy
    /// in the group (`KeepMap`, `ClusterMap`, and the answer `ClusterMap`). Version 7
    /// added enrollment in the group (`Enroll`, and the answer `Enrolled`). Version 8
    /// added storage-class changes (`SetVolumeClass`, `FinishVolumeClass`,
    /// `VolumeChunks`, a volume's `from`, and the class a commit's chunks are in).
    const VERSION: u16 = 8;
    const NAME: &'static str = "metadata";
}

/// The one operation: body [`MetaRequest`], answer body [`MetaReply`].
pub const OP_CALL: u16 = 1;

/// The metadata group's replication messages (Raft), between node identities only.
/// Bodies are the replication layer's own encoding.
pub struct MetaRaft;

impl MessageSet for MetaRaft {
    const PROTOCOL: u16 = 6;
    const VERSION: u16 = 1;
    const NAME: &'static str = "metadata replication";
}

/// Raft: append entries (also the leader's heartbeat).
pub const OP_APPEND: u16 = 1;
/// Raft: ask for a vote.
pub const OP_VOTE: u16 = 2;
/// Raft: a chunk of a snapshot.
pub const OP_SNAPSHOT: u16 = 3;
/// Whether the replica holds any replicated state (a vote or a log): a group is
/// formed only among replicas that hold none.
pub const OP_PROBE: u16 = 4;

/// How long a metadata call may take before the caller gives up (and a mount answers
/// EIO): long enough for a busy service, short enough that nothing hangs.
pub const META_DEADLINE: Duration = Duration::from_secs(15);

/// Inode kinds as they travel (the namespace's codes).
pub mod kind {
    /// A regular file.
    pub const FILE: u8 = 1;
    /// A directory.
    pub const DIR: u8 = 2;
    /// A symbolic link.
    pub const SYMLINK: u8 = 3;
    /// A named pipe.
    pub const FIFO: u8 = 4;
    /// A Unix domain socket.
    pub const SOCKET: u8 = 5;
    /// A character device node.
    pub const CHAR_DEV: u8 = 6;
    /// A block device node.
    pub const BLOCK_DEV: u8 = 7;
}

/// `SetXattr` modes as they travel.
pub mod xattr_mode {
    /// Create or replace.
    pub const EITHER: u8 = 0;
    /// Fail with EEXIST if it exists.
    pub const CREATE: u8 = 1;
    /// Fail with ENODATA if it does not.
    pub const REPLACE: u8 = 2;
}

/// `Rename` modes as they travel (renameat2's flags).
pub mod rename_mode {
    /// Replace the target (POSIX rename).
    pub const REPLACE: u8 = 0;
    /// Fail with EEXIST if the target exists (RENAME_NOREPLACE).
    pub const NOREPLACE: u8 = 1;
    /// Swap the two names' inodes; both must exist (RENAME_EXCHANGE).
    pub const EXCHANGE: u8 = 2;
}

/// A request: who (uid and gid on the client host), where (the volume), what.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaRequest {
    /// The volume the request works in (ignored by volume administration).
    pub volume: String,
    /// The caller's user on the client host.
    pub uid: u32,
    /// The caller's group on the client host.
    pub gid: u32,
    /// The caller's umask, for what it creates (0 when the client applied it).
    pub umask: u16,
    /// What to do.
    pub call: MetaCall,
    /// For a change: its place in the caller's session, so a change sent again (after
    /// a timeout, or to a new leader) is applied once.
    pub once: Option<OnceMessage>,
}

/// A change's place in its client's session (see the namespace's `Once`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnceMessage {
    /// The client's session.
    pub session: u64,
    /// This change's number in the session.
    pub seq: u64,
    /// Every change numbered below this has been answered to the client.
    pub acked: u64,
}

/// A change as the replicated metadata log carries it: who asked, when (the leader's
/// clock, stamped once, so every replica applies the same), and what.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LoggedChange {
    /// The caller's user.
    pub uid: u32,
    /// The caller's group.
    pub gid: u32,
    /// The caller's umask.
    pub umask: u16,
    /// When (nanoseconds since the Unix epoch).
    pub now: i64,
    /// What.
    pub change: Change,
    /// The change's place in its client's session, if the client gave one.
    pub once: Option<OnceMessage>,
}

/// What a logged change does.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A client's change.
    Client(MetaOp),
    /// The service's: every session gets its whole lease again (a new leader's first
    /// change, and a restarted service's).
    ResumeSessions,
    /// The service's: sessions whose time is up end.
    ExpireSessions,
    /// The map authority's: the group keeps this cluster map unless it holds a newer
    /// epoch already. Boxed, so the variant stays as small as the others.
    ClusterMap(Box<MapMessage>),
    /// The enrollment endpoint's: admit a join token and name the newcomer (see
    /// [`MetaCall::Enroll`]).
    Enroll(EnrollMessage),
}

/// A join token presented for enrollment, and the role it names.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollMessage {
    /// The token's id.
    pub token: [u8; 16],
    /// When it expires, Unix seconds.
    pub expires: u64,
    /// The role's number (`Role::number`).
    pub role: u8,
    /// The last id of the role the endpoint gave before the group kept its ids.
    pub floor: u64,
}

/// What a request asks.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum MetaCall {
    /// The volume's root, storage class, usage and quota (a mount asks at start and
    /// for statfs). Answer: [`MetaReply::Mounted`].
    Mount,
    /// An inode's attributes. Answer: [`MetaReply::Attr`].
    GetAttr {
        /// The inode.
        ino: u64,
    },
    /// A name in a directory. Answer: [`MetaReply::Attr`].
    Lookup {
        /// The directory.
        parent: u64,
        /// The name.
        name: Vec<u8>,
    },
    /// A directory's entries. Answer: [`MetaReply::Entries`].
    ReadDir {
        /// The directory.
        ino: u64,
    },
    /// A symlink's target. Answer: [`MetaReply::Bytes`].
    ReadLink {
        /// The symlink.
        ino: u64,
    },
    /// A file's attributes, inline data and extents, from one snapshot. Answer:
    /// [`MetaReply::Content`].
    Content {
        /// The file.
        ino: u64,
    },
    /// An extended attribute's value. Answer: [`MetaReply::Bytes`].
    GetXattr {
        /// The inode.
        ino: u64,
        /// The name.
        name: Vec<u8>,
    },
    /// An inode's extended attribute names. Answer: [`MetaReply::Names`].
    ListXattr {
        /// The inode.
        ino: u64,
    },
    /// The volumes (administrators only). Answer: [`MetaReply::Volumes`].
    ListVolumes,
    /// A page of the chunk ids the request's volume's files refer to, from after
    /// cursor `after` (empty: the start), for a re-encode (administrators only).
    /// Answer: [`MetaReply::Chunks`].
    VolumeChunks {
        /// Where the last page ended.
        after: Vec<u8>,
    },
    /// A change. Answer: [`MetaReply::Attr`] or [`MetaReply::Done`].
    Apply(MetaOp),
    /// The metadata group as the replica asked sees it (administrators only; any
    /// replica answers). Answer: [`MetaReply::Group`].
    Group,
    /// Adds node `node`, reached at `addr`, to the metadata group: it catches up as a
    /// learner (from a snapshot, then the log), then votes (administrators only).
    /// Answer: [`MetaReply::Group`] once it votes.
    AddMember {
        /// The node.
        node: u64,
        /// Where the other replicas reach it.
        addr: String,
    },
    /// The replica asked: the last log index it applied and a digest of its namespace
    /// (administrators only; never redirected). Replicas that applied the same index
    /// must have the same digest. Answer: [`MetaReply::Digest`].
    Digest,
    /// Removes node `node` from the metadata group (administrators only). Answer:
    /// [`MetaReply::Group`] once it is out.
    RemoveMember {
        /// The node.
        node: u64,
    },
    /// The map authority keeps its newest map in the group, which holds the highest
    /// epoch it was given (nodes only). Answer: [`MetaReply::Done`].
    KeepMap(Box<MapMessage>),
    /// The cluster map the group holds, if any: what a map authority that lost its
    /// map file starts again from (nodes only). Answer: [`MetaReply::ClusterMap`].
    ClusterMap,
    /// Admits a join token, once: the group records it as used (until it expires) and
    /// gives the next id of its role (nodes only; the enrollment endpoint asks).
    /// Answer: [`MetaReply::Enrolled`], or the errno `EEXIST` for a token used before.
    Enroll(EnrollMessage),
}

/// A member of the metadata group.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MemberMessage {
    /// Its node id.
    pub node: u64,
    /// Where the others reach it.
    pub addr: String,
    /// Whether it votes (a learner catching up does not).
    pub voter: bool,
    /// The last log index the leader knows it holds (known by the leader only).
    pub matched: Option<u64>,
}

/// The metadata group as one replica sees it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GroupMessage {
    /// The replica that answered.
    pub replica: u64,
    /// The leader, if one is known.
    pub leader: Option<u64>,
    /// The current term (election round).
    pub term: u64,
    /// The answering replica's last log index.
    pub last_log: Option<u64>,
    /// The last index it applied.
    pub applied: Option<u64>,
    /// Every member.
    pub members: Vec<MemberMessage>,
}

/// A change to the namespace, applied as one transaction (see the namespace's `Op`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum MetaOp {
    /// Creates a directory.
    Mkdir {
        /// Where.
        parent: u64,
        /// Its name.
        name: Vec<u8>,
        /// Permission bits.
        mode: u16,
    },
    /// Creates an empty regular file.
    Create {
        /// Where.
        parent: u64,
        /// Its name.
        name: Vec<u8>,
        /// Permission bits.
        mode: u16,
    },
    /// Creates a FIFO, a socket or a device node.
    Mknod {
        /// Where.
        parent: u64,
        /// Its name.
        name: Vec<u8>,
        /// One of [`kind`]'s special kinds.
        kind: u8,
        /// Permission bits.
        mode: u16,
        /// The device, for a device node.
        rdev: u32,
    },
    /// Creates a symbolic link.
    Symlink {
        /// Where.
        parent: u64,
        /// Its name.
        name: Vec<u8>,
        /// What it points at.
        target: Vec<u8>,
    },
    /// Adds a name for an existing non-directory.
    Link {
        /// The inode.
        ino: u64,
        /// Where.
        parent: u64,
        /// The new name.
        name: Vec<u8>,
    },
    /// Removes a name of a non-directory.
    Unlink {
        /// Where.
        parent: u64,
        /// The name.
        name: Vec<u8>,
    },
    /// Removes an empty directory.
    Rmdir {
        /// Where.
        parent: u64,
        /// The name.
        name: Vec<u8>,
    },
    /// Moves a name (POSIX rename), or as `mode` says.
    Rename {
        /// The source directory.
        from: u64,
        /// The source name.
        from_name: Vec<u8>,
        /// The target directory.
        to: u64,
        /// The target name.
        to_name: Vec<u8>,
        /// One of [`rename_mode`]; any other value is refused with EINVAL.
        mode: u8,
    },
    /// Changes attributes; `None` leaves one as it is. Times are nanoseconds since the
    /// Unix epoch.
    SetAttr {
        /// The inode.
        ino: u64,
        /// Permission bits.
        mode: Option<u16>,
        /// Owner.
        uid: Option<u32>,
        /// Group.
        gid: Option<u32>,
        /// Length.
        size: Option<u64>,
        /// Access time.
        atime: Option<i64>,
        /// Modification time.
        mtime: Option<i64>,
    },
    /// Grows a file to `end` bytes and reserves what it grows by (fallocate): see the
    /// namespace's `Op::Allocate`.
    Allocate {
        /// The file.
        ino: u64,
        /// Its length after.
        end: u64,
        /// Logical bytes the cluster can take now, as the caller measured it.
        room: u64,
    },
    /// Lays extents over a file's content; ESTALE if `class` is not the class the
    /// file's volume writes now.
    CommitExtents {
        /// The file.
        ino: u64,
        /// The new pieces.
        extents: Vec<ExtentMessage>,
        /// The class (k, m) their chunks are stored in.
        class: (u8, u8),
    },
    /// Replaces all of a file's extents (compaction), if its ctime is still `ctime`;
    /// ESTALE as for `CommitExtents`.
    ReplaceExtents {
        /// The file.
        ino: u64,
        /// Its ctime when the caller read it (ns since the Unix epoch).
        ctime: i64,
        /// Its new extents.
        extents: Vec<ExtentMessage>,
        /// The class (k, m) their chunks are stored in.
        class: (u8, u8),
    },
    /// Writes a small file's bytes into its metadata record.
    WriteInline {
        /// The file.
        ino: u64,
        /// Where.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Sets an extended attribute.
    SetXattr {
        /// The inode.
        ino: u64,
        /// Its name.
        name: Vec<u8>,
        /// Its value.
        value: Vec<u8>,
        /// One of [`xattr_mode`].
        mode: u8,
    },
    /// Removes an extended attribute.
    RemoveXattr {
        /// The inode.
        ino: u64,
        /// Its name.
        name: Vec<u8>,
    },
    /// A file was opened.
    Open {
        /// The file.
        ino: u64,
        /// The client's session (0: none).
        session: u64,
    },
    /// A file was closed.
    Release {
        /// The file.
        ino: u64,
        /// The session that opened it (0: none).
        session: u64,
    },
    /// Extends a client's session (which holds its opens), or with `start` starts it.
    /// Without `start`, a session that is gone (expired) is ENOENT.
    RenewSession {
        /// A random id the client chose (not 0).
        session: u64,
        /// How long it lives from now, in milliseconds.
        ttl_ms: u64,
        /// Start it if it does not exist.
        start: bool,
    },
    /// Ends a session, releasing its opens (a clean unmount).
    EndSession {
        /// The session.
        session: u64,
    },
    /// Creates a volume (administrators only).
    CreateVolume {
        /// Its name.
        name: Vec<u8>,
        /// Data shards per chunk.
        k: u8,
        /// Parity shards per chunk.
        m: u8,
    },
    /// Starts re-encoding a volume's chunks into class k + m: writes use it at once
    /// (administrators only; EBUSY while a re-encode to another class runs).
    SetVolumeClass {
        /// Its name.
        name: Vec<u8>,
        /// Data shards per chunk.
        k: u8,
        /// Parity shards per chunk.
        m: u8,
    },
    /// Ends a re-encode into k + m: every chunk is stored in it, and the old class is
    /// forgotten (administrators only; ESTALE if the volume's class is not k + m).
    FinishVolumeClass {
        /// Its name.
        name: Vec<u8>,
        /// Data shards per chunk.
        k: u8,
        /// Parity shards per chunk.
        m: u8,
    },
    /// Deletes a volume (administrators only).
    DeleteVolume {
        /// Its name.
        name: Vec<u8>,
        /// Remove its contents too.
        force: bool,
    },
    /// Records an object and its chunks as a root of garbage collection
    /// (administrators only).
    PutObject {
        /// The object id: its manifest's chunk id.
        id: [u8; 32],
        /// Its length in bytes.
        len: u64,
        /// Its chunks, in order.
        chunks: Vec<[u8; 32]>,
    },
    /// Removes an object's record; garbage collection then takes its chunks
    /// (administrators only).
    DeleteObject {
        /// The object id.
        id: [u8; 32],
    },
    /// Sets a volume's quota (administrators only); 0 is no limit.
    SetQuota {
        /// The volume.
        name: Vec<u8>,
        /// The most logical bytes.
        max_bytes: u64,
        /// The most inodes.
        max_files: u64,
    },
    /// Records a read of a file (relatime: a mount sends it on the first read after a
    /// change, or a day after the last record): the access time alone moves, forward
    /// only; the ctime stays.
    Accessed {
        /// The file.
        ino: u64,
        /// When it was read (ns since the Unix epoch).
        atime: i64,
    },
    /// Deallocates a byte range of a regular file (fallocate's punch hole): it reads
    /// as zeros after, and the size does not change.
    Punch {
        /// The file.
        ino: u64,
        /// Where the range starts.
        offset: u64,
        /// Its length (at least 1).
        len: u64,
    },
    /// Creates an empty regular file and opens it for `session` in one change (a
    /// `Create` then an `Open`, as one transaction).
    CreateOpen {
        /// Where.
        parent: u64,
        /// Its name.
        name: Vec<u8>,
        /// Permission bits (the umask applied by the service).
        mode: u16,
        /// The client session the open is held by (0: none).
        session: u64,
    },
}

/// What a volume holds against its quota.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageMessage {
    /// Logical bytes: the sizes of its files and symlinks.
    pub bytes: u64,
    /// Inodes.
    pub files: u64,
    /// The most bytes (0: no limit).
    pub max_bytes: u64,
    /// The most inodes (0: no limit).
    pub max_files: u64,
}

/// An inode's attributes; times in nanoseconds since the Unix epoch.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrMessage {
    /// The inode.
    pub ino: u64,
    /// One of [`kind`].
    pub kind: u8,
    /// Permission bits.
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Bytes.
    pub size: u64,
    /// Hard links.
    pub nlink: u32,
    /// Last access.
    pub atime: i64,
    /// Last content change.
    pub mtime: i64,
    /// Last attribute change.
    pub ctime: i64,
    /// Creation.
    pub btime: i64,
    /// The device a device node stands for; 0 otherwise.
    pub rdev: u32,
}

/// `len` bytes at file offset `offset` are chunk `chunk`'s from `chunk_offset` on.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentMessage {
    /// Where in the file.
    pub offset: u64,
    /// How many bytes.
    pub len: u32,
    /// The chunk.
    pub chunk: [u8; 32],
    /// Where in the chunk.
    pub chunk_offset: u32,
}

/// A directory entry.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct EntryMessage {
    /// Its name.
    pub name: Vec<u8>,
    /// The inode it names.
    pub ino: u64,
    /// One of [`kind`].
    pub kind: u8,
}

/// A volume.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct VolumeMessage {
    /// Its name.
    pub name: String,
    /// Its root directory.
    pub root: u64,
    /// Data shards per chunk: the class its chunks are written in.
    pub k: u8,
    /// Parity shards per chunk.
    pub m: u8,
    /// While a re-encode runs: the class (k, m) its older chunks may still be stored
    /// in only.
    pub from: Option<(u8, u8)>,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// When it was created (nanoseconds since the Unix epoch).
    pub created: i64,
    /// What it holds, and its quota.
    pub usage: UsageMessage,
    /// Bytes reserved by fallocate in every volume and not yet written: room the
    /// cluster keeps, which df does not count as free.
    pub reserved: u64,
}

/// An answer.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum MetaReply {
    /// The operation failed with this Linux errno; nothing changed.
    Errno(i32),
    /// Done; nothing to return.
    Done,
    /// Attributes.
    Attr(AttrMessage),
    /// A volume to mount.
    Mounted(VolumeMessage),
    /// A directory's entries.
    Entries(Vec<EntryMessage>),
    /// Bytes (a symlink's target, an xattr's value).
    Bytes(Vec<u8>),
    /// Names (of extended attributes).
    Names(Vec<Vec<u8>>),
    /// A file's content.
    Content {
        /// Its attributes.
        attr: AttrMessage,
        /// Its inline bytes (empty when it has extents).
        inline: Vec<u8>,
        /// Its extents, by offset.
        extents: Vec<ExtentMessage>,
        /// Its bytes reserved by fallocate and not yet written.
        reserved: u64,
    },
    /// The volumes.
    Volumes(Vec<VolumeMessage>),
    /// A page of a volume's chunk ids.
    Chunks {
        /// The chunk ids (a chunk referred to twice comes twice).
        chunks: Vec<[u8; 32]>,
        /// The cursor of the next page; `None` after the last.
        next: Option<Vec<u8>>,
    },
    /// The metadata group.
    Group(GroupMessage),
    /// One replica's namespace in brief.
    Digest {
        /// The replica.
        replica: u64,
        /// The last log index it applied.
        applied: Option<u64>,
        /// The BLAKE3 hash of its namespace's records (all but the applied stamp).
        digest: [u8; 32],
    },
    /// The cluster map the group holds (`None`: it was never given one).
    ClusterMap(Option<Box<MapMessage>>),
    /// The id given to a newcomer.
    Enrolled {
        /// The id.
        id: u64,
    },
    /// This replica does not lead the metadata group: ask `leader` at `addr` (both
    /// unknown during an election). Nothing was done.
    NotLeader {
        /// The leader's node id, if known.
        leader: Option<u64>,
        /// Its address, if known.
        addr: Option<String>,
    },
}

/// How long one attempt at a metadata call waits on one replica of a group before it
/// tries another (a killed leader answers nothing; its connection only times out).
pub const META_ATTEMPT: Duration = Duration::from_secs(2);

/// The pause before asking the replicas again once none knew a leader (an election).
pub const META_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A client of the metadata service: one node, or the replicas of a metadata group.
/// A call goes to the replica believed to lead, follows its redirect when it does not
/// (`NotLeader`), and tries the others when it does not answer, until the call's
/// deadline. Changes carry their place in the client's session (once it has one), so
/// one sent twice is applied once.
pub struct MetaClient {
    client: Arc<Client>,
    /// The replicas known, by node id.
    replicas: std::sync::Mutex<Vec<Arc<Link>>>,
    /// The index in `replicas` of the one believed to lead.
    leader: std::sync::atomic::AtomicUsize,
    /// The session changes are numbered in (0: none, changes are sent as they are).
    session: std::sync::atomic::AtomicU64,
    /// The next change's number.
    next_seq: std::sync::atomic::AtomicU64,
    /// Numbers of the changes not answered yet.
    pending: std::sync::Mutex<std::collections::BTreeSet<u64>>,
}

impl MetaClient {
    /// Talks to node `node` at `addr` through `client`.
    pub fn new(client: Arc<Client>, addr: SocketAddr, node: NodeId) -> Self {
        Self::group(client, &[(node, addr)])
    }

    /// Talks to the metadata group whose replicas are `replicas` (at least one).
    pub fn group(client: Arc<Client>, replicas: &[(NodeId, SocketAddr)]) -> Self {
        let links = replicas
            .iter()
            .map(|(node, addr)| Arc::new(Link::new(client.clone(), *addr, Identity::node(*node))))
            .collect();
        Self {
            client,
            replicas: std::sync::Mutex::new(links),
            leader: Default::default(),
            session: Default::default(),
            next_seq: std::sync::atomic::AtomicU64::new(1),
            pending: Default::default(),
        }
    }

    /// Numbers every later change in `session` (a mount's), so the group applies
    /// each once however often it is sent.
    pub fn set_session(&self, session: u64) {
        self.session
            .store(session, std::sync::atomic::Ordering::Relaxed);
    }

    /// The address of the replica believed to lead.
    pub fn addr(&self) -> SocketAddr {
        self.current().1.addr()
    }

    fn replicas(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Link>>> {
        self.replicas.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The replica believed to lead, with its index and how many are known.
    fn current(&self) -> (usize, Arc<Link>, usize) {
        let replicas = self.replicas();
        let i = self.leader.load(std::sync::atomic::Ordering::Relaxed) % replicas.len();
        (i, replicas[i].clone(), replicas.len())
    }

    /// Believes `leader` (at `addr`, if it is new here) leads; false if it is unknown
    /// and no address came with it.
    fn follow(&self, leader: u64, addr: Option<&str>) -> bool {
        let mut replicas = self.replicas();
        let node = Identity::node(NodeId(leader));
        let i = match replicas.iter().position(|l| l.node() == node) {
            Some(i) => i,
            None => {
                let Some(addr) = addr.and_then(|a| a.parse().ok()) else {
                    return false;
                };
                replicas.push(Arc::new(Link::new(self.client.clone(), addr, node)));
                replicas.len() - 1
            }
        };
        self.leader.store(i, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// Moves on from replica `i`, which failed (unless another call moved on already).
    /// The index stays below the number of replicas, so the comparison with `i` (which
    /// [`MetaClient::current`] took modulo that number) holds after a wrap too.
    fn next_after(&self, i: usize) {
        let _ = self.leader.compare_exchange(
            i,
            (i + 1) % self.replicas().len(),
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Sends `call` for `uid`:`gid` in `volume`; the answer, an errno among them.
    pub async fn call(
        &self,
        volume: &str,
        uid: u32,
        gid: u32,
        call: MetaCall,
    ) -> Result<MetaReply, RpcError> {
        self.call_with_umask(volume, uid, gid, 0, call).await
    }

    /// [`MetaClient::call`] for a caller whose `umask` the service applies to what it
    /// creates (unless a default ACL decides).
    pub async fn call_with_umask(
        &self,
        volume: &str,
        uid: u32,
        gid: u32,
        umask: u16,
        call: MetaCall,
    ) -> Result<MetaReply, RpcError> {
        self.call_within(volume, (uid, gid, umask), call, META_DEADLINE)
            .await
    }

    /// A call for caller (uid, gid, umask) answered within `deadline`, or failed: a
    /// call that must not wait as long as others (a session's renewal). A timeout
    /// drops the connection, so the next call connects afresh.
    pub async fn call_within(
        &self,
        volume: &str,
        (uid, gid, umask): (u32, u32, u16),
        call: MetaCall,
        deadline: Duration,
    ) -> Result<MetaReply, RpcError> {
        let numbered = self.number(&call);
        let message = MetaRequest {
            volume: volume.to_string(),
            uid,
            gid,
            umask,
            call,
            once: numbered.as_ref().map(|n| n.once),
        };
        let request = request::<Meta>(OP_CALL, Bytes::new(), encode(&message));
        let until = tokio::time::Instant::now() + deadline;
        // A replica's refusal says more than a later timeout: the caller is told it.
        let mut refused = None;
        // The replica that last failed to answer: its followers may still name it as
        // the leader until they elect another, and are not followed back to it.
        let mut silent = None;
        loop {
            let (i, link, known) = self.current();
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            // One replica: it alone can answer, so it has the whole deadline.
            let attempt = if known == 1 {
                left
            } else {
                left.min(META_ATTEMPT)
            };
            // The attempt bounds the connect too (a dead node's connect would take
            // `CONNECT_DEADLINE`), and a timed-out attempt leaves no connection behind
            // to be used again.
            let answered = link.call_within(request.clone(), attempt).await;
            let failed = match answered {
                Ok(answer) => match decode("MetaReply", &answer.body)
                    .map_err(|e| RpcError::Connection(e.to_string()))?
                {
                    MetaReply::NotLeader {
                        leader: Some(leader),
                        addr,
                    } if leader != link.node().id
                        && Some(leader) != silent
                        && self.follow(leader, addr.as_deref()) =>
                    {
                        continue;
                    }
                    MetaReply::NotLeader { .. } => RpcError::Remote(super::rpc::Refusal::new(
                        super::rpc::code::UNAVAILABLE,
                        "the metadata group has no leader",
                    )),
                    reply => return Ok(reply),
                },
                Err(e) if retryable(&e) => {
                    if !matches!(e, RpcError::Remote(_)) {
                        silent = Some(link.node().id);
                    }
                    e
                }
                Err(e) => return Err(e),
            };
            if tokio::time::Instant::now() >= until {
                return Err(match (failed, refused) {
                    (RpcError::Timeout(_), Some(refusal)) => refusal,
                    (RpcError::Timeout(_), None) if known > 1 => RpcError::Connection(format!(
                        "no replica of the metadata group answered within {deadline:?}: its leader, or a majority of its replicas is unreachable"
                    )),
                    (failed, _) => failed,
                });
            }
            if let RpcError::Remote(refusal) = &failed {
                refused = Some(RpcError::Remote(refusal.clone()));
            }
            self.next_after(i);
            // A timeout waited already; anything else (no leader yet, a refused or
            // lost connection) pauses before the next attempt.
            if !matches!(failed, RpcError::Timeout(_)) {
                tokio::time::sleep(META_RETRY_PAUSE.min(until - tokio::time::Instant::now())).await;
            }
        }
    }

    /// A change's number in the session, if the client has one; released when the
    /// returned guard drops (the change answered or given up).
    fn number(&self, call: &MetaCall) -> Option<Numbered<'_>> {
        use std::sync::atomic::Ordering::Relaxed;
        let session = self.session.load(Relaxed);
        if session == 0 || !matches!(call, MetaCall::Apply(_)) {
            return None;
        }
        let seq = self.next_seq.fetch_add(1, Relaxed);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.insert(seq);
        let acked = pending.first().copied().unwrap_or(seq);
        Some(Numbered {
            client: self,
            once: OnceMessage {
                session,
                seq,
                acked,
            },
        })
    }
}

/// A numbered change not yet answered.
struct Numbered<'a> {
    client: &'a MetaClient,
    once: OnceMessage,
}

impl Drop for Numbered<'_> {
    fn drop(&mut self) {
        self.client
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.once.seq);
    }
}

/// Whether another replica (or the same, later) may answer what `e` stopped.
fn retryable(e: &RpcError) -> bool {
    match e {
        RpcError::Timeout(_) | RpcError::Connection(_) | RpcError::Reset => true,
        RpcError::Remote(refusal) => refusal.code == super::rpc::code::UNAVAILABLE,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{ClusterCa, Credentials, Role, Validity};

    /// The replica an attempt goes to, which then fails.
    fn visit(client: &MetaClient) -> u64 {
        let (i, link, _) = client.current();
        client.next_after(i);
        link.node().id
    }

    #[tokio::test]
    async fn moving_on_from_failed_replicas_cycles_through_every_one_again_and_again() {
        let ca = ClusterCa::create("test").expect("ca");
        let who = Identity {
            role: Role::Admin,
            id: 1,
        };
        let (cert, key) = ca
            .issue_with_key(who, Validity::starting_now(Duration::from_secs(3600)))
            .expect("cert");
        let client = Client::new(ca.cert(), Some(&Credentials::new(cert, &key))).expect("client");
        let replicas: Vec<(NodeId, SocketAddr)> = (1..=3)
            .map(|n| {
                (
                    NodeId(n),
                    SocketAddr::from(([127, 0, 0, 1], 9000 + n as u16)),
                )
            })
            .collect();
        let meta = MetaClient::group(Arc::new(client), &replicas);
        let visited: Vec<u64> = (0..8).map(|_| visit(&meta)).collect();
        assert_eq!(
            visited,
            [1, 2, 3, 1, 2, 3, 1, 2],
            "past the last replica, the first"
        );
        // A redirect to the last replica, which then fails: the first comes next.
        assert!(meta.follow(3, None));
        let visited: Vec<u64> = (0..4).map(|_| visit(&meta)).collect();
        assert_eq!(visited, [3, 1, 2, 3]);
    }
}
