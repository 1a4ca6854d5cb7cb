//! The FUSE side of a mount: fuser's handlers, each a thin shell that converts the
//! kernel's request, runs the [`Volume`] call on the mount's tokio runtime and replies.
//!
//! Inode numbers: FUSE's root is 1, the volume's root is whatever inode the namespace
//! gave it; the two numbers are swapped both ways (an involution), every other inode
//! keeps its number.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use hive_wire::net::meta::{AttrMessage, EntryMessage, kind, rename_mode, xattr_mode};
use tokio::runtime::Handle;

use super::volume::{Caller, FsError, Volume, errno, nanos, now_nanos};

/// How long the kernel may cache a name's lookup and a directory's or symlink's
/// attributes. Regular files' attributes are not cached (0): a file another mount
/// changed shows its new size at the next open (close-to-open consistency).
pub const ENTRY_TTL: Duration = Duration::from_secs(1);
/// Largest write the kernel sends in one request.
pub const MAX_WRITE: u32 = 1 << 20;
/// Largest read-ahead the kernel does on its own.
pub const MAX_READAHEAD: u32 = 1 << 20;
/// Block size reported to programs (`st_blksize`): the size they should write in.
pub const BLOCK_SIZE: u32 = 1 << 20;
/// Unit of `statfs` figures.
const STATFS_BLOCK: u32 = 4096;
/// Longest name.
const NAME_MAX: u32 = 255;
/// Directory listings held for open directory handles, and directories whose
/// attributes are kept while open.
pub const OPEN_DIRS: usize = 4096;

/// fallocate(2)'s mode bits (linux/falloc.h) the mount takes: mode 0 (grow and
/// reserve), punch hole (with keep size, as the kernel requires) and zero range (with
/// or without keep size).
const FALLOC_KEEP_SIZE: i32 = 0x01;
/// See [`FALLOC_KEEP_SIZE`].
const FALLOC_PUNCH_HOLE: i32 = 0x02;
/// See [`FALLOC_KEEP_SIZE`].
const FALLOC_ZERO_RANGE: i32 = 0x10;

/// A directory this mount has open: its opens, and its attributes as last seen. An
/// open directory removed (rmdir, or replaced by a rename) is gone from the namespace,
/// but fstat(2) on it must still work and show no links, as on a local filesystem.
struct OpenDir {
    handles: u32,
    attr: AttrMessage,
}

/// fuser's handlers over a [`Volume`].
pub struct HiveFs {
    volume: Arc<Volume>,
    runtime: Handle,
    dirs: Mutex<HashMap<u64, Arc<Vec<EntryMessage>>>>,
    /// By the namespace's inode; at most [`OPEN_DIRS`] (past it a removed open
    /// directory's fstat is ENOENT).
    open_dirs: Mutex<HashMap<u64, OpenDir>>,
    next_handle: AtomicU64,
}

impl HiveFs {
    /// Handlers over `volume`, run on `runtime`.
    pub fn new(volume: Arc<Volume>, runtime: Handle) -> Self {
        Self {
            volume,
            runtime,
            dirs: Mutex::new(HashMap::new()),
            open_dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        }
    }

    /// The namespace's inode for FUSE inode `ino` (and back: the map is its own inverse).
    fn real(&self, ino: u64) -> u64 {
        let root = self.volume.root();
        if ino == 1 {
            root
        } else if ino == root {
            1
        } else {
            ino
        }
    }

    fn run<T>(&self, f: impl Future<Output = Result<T, FsError>>) -> Result<T, Errno> {
        self.runtime.block_on(f).map_err(|e| {
            if let FsError::Io(why) = &e {
                eprintln!("hive mount: I/O error: {why}");
            }
            Errno::from_i32(e.code())
        })
    }

