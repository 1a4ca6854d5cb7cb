//! What the namespace is made of: inode ids, attributes, operations, their results and
//! the POSIX errors they fail with.

use std::fmt;

/// An inode number, unique within a namespace and never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct InodeId(pub u64);

impl InodeId {
    /// The root directory.
    pub const ROOT: InodeId = InodeId(1);
}

impl fmt::Display for InodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inode {}", self.0)
    }
}

/// What an inode is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe (FIFO).
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A character device node.
    CharDev,
    /// A block device node.
    BlockDev,
}

impl FileType {
    /// Its code in a record.
    pub fn code(self) -> u8 {
        match self {
            FileType::File => 1,
            FileType::Dir => 2,
            FileType::Symlink => 3,
            FileType::Fifo => 4,
            FileType::Socket => 5,
            FileType::CharDev => 6,
            FileType::BlockDev => 7,
        }
    }

    /// A FIFO, socket or device node: an inode with no content of its own.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            FileType::Fifo | FileType::Socket | FileType::CharDev | FileType::BlockDev
        )
    }

    /// From a record's code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(FileType::File),
            2 => Some(FileType::Dir),
            3 => Some(FileType::Symlink),
            4 => Some(FileType::Fifo),
            5 => Some(FileType::Socket),
            6 => Some(FileType::CharDev),
            7 => Some(FileType::BlockDev),
            _ => None,
        }
    }
}

/// Time as nanoseconds since the Unix epoch. Operations carry the time they happen at,
/// so applying the same operations always gives the same state.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct Nanos(pub i64);

/// An inode's attributes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Attr {
    /// The inode.
    pub ino: InodeId,
    /// What it is.
    pub kind: FileType,
    /// Permission bits (the low 12 bits of st_mode).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Bytes (for a symlink, its target's length).
    pub size: u64,
    /// Hard links (for a directory, 2 plus its subdirectories).
    pub nlink: u32,
    /// Last access.
    pub atime: Nanos,
    /// Last content change.
    pub mtime: Nanos,
    /// Last attribute change.
    pub ctime: Nanos,
    /// Creation.
    pub btime: Nanos,
    /// The device a character or block device node stands for; 0 for other kinds.
    pub rdev: u32,
}

impl Attr {
    /// The root directory of a new namespace: owned by root, mode 0755, all times 0.
    pub fn root() -> Self {
        Attr {
            ino: InodeId::ROOT,
            kind: FileType::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            nlink: 2,
            atime: Nanos(0),
            mtime: Nanos(0),
            ctime: Nanos(0),
            btime: Nanos(0),
            rdev: 0,
        }
    }
}

/// Who asks, and when.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Context {
    /// The caller's user.
    pub uid: u32,
    /// The caller's group.
    pub gid: u32,
    /// When the operation happens.
    pub now: Nanos,
    /// The caller's umask: permission bits a new inode does not get, unless its
    /// directory has a default ACL (which decides instead).
    pub umask: u16,
}

/// A piece of a file's content: `len` bytes at file offset `offset` are the bytes of
/// chunk `chunk` from `chunk_offset` on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Extent {
    /// Where in the file.
    pub offset: u64,
    /// How many bytes (at least 1).
    pub len: u32,
    /// The chunk holding them.
    pub chunk: [u8; 32],
    /// Where in the chunk.
    pub chunk_offset: u32,
}

impl Extent {
    /// The file offset just past it. Saturates rather than overflow: an extent a
    /// client sends is refused unless it ends within
    /// [`crate::constants::MAX_FILE_SIZE`] ([`Extent::within_limit`]), so a stored one
    /// never comes near.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.len))
    }

    /// Whether it ends at or below [`crate::constants::MAX_FILE_SIZE`].
    pub fn within_limit(&self) -> bool {
        self.offset
            .checked_add(u64::from(self.len))
            .is_some_and(|end| end <= crate::constants::MAX_FILE_SIZE)
    }
}

/// What a rename does with a target name that exists (renameat2's flags).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum RenameMode {
    /// Replace it (POSIX rename).
    #[default]
    Replace,
    /// Fail with EEXIST (RENAME_NOREPLACE).
    NoReplace,
    /// Swap the two names' inodes atomically; both must exist (RENAME_EXCHANGE).
    Exchange,
}

