//! Typed identifiers and the byte formats that cross the network and land on disk.
//!
//! Everything here is fixed-width and little-endian; nothing on the wire is a `usize`.
//! Decoders take untrusted bytes and return errors, never panic.

pub mod bloom;
pub mod census;
pub mod files;
mod hex;
mod ids;
pub mod limits;
mod shard;
pub mod units;

pub use census::ChunkSetDigest;
pub use hex::{HexError, decode_hex, encode_hex};
pub use ids::{ChunkId, Epoch, FailureDomain, NodeId, PgId, ShardIndex, ShardName};
pub use shard::{
    EncodingTag, MAX_CHUNK_LEN, MAX_DATA_SHARDS, MAX_PARITY_SHARDS, SHARD_ALIGN,
    SHARD_FORMAT_VERSION, SHARD_HEADER_LEN, SHARD_MAGIC, ShardError, ShardHeader, ShardRef,
    shard_checksum, shard_payload_len, stream_hash,
};
#[cfg(feature = "net")]
pub mod net;
