//! Any k intact shards → the stream → the chunk, checked against its id.

use hive_wire::{ChunkId, ShardHeader, ShardIndex, ShardRef};

use crate::chunk_id::chunk_id;
use crate::constants::MAX_WIDTH;
use crate::erasure::ErasureDecoder;
use crate::error::{CodecError, RejectedShard, ShardRejection};

/// One shard as received: its header and payload bytes, not yet trusted, and the index
/// the holder was asked for, if any.
#[derive(Debug, Clone, Copy)]
pub struct ShardBytes<'a> {
    /// The 64 header bytes.
    pub header: &'a [u8],
    /// The payload bytes.
    pub payload: &'a [u8],
    /// The index this shard must carry; `None` accepts any index of the chunk.
    pub expected: Option<ShardIndex>,
}

impl<'a> ShardBytes<'a> {
    /// A shard stored as header followed by payload in one buffer.
    pub fn contiguous(bytes: &'a [u8], expected: Option<ShardIndex>) -> Self {
        let (header, payload) = bytes.split_at(bytes.len().min(hive_wire::SHARD_HEADER_LEN));
        Self {
            header,
            payload,
            expected,
        }
    }

    /// Verifies the checksum and that the shard is the one asked for.
    pub fn verify(&self, chunk: ChunkId) -> Result<ShardRef<'a>, ShardRejection> {
        let shard = ShardRef::parse_split(self.header, self.payload)?;
        if shard.header.chunk_id != chunk {
            return Err(ShardRejection::WrongChunk {
                found: shard.header.chunk_id,
            });
        }
        match self.expected {
            Some(expected) if expected != shard.header.index => Err(ShardRejection::WrongIndex {
                expected,
                found: shard.header.index,
            }),
            _ => Ok(shard),
        }
    }
}

/// A rebuilt chunk, and the shards refused on the way (they are owed a repair).
#[derive(Debug)]
pub struct Decoded<'a> {
    /// The chunk's bytes; their BLAKE3 hash is the chunk id.
    pub data: &'a [u8],
    /// Shards that were offered and refused.
    pub rejected: Vec<RejectedShard>,
    /// Whether parity had to be used (a data shard was missing or bad).
    pub used_parity: bool,
}

/// Rebuilds chunks from shards, reusing its buffers and decoder state.
pub struct ChunkDecoder {
    erasure: ErasureDecoder,
    zstd: zstd::bulk::Decompressor<'static>,
    data: Vec<u8>,
}

impl ChunkDecoder {
    /// A decoder with empty buffers.
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self {
            erasure: ErasureDecoder::default(),
            zstd: zstd::bulk::Decompressor::new().map_err(CodecError::Zstd)?,
            data: Vec::new(),
        })
    }

    /// Rebuilds chunk `id` from `shards`, taken in the order given: the first k that
    /// verify are used, so callers list the shards they prefer (data shards) first.
    pub fn decode<'a>(
        &'a mut self,
        id: ChunkId,
        shards: &[ShardBytes<'a>],
    ) -> Result<Decoded<'a>, CodecError> {
        let verified = verify_shards(id, shards)?;
        let g = verified.geometry;
        let stream = self.erasure.decode(
            g.k,
            g.m,
            g.payload_len as usize,
            g.stream_len as usize,
            &verified.by_index[..usize::from(g.k) + usize::from(g.m)],
        )?;
        let data = if g.compressed {
            self.data.clear();
            self.data.reserve_exact(g.chunk_len as usize);
            self.zstd
                .decompress_to_buffer(stream, &mut self.data)
                .map_err(|source| CodecError::Decompress { chunk: id, source })?;
            &self.data[..]
        } else {
            stream
        };
        if data.len() != g.chunk_len as usize {
            return Err(CodecError::LengthMismatch {
                chunk: id,
                expected: g.chunk_len,
                actual: data.len(),
            });
        }
        let actual = chunk_id(data);
        if actual != id {
            return Err(CodecError::HashMismatch {
                expected: id,
                actual,
            });
        }
        Ok(Decoded {
            data,
            rejected: verified.rejected,
            used_parity: verified.used_parity,
        })
    }
}

/// The shards that passed verification, by index.
struct Verified<'a> {
    geometry: ShardHeader,
    by_index: [Option<&'a [u8]>; MAX_WIDTH],
    rejected: Vec<RejectedShard>,
    used_parity: bool,
}

/// Verifies `shards` in order until k distinct intact shards of chunk `id` are found.
fn verify_shards<'a>(id: ChunkId, shards: &[ShardBytes<'a>]) -> Result<Verified<'a>, CodecError> {
    let mut rejected = Vec::new();
    let mut by_index: [Option<&'a [u8]>; MAX_WIDTH] = [None; MAX_WIDTH];
    let mut have = 0;
    let mut geometry: Option<ShardHeader> = None;
    for (position, offered) in shards.iter().enumerate() {
        if geometry.is_some_and(|g| have == usize::from(g.k)) {
            break;
        }
        let reason = match offered.verify(id) {
            Err(reason) => reason,
            Ok(shard) => {
                let g = *geometry.get_or_insert(shard.header);
                let slot = &mut by_index[usize::from(shard.header.index.get())];
                if !same_geometry(&g, &shard.header) {
                    ShardRejection::Inconsistent
                } else if slot.is_some() {
                    ShardRejection::Duplicate(shard.header.index)
                } else {
                    *slot = Some(shard.payload);
                    have += 1;
                    continue;
                }
            }
        };
        rejected.push(RejectedShard { position, reason });
    }
    let Some(geometry) = geometry else {
        return Err(CodecError::NoIntactShards {
            chunk: id,
            rejected,
        });
    };
    let k = usize::from(geometry.k);
    if have < k {
        return Err(CodecError::NotEnoughShards {
            chunk: id,
            have,
            need: k,
            rejected,
        });
    }
    let used_parity = if k == 1 {
        by_index[0].is_none()
    } else {
        by_index[..k].iter().any(Option::is_none)
    };
    Ok(Verified {
        geometry,
        by_index,
        rejected,
        used_parity,
    })
}

/// Whether two shards can belong to the same encoding of a chunk.
fn same_geometry(a: &ShardHeader, b: &ShardHeader) -> bool {
    (
        a.k,
        a.m,
        a.compressed,
        a.chunk_len,
        a.stream_len,
        a.payload_len,
    ) == (
        b.k,
        b.m,
        b.compressed,
        b.chunk_len,
        b.stream_len,
        b.payload_len,
    )
}