/// How `SetXattr` treats an existing attribute (XATTR_CREATE, XATTR_REPLACE).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum XattrMode {
    /// Create or replace.
    Either,
    /// Fail with EEXIST if it exists.
    Create,
    /// Fail with ENODATA if it does not.
    Replace,
}

/// A change to the namespace: each is applied as one transaction, whole or not at all.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Op {
    /// Creates a directory.
    Mkdir {
        /// Where.
        parent: InodeId,
        /// Its name.
        name: Vec<u8>,
        /// Permission bits.
        mode: u16,
    },
    /// Creates an empty regular file.
    Create {
        /// Where.
        parent: InodeId,
        /// Its name.
        name: Vec<u8>,
        /// Permission bits.
        mode: u16,
    },
    /// Creates a FIFO, a socket or a device node.
    Mknod {
        /// Where.
        parent: InodeId,
        /// Its name.
        name: Vec<u8>,
        /// What it is: one of the special kinds (EINVAL otherwise).
        kind: FileType,
        /// Permission bits.
        mode: u16,
        /// The device, for a device node.
        rdev: u32,
    },
    /// Creates a symbolic link.
    Symlink {
        /// Where.
        parent: InodeId,
        /// Its name.
        name: Vec<u8>,
        /// What it points at.
        target: Vec<u8>,
    },
    /// Adds a name for an existing non-directory.
    Link {
        /// The inode.
        ino: InodeId,
        /// Where.
        parent: InodeId,
        /// The new name.
        name: Vec<u8>,
    },
    /// Removes a name of a non-directory; the inode goes with its last name.
    Unlink {
        /// Where.
        parent: InodeId,
        /// The name.
        name: Vec<u8>,
    },
    /// Removes an empty directory.
    Rmdir {
        /// Where.
        parent: InodeId,
        /// The name.
        name: Vec<u8>,
    },
    /// Moves a name, replacing what the target name held (POSIX rename), or as `mode`
    /// says (renameat2's flags).
    Rename {
        /// The source directory.
        from: InodeId,
        /// The source name.
        from_name: Vec<u8>,
        /// The target directory.
        to: InodeId,
        /// The target name.
        to_name: Vec<u8>,
        /// Replace, refuse to replace, or exchange.
        mode: RenameMode,
    },
    /// Changes attributes; `None` leaves one as it is.
    SetAttr {
        /// The inode.
        ino: InodeId,
        /// Permission bits.
        mode: Option<u16>,
        /// Owner.
        uid: Option<u32>,
        /// Group.
        gid: Option<u32>,
        /// Length (files only).
        size: Option<u64>,
        /// Access time.
        atime: Option<Nanos>,
        /// Modification time.
        mtime: Option<Nanos>,
    },
    /// Grows a regular file to `end` bytes (fallocate without a mode) and reserves
    /// the bytes it grows by: they count against the cluster's room until writes
    /// commit extents over them (each committed extent draws its length), the file is
    /// cut below them or removed. ENOSPC when more than `room` less every reservation
    /// already held; EDQUOT past the volume's byte quota. A file already `end` bytes
    /// long is left as it is.
    Allocate {
        /// The file.
        ino: InodeId,
        /// Its length after.
        end: u64,
        /// Logical bytes the cluster can take now, as the caller measured it (reserved
        /// bytes included): an input, so that replaying the operation decides alike.
        room: u64,
    },
    /// Makes `extents` part of a regular file's content, over whatever was there (what
    /// they overlap is cut away), and grows the file to their end. A file's inline data,
    /// if any, is dropped: the caller moves it into the extents when a file outgrows
    /// [`crate::MAX_INLINE`]. All-or-nothing, like every operation.
    ///
    /// `class` is the storage class (k, m) the writer stored the chunks in: ESTALE
    /// unless it is the one the file's volume writes now (the writer then learns the
    /// new class and stores them again), so no chunk of an older class is committed
    /// after a re-encode began.
    CommitExtents {
        /// The file.
        ino: InodeId,
        /// The new pieces, not overlapping each other.
        extents: Vec<Extent>,
        /// The class the chunks are stored in.
        class: (u8, u8),
    },
    /// Replaces all of a regular file's extents with `extents` (compaction: the same
    /// bytes in fewer, larger chunks), if the file has not changed since the caller read
    /// it: its ctime must still be `ctime` (EAGAIN otherwise). The extents must lie
    /// within the file, not overlap, and the file must hold no inline data (EINVAL).
    /// Nothing else changes: not the size, not a time.
    /// ESTALE as for `CommitExtents` if `class` is not the volume's.
    ReplaceExtents {
        /// The file.
        ino: InodeId,
        /// Its ctime when the caller read it.
        ctime: Nanos,
        /// Its new extents.
        extents: Vec<Extent>,
        /// The class their chunks are stored in.
        class: (u8, u8),
    },
    /// Writes bytes of a small file kept in its metadata record (no chunk at all). The
    /// file must have no extents and stay within [`crate::MAX_INLINE`] bytes.
    WriteInline {
        /// The file.
        ino: InodeId,
        /// Where.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Sets an extended attribute.
    SetXattr {
        /// The inode.
        ino: InodeId,
        /// Its name (at most [`crate::MAX_XATTR_NAME`] bytes).
        name: Vec<u8>,
        /// Its value (at most [`crate::MAX_XATTR_VALUE`] bytes).
        value: Vec<u8>,
        /// Create, replace or either.
        mode: XattrMode,
    },
    /// Creates a volume: a new tree, its root directory owned by the caller.
    CreateVolume {
        /// Its name (a valid entry name of at most [`crate::MAX_VOLUME_NAME`] bytes).
        name: Vec<u8>,
        /// Data shards per chunk of its files.
        k: u8,
        /// Parity shards per chunk.
        m: u8,
    },
    /// Starts re-encoding a volume into class k + m: from now on its files' chunks are
    /// written (and committed) in k + m only, and its old class is kept as the one
    /// re-encoded from until [`Op::FinishVolumeClass`]. Already k + m: nothing changes
    /// (a re-encode under way to k + m goes on). EBUSY while a re-encode to another
    /// class is under way; EINVAL for a class out of range; ENOENT for no such volume.
    SetVolumeClass {
        /// The volume.
        name: Vec<u8>,
        /// Data shards per chunk.
        k: u8,
        /// Parity shards per chunk.
        m: u8,
    },
    /// Ends a re-encode into k + m: the caller stored every chunk the volume's files
    /// referenced when it began in k + m, so the old class is forgotten (and garbage
    /// collection takes its shards). ESTALE if the volume's class is not k + m; nothing
    /// changes if no re-encode is under way.
    FinishVolumeClass {
        /// The volume.
        name: Vec<u8>,
        /// Data shards per chunk.
        k: u8,
        /// Parity shards per chunk.
        m: u8,
    },
    /// Deletes a volume: refused (ENOTEMPTY) while its root holds anything, unless
    /// `force`, which removes the whole tree (at most [`crate::MAX_FORCED_DELETE`]
    /// inodes in one operation). The default volume cannot be deleted (EPERM).
    DeleteVolume {
        /// Its name.
        name: Vec<u8>,
        /// Remove its contents too.
        force: bool,
    },
    /// A client opened regular file `ino`: while any open remains, removing the file's
    /// last name keeps the inode (an orphan, nlink 0) until the last `Release`.
    Open {
        /// The file.
        ino: InodeId,
        /// The client's session, which holds the open until released or until the
        /// session ends or expires; 0 for an open no session holds (EINVAL for a
        /// session that does not exist).
        session: u64,
    },
    /// A client closed regular file `ino`; an orphan goes with its last close.
    Release {
        /// The file.
        ino: InodeId,
        /// The session that opened it (0: none).
        session: u64,
    },
    /// Extends a client's session, or with `start` starts it: it lives until `ttl`
    /// after now unless renewed. Without `start`, a session that is gone (it expired,
    /// or ended) is ENOENT: its opens were released, and the client must be told, not
    /// quietly given a new, empty session.
    RenewSession {
        /// The session (not 0).
        session: u64,
        /// How long it lives from now.
        ttl: Nanos,
        /// Start it if it does not exist.
        start: bool,
    },
    /// Gives every session at least its whole ttl again from now: after the service
    /// was away (a restart, a new leader), no client loses its session before it had
    /// one lease to renew it.
    ResumeSessions,
    /// Ends a session: every open it holds is released.
    EndSession {
        /// The session.
        session: u64,
    },
    /// Ends every session whose time is up (at `Context::now`), releasing its opens:
    /// what a crashed client held goes.
    ExpireSessions,
    /// Admits a join token and names the newcomer: refused (EEXIST) if token `token`
    /// was used before; otherwise it is recorded as used until `expires` (Unix
    /// seconds), used tokens past their expiry are forgotten, and the last id given to
    /// role `role` goes up by one, from at least `floor` (what the enrollment endpoint
    /// gave before the group kept its ids). The answer is [`Outcome::Id`]. The control
    /// plane's enrollment state, replicated with the namespace.
    Enroll {
        /// The token's id.
        token: [u8; 16],
        /// When the token expires, Unix seconds.
        expires: u64,
        /// The role's number (as the wire names roles).
        role: u8,
        /// The last id given before the group kept them.
        floor: u64,
    },
    /// Keeps the cluster map `map` (the map authority's encoding, opaque here) of
    /// `epoch`, unless the one kept has a higher or equal epoch: the control plane's
    /// copy in the replicated group, from which a map authority that lost its map file
    /// starts again.
    KeepMap {
        /// The map's epoch.
        epoch: u64,
        /// The map.
        map: Vec<u8>,
    },
    /// Removes an extended attribute.
    RemoveXattr {
        /// The inode.
        ino: InodeId,
        /// Its name.
        name: Vec<u8>,
    },
    /// Records an object (stored with `hive put`) as a root of garbage collection: its
    /// id (the chunk id of its manifest) and every chunk it is made of. Recording the
    /// same object again replaces its record.
    PutObject {
        /// The object id.
        id: [u8; 32],
        /// Its length in bytes.
        len: u64,
        /// Its chunks, in order (at most [`crate::constants::MAX_OBJECT_CHUNKS`]).
        chunks: Vec<[u8; 32]>,
    },
    /// Removes an object's record: garbage collection may then take its chunks.
    DeleteObject {
        /// The object id.
        id: [u8; 32],
    },
    /// Sets a volume's quota: the most logical bytes (the sizes of its files and
    /// symlinks) and inodes it may hold, 0 for no limit. A limit below what the volume
    /// holds already is kept: nothing is removed, and changes that would add fail with
    /// EDQUOT.
    SetQuota {
        /// The volume's name.
        name: Vec<u8>,
        /// The most bytes (0: no limit).
        max_bytes: u64,
        /// The most inodes (0: no limit).
        max_files: u64,
    },
    /// Records a read of `ino` at `atime`: the access time moves to it if later, and
    /// nothing else changes (not the ctime: a read is not a change to the inode).
    Accessed {
        /// The inode.
        ino: InodeId,
        /// When it was read.
        atime: Nanos,
    },
    /// Deallocates `[offset, offset + len)` of regular file `ino` (fallocate's punch
    /// hole): the extents there are cut out and inline bytes there zeroed, so the range
    /// reads as zeros; the size and the reserve stay, mtime and ctime move. A range
    /// past the end changes no bytes; a length of 0 is EINVAL.
    Punch {
        /// The file.
        ino: InodeId,
        /// Where the range starts.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// `Create` and `Open` in one transaction: the file is made and opened for
    /// `session`, or (an unknown session: EINVAL) neither.
    CreateOpen {
        /// Where.
        parent: InodeId,
        /// Its name.
        name: Vec<u8>,
        /// Permission bits.
        mode: u16,
        /// The client session holding the open (0: none).
        session: u64,
    },
}

/// What a volume holds against its quota.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Usage {
    /// Logical bytes: the sizes of its files and symlinks.
    pub bytes: u64,
    /// Inodes, its root included.
    pub files: u64,
    /// The most bytes it may hold (0: no limit).
    pub max_bytes: u64,
    /// The most inodes it may hold (0: no limit).
    pub max_files: u64,
}

