//! Bounds of the namespace, with the reason for each.

/// Longest name of a directory entry, in bytes: NAME_MAX on Linux.
pub const MAX_NAME: usize = 255;
/// Longest symlink target, in bytes: PATH_MAX less its terminating NUL.
pub const MAX_SYMLINK: usize = 4095;
/// Most links to one inode (and subdirectories of one directory): ext4's limit.
pub const MAX_LINKS: u32 = 65_000;
