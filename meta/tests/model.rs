//! Model test: random sequences of namespace operations applied to the fjall-backed
//! namespace and to an in-memory model written separately from it. Every operation
//! must give the same result or the same errno, and after every operation the two
//! trees must hold the same inodes, attributes and entries. Failing sequences are
//! shrunk and replayable from the proptest seed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use hive_meta::acl::{self, Acl};
use hive_meta::{
    Attr, Census, Context, DEFAULT_VOLUME, Durability, EXTENT_PAGE_SPAN, Errno, Extent, FileType,
    InodeId, Logged, MAX_EXTENTS_PER_COMMIT, MAX_INLINE, MAX_K, MAX_LINKS, MAX_M, MAX_NAME,
    MAX_SYMLINK, MAX_VOLUME_NAME, MAX_XATTR_NAME, MAX_XATTR_VALUE, Namespace, Nanos, Once, Op,
    Outcome, RenameMode, Usage, VolumeRecord, XattrMode,
};
use proptest::prelude::*;

/// One inode of the model.
#[derive(Clone, Debug)]
struct Node {
    attr: Attr,
    parent: u64,
    entries: BTreeMap<Vec<u8>, u64>,
    target: Vec<u8>,
    extents: Vec<Extent>,
    inline: Vec<u8>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    volume: u64,
    opens: u32,
    /// Bytes reserved by fallocate and not yet written.
    reserve: u64,
}

impl Node {
    fn new(attr: Attr, parent: u64, target: &[u8], volume: u64) -> Self {
        Self {
            attr,
            parent,
            volume,
            opens: 0,
            reserve: 0,
            entries: BTreeMap::new(),
            target: target.to_vec(),
            extents: Vec::new(),
            inline: Vec::new(),
            xattrs: BTreeMap::new(),
        }
    }

    fn file(&mut self) -> Result<&mut Self, Errno> {
        match self.attr.kind {
            FileType::File => Ok(self),
            FileType::Dir => Err(Errno::IsDir),
            _ => Err(Errno::Inval),
        }
    }
}

/// Lays `n` over `extents`: every extent it touches keeps only its parts outside `n`.
fn lay(extents: &mut Vec<Extent>, n: Extent) {
    punch(extents, n.offset, n.end());
    extents.push(n);
    extents.sort_by_key(|e| e.offset);
}

/// Cuts `[from, to)` out of `extents`.
fn punch(extents: &mut Vec<Extent>, from: u64, to: u64) {
    let mut out = Vec::with_capacity(extents.len() + 2);
    for e in extents.drain(..) {
        if e.end() <= from || e.offset >= to {
            out.push(e);
            continue;
        }
        if e.offset < from {
            out.push(Extent {
                len: (from - e.offset) as u32,
                ..e
            });
        }
        if e.end() > to {
            let skipped = (to - e.offset) as u32;
            out.push(Extent {
                offset: to,
                len: (e.end() - to) as u32,
                chunk: e.chunk,
                chunk_offset: e.chunk_offset + skipped,
            });
        }
    }
    *extents = out;
}

/// The namespace as plain maps.
#[derive(Clone)]
struct Model {
    nodes: BTreeMap<u64, Node>,
    next: u64,
    volumes: BTreeMap<Vec<u8>, VolumeRecord>,
    /// Client sessions: when each expires, and the opens it holds per inode.
    sessions: BTreeMap<u64, (i64, BTreeMap<u64, u32>)>,
    /// Each session's ttl.
    ttls: BTreeMap<u64, i64>,
    /// Objects: id to length.
    objects: BTreeMap<[u8; 32], u64>,
    /// Quota limits by volume root: most bytes, most inodes (0: none).
    quotas: BTreeMap<u64, (u64, u64)>,
    /// The cluster map kept: its epoch and bytes.
    map: Option<(u64, Vec<u8>)>,
    /// Join tokens used, with their expiry (the model's clock never reaches one).
    used_tokens: BTreeMap<[u8; 16], u64>,
    /// The last id given to each role.
    enrolled: BTreeMap<u8, u64>,
}

fn valid(name: &[u8]) -> Result<(), Errno> {
    if name.len() > MAX_NAME {
        Err(Errno::NameTooLong)
    } else if name.is_empty()
        || name == b"."
        || name == b".."
        || name.iter().any(|b| *b == b'/' || *b == 0)
    {
        Err(Errno::Inval)
    } else {
        Ok(())
    }
}

/// The default volume's class in these tests.
const DEFAULT_CLASS: (u8, u8) = (hive_meta::DEFAULT_K, hive_meta::DEFAULT_M);

impl Model {
    /// ESTALE if file `ino` lies in a volume that writes another class than `class`
    /// (what is not a file fails its own checks later).
    fn writes_in(&self, ino: InodeId, class: (u8, u8)) -> Result<(), Errno> {
        let Some(node) = self.nodes.get(&ino.0) else {
            return Ok(());
        };
        if node.attr.kind != FileType::File {
            return Ok(());
        }
        match self.volumes.values().find(|v| v.root.0 == node.volume) {
            Some(v) if (v.k, v.m) != class => Err(Errno::Stale),
            Some(_) => Ok(()),
            None => Err(Errno::NoEnt),
        }
    }

    fn new() -> Self {
        let root = Node::new(Attr::root(), 1, b"", 1);
        let default = VolumeRecord {
            root: InodeId::ROOT,
            k: 4,
            m: 2,
            from: None,
            uid: 0,
            gid: 0,
            created: Nanos(0),
        };
        Self {
            nodes: [(1, root)].into(),
            next: 2,
            volumes: [(DEFAULT_VOLUME.to_vec(), default)].into(),
            sessions: BTreeMap::new(),
            ttls: BTreeMap::new(),
            objects: BTreeMap::new(),
            quotas: BTreeMap::new(),
            map: None,
            used_tokens: BTreeMap::new(),
            enrolled: BTreeMap::new(),
        }
    }

    /// What volume `root` holds, with its limits, as the namespace counts it.
    fn usage(&self, root: u64) -> Usage {
        let (max_bytes, max_files) = self.quotas.get(&root).copied().unwrap_or_default();
        let mut usage = Usage {
            max_bytes,
            max_files,
            ..Usage::default()
        };
        for node in self.nodes.values().filter(|n| n.volume == root) {
            usage.files += 1;
            if matches!(node.attr.kind, FileType::File | FileType::Symlink) {
                usage.bytes += node.attr.size;
            }
        }
        usage
    }

    /// [`Model::apply`], then the quotas: a change that takes a volume past a limit
    /// in a direction it grew in is undone and fails with EDQUOT.
    fn apply_with_quotas(&mut self, ctx: Context, op: &Op) -> Result<Outcome, Errno> {
        let before = self.clone();
        let outcome = self.apply(ctx, op)?;
        let roots: Vec<u64> = before.volumes.values().map(|v| v.root.0).collect();
        for root in roots {
            if self.nodes.contains_key(&root) && before.usage(root).exceeded_by(&self.usage(root)) {
                *self = before;
                return Err(Errno::DQuot);
            }
        }
        // A deleted volume's limits go with it.
        let nodes = &self.nodes;
        self.quotas.retain(|root, _| nodes.contains_key(root));
        Ok(outcome)
    }

    /// Takes `n` opens of `ino` back (if it still exists); an orphan goes with its last.
    fn release_opens(&mut self, ino: u64, n: u32) {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.opens = node.opens.saturating_sub(n);
        if node.opens == 0 && node.attr.nlink == 0 {
            self.nodes.remove(&ino);
        }
    }

    fn end_session(&mut self, session: u64) {
        self.ttls.remove(&session);
        let (_, held) = self
            .sessions
            .remove(&session)
            .expect("model: session exists");
        for (ino, n) in held {
            self.release_opens(ino, n);
        }
    }

    fn dir(&self, ino: InodeId) -> Result<&Node, Errno> {
        let node = self.nodes.get(&ino.0).ok_or(Errno::NoEnt)?;
        if node.attr.kind == FileType::Dir {
            Ok(node)
        } else {
            Err(Errno::NotDir)
        }
    }

    fn touch(&mut self, dir: u64, now: Nanos) {
        let d = self.nodes.get_mut(&dir).expect("model: directory exists");
        d.attr.mtime = now;
        d.attr.ctime = now;
    }