impl Usage {
    /// Whether `after` (this usage changed) breaks a limit in a direction it grew in.
    pub fn exceeded_by(&self, after: &Usage) -> bool {
        let over = |used: u64, before: u64, max: u64| max > 0 && used > before && used > max;
        over(after.bytes, self.bytes, self.max_bytes)
            || over(after.files, self.files, self.max_files)
    }
}

/// What an applied operation gives back.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// The new or changed inode's attributes.
    Attr(Attr),
    /// Done; nothing to return.
    Done,
    /// The id given (by [`Op::Enroll`]).
    Id(u64),
}

/// POSIX errors, with their Linux numbers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum Errno {
    /// Not permitted (e.g. a hard link to a directory).
    #[error("operation not permitted (EPERM)")]
    Perm,
    /// No such name or inode.
    #[error("no such file or directory (ENOENT)")]
    NoEnt,
    /// The name exists.
    #[error("file exists (EEXIST)")]
    Exist,
    /// A path component is not a directory.
    #[error("not a directory (ENOTDIR)")]
    NotDir,
    /// A directory where a non-directory is needed.
    #[error("is a directory (EISDIR)")]
    IsDir,
    /// An invalid argument (a bad name, a directory moved into itself).
    #[error("invalid argument (EINVAL)")]
    Inval,
    /// A name longer than [`crate::MAX_NAME`] bytes.
    #[error("file name too long (ENAMETOOLONG)")]
    NameTooLong,
    /// A directory that is not empty.
    #[error("directory not empty (ENOTEMPTY)")]
    NotEmpty,
    /// Too many links to one inode.
    #[error("too many links (EMLINK)")]
    MLink,
    /// No such extended attribute.
    #[error("no data available (ENODATA)")]
    NoData,
    /// A value or an attribute name beyond its limit.
    #[error("argument list too long (E2BIG)")]
    TooBig,
    /// An xattr name too long, or a buffer too small.
    #[error("result out of range (ERANGE)")]
    Range,
    /// Content past what inline data may hold, or extents that overlap.
    #[error("file too large (EFBIG)")]
    FBig,
    /// Too many opens of one file.
    #[error("too many open files (EMFILE)")]
    MFile,
    /// A link or rename between two volumes.
    #[error("invalid cross-device link (EXDEV)")]
    XDev,
    /// The file changed since the caller looked (a compaction lost its race).
    #[error("resource temporarily unavailable (EAGAIN)")]
    Again,
    /// The change would take its volume past its quota of bytes or files.
    #[error("disk quota exceeded (EDQUOT)")]
    DQuot,
    /// The cluster cannot take what is asked (a reservation).
    #[error("no space left on device (ENOSPC)")]
    NoSpc,
    /// The service cannot do it here (a reservation without a cluster to hold it).
    #[error("operation not supported (EOPNOTSUPP)")]
    OpNotSupp,
    /// The operation failed inside the service (it panicked: a bug); nothing changed.
    #[error("input/output error (EIO)")]
    Io,
    /// Chunks stored in a class the volume no longer writes (a re-encode began).
    #[error("stale file handle (ESTALE)")]
    Stale,
    /// A re-encode of the volume to another class is under way.
    #[error("device or resource busy (EBUSY)")]
    Busy,
}

impl Errno {
    /// The Linux errno value.
    pub fn code(self) -> i32 {
        match self {
            Errno::Perm => 1,
            Errno::NoEnt => 2,
            Errno::Exist => 17,
            Errno::NotDir => 20,
            Errno::IsDir => 21,
            Errno::Inval => 22,
            Errno::MLink => 31,
            Errno::NameTooLong => 36,
            Errno::NotEmpty => 39,
            Errno::NoData => 61,
            Errno::TooBig => 7,
            Errno::Range => 34,
            Errno::FBig => 27,
            Errno::XDev => 18,
            Errno::MFile => 24,
            Errno::Again => 11,
            Errno::DQuot => 122,
            Errno::NoSpc => 28,
            Errno::OpNotSupp => 95,
            Errno::Io => 5,
            Errno::Stale => 116,
            Errno::Busy => 16,
        }
    }
}
