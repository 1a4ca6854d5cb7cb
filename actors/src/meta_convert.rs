//! Namespace types to and from the metadata service's messages.

use hive_meta::{
    Attr, Errno, Extent, FileType, InodeId, Nanos, Op, Outcome, RenameMode, Usage, VolumeRecord,
    XattrMode,
};
use hive_wire::net::meta::{
    AttrMessage, EntryMessage, ExtentMessage, MetaOp, MetaReply, UsageMessage, VolumeMessage,
    rename_mode, xattr_mode,
};

/// Attributes as they travel.
pub fn attr_message(a: &Attr) -> AttrMessage {
    AttrMessage {
        ino: a.ino.0,
        kind: a.kind.code(),
        mode: a.mode,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        nlink: a.nlink,
        atime: a.atime.0,
        mtime: a.mtime.0,
        ctime: a.ctime.0,
        btime: a.btime.0,
        rdev: a.rdev,
    }
}

/// An extent as it travels.
pub fn extent_message(e: &Extent) -> ExtentMessage {
    ExtentMessage {
        offset: e.offset,
        len: e.len,
        chunk: e.chunk,
        chunk_offset: e.chunk_offset,
    }
}

/// An extent from its message.
fn extent_from(e: &ExtentMessage) -> Extent {
    Extent {
        offset: e.offset,
        len: e.len,
        chunk: e.chunk,
        chunk_offset: e.chunk_offset,
    }
}

/// A directory entry as it travels.
pub fn entry_message(entry: &(Vec<u8>, InodeId, FileType)) -> EntryMessage {
    EntryMessage {
        name: entry.0.clone(),
        ino: entry.1.0,
        kind: entry.2.code(),
    }
}

/// A volume as it travels; `reserved` is the sum of every file's reserve.
pub fn volume_message(
    name: &[u8],
    v: &VolumeRecord,
    usage: &Usage,
    reserved: u64,
) -> VolumeMessage {
    VolumeMessage {
        name: String::from_utf8_lossy(name).into_owned(),
        root: v.root.0,
        k: v.k,
        m: v.m,
        from: v.from,
        uid: v.uid,
        gid: v.gid,
        created: v.created.0,
        usage: UsageMessage {
            bytes: usage.bytes,
            files: usage.files,
            max_bytes: usage.max_bytes,
            max_files: usage.max_files,
        },
        reserved,
    }
}

