//! Every size and bound of the store, with the reason for its value.

/// The unit of every read and write: O_DIRECT on NVMe wants 4 KiB-aligned offsets,
/// lengths and buffers.
pub const BLOCK: u64 = 4096;

/// Records are laid out at offsets that are multiples of this, one after another, not
/// padded to blocks: a small shard takes its own bytes, not a 4 KiB block. Eight
/// bytes keeps every record header's 8-byte fields aligned and wastes 4 bytes a record
/// on average (16 wasted 8).
pub const RECORD_ALIGN: u32 = 8;

/// Where segment 0 starts. The two superblock copies sit in blocks 0 and 1; the rest of
/// the first MiB is left empty so segments start on a 1 MiB boundary (erase-block and
/// RAID-stripe friendly).
pub const DATA_START: u64 = 1 << 20;

/// Default segment size: large enough that sealing and reclaiming are rare, small enough
/// that reclaim moves little at a time.
pub const DEFAULT_SEGMENT_SIZE: u32 = 64 << 20;

/// Smallest segment size accepted: a segment must hold its header and some records.
pub const MIN_SEGMENT_SIZE: u32 = 256 << 10;

/// Appends waiting for the group-commit writer; a full queue makes `put` wait
/// (backpressure) instead of growing memory.
pub const APPEND_QUEUE: usize = 1024;

/// Most bytes of shards queued for the writer at once (each waits in its own record
/// buffer); a put beyond it waits. With [`APPEND_QUEUE`], this bounds a store's
/// memory however large the shards.
pub const QUEUED_BYTES: u64 = 128 << 20;

/// Most bytes written by one group commit (one write, one fdatasync).
pub const MAX_BATCH_BYTES: usize = 8 << 20;

/// Most records in one group commit.
pub const MAX_BATCH_RECORDS: usize = 256;

/// Segments kept back from puts: deletes and reclaim write records too, and without room
/// held back for them a full store could never be emptied.
pub const RESERVED_SEGMENTS: usize = 1;

/// Most deletes packed into one delete record (48 bytes each: 192 KiB), so a record
/// always fits in the smallest segment; a record header claiming more is refused.
pub const DELETES_PER_RECORD: usize = 4096;

/// Bytes read at a time when the open scan looks for the next record past a damaged
/// one (1 MiB): a damaged header or the unwritten end of a segment is crossed in a few
/// large reads instead of one read per record slot.
pub const SCAN_WINDOW: u32 = 1 << 20;

/// Records a scrub reads at once: enough reads in flight to keep an NVMe drive busy
/// (its queue is deep), few enough that a pass at a low rate still spreads evenly.
pub const SCRUB_BATCH: usize = 8;

/// Bits of each recent-touch Bloom filter (2 MiB): with [`TOUCH_HASHES`] hashes, about 1%
/// false positives at 1.7 million chunks touched in one window.
pub const TOUCH_FILTER_BITS: u64 = 1 << 24;
/// Hashes per chunk in a touch filter.
pub const TOUCH_HASHES: u32 = 4;
/// Touch filters kept: touches are remembered for at least this many windows less one.
pub const TOUCH_GENERATIONS: usize = 3;
/// How long each touch filter covers by default: garbage collection's grace period
/// must be at most (`TOUCH_GENERATIONS` - 1) windows for a delete to be allowed.
pub const DEFAULT_TOUCH_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);