    fn make(
        &mut self,
        ctx: Context,
        parent: InodeId,
        name: &[u8],
        kind: FileType,
        mode: u16,
        target: &[u8],
    ) -> Result<Outcome, Errno> {
        valid(name)?;
        let dir = self.dir(parent)?;
        if dir.entries.contains_key(name) {
            return Err(Errno::Exist);
        }
        if kind == FileType::Dir && dir.attr.nlink >= MAX_LINKS {
            return Err(Errno::MLink);
        }
        // The parent's default ACL, else the umask, decides the mode.
        let default = match dir.xattrs.get(acl::DEFAULT) {
            Some(value) if kind != FileType::Symlink => {
                Some(Acl::parse(value).expect("model: only valid ACLs are kept"))
            }
            _ => None,
        };
        let (dir_mode, dir_gid) = (dir.attr.mode, dir.attr.gid);
        let ino = self.next;
        self.next += 1;
        let mut acls = BTreeMap::new();
        let mode = match &default {
            Some(default) => {
                let (access, mode) = default.inherit(mode & 0o7777);
                if !access.is_minimal() {
                    acls.insert(acl::ACCESS.to_vec(), access.encode());
                }
                if kind == FileType::Dir {
                    acls.insert(acl::DEFAULT.to_vec(), default.encode());
                }
                mode
            }
            None if kind == FileType::Symlink => mode,
            None => mode & 0o7777 & !ctx.umask,
        };
        // A set-group-ID directory hands down its group, and to a directory its bit.
        let (mode, gid) = if dir_mode & 0o2000 != 0 {
            let bit = if kind == FileType::Dir { 0o2000 } else { 0 };
            (mode | bit, dir_gid)
        } else {
            (mode, ctx.gid)
        };
        let attr = Attr {
            ino: InodeId(ino),
            kind,
            mode: mode & 0o7777,
            uid: ctx.uid,
            gid,
            size: target.len() as u64,
            nlink: if kind == FileType::Dir { 2 } else { 1 },
            atime: ctx.now,
            mtime: ctx.now,
            ctime: ctx.now,
            btime: ctx.now,
            rdev: 0,
        };
        let up = if kind == FileType::Dir { parent.0 } else { 0 };
        let volume = self.nodes[&parent.0].volume;
        let mut node = Node::new(attr, up, target, volume);
        node.xattrs = acls;
        self.nodes.insert(ino, node);
        let dir = self.nodes.get_mut(&parent.0).expect("checked");
        dir.entries.insert(name.to_vec(), ino);
        if kind == FileType::Dir {
            dir.attr.nlink += 1;
        }
        self.touch(parent.0, ctx.now);
        Ok(Outcome::Attr(attr))
    }

    fn open(&mut self, ino: InodeId, session: u64) -> Result<Outcome, Errno> {
        let node = self.nodes.get_mut(&ino.0).ok_or(Errno::NoEnt)?.file()?;
        if session != 0 && !self.sessions.contains_key(&session) {
            return Err(Errno::Inval);
        }
        node.opens += 1;
        let attr = node.attr;
        if session != 0 {
            let held = &mut self.sessions.get_mut(&session).expect("checked").1;
            *held.entry(ino.0).or_default() += 1;
        }
        Ok(Outcome::Attr(attr))
    }

    fn release(&mut self, ino: u64, now: Nanos) {
        let node = self
            .nodes
            .get_mut(&ino)
            .expect("model: linked inode exists");
        node.attr.nlink -= 1;
        if node.attr.nlink == 0 && node.opens == 0 {
            self.nodes.remove(&ino);
        } else {
            node.attr.ctime = now;
        }
    }

    fn within(&self, mut dir: u64, ancestor: u64) -> bool {
        loop {
            if dir == ancestor {
                return true;
            }
            let up = self.nodes[&dir].parent;
            if up == dir {
                return false;
            }
            dir = up;
        }
    }