/// The namespace operation a message asks for.
/// The namespace operation a message asks for; EINVAL for a field no operation has.
pub fn op_from(op: MetaOp) -> Result<Op, Errno> {
    Ok(match op {
        MetaOp::Mkdir { parent, name, mode } => Op::Mkdir {
            parent: InodeId(parent),
            name,
            mode,
        },
        MetaOp::Create { parent, name, mode } => Op::Create {
            parent: InodeId(parent),
            name,
            mode,
        },
        MetaOp::Mknod {
            parent,
            name,
            kind,
            mode,
            rdev,
        } => Op::Mknod {
            parent: InodeId(parent),
            name,
            // An unknown kind becomes a regular file, which mknod refuses (EINVAL).
            kind: FileType::from_code(kind).unwrap_or(FileType::File),
            mode,
            rdev,
        },
        MetaOp::Symlink {
            parent,
            name,
            target,
        } => Op::Symlink {
            parent: InodeId(parent),
            name,
            target,
        },
        MetaOp::Link { ino, parent, name } => Op::Link {
            ino: InodeId(ino),
            parent: InodeId(parent),
            name,
        },
        MetaOp::Unlink { parent, name } => Op::Unlink {
            parent: InodeId(parent),
            name,
        },
        MetaOp::Rmdir { parent, name } => Op::Rmdir {
            parent: InodeId(parent),
            name,
        },
        MetaOp::Rename {
            from,
            from_name,
            to,
            to_name,
            mode,
        } => Op::Rename {
            from: InodeId(from),
            from_name,
            to: InodeId(to),
            to_name,
            mode: match mode {
                rename_mode::REPLACE => RenameMode::Replace,
                rename_mode::NOREPLACE => RenameMode::NoReplace,
                rename_mode::EXCHANGE => RenameMode::Exchange,
                _ => return Err(Errno::Inval),
            },
        },
        MetaOp::SetAttr {
            ino,
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        } => Op::SetAttr {
            ino: InodeId(ino),
            mode,
            uid,
            gid,
            size,
            atime: atime.map(Nanos),
            mtime: mtime.map(Nanos),
        },
        MetaOp::Allocate { ino, end, room } => Op::Allocate {
            ino: InodeId(ino),
            end,
            room,
        },
        MetaOp::CommitExtents {
            ino,
            extents,
            class,
        } => Op::CommitExtents {
            ino: InodeId(ino),
            extents: extents.iter().map(extent_from).collect(),
            class,
        },
        MetaOp::ReplaceExtents {
            ino,
            ctime,
            extents,
            class,
        } => Op::ReplaceExtents {
            ino: InodeId(ino),
            ctime: Nanos(ctime),
            extents: extents.iter().map(extent_from).collect(),
            class,
        },
        MetaOp::SetVolumeClass { name, k, m } => Op::SetVolumeClass { name, k, m },
        MetaOp::FinishVolumeClass { name, k, m } => Op::FinishVolumeClass { name, k, m },
        MetaOp::WriteInline { ino, offset, data } => Op::WriteInline {
            ino: InodeId(ino),
            offset,
            data,
        },
        MetaOp::SetXattr {
            ino,
            name,
            value,
            mode,
        } => Op::SetXattr {
            ino: InodeId(ino),
            name,
            value,
            mode: match mode {
                xattr_mode::CREATE => XattrMode::Create,
                xattr_mode::REPLACE => XattrMode::Replace,
                _ => XattrMode::Either,
            },
        },
        MetaOp::RemoveXattr { ino, name } => Op::RemoveXattr {
            ino: InodeId(ino),
            name,
        },
        MetaOp::Open { ino, session } => Op::Open {
            ino: InodeId(ino),
            session,
        },
        MetaOp::Release { ino, session } => Op::Release {
            ino: InodeId(ino),
            session,
        },
        MetaOp::RenewSession {
            session,
            ttl_ms,
            start,
        } => Op::RenewSession {
            session,
            ttl: Nanos(i64::try_from(ttl_ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
            start,
        },
        MetaOp::EndSession { session } => Op::EndSession { session },
        MetaOp::CreateOpen {
            parent,
            name,
            mode,
            session,
        } => Op::CreateOpen {
            parent: InodeId(parent),
            name,
            mode,
            session,
        },
        MetaOp::Punch { ino, offset, len } => Op::Punch {
            ino: InodeId(ino),
            offset,
            len,
        },
        MetaOp::Accessed { ino, atime } => Op::Accessed {
            ino: InodeId(ino),
            atime: Nanos(atime),
        },
        MetaOp::CreateVolume { name, k, m } => Op::CreateVolume { name, k, m },
        MetaOp::DeleteVolume { name, force } => Op::DeleteVolume { name, force },
        MetaOp::PutObject { id, len, chunks } => Op::PutObject { id, len, chunks },
        MetaOp::DeleteObject { id } => Op::DeleteObject { id },
        MetaOp::SetQuota {
            name,
            max_bytes,
            max_files,
        } => Op::SetQuota {
            name,
            max_bytes,
            max_files,
        },
    })
}

/// The answer to a change that was applied with `result`.
pub(crate) fn reply_of(result: Result<Outcome, Errno>) -> MetaReply {
    match result {
        Ok(Outcome::Attr(attr)) => MetaReply::Attr(attr_message(&attr)),
        Ok(Outcome::Done) => MetaReply::Done,
        Ok(Outcome::Id(id)) => MetaReply::Enrolled { id },
        Err(e) => MetaReply::Errno(e.code()),
    }
}
