//! The Linux errno values the client answers with or looks for in the metadata
//! service's answers.

/// Operation not permitted.
pub const EPERM: i32 = 1;
/// No such file, directory or volume.
pub const ENOENT: i32 = 2;
/// I/O error: the cluster or the metadata service did not answer, or failed.
pub const EIO: i32 = 5;
/// The file changed meanwhile (a compaction lost its race).
pub const EAGAIN: i32 = 11;
/// It exists already.
pub const EEXIST: i32 = 17;
/// Invalid argument.
pub const EINVAL: i32 = 22;
/// File too large.
pub const EFBIG: i32 = 27;
/// Result too large for the caller's buffer.
pub const ERANGE: i32 = 34;
/// No space left: the cluster cannot hold what a write or fallocate asks for.
pub const ENOSPC: i32 = 28;
/// A name too long.
pub const ENAMETOOLONG: i32 = 36;
/// A directory (or volume) that is not empty.
pub const ENOTEMPTY: i32 = 39;
/// No such extended attribute.
pub const ENODATA: i32 = 61;
/// Operation not supported.
pub const EOPNOTSUPP: i32 = 95;
/// The volume's quota of bytes or files is reached.
pub const EDQUOT: i32 = 122;
/// Chunks stored in a class the volume no longer writes (a re-encode began).
pub const ESTALE: i32 = 116;
/// A re-encode of the volume to another class is under way.
pub const EBUSY: i32 = 16;