    fn apply(&mut self, ctx: Context, op: &Op) -> Result<Outcome, Errno> {
        match op {
            Op::Mkdir { parent, name, mode } => {
                self.make(ctx, *parent, name, FileType::Dir, *mode, b"")
            }
            Op::Create { parent, name, mode } => {
                self.make(ctx, *parent, name, FileType::File, *mode, b"")
            }
            Op::Mknod {
                parent,
                name,
                kind,
                mode,
                rdev,
            } => {
                if !kind.is_special() {
                    return Err(Errno::Inval);
                }
                let rdev = if matches!(kind, FileType::CharDev | FileType::BlockDev) {
                    *rdev
                } else {
                    0
                };
                let Outcome::Attr(mut attr) = self.make(ctx, *parent, name, *kind, *mode, b"")?
                else {
                    unreachable!("make answers attributes");
                };
                attr.rdev = rdev;
                self.nodes
                    .get_mut(&attr.ino.0)
                    .expect("model: just made")
                    .attr
                    .rdev = rdev;
                Ok(Outcome::Attr(attr))
            }
            Op::Symlink {
                parent,
                name,
                target,
            } => {
                if target.is_empty() {
                    return Err(Errno::NoEnt);
                }
                if target.len() > MAX_SYMLINK || target.contains(&0) {
                    return Err(Errno::NameTooLong);
                }
                self.make(ctx, *parent, name, FileType::Symlink, 0o777, target)
            }
            Op::Link { ino, parent, name } => {
                let node = self.nodes.get(&ino.0).ok_or(Errno::NoEnt)?;
                if node.attr.kind == FileType::Dir {
                    return Err(Errno::Perm);
                }
                let (links, volume) = (node.attr.nlink, node.volume);
                valid(name)?;
                let dir = self.dir(*parent)?;
                if dir.volume != volume {
                    return Err(Errno::XDev);
                }
                if dir.entries.contains_key(name) {
                    return Err(Errno::Exist);
                }
                if links >= MAX_LINKS {
                    return Err(Errno::MLink);
                }
                self.nodes
                    .get_mut(&parent.0)
                    .expect("checked")
                    .entries
                    .insert(name.clone(), ino.0);
                self.touch(parent.0, ctx.now);
                let node = self.nodes.get_mut(&ino.0).expect("checked");
                node.attr.nlink += 1;
                node.attr.ctime = ctx.now;
                Ok(Outcome::Attr(node.attr))
            }
            Op::Unlink { parent, name } => {
                valid(name)?;
                let child = *self.dir(*parent)?.entries.get(name).ok_or(Errno::NoEnt)?;
                if self.nodes[&child].attr.kind == FileType::Dir {
                    return Err(Errno::IsDir);
                }
                self.nodes
                    .get_mut(&parent.0)
                    .expect("checked")
                    .entries
                    .remove(name);
                self.release(child, ctx.now);
                self.touch(parent.0, ctx.now);
                Ok(Outcome::Done)
            }
            Op::Rmdir { parent, name } => {
                valid(name)?;
                let child = *self.dir(*parent)?.entries.get(name).ok_or(Errno::NoEnt)?;
                let node = &self.nodes[&child];
                if node.attr.kind != FileType::Dir {
                    return Err(Errno::NotDir);
                }
                if !node.entries.is_empty() {
                    return Err(Errno::NotEmpty);
                }
                self.nodes.remove(&child);
                let dir = self.nodes.get_mut(&parent.0).expect("checked");
                dir.entries.remove(name);
                dir.attr.nlink -= 1;
                self.touch(parent.0, ctx.now);
                Ok(Outcome::Done)
            }
            Op::Rename {
                from,
                from_name,
                to,
                to_name,
                mode,
            } => match mode {
                RenameMode::Exchange => self.exchange(ctx, from.0, from_name, to.0, to_name),
                RenameMode::NoReplace => self.rename(ctx, from.0, from_name, to.0, to_name, false),
                RenameMode::Replace => self.rename(ctx, from.0, from_name, to.0, to_name, true),
            },
            Op::SetAttr {
                ino,
                mode,
                uid,
                gid,
                size,
                atime,
                mtime,
            } => {
                let node = self.nodes.get_mut(&ino.0).ok_or(Errno::NoEnt)?;
                if let Some(size) = size {
                    match node.attr.kind {
                        FileType::Dir => return Err(Errno::IsDir),
                        kind if kind != FileType::File => return Err(Errno::Inval),
                        _ => {
                            node.attr.size = *size;
                            node.attr.mtime = ctx.now;
                            node.reserve = node.reserve.min(*size);
                            node.extents.retain(|e| e.offset < *size);
                            for e in &mut node.extents {
                                e.len = (e.end().min(*size) - e.offset) as u32;
                            }
                            node.inline.truncate(*size as usize);
                        }
                    }
                }
                if let Some(mode) = mode
                    && let Some(value) = node.xattrs.get_mut(acl::ACCESS)
                {
                    let access = Acl::parse(value).expect("model: only valid ACLs are kept");
                    *value = access.chmod(mode & 0o7777).encode();
                }
                let a = &mut node.attr;
                a.mode = mode.map_or(a.mode, |m| m & 0o7777);
                a.uid = uid.unwrap_or(a.uid);
                a.gid = gid.unwrap_or(a.gid);
                a.atime = atime.unwrap_or(a.atime);
                a.mtime = mtime.unwrap_or(a.mtime);
                a.ctime = ctx.now;
                Ok(Outcome::Attr(*a))
            }
            Op::CommitExtents {
                ino,
                extents,
                class,
            } => {
                self.writes_in(*ino, *class)?;
                let node = self.nodes.get_mut(&ino.0).ok_or(Errno::NoEnt)?.file()?;
                if extents.len() > MAX_EXTENTS_PER_COMMIT {
                    return Err(Errno::TooBig);
                }
                for (i, a) in extents.iter().enumerate() {
                    let overlaps = extents[i + 1..]
                        .iter()
                        .any(|b| a.offset < b.end() && b.offset < a.end());
                    if a.len == 0 || overlaps {
                        return Err(Errno::Inval);
                    }
                }
                for e in extents {
                    lay(&mut node.extents, *e);
                    node.attr.size = node.attr.size.max(e.end());
                    node.reserve = node.reserve.saturating_sub(u64::from(e.len));
                }
                node.inline.clear();
                node.attr.mtime = ctx.now;
                node.attr.ctime = ctx.now;
                Ok(Outcome::Attr(node.attr))
            }
            Op::Allocate { ino, end, room } => {
                let held: u64 = self.nodes.values().map(|n| n.reserve).sum();
                let node = self.nodes.get_mut(&ino.0).ok_or(Errno::NoEnt)?.file()?;
                if *end > node.attr.size {
                    let grow = end - node.attr.size;
                    if grow > room.saturating_sub(held) {
                        return Err(Errno::NoSpc);
                    }
                    node.reserve += grow;
                    node.attr.size = *end;
                    node.attr.mtime = ctx.now;
                    node.attr.ctime = ctx.now;
                }
                Ok(Outcome::Attr(node.attr))
            }
            Op::ReplaceExtents {
                ino,
                ctime,
                extents,
                class,
            } => {
                self.writes_in(*ino, *class)?;
                let node = self.nodes.get_mut(&ino.0).ok_or(Errno::NoEnt)?.file()?;
                if node.attr.ctime != *ctime {
                    return Err(Errno::Again);
                }
                if extents.len() > MAX_EXTENTS_PER_COMMIT {
                    return Err(Errno::TooBig);
                }
                for (i, a) in extents.iter().enumerate() {
                    let overlaps = extents[i + 1..]
                        .iter()
                        .any(|b| a.offset < b.end() && b.offset < a.end());
                    if a.len == 0 || overlaps || a.end() > node.attr.size {
                        return Err(Errno::Inval);
                    }
                }
                if !node.inline.is_empty() {
                    return Err(Errno::Inval);
                }
                let mut sorted = extents.clone();
                sorted.sort_by_key(|e| e.offset);
                node.extents = sorted;
                Ok(Outcome::Attr(node.attr))
            }
            Op::WriteInline { ino, offset, data } => {
                let node = self.nodes.get_mut(&ino.0).ok_or(Errno::NoEnt)?.file()?;
                let end = offset + data.len() as u64;
                if end > MAX_INLINE {
                    return Err(Errno::FBig);
                }
                if !node.extents.is_empty() {
                    return Err(Errno::Inval);
                }
                if (node.inline.len() as u64) < end {
                    node.inline.resize(end as usize, 0);
                }
                node.inline[*offset as usize..end as usize].copy_from_slice(data);
                node.attr.size = node.attr.size.max(end);
                node.attr.mtime = ctx.now;
                node.attr.ctime = ctx.now;
                Ok(Outcome::Attr(node.attr))
            }
            Op::SetXattr {
                ino,
                name,
                value,
                mode,
            } => {
                let node = self.nodes.get_mut(&ino.0).ok_or(Errno::NoEnt)?;
                if name.is_empty() || name.contains(&0) {
                    return Err(Errno::Inval);
                }
                if name.len() > MAX_XATTR_NAME {
                    return Err(Errno::Range);
                }
                if value.len() > MAX_XATTR_VALUE {
                    return Err(Errno::TooBig);
                }
                let exists = node.xattrs.contains_key(name);
                if *mode == XattrMode::Create && exists {
                    return Err(Errno::Exist);
                }
                if *mode == XattrMode::Replace && !exists {
                    return Err(Errno::NoData);
                }
                let mut value = value.clone();
                if name == acl::ACCESS || name == acl::DEFAULT {
                    let parsed = Acl::parse(&value)?;
                    if name == acl::DEFAULT && node.attr.kind != FileType::Dir {
                        return Err(Errno::Inval);
                    }
                    if name == acl::ACCESS {
                        node.attr.mode = (node.attr.mode & !0o777) | parsed.mode_bits();
                        if parsed.is_minimal() {
                            node.xattrs.remove(name);
                            node.attr.ctime = ctx.now;
                            return Ok(Outcome::Done);
                        }
                    }
                    value = parsed.encode();
                }
                node.xattrs.insert(name.clone(), value);
                node.attr.ctime = ctx.now;
                Ok(Outcome::Done)
            }
            Op::CreateVolume { name, k, m } => {
                valid(name)?;
                if name.len() > MAX_VOLUME_NAME {
                    return Err(Errno::NameTooLong);
                }
                if *k == 0 || *k > MAX_K || *m > MAX_M {
                    return Err(Errno::Inval);
                }
                if self.volumes.contains_key(name) {
                    return Err(Errno::Exist);
                }
                let root = self.next;
                self.next += 1;
                let attr = Attr {
                    ino: InodeId(root),
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
                };
                self.nodes.insert(root, Node::new(attr, root, b"", root));
                let record = VolumeRecord {
                    root: InodeId(root),
                    k: *k,
                    m: *m,
                    from: None,
                    uid: ctx.uid,
                    gid: ctx.gid,
                    created: ctx.now,
                };
                self.volumes.insert(name.clone(), record);
                Ok(Outcome::Attr(attr))
            }
            Op::SetVolumeClass { name, k, m } => {
                let volume = self.volumes.get_mut(name).ok_or(Errno::NoEnt)?;
                if !(1..=MAX_K).contains(k) || *m > MAX_M {
                    return Err(Errno::Inval);
                }
                if (volume.k, volume.m) != (*k, *m) {
                    if volume.from.is_some() {
                        return Err(Errno::Busy);
                    }
                    volume.from = Some((volume.k, volume.m));
                    (volume.k, volume.m) = (*k, *m);
                }
                Ok(Outcome::Done)
            }
            Op::FinishVolumeClass { name, k, m } => {
                let volume = self.volumes.get_mut(name).ok_or(Errno::NoEnt)?;
                if (volume.k, volume.m) != (*k, *m) {
                    return Err(Errno::Stale);
                }
                volume.from = None;
                Ok(Outcome::Done)
            }
            Op::DeleteVolume { name, force } => {
                valid(name)?;
                let root = self.volumes.get(name).ok_or(Errno::NoEnt)?.root.0;
                if name.as_slice() == DEFAULT_VOLUME {
                    return Err(Errno::Perm);
                }
                if !force && !self.nodes[&root].entries.is_empty() {
                    return Err(Errno::NotEmpty);
                }
                self.nodes.retain(|_, n| n.volume != root);
                self.volumes.remove(name);
                Ok(Outcome::Done)
            }
            Op::Open { ino, session } => self.open(*ino, *session),
            Op::CreateOpen {
                parent,
                name,
                mode,
                session,
            } => {
                // One transaction: a refused open leaves nothing made.
                let before = self.clone();
                let Outcome::Attr(made) =
                    self.make(ctx, *parent, name, FileType::File, *mode, b"")?
                else {
                    unreachable!("a make answers its inode's attributes");
                };
                self.open(made.ino, *session)
                    .inspect_err(|_| *self = before)
            }
            Op::Release { ino, session } => {
                let node = self.nodes.get_mut(&ino.0).ok_or(Errno::NoEnt)?.file()?;
                if node.opens == 0 {
                    return Err(Errno::Inval);
                }
                if *session != 0 {
                    let held = self
                        .sessions
                        .get_mut(session)
                        .and_then(|(_, held)| held.get_mut(&ino.0))
                        .ok_or(Errno::Inval)?;
                    *held -= 1;
                    if *held == 0 {
                        self.sessions
                            .get_mut(session)
                            .expect("checked")
                            .1
                            .remove(&ino.0);
                    }
                }
                self.release_opens(ino.0, 1);
                Ok(Outcome::Done)
            }
            Op::RenewSession {
                session,
                ttl,
                start,
            } => {
                if *session == 0 || ttl.0 < 0 {
                    return Err(Errno::Inval);
                }
                if !start && !self.sessions.contains_key(session) {
                    return Err(Errno::NoEnt);
                }
                let until = ctx.now.0.saturating_add(ttl.0);
                self.sessions.entry(*session).or_default().0 = until;
                self.ttls.insert(*session, ttl.0);
                Ok(Outcome::Done)
            }
            Op::ResumeSessions => {
                for (session, (until, _)) in &mut self.sessions {
                    let ttl = self.ttls[session];
                    *until = (*until).max(ctx.now.0.saturating_add(ttl));
                }
                Ok(Outcome::Done)
            }
            Op::Punch { ino, offset, len } => {
                let node = self.nodes.get_mut(&ino.0).ok_or(Errno::NoEnt)?.file()?;
                if *len == 0 {
                    return Err(Errno::Inval);
                }
                let end = offset.saturating_add(*len).min(node.attr.size);
                if *offset < end {
                    punch(&mut node.extents, *offset, end);
                    let to = (end as usize).min(node.inline.len());
                    if (*offset as usize) < to {
                        node.inline[*offset as usize..to].fill(0);
                    }
                }
                node.attr.mtime = ctx.now;
                node.attr.ctime = ctx.now;
                Ok(Outcome::Attr(node.attr))
            }
            Op::Accessed { ino, atime } => {
                let node = self.nodes.get_mut(&ino.0).ok_or(Errno::NoEnt)?;
                node.attr.atime = node.attr.atime.max(*atime);
                Ok(Outcome::Attr(node.attr))
            }
            Op::EndSession { session } => {
                if !self.sessions.contains_key(session) {
                    return Err(Errno::NoEnt);
                }
                self.end_session(*session);
                Ok(Outcome::Done)
            }
            Op::ExpireSessions => {
                let expired: Vec<u64> = self
                    .sessions
                    .iter()
                    .filter(|(_, (until, _))| *until <= ctx.now.0)
                    .map(|(session, _)| *session)
                    .collect();
                for session in expired {
                    self.end_session(session);
                }
                Ok(Outcome::Done)
            }
            Op::Enroll {
                token,
                expires,
                role,
                floor,
            } => {
                if self.used_tokens.contains_key(token) {
                    return Err(Errno::Exist);
                }
                let last = self.enrolled.get(role).copied().unwrap_or(0);
                let id = last.max(*floor).checked_add(1).ok_or(Errno::NoSpc)?;
                self.used_tokens.insert(*token, *expires);
                self.enrolled.insert(*role, id);
                Ok(Outcome::Id(id))
            }
            Op::KeepMap { epoch, map } => {
                if self.map.as_ref().is_none_or(|(kept, _)| kept < epoch) {
                    self.map = Some((*epoch, map.clone()));
                }
                Ok(Outcome::Done)
            }
            Op::PutObject { id, len, .. } => {
                self.objects.insert(*id, *len);
                Ok(Outcome::Done)
            }
            Op::DeleteObject { id } => {
                self.objects.remove(id).ok_or(Errno::NoEnt)?;
                Ok(Outcome::Done)
            }
            Op::SetQuota {
                name,
                max_bytes,
                max_files,
            } => {
                let root = self.volumes.get(name).ok_or(Errno::NoEnt)?.root.0;
                self.quotas.insert(root, (*max_bytes, *max_files));
                Ok(Outcome::Done)
            }
            Op::RemoveXattr { ino, name } => {
                let node = self.nodes.get_mut(&ino.0).ok_or(Errno::NoEnt)?;
                if name.is_empty() || name.contains(&0) {
                    return Err(Errno::Inval);
                }
                if name.len() > MAX_XATTR_NAME {
                    return Err(Errno::Range);
                }
                node.xattrs.remove(name).ok_or(Errno::NoData)?;
                node.attr.ctime = ctx.now;
                Ok(Outcome::Done)
            }
        }
    }