    fn attr(&self, a: &AttrMessage) -> FileAttr {
        let kind = file_type(a.kind);
        FileAttr {
            ino: INodeNo(self.real(a.ino)),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: time(a.atime),
            mtime: time(a.mtime),
            ctime: time(a.ctime),
            crtime: time(a.btime),
            kind,
            perm: a.mode & 0o7777,
            nlink: a.nlink,
            uid: a.uid,
            gid: a.gid,
            rdev: a.rdev,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }

    fn attr_ttl(a: &AttrMessage) -> Duration {
        if a.kind == kind::FILE {
            Duration::ZERO
        } else {
            ENTRY_TTL
        }
    }

    fn entry(&self, reply: ReplyEntry, result: Result<AttrMessage, Errno>) {
        match result {
            Ok(a) => reply.entry_with_ttls(
                &Self::attr_ttl(&a),
                &ENTRY_TTL,
                &self.attr(&a),
                Generation(0),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn empty(reply: ReplyEmpty, result: Result<(), Errno>) {
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn handle(&self) -> FileHandle {
        FileHandle(self.next_handle.fetch_add(1, Ordering::Relaxed))
    }

    fn open_dirs(&self) -> std::sync::MutexGuard<'_, HashMap<u64, OpenDir>> {
        self.open_dirs
            .lock()
            .expect("invariant: the open directory table lock is never poisoned")
    }

    /// The attributes of `ino` (the namespace's inode) as [`Volume::getattr`] has them;
    /// for a directory this mount has open that the namespace no longer has, the
    /// attributes last seen with no links.
    fn current_attr(&self, req: &Request, ino: u64) -> Result<AttrMessage, Errno> {
        let result = self.run(self.volume.getattr(caller(req), ino));
        let mut open = self.open_dirs();
        match (result, open.get_mut(&ino)) {
            (Ok(attr), Some(dir)) => {
                dir.attr = attr;
                Ok(attr)
            }
            (Err(e), Some(dir)) if e == Errno::ENOENT => Ok(AttrMessage {
                nlink: 0,
                ..dir.attr
            }),
            (result, _) => result,
        }
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        umask: 0,
    }
}

/// The caller of a create, mkdir or mknod: with POSIX ACLs on, the kernel leaves the
/// umask to the filesystem (a directory's default ACL overrides it).
fn creator(req: &Request, umask: u32) -> Caller {
    Caller {
        umask: u16::try_from(umask & 0o777).expect("invariant: masked to 9 bits"),
        ..caller(req)
    }
}

fn time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn time_or_now(t: TimeOrNow) -> i64 {
    match t {
        TimeOrNow::SpecificTime(t) => nanos(t),
        TimeOrNow::Now => now_nanos(),
    }
}

fn mode_bits(mode: u32) -> u16 {
    u16::try_from(mode & 0o7777).expect("invariant: masked to 12 bits")
}

/// The file type bits of `st_mode`.
const S_IFMT: u32 = 0o170_000;
/// A regular file.
const S_IFREG: u32 = 0o100_000;
/// A FIFO.
const S_IFIFO: u32 = 0o010_000;
/// A character device.
const S_IFCHR: u32 = 0o020_000;
/// A block device.
const S_IFBLK: u32 = 0o060_000;
/// A socket.
const S_IFSOCK: u32 = 0o140_000;

/// The FUSE file type of a namespace kind.
fn file_type(code: u8) -> FileType {
    match code {
        kind::DIR => FileType::Directory,
        kind::SYMLINK => FileType::Symlink,
        kind::FIFO => FileType::NamedPipe,
        kind::SOCKET => FileType::Socket,
        kind::CHAR_DEV => FileType::CharDevice,
        kind::BLOCK_DEV => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

impl Filesystem for HiveFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each is a wish: an older kernel without it still works, only slower.
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_READAHEAD);
        // The kernel enforces POSIX ACLs kept in system.posix_acl_* xattrs; the
        // namespace keeps them in step with the mode and hands default ACLs down.
        // With ACLs the umask is the namespace's to apply (FUSE_DONT_MASK): a default
        // ACL replaces it, which the kernel cannot know.
        let acls = InitFlags::FUSE_POSIX_ACL | InitFlags::FUSE_DONT_MASK;
        // File handles (name_to_handle_at, open_by_handle_at, an NFS re-export): a
        // handle names the inode, which the namespace never reuses, and the kernel
        // finds an inode it no longer caches by looking up "." in it (and a
        // directory's parent by ".."), which the namespace answers.
        if config
            .add_capabilities(InitFlags::FUSE_EXPORT_SUPPORT)
            .is_err()
        {
            eprintln!(
                "hive mount: this kernel offers no FUSE file handles; open_by_handle_at fails"
            );
        }
        if config.add_capabilities(acls).is_err() {
            eprintln!(
                "hive mount: this kernel offers no POSIX ACLs on FUSE; ACLs are not enforced"
            );
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let parent = self.real(parent.0);
        let result = self.run(self.volume.lookup(caller(req), parent, name.as_bytes()));
        self.entry(reply, result);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.current_attr(req, self.real(ino.0)) {
            Ok(a) => reply.attr(&Self::attr_ttl(&a), &self.attr(&a)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = self.run(self.volume.setattr(
            caller(req),
            self.real(ino.0),
            mode.map(mode_bits),
            uid,
            gid,
            size,
            atime.map(time_or_now),
            mtime.map(time_or_now),
        ));
        match result {
            Ok(a) => reply.attr(&Self::attr_ttl(&a), &self.attr(&a)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.run(self.volume.readlink(caller(req), self.real(ino.0))) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = match mode & S_IFMT {
            0 | S_IFREG => kind::FILE,
            S_IFIFO => kind::FIFO,
            S_IFSOCK => kind::SOCKET,
            S_IFCHR => kind::CHAR_DEV,
            S_IFBLK => kind::BLOCK_DEV,
            _ => {
                reply.error(Errno::from_i32(errno::EINVAL));
                return;
            }
        };
        let parent = self.real(parent.0);
        let result = self.run(self.volume.mknod(
            creator(req, umask),
            parent,
            name.as_bytes(),
            kind,
            mode_bits(mode),
            rdev,
        ));
        self.entry(reply, result);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let parent = self.real(parent.0);
        let result = self.run(self.volume.mkdir(
            creator(req, umask),
            parent,
            name.as_bytes(),
            mode_bits(mode),
        ));
        self.entry(reply, result);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let parent = self.real(parent.0);
        let result = self.run(self.volume.unlink(caller(req), parent, name.as_bytes()));
        Self::empty(reply, result);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let parent = self.real(parent.0);
        let result = self.run(self.volume.rmdir(caller(req), parent, name.as_bytes()));
        Self::empty(reply, result);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let parent = self.real(parent.0);
        let result = self.run(self.volume.symlink(
            caller(req),
            parent,
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
        ));
        self.entry(reply, result);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mode = if flags.is_empty() {
            rename_mode::REPLACE
        } else if flags == RenameFlags::RENAME_NOREPLACE {
            rename_mode::NOREPLACE
        } else if flags == RenameFlags::RENAME_EXCHANGE {
            rename_mode::EXCHANGE
        } else {
            // RENAME_WHITEOUT (for overlay filesystems) is not offered.
            reply.error(Errno::from_i32(errno::EINVAL));
            return;
        };
        let result = self.run(self.volume.rename(
            caller(req),
            (self.real(parent.0), name.as_bytes()),
            (self.real(newparent.0), newname.as_bytes()),
            mode,
        ));
        Self::empty(reply, result);
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = self.run(self.volume.link(
            caller(req),
            self.real(ino.0),
            self.real(newparent.0),
            newname.as_bytes(),
        ));
        self.entry(reply, result);
    }

    fn open(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.run(self.volume.open(caller(req), self.real(ino.0))) {
            Ok(()) => reply.opened(self.handle(), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.run(self.volume.read(self.real(ino.0), offset, size)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let len = u32::try_from(data.len()).expect("invariant: FUSE writes are below 4 GiB");
        match self.run(self.volume.write(self.real(ino.0), offset, data)) {
            Ok(()) => reply.written(len),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let result = self.run(self.volume.flush(self.real(ino.0)));
        Self::empty(reply, result);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.run(self.volume.release(self.real(ino.0)));
        Self::empty(reply, result);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.run(self.volume.flush(self.real(ino.0)));
        Self::empty(reply, result);
    }

    /// Keeps the directory's attributes while it is open (one GetAttr per opendir).
    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let ino = self.real(ino.0);
        let attr = match self.current_attr(req, ino) {
            Ok(attr) => attr,
            Err(e) => {
                reply.error(e);
                return;
            }
        };
        let mut open = self.open_dirs();
        if let Some(dir) = open.get_mut(&ino) {
            dir.handles += 1;
        } else if open.len() < OPEN_DIRS {
            open.insert(ino, OpenDir { handles: 1, attr });
        }
        drop(open);
        reply.opened(self.handle(), FopenFlags::empty());
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = self
            .dirs
            .lock()
            .expect("invariant: the directory table lock is never poisoned")
            .get(&fh.0)
            .cloned();
        let entries = match listed {
            Some(entries) if offset > 0 => entries,
            _ => match self.run(self.volume.readdir(caller(req), self.real(ino.0))) {
                Ok(entries) => {
                    let entries = Arc::new(entries);
                    let mut dirs = self
                        .dirs
                        .lock()
                        .expect("invariant: the directory table lock is never poisoned");
                    if dirs.len() < OPEN_DIRS {
                        dirs.insert(fh.0, entries.clone());
                    }
                    entries
                }
                Err(e) => {
                    reply.error(e);
                    return;
                }
            },
        };
        let dots = [
            (ino.0, FileType::Directory, b".".as_slice()),
            (ino.0, FileType::Directory, b".."),
        ];
        let all = dots.into_iter().chain(
            entries
                .iter()
                .map(|e| (self.real(e.ino), file_type(e.kind), e.name.as_slice())),
        );
        for (i, (ino, kind, name)) in all
            .enumerate()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs
            .lock()
            .expect("invariant: the directory table lock is never poisoned")
            .remove(&fh.0);
        let ino = self.real(ino.0);
        let mut open = self.open_dirs();
        if let Some(dir) = open.get_mut(&ino) {
            dir.handles -= 1;
            if dir.handles == 0 {
                open.remove(&ino);
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.run(self.volume.statfs()) {
            Ok(fs) => {
                let block = u64::from(STATFS_BLOCK);
                reply.statfs(
                    fs.total / block,
                    fs.free / block,
                    fs.free / block,
                    fs.files,
                    fs.free_files,
                    STATFS_BLOCK,
                    NAME_MAX,
                    STATFS_BLOCK,
                );
            }
            Err(e) => reply.error(e),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mode = match flags {
            0 => xattr_mode::EITHER,
            1 => xattr_mode::CREATE,
            2 => xattr_mode::REPLACE,
            _ => {
                reply.error(Errno::from_i32(errno::EINVAL));
                return;
            }
        };
        let result = self.run(self.volume.setxattr(
            caller(req),
            self.real(ino.0),
            name.as_bytes(),
            value,
            mode,
        ));
        Self::empty(reply, result);
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let result = self.run(
            self.volume
                .getxattr(caller(req), self.real(ino.0), name.as_bytes()),
        );
        sized(reply, size, result);
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let result = self
            .run(self.volume.listxattr(caller(req), self.real(ino.0)))
            .map(|names| {
                let mut out = Vec::new();
                for name in names {
                    out.extend_from_slice(&name);
                    out.push(0);
                }
                out
            });
        sized(reply, size, result);
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.run(self.volume.removexattr(
            caller(req),
            self.real(ino.0),
            name.as_bytes(),
        ));
        Self::empty(reply, result);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // The kernel checks permissions itself (default_permissions).
        reply.ok();
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let Some(end) = offset.checked_add(length) else {
            reply.error(Errno::from_i32(errno::EFBIG));
            return;
        };
        let (ino, who) = (self.real(ino.0), caller(req));
        let volume = &self.volume;
        let result = match mode {
            0 => self.run(volume.allocate(who, ino, end)),
            m if m == FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE => {
                self.run(volume.punch(who, ino, offset, length))
            }
            // Zeroed: punched, then grown (and the growth reserved) unless it keeps
            // the size. The zeroed range inside the file is not reserved.
            FALLOC_ZERO_RANGE => self.run(async {
                volume.punch(who, ino, offset, length).await?;
                volume.allocate(who, ino, end).await
            }),
            m if m == FALLOC_ZERO_RANGE | FALLOC_KEEP_SIZE => {
                self.run(volume.punch(who, ino, offset, length))
            }
            // Keeping the size alone (room reserved past the end) and the rest.
            _ => Err(Errno::from_i32(errno::EOPNOTSUPP)),
        };
        Self::empty(reply, result);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let parent = self.real(parent.0);
        match self.run(self.volume.create(
            creator(req, umask),
            parent,
            name.as_bytes(),
            mode_bits(mode),
        )) {
            Ok(a) => reply.created(
                &Self::attr_ttl(&a),
                &self.attr(&a),
                Generation(0),
                self.handle(),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}

/// An xattr answer: its size when asked with size 0, ERANGE when it does not fit.
fn sized(reply: ReplyXattr, size: u32, result: Result<Vec<u8>, Errno>) {
    match result {
        Ok(value) => {
            let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
            if size == 0 {
                reply.size(len);
            } else if len > size {
                reply.error(Errno::from_i32(errno::ERANGE));
            } else {
                reply.data(&value);
            }
        }
        Err(e) => reply.error(e),
    }
}
