//! Bounds of the namespace, with the reason for each.

/// Longest name of a directory entry, in bytes: NAME_MAX on Linux.
pub const MAX_NAME: usize = 255;
/// Longest symlink target, in bytes: PATH_MAX less its terminating NUL.
pub const MAX_SYMLINK: usize = 4095;
/// Most links to one inode (and subdirectories of one directory): ext4's limit.
pub const MAX_LINKS: u32 = 65_000;
/// Largest file kept inline in its metadata record (no chunk at all): small files are
/// most files, and a 4 KiB write then costs one metadata transaction.
pub const MAX_INLINE: u64 = 4096;
/// Longest extended attribute name: XATTR_NAME_MAX on Linux.
pub const MAX_XATTR_NAME: usize = 255;
/// Largest extended attribute value: XATTR_SIZE_MAX on Linux.
pub const MAX_XATTR_VALUE: usize = 65_536;
/// Extents one `CommitExtents` may carry (bounds the transaction).
pub const MAX_EXTENTS_PER_COMMIT: usize = 4096;