    fn rename(
        &mut self,
        ctx: Context,
        from: u64,
        from_name: &[u8],
        to: u64,
        to_name: &[u8],
        replace: bool,
    ) -> Result<Outcome, Errno> {
        valid(from_name)?;
        valid(to_name)?;
        let source_volume = self.dir(InodeId(from))?.volume;
        let to_dir = self.dir(InodeId(to))?;
        if to_dir.volume != source_volume {
            return Err(Errno::XDev);
        }
        let target = to_dir.entries.get(to_name).copied();
        let moving = *self.nodes[&from]
            .entries
            .get(from_name)
            .ok_or(Errno::NoEnt)?;
        if !replace && target.is_some() {
            return Err(Errno::Exist);
        }
        if from == to && from_name == to_name {
            return Ok(Outcome::Done);
        }
        let is_dir = self.nodes[&moving].attr.kind == FileType::Dir;
        if is_dir && self.within(to, moving) {
            return Err(Errno::Inval);
        }
        if let Some(target) = target {
            if target == moving {
                return Ok(Outcome::Done);
            }
            let target_dir = self.nodes[&target].attr.kind == FileType::Dir;
            match (is_dir, target_dir) {
                (true, true) if !self.nodes[&target].entries.is_empty() => {
                    return Err(Errno::NotEmpty);
                }
                (true, false) => return Err(Errno::NotDir),
                (false, true) => return Err(Errno::IsDir),
                _ => {}
            }
        }
        if is_dir && target.is_none() && from != to && self.nodes[&to].attr.nlink >= MAX_LINKS {
            return Err(Errno::MLink);
        }
        if let Some(target) = target {
            if self.nodes[&target].attr.kind == FileType::Dir {
                self.nodes.remove(&target);
                self.nodes.get_mut(&to).expect("checked").attr.nlink -= 1;
            } else {
                self.release(target, ctx.now);
            }
        }
        self.nodes
            .get_mut(&from)
            .expect("checked")
            .entries
            .remove(from_name);
        self.nodes
            .get_mut(&to)
            .expect("checked")
            .entries
            .insert(to_name.to_vec(), moving);
        let node = self.nodes.get_mut(&moving).expect("checked");
        node.attr.ctime = ctx.now;
        if is_dir && from != to {
            node.parent = to;
            self.nodes.get_mut(&from).expect("checked").attr.nlink -= 1;
            self.nodes.get_mut(&to).expect("checked").attr.nlink += 1;
        }
        self.touch(from, ctx.now);
        self.touch(to, ctx.now);
        Ok(Outcome::Done)
    }

    /// RENAME_EXCHANGE: the two names swap inodes.
    fn exchange(
        &mut self,
        ctx: Context,
        from: u64,
        from_name: &[u8],
        to: u64,
        to_name: &[u8],
    ) -> Result<Outcome, Errno> {
        valid(from_name)?;
        valid(to_name)?;
        let source_volume = self.dir(InodeId(from))?.volume;
        if self.dir(InodeId(to))?.volume != source_volume {
            return Err(Errno::XDev);
        }
        let a = *self.nodes[&from]
            .entries
            .get(from_name)
            .ok_or(Errno::NoEnt)?;
        let b = *self.nodes[&to].entries.get(to_name).ok_or(Errno::NoEnt)?;
        if a == b {
            return Ok(Outcome::Done);
        }
        let a_dir = self.nodes[&a].attr.kind == FileType::Dir;
        let b_dir = self.nodes[&b].attr.kind == FileType::Dir;
        if (a_dir && self.within(to, a)) || (b_dir && self.within(from, b)) {
            return Err(Errno::Inval);
        }
        if from != to && a_dir != b_dir {
            // One directory changes parent: the parent gaining it gains a link.
            let gaining = if b_dir { from } else { to };
            if self.nodes[&gaining].attr.nlink >= MAX_LINKS {
                return Err(Errno::MLink);
            }
            self.nodes.get_mut(&gaining).expect("checked").attr.nlink += 1;
            let losing = if b_dir { to } else { from };
            self.nodes.get_mut(&losing).expect("checked").attr.nlink -= 1;
        }
        self.nodes
            .get_mut(&from)
            .expect("checked")
            .entries
            .insert(from_name.to_vec(), b);
        self.nodes
            .get_mut(&to)
            .expect("checked")
            .entries
            .insert(to_name.to_vec(), a);
        for (ino, parent) in [(a, to), (b, from)] {
            let node = self.nodes.get_mut(&ino).expect("checked");
            node.attr.ctime = ctx.now;
            if node.attr.kind == FileType::Dir {
                node.parent = parent;
            }
        }
        self.touch(from, ctx.now);
        self.touch(to, ctx.now);
        Ok(Outcome::Done)
    }
}

/// Names the operations draw from: a few valid ones (so names collide) and each kind of
/// invalid one.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::sample::select(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"dd".to_vec()]),
        1 => prop::sample::select(vec![
            Vec::new(),
            b".".to_vec(),
            b"..".to_vec(),
            b"x/y".to_vec(),
            b"nul\0".to_vec(),
            vec![b'n'; MAX_NAME],
            vec![b'n'; MAX_NAME + 1],
        ]),
    ]
}

