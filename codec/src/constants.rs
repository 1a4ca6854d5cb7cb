//! Every size and bound the codec uses, with the reason for its value.

use hive_wire::{MAX_DATA_SHARDS, MAX_PARITY_SHARDS};

/// Shard payloads are padded to a multiple of this (the shard format's: its headers do
/// not store the payload's length).
pub use hive_wire::SHARD_ALIGN;

/// Most shards a chunk can have (k + m at their maxima); sizes the decoder's fixed
/// per-index table, so decoding allocates nothing per shard.
pub const MAX_WIDTH: usize = MAX_DATA_SHARDS as usize + MAX_PARITY_SHARDS as usize;

/// Chunks at least this long are probed before zstd runs over all of them: below it,
/// compressing the whole chunk costs little more than the probe would.
pub const PROBE_MIN_LEN: usize = 128 * 1024;

/// Chunks shorter than this are compressed at least at [`SMALL_CHUNK_LEVEL`]: each
/// one's shards carry some 1.1 KiB of headers, so every byte zstd saves counts, and a
/// small chunk costs little time at any level.
pub const SMALL_CHUNK_LEN: usize = 128 * 1024;

/// The zstd level small chunks get at least (zstd's own default). Measured on the
/// `hive-bench gc` small-file tree: 6% smaller than level 1.
pub const SMALL_CHUNK_LEVEL: i32 = 3;

/// Windows sampled from a chunk by the compressibility probe, spread evenly over it so
/// a compressible region anywhere in the chunk is likely to be seen.
pub const PROBE_WINDOWS: usize = 8;

/// Bytes per probe window: long enough for zstd to find repeats within a window.
pub const PROBE_WINDOW: usize = 4096;

/// k-subsets of one encoding's shards a decode tries before it fails. The first is the
/// usual case; more are tried only when shards that pass their checksums still do not
/// rebuild the chunk (a forged shard, or a defect the checksums missed). 4+2 has 15
/// subsets in all; this bounds the work a bad set of wide shards can cause.
pub const MAX_DECODE_ATTEMPTS: usize = 64;

/// Past placements a cluster map keeps, newest first. A read that misses on a chunk's
/// current holders asks these placements' holders, so a chunk stays readable while
/// rebalance moves its shards; rebalance drops an entry once every group it placed is
/// settled under a newer one. Each entry is one node list (a few dozen bytes a node), and
/// sixteen placement changes faster than rebalance settles them is far past what an
/// operator does by hand. Past it, the oldest is dropped with a warning.
pub const MAX_PLACEMENT_HISTORY: usize = 16;

/// The largest placement weight a node may be given. Weights are relative capacities:
/// 65,536 to 1 covers any mix of drives, and keeps a typo like 4294967295 from taking
/// every slot of every group.
pub const MAX_WEIGHT: u32 = 1 << 16;
