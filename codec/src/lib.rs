//! How bytes become shards and where the shards live.
//!
//! The path of one chunk, in the order the functions run:
//! 1. [`Chunker::split`] cuts a buffer at content-defined boundaries (FastCDC), or
//!    [`Chunker::single`] keeps a small buffer whole;
//! 2. [`chunk_id`] names each chunk by the BLAKE3 hash of its bytes;
//! 3. [`ChunkEncoder::encode`] compresses the chunk with zstd when that pays
//!    ([`Compressor`]), splits the stream into k data shards, computes m parity shards
//!    with Reed-Solomon and seals every shard with its header and checksum;
//! 4. [`ClusterMap::pg_of`] and [`ClusterMap::place`] say which nodes hold which shard;
//! 5. [`ChunkDecoder::decode`] takes any k shards that verify and returns the chunk,
//!    checked against its id.

mod chunk_id;
mod chunker;
mod cluster_view;
mod compress;
mod config;
pub mod constants;
mod decode;
pub mod domain;
mod encode;
mod erasure;
mod error;
mod placement;

pub use chunk_id::chunk_id;
pub use chunker::Chunker;
#[cfg(feature = "net")]
pub use cluster_view::ViewError;
pub use cluster_view::{ClusterView, DEFAULT_REPAIR_RATE};
pub use compress::Compressor;
pub use config::{ChunkerConfig, CodecConfig, CompressionConfig, ErasureScheme, Fraction};
pub use decode::{ChunkDecoder, Decoded, ShardBytes};
pub use encode::{ChunkEncoder, EncodedChunk};
pub use erasure::{ErasureDecoder, ErasureEncoder, Payloads, shard_payload_len};
pub use error::{CodecError, RejectedShard, ShardRejection};
pub use placement::{ClusterMap, MAX_PG_BITS, NodeInfo, NodeState, PlacementError};

pub use constants::SHARD_ALIGN;