/// Inodes the operations name: the root, ones likely to exist, and ones that do not.
fn ino() -> impl Strategy<Value = InodeId> {
    (1u64..8).prop_map(InodeId)
}

fn op() -> impl Strategy<Value = Op> {
    let mode = 0u16..0o10000;
    prop_oneof![
        4 => (ino(), name(), mode.clone()).prop_map(|(parent, name, mode)| Op::Mkdir { parent, name, mode }),
        4 => (ino(), name(), mode.clone()).prop_map(|(parent, name, mode)| Op::Create { parent, name, mode }),
        2 => (ino(), name(), prop::sample::select(vec![FileType::Fifo, FileType::Socket, FileType::CharDev, FileType::BlockDev, FileType::File]), mode.clone(), 0u32..3)
            .prop_map(|(parent, name, kind, mode, rdev)| Op::Mknod { parent, name, kind, mode, rdev }),
        1 => (ino(), name(), prop::sample::select(vec![Vec::new(), b"t".to_vec(), b"../up".to_vec()]))
            .prop_map(|(parent, name, target)| Op::Symlink { parent, name, target }),
        2 => (ino(), ino(), name()).prop_map(|(ino, parent, name)| Op::Link { ino, parent, name }),
        2 => (ino(), name()).prop_map(|(parent, name)| Op::Unlink { parent, name }),
        2 => (ino(), name()).prop_map(|(parent, name)| Op::Rmdir { parent, name }),
        5 => (ino(), name(), ino(), name(), rename_mode()).prop_map(|(from, from_name, to, to_name, mode)| Op::Rename { from, from_name, to, to_name, mode }),
        2 => (ino(), prop::option::of(mode), prop::option::of(size()), prop::option::of(0u32..3))
            .prop_map(|(ino, mode, size, uid)| Op::SetAttr { ino, mode, uid, gid: None, size, atime: None, mtime: None }),
        4 => (ino(), prop::collection::vec(extent(), 0..4), class()).prop_map(|(ino, extents, class)| Op::CommitExtents { ino, extents, class }),
        2 => (ino(), size(), prop::sample::select(vec![0u64, 3000, 30_000, u64::MAX]))
            .prop_map(|(ino, end, room)| Op::Allocate { ino, end, room }),
        // A ctime of -1 stands for the file's ctime when the operation runs (see
        // `current_ctime`); others are operation numbers that rarely match.
        3 => (ino(), prop::sample::select(vec![-1i64, -1, 0, 5]), prop::collection::vec(extent(), 0..3), class())
            .prop_map(|(ino, ctime, extents, class)| Op::ReplaceExtents { ino, ctime: Nanos(ctime), extents, class }),
        3 => (ino(), 0u64..4200, prop::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(ino, offset, data)| Op::WriteInline { ino, offset, data }),
        2 => (ino(), xattr_name(), prop::collection::vec(any::<u8>(), 0..8), prop::sample::select(vec![XattrMode::Either, XattrMode::Create, XattrMode::Replace]))
            .prop_map(|(ino, name, value, mode)| Op::SetXattr { ino, name, value, mode }),
        3 => (ino(), prop::sample::select(vec![acl::ACCESS.to_vec(), acl::DEFAULT.to_vec()]), acl_value())
            .prop_map(|(ino, name, value)| Op::SetXattr { ino, name, value, mode: XattrMode::Either }),
        1 => (ino(), xattr_name()).prop_map(|(ino, name)| Op::RemoveXattr { ino, name }),
        1 => (volume_name(), 0u8..6, 0u8..4).prop_map(|(name, k, m)| Op::CreateVolume { name, k, m }),
        1 => (volume_name(), any::<bool>()).prop_map(|(name, force)| Op::DeleteVolume { name, force }),
        1 => (volume_name(), 0u8..6, 0u8..4).prop_map(|(name, k, m)| Op::SetVolumeClass { name, k, m }),
        1 => (volume_name(), 0u8..6, 0u8..4).prop_map(|(name, k, m)| Op::FinishVolumeClass { name, k, m }),
        3 => (ino(), 0u64..3).prop_map(|(ino, session)| Op::Open { ino, session }),
        2 => (ino(), name(), 0u16..0o10000, 0u64..3)
            .prop_map(|(parent, name, mode, session)| Op::CreateOpen { parent, name, mode, session }),
        3 => (ino(), 0u64..3).prop_map(|(ino, session)| Op::Release { ino, session }),
        1 => (0u64..3, 0i64..10, any::<bool>()).prop_map(|(session, ttl, start)| Op::RenewSession { session, ttl: Nanos(ttl), start }),
        1 => Just(Op::ResumeSessions),
        1 => (0u64..3).prop_map(|session| Op::EndSession { session }),
        1 => (ino(), 0i64..10).prop_map(|(ino, atime)| Op::Accessed { ino, atime: Nanos(atime) }),
        2 => (ino(), size(), prop::sample::select(vec![0u64, 1, 700, 5000, u64::MAX]))
            .prop_map(|(ino, offset, len)| Op::Punch { ino, offset, len }),
        1 => Just(Op::ExpireSessions),
        1 => (0u8..3, 0u64..9, prop::collection::vec(0u8..3, 0..3))
            .prop_map(|(id, len, chunks)| Op::PutObject { id: [id; 32], len, chunks: chunks.into_iter().map(|c| [c; 32]).collect() }),
        1 => (0u8..3).prop_map(|id| Op::DeleteObject { id: [id; 32] }),
        1 => (0u64..5, prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(epoch, map)| Op::KeepMap { epoch, map }),
        1 => (0u8..3, 0u8..3, prop::sample::select(vec![0u64, 3, u64::MAX - 1, u64::MAX])).prop_map(|(token, role, floor)| Op::Enroll { token: [token; 16], expires: 9, role, floor }),
        2 => (volume_name(), prop::sample::select(vec![0u64, 100, 5000, 70_000]), prop::sample::select(vec![0u64, 2, 4, 8]))
            .prop_map(|(name, max_bytes, max_files)| Op::SetQuota { name, max_bytes, max_files }),
    ]
}

/// Where extents and sizes fall: near the start of a file, or across the boundary of the
/// first two pages of extents.
fn base() -> impl Strategy<Value = u64> {
    prop::sample::select(vec![0, EXTENT_PAGE_SPAN - 8192])
}

/// File sizes for truncation, around the same places.
fn size() -> impl Strategy<Value = u64> {
    (base(), 0u64..20_000).prop_map(|(base, at)| base + at)
}

fn rename_mode() -> impl Strategy<Value = RenameMode> {
    prop::sample::select(vec![
        RenameMode::Replace,
        RenameMode::Replace,
        RenameMode::NoReplace,
        RenameMode::Exchange,
    ])
}

/// Extents on a coarse grid, so they overlap one another often.
fn extent() -> impl Strategy<Value = Extent> {
    (base(), 0u64..32, 0u32..8, 1u32..4096, 0u8..3, 0u32..1000).prop_map(
        |(base, slot, fine, len, chunk, chunk_offset)| Extent {
            offset: base + slot * 512 + u64::from(fine),
            len,
            chunk: [chunk; 32],
            chunk_offset,
        },
    )
}

/// The class a change's chunks are stored in: mostly the default volume's.
fn class() -> impl Strategy<Value = (u8, u8)> {
    prop_oneof![
        8 => Just(DEFAULT_CLASS),
        1 => (1u8..5, 0u8..3),
    ]
}

fn volume_name() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        b"v1".to_vec(),
        b"v2".to_vec(),
        DEFAULT_VOLUME.to_vec(),
        b"x/y".to_vec(),
        vec![b'v'; MAX_VOLUME_NAME + 1],
    ])
}

fn xattr_name() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        b"user.a".to_vec(),
        b"user.b".to_vec(),
        acl::ACCESS.to_vec(),
        acl::DEFAULT.to_vec(),
        Vec::new(),
        vec![b'x'; MAX_XATTR_NAME + 1],
    ])
}

/// ACL values: minimal ones, ones with named entries and a mask, and a malformed one.
fn acl_value() -> impl Strategy<Value = Vec<u8>> {
    let entry = |tag: u16, perm: u16, id: u32| {
        let mut e = tag.to_le_bytes().to_vec();
        e.extend_from_slice(&perm.to_le_bytes());
        e.extend_from_slice(&id.to_le_bytes());
        e
    };
    (
        0u16..8,
        0u16..8,
        0u16..8,
        0u16..8,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(owner, group, other, named, with_named, malformed)| {
            let mut value = 2u32.to_le_bytes().to_vec();
            value.extend(entry(acl::USER_OBJ, owner, 0));
            if with_named {
                value.extend(entry(acl::USER, named, 1000));
                value.extend(entry(acl::MASK, named & group, 0));
            }
            value.extend(entry(acl::GROUP_OBJ, group, 0));
            if !malformed {
                value.extend(entry(acl::OTHER, other, 0));
            }
            value
        })
}

