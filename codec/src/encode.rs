//! Chunk → (compressed) stream → k data + m parity payloads, each sealed with a header.

use hive_wire::{ChunkId, MAX_CHUNK_LEN, SHARD_HEADER_LEN, ShardHeader, ShardIndex};

use crate::compress::Compressor;
use crate::config::{CompressionConfig, ErasureScheme};
use crate::decode::ShardBytes;
use crate::erasure::{ErasureEncoder, Payloads};
use crate::error::CodecError;

/// The shards of one chunk, borrowed from the chunk and from the encoder's buffers
/// until the next chunk is encoded.
pub struct EncodedChunk<'a> {
    template: ShardHeader,
    headers: &'a [[u8; SHARD_HEADER_LEN]],
    payloads: Payloads<'a>,
}

impl EncodedChunk<'_> {
    /// The chunk's id.
    pub fn id(&self) -> ChunkId {
        self.template.chunk_id
    }

    /// The fields every shard of this chunk shares (its `index` is 0).
    pub fn header(&self) -> &ShardHeader {
        &self.template
    }

    /// Number of shards: k + m.
    pub fn width(&self) -> usize {
        self.headers.len()
    }

    /// Shard `index`: its header and payload, tagged with the index it must carry.
    pub fn shard(&self, index: usize) -> ShardBytes<'_> {
        ShardBytes {
            header: &self.headers[index],
            payload: self.payloads.get(index),
            expected: Some(shard_index(index)),
        }
    }

    /// Shard `index` as one buffer, header then payload, as it is stored on disk.
    pub fn shard_to_vec(&self, index: usize) -> Vec<u8> {
        let shard = self.shard(index);
        [shard.header, shard.payload].concat()
    }

    /// Bytes all shards occupy, headers included.
    pub fn stored_len(&self) -> u64 {
        self.width() as u64 * (SHARD_HEADER_LEN as u64 + self.payloads.payload_len() as u64)
    }
}

fn shard_index(index: usize) -> ShardIndex {
    ShardIndex(u8::try_from(index).expect("invariant: at most 48 shards"))
}

/// Encodes chunks into shards for one erasure scheme, reusing its buffers and its
/// Reed-Solomon and zstd state from chunk to chunk.
pub struct ChunkEncoder {
    scheme: ErasureScheme,
    compressor: Compressor,
    erasure: ErasureEncoder,
    compressed: Vec<u8>,
    headers: Vec<[u8; SHARD_HEADER_LEN]>,
}

impl ChunkEncoder {
    /// An encoder for `scheme` with compression policy `compression`.
    pub fn new(scheme: ErasureScheme, compression: CompressionConfig) -> Result<Self, CodecError> {
        Ok(Self {
            scheme,
            compressor: Compressor::new(compression)?,
            erasure: ErasureEncoder::default(),
            compressed: Vec::new(),
            headers: Vec::with_capacity(scheme.width()),
        })
    }

    /// The scheme this encoder writes.
    pub fn scheme(&self) -> ErasureScheme {
        self.scheme
    }

    /// Compresses (when it pays), splits and seals `chunk`, whose id the caller has
    /// already computed with [`crate::chunk_id`] (it needs it first, to ask whether
    /// the chunk is stored already).
    pub fn encode<'a>(
        &'a mut self,
        id: ChunkId,
        chunk: &'a [u8],
    ) -> Result<EncodedChunk<'a>, CodecError> {
        debug_assert_eq!(
            id,
            crate::chunk_id(chunk),
            "encode given the wrong chunk id"
        );
        let chunk_len = u32::try_from(chunk.len())
            .ok()
            .filter(|len| *len <= MAX_CHUNK_LEN)
            .ok_or(CodecError::ChunkTooLarge {
                len: chunk.len() as u64,
                max: MAX_CHUNK_LEN,
            })?;
        self.compressed.resize(chunk.len(), 0);
        let compressed_len = self.compressor.compress_into(chunk, &mut self.compressed);
        let stream = match compressed_len {
            Some(len) => &self.compressed[..len],
            None => chunk,
        };
        let (k, m) = (self.scheme.k(), self.scheme.m());
        let payloads = self.erasure.encode(stream, k, m)?;
        let template = ShardHeader {
            chunk_id: id,
            index: ShardIndex(0),
            k,
            m,
            compressed: compressed_len.is_some(),
            chunk_len,
            stream_len: u32::try_from(stream.len()).expect("invariant: stream <= chunk"),
            payload_len: u32::try_from(payloads.payload_len())
                .expect("invariant: payload <= chunk + pad"),
            stream_hash: hive_wire::stream_hash(stream),
        };
        self.headers.clear();
        for index in 0..self.scheme.width() {
            let header = ShardHeader {
                index: shard_index(index),
                ..template
            };
            self.headers.push(header.encode(payloads.get(index)));
        }
        Ok(EncodedChunk {
            template,
            headers: &self.headers,
            payloads,
        })
    }
}
