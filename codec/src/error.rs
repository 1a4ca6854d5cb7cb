use hive_wire::{ChunkId, ShardError, ShardIndex};

/// What went wrong turning bytes into shards or shards back into bytes.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A setting is out of range; `field` names it as a config file would.
    #[error("invalid codec setting {field}: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The erasure scheme is outside 1 <= k <= 32, 0 <= m <= 16.
    #[error("unsupported erasure scheme {k}+{m}: k must be 1..=32 and m 0..=16")]
    UnsupportedScheme {
        /// Data shards asked for.
        k: u8,
        /// Parity shards asked for.
        m: u8,
    },
    /// A chunk longer than the configured maximum.
    #[error("chunk of {len} bytes exceeds the maximum chunk size of {max} bytes")]
    ChunkTooLarge {
        /// Its length.
        len: u64,
        /// The maximum.
        max: u32,
    },
    /// Not one shard offered was intact, so not even the scheme of the chunk is known.
    #[error("cannot rebuild chunk {chunk}: no intact shard among {} offered", rejected.len())]
    NoIntactShards {
        /// The chunk.
        chunk: ChunkId,
        /// Every shard offered, and why it was refused.
        rejected: Vec<RejectedShard>,
    },
    /// Too few intact shards to rebuild the chunk.
    #[error("cannot rebuild chunk {chunk}: {have} intact shards, {need} needed ({} rejected)", rejected.len())]
    NotEnoughShards {
        /// The chunk.
        chunk: ChunkId,
        /// Intact, distinct shards present.
        have: usize,
        /// Shards needed (k).
        need: usize,
        /// Shards that were offered but refused, and why.
        rejected: Vec<RejectedShard>,
    },
    /// The rebuilt stream does not hash to the headers' `stream_hash`: some shard that
    /// passed its checksum holds the wrong payload.
    #[error("chunk {chunk}: rebuilt stream hashes to {actual:08x}, headers say {expected:08x}")]
    StreamMismatch {
        /// The chunk.
        chunk: ChunkId,
        /// The hash in the headers.
        expected: u32,
        /// The hash of what was rebuilt.
        actual: u32,
    },
    /// The shards verified but the stored stream is not valid zstd.
    #[error("chunk {chunk}: stored stream does not decompress: {source}")]
    Decompress {
        /// The chunk.
        chunk: ChunkId,
        /// zstd's complaint.
        source: std::io::Error,
    },
    /// The rebuilt chunk has a different length than its headers say.
    #[error("chunk {chunk}: rebuilt {actual} bytes, headers say {expected}")]
    LengthMismatch {
        /// The chunk.
        chunk: ChunkId,
        /// Length from the headers.
        expected: u32,
        /// Length rebuilt.
        actual: usize,
    },
    /// The rebuilt bytes do not hash to the chunk id: the shards were forged or a
    /// defect escaped the checksums.
    #[error("rebuilt chunk hashes to {actual}, expected {expected}")]
    HashMismatch {
        /// The id asked for.
        expected: ChunkId,
        /// The hash of what was rebuilt.
        actual: ChunkId,
    },
    /// zstd could not set up a context (out of memory).
    #[error("zstd context: {0}")]
    Zstd(std::io::Error),
    /// The Reed-Solomon crate refused its input; with verified shards this is a bug.
    #[error("reed-solomon: {0}")]
    ReedSolomon(reed_solomon_simd::Error),
}

/// A shard offered to the decoder and refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedShard {
    /// Its position in the list the caller passed.
    pub position: usize,
    /// Why it was refused.
    pub reason: ShardRejection,
}

/// Why a shard was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardRejection {
    /// Its bytes fail the format or checksum.
    #[error("corrupt: {0}")]
    Corrupt(#[from] ShardError),
    /// An intact shard of a different chunk (a misdirected write or a wrong answer).
    #[error("belongs to chunk {found}")]
    WrongChunk {
        /// The chunk it belongs to.
        found: ChunkId,
    },
    /// An intact shard of this chunk but not the index that was asked for.
    #[error("is shard {found}, expected shard {expected}")]
    WrongIndex {
        /// The index asked for.
        expected: ShardIndex,
        /// The index it carries.
        found: ShardIndex,
    },
    /// An intact shard of another encoding of the chunk than the one decoded (another
    /// compressor's output, say): it cannot be combined with the others.
    #[error("belongs to another encoding of the chunk")]
    Inconsistent,
    /// Another shard with the same index was already accepted.
    #[error("duplicate of shard {0}")]
    Duplicate(ShardIndex),
}

impl std::fmt::Display for RejectedShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard at position {} {}", self.position, self.reason)
    }
}