/// A new namespace in a fresh scratch directory named for `test`, and that directory.
fn fresh(test: &str) -> (std::path::PathBuf, Namespace) {
    let dir = std::env::temp_dir().join(format!("hive-meta-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ns = Namespace::open(&dir, Durability::Buffered).expect("open");
    (dir, ns)
}

/// Caller `uid` (group `uid`, no umask) at time 1.
fn caller(uid: u32) -> Context {
    Context {
        uid,
        gid: uid,
        now: Nanos(1),
        umask: 0,
    }
}

static CASE: AtomicU64 = AtomicU64::new(0);

/// `extents` as the namespace stores them: cut where a page of extents ends.
fn paged(extents: &[Extent]) -> Vec<Extent> {
    let mut out = Vec::new();
    for e in extents {
        let mut at = e.offset;
        while at < e.end() {
            let end = e.end().min((at / EXTENT_PAGE_SPAN + 1) * EXTENT_PAGE_SPAN);
            out.push(Extent {
                offset: at,
                len: (end - at) as u32,
                chunk: e.chunk,
                chunk_offset: e.chunk_offset + (at - e.offset) as u32,
            });
            at = end;
        }
    }
    out
}

/// What the model holds, counted as the namespace counts its records.
fn census(model: &Model) -> Census {
    let mut c = Census::default();
    for node in model.nodes.values() {
        c.inodes += 1;
        c.dirents += node.entries.len() as u64;
        c.symlinks += u64::from(node.attr.kind == FileType::Symlink);
        let mut pages: Vec<u64> = paged(&node.extents)
            .iter()
            .map(|e| e.offset / EXTENT_PAGE_SPAN)
            .collect();
        pages.dedup();
        c.extents += pages.len() as u64;
        c.inline += u64::from(!node.inline.is_empty());
        c.xattrs += node.xattrs.len() as u64;
    }
    c.volumes = model.volumes.len() as u64;
    c.opens = model.nodes.values().filter(|n| n.opens > 0).count() as u64;
    c.sessions = model.sessions.len() as u64;
    c.held = model
        .sessions
        .values()
        .map(|(_, held)| held.len() as u64)
        .sum();
    c.objects = model.objects.len() as u64;
    c.quotas = model.volumes.len() as u64;
    c.reserves = model.nodes.values().filter(|n| n.reserve > 0).count() as u64;
    c
}

/// Every inode and entry of the model is in the namespace, alike, and nothing else.
fn same_tree(ns: &Namespace, model: &Model, upto: u64) {
    let volumes: Vec<_> = model.volumes.clone().into_iter().collect();
    assert_eq!(ns.volumes().expect("store"), volumes, "volumes");
    let objects: Vec<_> = model.objects.clone().into_iter().collect();
    assert_eq!(ns.objects().expect("store"), objects, "objects");
    assert_eq!(
        ns.cluster_map().expect("store"),
        model.map,
        "the kept cluster map"
    );
    for (name, volume) in &model.volumes {
        assert_eq!(
            ns.usage(volume.root).expect("store"),
            model.usage(volume.root.0),
            "usage of volume {name:?}"
        );
    }
    assert_eq!(
        ns.census().expect("store"),
        census(model),
        "records left behind or missing"
    );
    let held: u64 = model.nodes.values().map(|n| n.reserve).sum();
    assert_eq!(ns.reserved().expect("store"), held, "the reserved sum");
    for ino in 1..upto {
        let stored = ns.getattr(InodeId(ino)).expect("store");
        match model.nodes.get(&ino) {
            None => assert_eq!(stored, Err(Errno::NoEnt), "inode {ino} should be gone"),
            Some(node) => {
                assert_eq!(stored, Ok(node.attr), "attributes of inode {ino}");
                match node.attr.kind {
                    FileType::Dir => {
                        let listed = ns
                            .readdir(InodeId(ino))
                            .expect("store")
                            .expect("a directory");
                        let expected: Vec<_> = node
                            .entries
                            .iter()
                            .map(|(name, child)| {
                                (name.clone(), InodeId(*child), model.nodes[child].attr.kind)
                            })
                            .collect();
                        assert_eq!(listed, expected, "entries of inode {ino}");
                    }
                    FileType::Symlink => {
                        assert_eq!(
                            ns.readlink(InodeId(ino)).expect("store"),
                            Ok(node.target.clone())
                        );
                    }
                    FileType::File => {
                        assert_eq!(
                            ns.extents(InodeId(ino)).expect("store"),
                            Ok(paged(&node.extents)),
                            "extents of inode {ino}"
                        );
                        assert_eq!(
                            ns.inline(InodeId(ino)).expect("store"),
                            Ok(node.inline.clone()),
                            "inline data of inode {ino}"
                        );
                        assert_eq!(
                            ns.reserve(InodeId(ino)).expect("store"),
                            node.reserve,
                            "reserve of inode {ino}"
                        );
                    }
                    // Special files have nothing beyond their attributes.
                    _ => {}
                }
                let xattrs: Vec<_> = node.xattrs.clone().into_iter().collect();
                assert_eq!(
                    ns.xattrs(InodeId(ino)).expect("store"),
                    Ok(xattrs),
                    "xattrs of inode {ino}"
                );
            }
        }
    }
}

/// A compaction drawn with ctime -1 gets the file's current ctime, so that compactions
/// which should succeed are drawn as often as ones that lose their race.
fn current_ctime(model: &Model, op: Op) -> Op {
    match op {
        Op::ReplaceExtents {
            ino,
            ctime: Nanos(-1),
            extents,
            class,
        } => Op::ReplaceExtents {
            ino,
            ctime: model.nodes.get(&ino.0).map_or(Nanos(0), |n| n.attr.ctime),
            extents,
            class,
        },
        op => op,
    }
}

/// The client session the model test's changes are numbered in (none of its own
/// sessions: they are drawn from a small set).
const MODEL_SESSION: u64 = u64::MAX;

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_namespace_behaves_like_its_model(ops in prop::collection::vec(op(), 1..120)) {
        let case = CASE.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("hive-meta-model-{}-{case}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ns = Namespace::open(&dir, Durability::Buffered).expect("open");
        let mut model = Model::new();
        for (n, op) in ops.iter().enumerate() {
            let ctx = Context { uid: 1000, gid: 100, now: Nanos(n as i64 + 1), umask: 0o022 };
            let op = &current_ctime(&model, op.clone());
            // The replicated state machine's path: stamped with the entry, numbered in
            // a client session (each answer forgotten once the next is given).
            let stamp = (n as u64).to_le_bytes();
            let once = Once { session: MODEL_SESSION, seq: n as u64 + 1, acked: n as u64 + 1 };
            let got = match ns
                .apply_logged(ctx, op, &stamp, Some(once), |_| Vec::new())
                .expect("the store works")
            {
                Logged::Applied(result) => result,
                Logged::Repeated(_) => panic!("operation {n} was taken for a repeat"),
            };
            prop_assert_eq!(ns.stamp().expect("stamp"), Some(stamp.to_vec()));
            let expected = model.apply_with_quotas(ctx, op);
            prop_assert_eq!(&got, &expected, "operation {} ({:?})", n, op);
            same_tree(&ns, &model, model.next + 2);
        }
        drop(ns);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_reopened_namespace_keeps_its_tree() {
    let dir = std::env::temp_dir().join(format!("hive-meta-reopen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ctx = Context {
        uid: 7,
        gid: 7,
        now: Nanos(5),
        umask: 0,
    };
    {
        let ns = Namespace::open(&dir, Durability::EveryOp).expect("open");
        let made = ns
            .apply(
                ctx,
                &Op::Mkdir {
                    parent: InodeId::ROOT,
                    name: b"d".to_vec(),
                    mode: 0o700,
                },
            )
            .expect("store");
        assert!(matches!(made, Ok(Outcome::Attr(a)) if a.ino == InodeId(2)));
        ns.apply(
            ctx,
            &Op::Create {
                parent: InodeId(2),
                name: b"f".to_vec(),
                mode: 0o600,
            },
        )
        .expect("store")
        .expect("created");
    }
    let ns = Namespace::open(&dir, Durability::EveryOp).expect("reopen");
    let f = ns
        .lookup(InodeId(2), b"f")
        .expect("store")
        .expect("still there");
    assert_eq!((f.ino, f.mode, f.uid), (InodeId(3), 0o600, 7));
    // The counter survived too: the next inode is 4.
    let g = ns
        .apply(
            ctx,
            &Op::Create {
                parent: InodeId(2),
                name: b"g".to_vec(),
                mode: 0o600,
            },
        )
        .expect("store");
    assert!(matches!(g, Ok(Outcome::Attr(a)) if a.ino == InodeId(4)));
    assert_eq!(
        ns.apply(
            ctx,
            &Op::Rmdir {
                parent: InodeId::ROOT,
                name: b"d".to_vec()
            }
        )
        .expect("store"),
        Err(Errno::NotEmpty)
    );
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inline_data_leaves_no_record_once_empty() {
    let (dir, ns) = fresh("inline");
    let ctx = caller(1);
    let apply = |op: Op| ns.apply(ctx, &op).expect("store");
    apply(Op::Create {
        parent: InodeId::ROOT,
        name: b"f".to_vec(),
        mode: 0o644,
    })
    .expect("created");
    let f = InodeId(2);
    // An empty write makes no record; a truncation to nothing removes it.
    apply(Op::WriteInline {
        ino: f,
        offset: 0,
        data: Vec::new(),
    })
    .expect("written");
    assert_eq!(ns.census().expect("store").inline, 0);
    apply(Op::WriteInline {
        ino: f,
        offset: 10,
        data: b"abc".to_vec(),
    })
    .expect("written");
    assert_eq!(
        ns.inline(f).expect("store"),
        Ok(b"\0\0\0\0\0\0\0\0\0\0abc".to_vec())
    );
    let cut = Op::SetAttr {
        ino: f,
        mode: None,
        uid: None,
        gid: None,
        size: Some(0),
        atime: None,
        mtime: None,
    };
    apply(cut).expect("truncated");
    assert_eq!(ns.census().expect("store").inline, 0);
    // Past the inline limit the caller must use extents.
    let big = Op::WriteInline {
        ino: f,
        offset: MAX_INLINE - 1,
        data: b"xy".to_vec(),
    };
    assert_eq!(apply(big), Err(Errno::FBig));
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn enrollment_gives_each_id_once_refuses_a_used_token_and_forgets_expired_ones() {
    let (dir, ns) = fresh("enroll");
    let at = |secs: i64| Context {
        uid: 0,
        gid: 0,
        now: Nanos(secs * 1_000_000_000),
        umask: 0,
    };
    let enroll = |secs: i64, token: u8, expires: u64, role: u8, floor: u64| {
        let op = Op::Enroll {
            token: [token; 16],
            expires,
            role,
            floor,
        };
        ns.apply(at(secs), &op).expect("store")
    };
    // Ids start past the floor, go up by one per role, and never come back.
    assert_eq!(enroll(100, 1, 200, 0, 6), Ok(Outcome::Id(7)));
    assert_eq!(enroll(100, 2, 200, 0, 6), Ok(Outcome::Id(8)));
    assert_eq!(enroll(100, 3, 200, 1, 0), Ok(Outcome::Id(1)));
    assert_eq!(
        enroll(100, 4, 200, 0, 3),
        Ok(Outcome::Id(9)),
        "a lower floor"
    );
    // A token is used once, until it expires and is forgotten.
    assert_eq!(enroll(150, 1, 200, 0, 0), Err(Errno::Exist));
    assert_eq!(enroll(201, 5, 300, 0, 0), Ok(Outcome::Id(10)));
    assert_eq!(
        enroll(202, 1, 300, 0, 0),
        Ok(Outcome::Id(11)),
        "an expired token's use is forgotten (the token itself is refused as expired before)"
    );
    // Reopened: the same.
    drop(ns);
    let ns = Namespace::open(&dir, Durability::Buffered).expect("reopen");
    let op = Op::Enroll {
        token: [5; 16],
        expires: 300,
        role: 0,
        floor: 0,
    };
    assert_eq!(ns.apply(at(250), &op).expect("store"), Err(Errno::Exist));
    let op = Op::Enroll {
        token: [6; 16],
        expires: 300,
        role: 0,
        floor: 0,
    };
    assert_eq!(ns.apply(at(250), &op).expect("store"), Ok(Outcome::Id(12)));
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_compaction_replaces_extents_only_if_the_file_is_unchanged() {
    let (dir, ns) = fresh("compact");
    let at = |n: i64| Context {
        uid: 1,
        gid: 1,
        now: Nanos(n),
        umask: 0,
    };
    let piece = |offset: u64, len: u32, chunk: u8| Extent {
        offset,
        len,
        chunk: [chunk; 32],
        chunk_offset: 0,
    };
    let apply = |n: i64, op: Op| ns.apply(at(n), &op).expect("store");
    apply(
        1,
        Op::Create {
            parent: InodeId::ROOT,
            name: b"f".to_vec(),
            mode: 0o644,
        },
    )
    .expect("created");
    let f = InodeId(2);
    let fragments: Vec<_> = (0..8).map(|i| piece(i * 100, 100, i as u8)).collect();
    apply(
        2,
        Op::CommitExtents {
            ino: f,
            extents: fragments,
            class: DEFAULT_CLASS,
        },
    )
    .expect("committed");
    let before = ns.getattr(f).expect("store").expect("file");
    let whole = vec![piece(0, 800, 9)];
    let stale = Op::ReplaceExtents {
        ino: f,
        ctime: Nanos(1),
        extents: whole.clone(),
        class: DEFAULT_CLASS,
    };
    assert_eq!(apply(3, stale), Err(Errno::Again), "an old ctime");
    let past_end = Op::ReplaceExtents {
        ino: f,
        ctime: Nanos(2),
        extents: vec![piece(0, 801, 9)],
        class: DEFAULT_CLASS,
    };
    assert_eq!(apply(3, past_end), Err(Errno::Inval), "beyond the file");
    let compact = Op::ReplaceExtents {
        ino: f,
        ctime: Nanos(2),
        extents: whole.clone(),
        class: DEFAULT_CLASS,
    };
    apply(3, compact).expect("compacted");
    assert_eq!(ns.extents(f).expect("store"), Ok(whole));
    assert_eq!(
        ns.getattr(f).expect("store"),
        Ok(before),
        "no time or size changes"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn extents_are_kept_in_pages_and_a_commit_changes_only_what_it_covers() {
    let (dir, ns) = fresh("pages");
    let ctx = caller(1);
    let apply = |op: Op| ns.apply(ctx, &op).expect("store");
    let piece = |offset: u64, len: u32, chunk: u8, chunk_offset: u32| Extent {
        offset,
        len,
        chunk: [chunk; 32],
        chunk_offset,
    };
    apply(Op::Create {
        parent: InodeId::ROOT,
        name: b"f".to_vec(),
        mode: 0o644,
    })
    .expect("created");
    let f = InodeId(2);
    let span = EXTENT_PAGE_SPAN;
    let commit = |extents: Vec<Extent>| {
        apply(Op::CommitExtents {
            ino: f,
            extents,
            class: DEFAULT_CLASS,
        })
        .expect("committed");
    };
    // One extent across the boundary of pages 0 and 1 is stored as two pieces.
    commit(vec![piece(span - 100, 300, 1, 0)]);
    assert_eq!(
        ns.extents(f).expect("store"),
        Ok(vec![piece(span - 100, 100, 1, 0), piece(span, 200, 1, 100)])
    );
    // Pages 1 and 2 hold more; a commit touching pages 0 and 1 keeps what it misses.
    commit(vec![
        piece(span + 1000, 10, 2, 0),
        piece(2 * span, 10, 3, 0),
    ]);
    commit(vec![
        piece(span - 50, 10, 4, 0),
        piece(span + 150, 10, 5, 0),
    ]);
    let expected = vec![
        piece(span - 100, 50, 1, 0),
        piece(span - 50, 10, 4, 0),
        piece(span - 40, 40, 1, 60),
        piece(span, 150, 1, 100),
        piece(span + 150, 10, 5, 0),
        piece(span + 160, 40, 1, 260),
        piece(span + 1000, 10, 2, 0),
        piece(2 * span, 10, 3, 0),
    ];
    assert_eq!(ns.extents(f).expect("store"), Ok(expected.clone()));
    assert_eq!(ns.census().expect("store").extents, 3, "pages 0, 1 and 2");
    // A truncation into page 1 drops page 2 and cuts page 1.
    apply(Op::SetAttr {
        ino: f,
        mode: None,
        uid: None,
        gid: None,
        size: Some(span + 155),
        atime: None,
        mtime: None,
    })
    .expect("truncated");
    let mut cut = expected[..5].to_vec();
    cut[4].len = 5;
    assert_eq!(ns.extents(f).expect("store"), Ok(cut));
    assert_eq!(ns.census().expect("store").extents, 2, "pages 0 and 1");
    // Unlinking the file leaves no page behind.
    apply(Op::Unlink {
        parent: InodeId::ROOT,
        name: b"f".to_vec(),
    })
    .expect("unlinked");
    assert_eq!(ns.census().expect("store").extents, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rename_exchange_swaps_two_names_and_noreplace_refuses_a_target() {
    let (dir, ns) = fresh("exchange");
    let ctx = caller(0);
    let apply = |op: Op| ns.apply(ctx, &op).expect("store");
    let made = |outcome: Result<Outcome, Errno>| match outcome {
        Ok(Outcome::Attr(attr)) => attr.ino,
        other => panic!("expected a new inode, got {other:?}"),
    };
    let mkdir = |parent: InodeId, name: &[u8]| {
        made(apply(Op::Mkdir {
            parent,
            name: name.to_vec(),
            mode: 0o755,
        }))
    };
    let rename = |from: InodeId, from_name: &[u8], to: InodeId, to_name: &[u8], mode| {
        apply(Op::Rename {
            from,
            from_name: from_name.to_vec(),
            to,
            to_name: to_name.to_vec(),
            mode,
        })
    };
    // /a/d (a directory) and /b/f (a file).
    let a = mkdir(InodeId::ROOT, b"a");
    let b = mkdir(InodeId::ROOT, b"b");
    let d = mkdir(a, b"d");
    let f = made(apply(Op::Create {
        parent: b,
        name: b"f".to_vec(),
        mode: 0o644,
    }));
    let nlink = |ino: InodeId| ns.getattr(ino).expect("store").expect("exists").nlink;
    assert_eq!((nlink(a), nlink(b)), (3, 2));
    assert_eq!(
        rename(a, b"d", b, b"f", RenameMode::NoReplace),
        Err(Errno::Exist)
    );
    assert_eq!(
        rename(a, b"d", b, b"none", RenameMode::Exchange),
        Err(Errno::NoEnt)
    );
    rename(a, b"d", b, b"f", RenameMode::Exchange).expect("exchanged");
    let found = |dir: InodeId, name: &[u8]| ns.lookup(dir, name).expect("store").map(|a| a.ino);
    assert_eq!(found(a, b"d"), Ok(f));
    assert_eq!(found(b, b"f"), Ok(d));
    assert_eq!((nlink(a), nlink(b)), (2, 3), "the directory's link moved");
    // d's parent is now b: b cannot move into d, and neither can b trade places with
    // d's contents.
    assert_eq!(
        rename(InodeId::ROOT, b"b", d, b"x", RenameMode::Replace),
        Err(Errno::Inval)
    );
    let inner = mkdir(d, b"inner");
    assert_eq!(
        rename(InodeId::ROOT, b"b", d, b"inner", RenameMode::Exchange),
        Err(Errno::Inval)
    );
    // NOREPLACE to a free name is a rename.
    rename(d, b"inner", a, b"moved", RenameMode::NoReplace).expect("moved");
    assert_eq!(found(a, b"moved"), Ok(inner));
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_mark_names_every_referenced_chunk_and_only_those() {
    let (dir, ns) = fresh("mark");
    let ctx = caller(1);
    let apply = |op: Op| ns.apply(ctx, &op).expect("store");
    let piece = |offset: u64, chunk: u8| Extent {
        offset,
        len: 100,
        chunk: [chunk; 32],
        chunk_offset: 0,
    };
    for (n, name) in [b"a", b"b", b"c"].iter().enumerate() {
        apply(Op::Create {
            parent: InodeId::ROOT,
            name: name.to_vec(),
            mode: 0o644,
        })
        .expect("created");
        let ino = InodeId(2 + n as u64);
        let base = 10 * n as u8;
        apply(Op::CommitExtents {
            ino,
            extents: vec![
                piece(0, base + 1),
                piece(EXTENT_PAGE_SPAN * 3, base + 2),
                piece(EXTENT_PAGE_SPAN * 3 + 100, 99),
            ],
            class: DEFAULT_CLASS,
        })
        .expect("committed");
    }
    // b goes; an overwrite replaces a's first chunk.
    apply(Op::Unlink {
        parent: InodeId::ROOT,
        name: b"b".to_vec(),
    })
    .expect("unlinked");
    apply(Op::CommitExtents {
        ino: InodeId(2),
        extents: vec![piece(0, 50)],
        class: DEFAULT_CLASS,
    })
    .expect("overwritten");
    // Objects are roots too, manifest and chunks, until their record is deleted.
    for (id, chunks) in [(70u8, vec![[71; 32], [72; 32]]), (80, vec![[81; 32]])] {
        apply(Op::PutObject {
            id: [id; 32],
            len: 200,
            chunks,
        })
        .expect("recorded");
    }
    apply(Op::DeleteObject { id: [80; 32] }).expect("deleted");
    assert_eq!(
        apply(Op::DeleteObject { id: [80; 32] }),
        Err(Errno::NoEnt),
        "deleted already"
    );
    // A file in a volume of another class: its chunk is referenced in that class.
    apply(Op::CreateVolume {
        name: b"wide".to_vec(),
        k: 4,
        m: 2,
    })
    .expect("volume");
    let classes: std::collections::BTreeMap<Vec<u8>, (InodeId, (u8, u8))> = ns
        .volumes()
        .expect("volumes")
        .into_iter()
        .map(|(name, v)| (name, (v.root, (v.k, v.m))))
        .collect();
    let (wide, _) = classes[&b"wide".to_vec()];
    apply(Op::Create {
        parent: wide,
        name: b"d".to_vec(),
        mode: 0o644,
    })
    .expect("created");
    let d = match ns.lookup(wide, b"d").expect("store") {
        Ok(attr) => attr.ino,
        Err(e) => panic!("d: {e:?}"),
    };
    apply(Op::CommitExtents {
        ino: d,
        extents: vec![piece(0, 60)],
        class: DEFAULT_CLASS,
    })
    .expect("committed");
    let (counted, marked, bytes) = ns
        .mark(
            |n| (n, std::collections::BTreeSet::new(), 0),
            |(_, set, bytes), chunk, len, classes| {
                set.insert((chunk[0], classes.to_vec()));
                *bytes += len;
            },
        )
        .expect("mark");
    assert_eq!(
        counted, 10,
        "two files of three extents, one of one, an object of two chunks"
    );
    let (_, default) = classes[&b"default".to_vec()];
    let mut expected: Vec<(u8, Vec<(u8, u8)>)> = [2, 21, 22, 50, 99]
        .into_iter()
        .map(|c| (c, vec![default]))
        .collect();
    expected.push((60, vec![(4, 2)]));
    expected.extend([70, 71, 72].map(|c| (c, vec![])));
    expected.sort();
    assert_eq!(
        marked.into_iter().collect::<Vec<_>>(),
        expected,
        "a (overwritten) and c in the default volume's class, d in its volume's, object \
         70 in any class; b, a's old chunk and object 80 are garbage"
    );
    assert_eq!(
        bytes, 900,
        "seven extents of 100 bytes and an object of 200 bytes"
    );
    // While volume wide is re-encoded into 2+1, its chunks are marked in both classes,
    // and a commit of chunks stored in 4+2 is stale; once it is done, in 2+1 only.
    let wide_class = |k: u8, m: u8| Op::SetVolumeClass {
        name: b"wide".to_vec(),
        k,
        m,
    };
    apply(wide_class(2, 1)).expect("re-encode begun");
    assert_eq!(
        apply(wide_class(3, 1)),
        Err(Errno::Busy),
        "a second re-encode"
    );
    apply(wide_class(2, 1)).expect("the same class again changes nothing");
    let stale = Op::CommitExtents {
        ino: d,
        extents: vec![piece(100, 61)],
        class: (4, 2),
    };
    assert_eq!(apply(stale), Err(Errno::Stale));
    let marked_60 = || {
        ns.mark(
            |_| Vec::new(),
            |set, chunk, _, classes| {
                if chunk[0] == 60 {
                    set.push(classes.to_vec());
                }
            },
        )
        .expect("mark")
    };
    assert_eq!(marked_60(), vec![vec![(2, 1), (4, 2)]]);
    let (chunks, next) = ns.volume_chunks(wide, &[], 100).expect("chunks");
    assert_eq!(
        (chunks, next),
        (vec![[60; 32]], None),
        "wide's chunks, one page"
    );
    let finish = |k: u8, m: u8| Op::FinishVolumeClass {
        name: b"wide".to_vec(),
        k,
        m,
    };
    assert_eq!(
        apply(finish(4, 2)),
        Err(Errno::Stale),
        "not the class written"
    );
    apply(finish(2, 1)).expect("finished");
    assert_eq!(marked_60(), vec![vec![(2, 1)]]);
    apply(Op::CommitExtents {
        ino: d,
        extents: vec![piece(100, 61)],
        class: (2, 1),
    })
    .expect("a commit in the new class");
    drop(ns);
    let _ = std::fs::remove_dir_all(dir);
}
