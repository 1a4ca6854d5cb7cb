//! The namespace's limits that both sides of a metadata call need: the client keeps
//! within them before it sends, the namespace (`hive-meta`) refuses what does not.
//! One definition, so the two never disagree.

/// Largest file, in bytes (1 PiB): past any file a cluster of this kind holds, and
/// low enough that an offset plus a length (an extent's, a write's, up to 4 GiB) never
/// overflows a u64 or an off_t. A change that would make a file larger, or an extent
/// that would end past it, is EFBIG.
pub const MAX_FILE_SIZE: u64 = 1 << 50;
/// Largest file kept inline in its metadata record (no chunk at all): small files are
/// most files, and a 4 KiB write then costs one metadata transaction.
pub const MAX_INLINE: u64 = 4096;
/// Extents one `CommitExtents` may carry (bounds the transaction).
pub const MAX_EXTENTS_PER_COMMIT: usize = 4096;
/// Chunk ids one `VolumeChunks` page carries, about (whole extent pages): 1 MiB of ids.
pub const MAX_VOLUME_CHUNKS_PAGE: usize = 32 * 1024;
