//! Bounds of the namespace, with the reason for each.

/// Longest name of a directory entry, in bytes: NAME_MAX on Linux.
pub const MAX_NAME: usize = 255;
/// Longest symlink target, in bytes: PATH_MAX less its terminating NUL.
pub const MAX_SYMLINK: usize = 4095;
/// Most links to one inode (and subdirectories of one directory): ext4's limit.
pub const MAX_LINKS: u32 = 65_000;
/// The largest file, inline file and extent commit: shared with the clients, which
/// keep within them before they send.
pub use hive_wire::limits::{MAX_EXTENTS_PER_COMMIT, MAX_FILE_SIZE, MAX_INLINE};
/// Longest extended attribute name: XATTR_NAME_MAX on Linux.
pub const MAX_XATTR_NAME: usize = 255;
/// Largest extended attribute value: XATTR_SIZE_MAX on Linux.
pub const MAX_XATTR_VALUE: usize = 65_536;
/// File bytes one extent page covers. A file's extents are stored in pages cut at these
/// boundaries, so a commit reads and rewrites only the pages it touches (one or two for a
/// write-back buffer) by point reads, and a file rewritten many times leaves few keys.
/// 64 MiB holds a few hundred full chunks, or 16k 4 KiB extents (768 KiB) at worst.
pub const EXTENT_PAGE_SPAN: u64 = 64 << 20;
/// Pages of a whole file read by point reads; a larger file is read by one prefix scan
/// (a sparse file can span many pages that do not exist).
pub const POINT_READ_PAGES: u64 = 16;
/// Longest volume name: what a client certificate's volume grant can carry.
pub const MAX_VOLUME_NAME: usize = 64;
/// The volume made with every namespace, rooted at inode 1: what a mount uses when it
/// names no volume.
pub const DEFAULT_VOLUME: &[u8] = b"default";
/// Inodes a forced volume delete may remove in one transaction; a larger volume must be
/// emptied first.
pub const MAX_FORCED_DELETE: usize = 100_000;
/// Largest k and m of a volume's storage class (the shard format's limits).
pub const MAX_K: u8 = 32;
/// See [`MAX_K`].
pub const MAX_M: u8 = 16;
/// Deepest directory nesting followed when walking up a parent chain: far beyond any
/// real tree (paths are at most 4096 bytes), so only a corrupt cycle reaches it.
pub const MAX_DEPTH: usize = 4096;
/// Chunks one object record may list: more than a manifest can (a manifest is one chunk
/// of at most 16 MiB, 36 bytes a chunk), so every object `hive put` stores fits.
pub const MAX_OBJECT_CHUNKS: usize = 1 << 19;
