//! The shard format: a 64-byte header followed by the shard's payload.
//!
//! The same bytes travel on the wire and land on disk, so a shard is verified by the
//! same code wherever it is read. Every field is little-endian:
//!
//! | offset | width | field        | meaning                                                  |
//! |-------:|------:|--------------|----------------------------------------------------------|
//! |      0 |     4 | magic        | `HVSH`                                                   |
//! |      4 |     2 | version      | format version, currently 3                              |
//! |      6 |     2 | reserved     | 0                                                        |
//! |      8 |    32 | chunk_id     | BLAKE3 of the uncompressed chunk                         |
//! |     40 |     1 | shard_index  | `0..k` data, `k..k+m` parity                             |
//! |     41 |     1 | k            | data shards, 1..=32                                      |
//! |     42 |     1 | m            | parity shards, 0..=16                                    |
//! |     43 |     1 | flags        | bit 0: stream is zstd-compressed; other bits must be 0   |
//! |     44 |     4 | chunk_len    | length of the uncompressed chunk                         |
//! |     48 |     4 | stream_len   | length of the stored stream (compressed or not), before padding |
//! |     52 |     4 | stream_hash  | low 32 bits of xxh3-64 of the stored stream (before padding) |
//! |     56 |     8 | checksum     | xxh3-64 of the payload, seeded with xxh3-64 of bytes 0..56 |
//!
//! The payload's length is not stored: it is the stream's share of k shards, rounded up
//! to [`SHARD_ALIGN`] ([`shard_payload_len`]).
//!
//! Every shard of one encoding of a chunk carries the same fields but its index, so
//! shards of two encodings (another compressor's output, say) are told apart by their
//! headers alone: `stream_hash` makes that all but exact, and a mix that slipped past
//! it fails the chunk's BLAKE3 check after decoding. Version 2 stored the payload
//! length, a header length and a 64-bit stream hash in a 72-byte header; version 3 left
//! out what is derived or redundant, 8 bytes on every shard (48 a chunk at 4+2). An
//! older shard is refused by version.

use twox_hash::XxHash3_64;

use crate::ids::{ChunkId, ShardIndex, ShardName};

/// First four bytes of every shard.
pub const SHARD_MAGIC: [u8; 4] = *b"HVSH";
/// The format version this build writes and reads.
pub const SHARD_FORMAT_VERSION: u16 = 3;
/// Bytes in a version-3 header.
pub const SHARD_HEADER_LEN: usize = 64;
/// Shard payloads are padded to a multiple of this many bytes: reed-solomon-simd needs
/// an even length (it pads to its 64-byte SIMD blocks internally, in its own buffers).
/// Padding to 64 here cost a small chunk 32 bytes a shard on average, about 190 bytes
/// a chunk at 4+2, for no speed that could be measured.
pub const SHARD_ALIGN: usize = 2;
/// Largest k: beyond 32 data shards the per-shard overhead outweighs any gain.
pub const MAX_DATA_SHARDS: u8 = 32;
/// Largest m: more parity than this is better served by more replicas of smaller groups.
pub const MAX_PARITY_SHARDS: u8 = 16;
/// Largest chunk the format describes: the chunker's own maximum (16 MiB).
pub const MAX_CHUNK_LEN: u32 = 16 * 1024 * 1024;

const FLAG_COMPRESSED: u8 = 0b0000_0001;
const CHECKSUMMED_HEADER: usize = 56;
/// Bytes 41..56 of a header: every field that names the encoding of a chunk (all but
/// the chunk id and the index).
const ENCODING_FIELDS: std::ops::Range<usize> = 41..56;

/// Payload length of each shard when a `stream_len`-byte stream is split into `k`:
/// the share of each, rounded up to [`SHARD_ALIGN`], and never zero.
pub fn shard_payload_len(stream_len: usize, k: u8) -> usize {
    assert!(k >= 1, "k must be at least 1");
    stream_len
        .div_ceil(usize::from(k))
        .next_multiple_of(SHARD_ALIGN)
        .max(SHARD_ALIGN)
}

/// Why bytes are not a valid shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Fewer bytes than a header.
    #[error("shard is {len} bytes, shorter than the {SHARD_HEADER_LEN}-byte header")]
    TooShort {
        /// Bytes present.
        len: usize,
    },
    /// A header buffer that is not exactly one header long.
    #[error("shard header is {len} bytes; version 3 headers are exactly {SHARD_HEADER_LEN}")]
    HeaderLength {
        /// Bytes given as the header.
        len: usize,
    },
    /// The bytes do not start with the shard magic.
    #[error("not a shard: magic is {found:02x?}, expected {SHARD_MAGIC:02x?}")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// Written by a format version this build cannot read.
    #[error(
        "shard format version {found} is not supported (this build reads version {SHARD_FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// The version in the header.
        found: u16,
    },
    /// A header field holds a value the format forbids.
    #[error("invalid shard header: {0}")]
    InvalidField(&'static str),
    /// The payload is not as long as the header says.
    #[error("shard payload is {actual} bytes but its header declares {declared}")]
    PayloadLength {
        /// Length in the header.
        declared: u32,
        /// Length received.
        actual: usize,
    },
    /// Header or payload changed after the shard was written.
    #[error(
        "checksum mismatch on shard {index} of chunk {chunk}: stored {stored:016x}, computed {computed:016x}"
    )]
    ChecksumMismatch {
        /// The chunk the (possibly damaged) header names.
        chunk: ChunkId,
        /// The index the (possibly damaged) header names.
        index: ShardIndex,
        /// Checksum in the header.
        stored: u64,
        /// Checksum of the bytes received.
        computed: u64,
    },
}

/// The decoded header of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHeader {
    /// The chunk this shard belongs to.
    pub chunk_id: ChunkId,
    /// This shard's position among the chunk's k + m shards.
    pub index: ShardIndex,
    /// Data shards of the chunk.
    pub k: u8,
    /// Parity shards of the chunk.
    pub m: u8,
    /// Whether the stream is zstd-compressed.
    pub compressed: bool,
    /// Length of the original, uncompressed chunk.
    pub chunk_len: u32,
    /// Length of the stored stream before it was padded and split into k shards.
    pub stream_len: u32,
    /// Length of the payload; the same for every shard of a chunk, and always
    /// [`shard_payload_len`] of `stream_len` and `k` (not stored: derived on decode).
    pub payload_len: u32,
    /// The low 32 bits of xxh3-64 of the stored stream before padding: tells two
    /// encodings of one chunk apart (see [`ShardHeader::encoding`]).
    pub stream_hash: u32,
}

/// Names one encoding of a chunk under one scheme: a 32-bit digest of every header
/// field but the shard index. Shards with equal tags can be decoded together; a store
/// keeps the tag of each shard in its index so the dedup question can count shards of
/// one encoding without reading them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EncodingTag(pub u32);

impl ShardHeader {
    /// The name the shard is stored under.
    pub fn name(&self) -> ShardName {
        ShardName {
            chunk: self.chunk_id,
            k: self.k,
            m: self.m,
            index: self.index,
        }
    }

    /// The encoding this shard belongs to.
    pub fn encoding(&self) -> EncodingTag {
        let mut fields = [0u8; SHARD_HEADER_LEN];
        self.write_fields(&mut fields);
        let digest = XxHash3_64::oneshot(&fields[ENCODING_FIELDS]);
        // The low half of a 64-bit hash: uniform, and the width the index keeps.
        EncodingTag(digest as u32)
    }

    /// Whether two shards belong to the same encoding of the same chunk.
    pub fn same_encoding(&self, other: &ShardHeader) -> bool {
        ShardHeader {
            index: other.index,
            ..*self
        } == *other
    }

    /// Checks the invariants a header must satisfy regardless of its payload.
    pub fn validate(&self) -> Result<(), ShardError> {
        if !(1..=MAX_DATA_SHARDS).contains(&self.k) {
            return Err(ShardError::InvalidField("k must be 1..=32"));
        }
        if self.m > MAX_PARITY_SHARDS {
            return Err(ShardError::InvalidField("m must be 0..=16"));
        }
        if u16::from(self.index.get()) >= u16::from(self.k) + u16::from(self.m) {
            return Err(ShardError::InvalidField("shard index must be below k + m"));
        }
        if self.chunk_len > MAX_CHUNK_LEN {
            return Err(ShardError::InvalidField(
                "chunk_len exceeds the 16 MiB maximum",
            ));
        }
        if self.compressed && self.stream_len >= self.chunk_len {
            return Err(ShardError::InvalidField(
                "a compressed stream must be shorter than its chunk",
            ));
        }
        if !self.compressed && self.stream_len != self.chunk_len {
            return Err(ShardError::InvalidField(
                "an uncompressed stream must be as long as its chunk",
            ));
        }
        if u64::from(self.payload_len) * u64::from(self.k) < u64::from(self.stream_len) {
            return Err(ShardError::InvalidField(
                "k payloads are too short to hold the stream",
            ));
        }
        if self.payload_len as usize != shard_payload_len(self.stream_len as usize, self.k) {
            return Err(ShardError::InvalidField(
                "payload_len must be the stream's share of k shards",
            ));
        }
        Ok(())
    }

    /// Encodes this header for `payload`, computing the checksum over both.
    ///
    /// Panics if the header is invalid or `payload` is not `payload_len` long: the
    /// encoder builds both, so a mismatch is a bug that would write a corrupt shard.
    pub fn encode(&self, payload: &[u8]) -> [u8; SHARD_HEADER_LEN] {
        assert!(
            self.validate().is_ok(),
            "encoding an invalid shard header {self:?}"
        );
        assert_eq!(payload.len(), self.payload_len as usize, "payload length");
        let mut out = [0u8; SHARD_HEADER_LEN];
        self.write_fields(&mut out);
        let checksum = shard_checksum(&out[..CHECKSUMMED_HEADER], payload);
        out[56..64].copy_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Writes every field but the checksum.
    fn write_fields(&self, out: &mut [u8; SHARD_HEADER_LEN]) {
        out[0..4].copy_from_slice(&SHARD_MAGIC);
        out[4..6].copy_from_slice(&SHARD_FORMAT_VERSION.to_le_bytes());
        out[8..40].copy_from_slice(self.chunk_id.as_bytes());
        out[40] = self.index.get();
        out[41] = self.k;
        out[42] = self.m;
        out[43] = if self.compressed { FLAG_COMPRESSED } else { 0 };
        out[44..48].copy_from_slice(&self.chunk_len.to_le_bytes());
        out[48..52].copy_from_slice(&self.stream_len.to_le_bytes());
        out[52..56].copy_from_slice(&self.stream_hash.to_le_bytes());
    }

    fn decode_fields(bytes: &[u8; SHARD_HEADER_LEN]) -> Result<(Self, u64), ShardError> {
        let magic = le_array::<4>(bytes, 0);
        if magic != SHARD_MAGIC {
            return Err(ShardError::BadMagic { found: magic });
        }
        let version = u16::from_le_bytes(le_array(bytes, 4));
        if version != SHARD_FORMAT_VERSION {
            return Err(ShardError::UnsupportedVersion { found: version });
        }
        if le_array::<2>(bytes, 6) != [0, 0] {
            return Err(ShardError::InvalidField("reserved header bytes are set"));
        }
        let (k, stream_len) = (bytes[41], u32::from_le_bytes(le_array(bytes, 48)));
        // Derived only from fields in range; out of range, validation refuses the
        // header (after the checksum, so damage is reported as damage).
        let payload_len = if (1..=MAX_DATA_SHARDS).contains(&k) && stream_len <= MAX_CHUNK_LEN {
            shard_payload_len(stream_len as usize, k) as u32
        } else {
            0
        };
        let flags = bytes[43];
        if flags & !FLAG_COMPRESSED != 0 {
            return Err(ShardError::InvalidField("reserved flag bits are set"));
        }
        let header = Self {
            chunk_id: ChunkId(le_array(bytes, 8)),
            index: ShardIndex(bytes[40]),
            k,
            m: bytes[42],
            compressed: flags & FLAG_COMPRESSED != 0,
            chunk_len: u32::from_le_bytes(le_array(bytes, 44)),
            stream_len,
            payload_len,
            stream_hash: u32::from_le_bytes(le_array(bytes, 52)),
        };
        Ok((header, u64::from_le_bytes(le_array(bytes, 56))))
    }
}

fn le_array<const N: usize>(bytes: &[u8; SHARD_HEADER_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// The checksum of a shard: xxh3-64 of the payload, seeded with xxh3-64 of the first 56
/// header bytes. Chaining two one-shot hashes covers header and payload without a
/// streaming hasher's state, and lets the payload pass run the SIMD kernel the CPU has.
pub fn shard_checksum(header_prefix: &[u8], payload: &[u8]) -> u64 {
    let seed = XxHash3_64::oneshot(header_prefix);
    XxHash3_64::oneshot_with_seed(seed, payload)
}

/// The hash a header keeps of its stream: the low 32 bits of xxh3-64 (uniform).
pub fn stream_hash(stream: &[u8]) -> u32 {
    XxHash3_64::oneshot(stream) as u32
}

/// A shard whose header and checksum have been verified, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRef<'a> {
    /// The verified header.
    pub header: ShardHeader,
    /// The verified payload.
    pub payload: &'a [u8],
}

impl<'a> ShardRef<'a> {
    /// Verifies a shard stored as header immediately followed by payload.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ShardError> {
        if bytes.len() < SHARD_HEADER_LEN {
            return Err(ShardError::TooShort { len: bytes.len() });
        }
        let (header, payload) = bytes.split_at(SHARD_HEADER_LEN);
        Self::parse_split(header, payload)
    }

    /// Verifies a shard whose header and payload arrived in separate buffers.
    pub fn parse_split(header: &[u8], payload: &'a [u8]) -> Result<Self, ShardError> {
        let header: &[u8; SHARD_HEADER_LEN] = header
            .try_into()
            .map_err(|_| ShardError::HeaderLength { len: header.len() })?;
        let (fields, stored) = ShardHeader::decode_fields(header)?;
        if payload.len() != fields.payload_len as usize && fields.payload_len != 0 {
            return Err(ShardError::PayloadLength {
                declared: fields.payload_len,
                actual: payload.len(),
            });
        }
        let computed = shard_checksum(&header[..CHECKSUMMED_HEADER], payload);
        if computed != stored {
            return Err(ShardError::ChecksumMismatch {
                chunk: fields.chunk_id,
                index: fields.index,
                stored,
                computed,
            });
        }
        // Field rules are checked after the checksum: a damaged field is reported as
        // damage, and only an intact header that breaks the rules as a format error.
        fields.validate()?;
        Ok(Self {
            header: fields,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(payload: &[u8]) -> ShardHeader {
        ShardHeader {
            chunk_id: ChunkId([7; 32]),
            index: ShardIndex(2),
            k: 4,
            m: 2,
            compressed: true,
            chunk_len: 1000,
            // A stream whose share of 4 shards is exactly this payload.
            stream_len: u32::try_from(payload.len() * 4 - 6).expect("small test payload"),
            payload_len: u32::try_from(payload.len()).expect("small test payload"),
            stream_hash: 0x9abc_def0,
        }
    }

    fn encoded(payload: &[u8]) -> Vec<u8> {
        let mut bytes = sample(payload).encode(payload).to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn round_trip() {
        let payload = vec![0x5a; 64];
        let bytes = encoded(&payload);
        let shard = ShardRef::parse(&bytes).expect("valid shard");
        assert_eq!(shard.header, sample(&payload));
        assert_eq!(shard.payload, &payload[..]);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let payload: Vec<u8> = (0..128u8).collect();
        let bytes = encoded(&payload);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                ShardRef::parse(&damaged).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn wrong_version_and_truncation_are_named() {
        let payload = vec![1; 64];
        let mut bytes = encoded(&payload);
        assert_eq!(
            ShardRef::parse(&bytes[..10]),
            Err(ShardError::TooShort { len: 10 })
        );
        assert!(matches!(
            ShardRef::parse(&bytes[..bytes.len() - 1]),
            Err(ShardError::PayloadLength {
                declared: 64,
                actual: 63
            })
        ));
        bytes[4] = 9;
        assert_eq!(
            ShardRef::parse(&bytes),
            Err(ShardError::UnsupportedVersion { found: 9 })
        );
    }

    #[test]
    fn the_encoding_tag_ignores_only_the_index() {
        let payload = vec![3; 64];
        let a = sample(&payload);
        let b = ShardHeader {
            index: ShardIndex(5),
            ..a
        };
        assert_eq!(a.encoding(), b.encoding());
        assert!(a.same_encoding(&b));
        let other = ShardHeader {
            stream_hash: a.stream_hash ^ 1,
            ..a
        };
        assert_ne!(
            a.encoding(),
            other.encoding(),
            "another stream, another tag"
        );
        assert!(!a.same_encoding(&other));
        let scheme = ShardHeader { m: 3, ..a };
        assert_ne!(a.encoding(), scheme.encoding());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = ShardRef::parse(&bytes);
        }

        #[test]
        fn arbitrary_headers_with_valid_magic_never_panic(
            fields in proptest::collection::vec(any::<u8>(), 56),
            stream_len in 0u32..1000,
        ) {
            // A well-formed prefix and checksum reach the field validation with any values.
            let mut header = [0u8; SHARD_HEADER_LEN];
            header[..56].copy_from_slice(&fields);
            header[0..4].copy_from_slice(&SHARD_MAGIC);
            header[4..6].copy_from_slice(&SHARD_FORMAT_VERSION.to_le_bytes());
            header[6..8].fill(0);
            header[48..52].copy_from_slice(&stream_len.to_le_bytes());
            let k = header[41].max(1);
            let payload = vec![0u8; shard_payload_len(stream_len as usize, k)];
            let checksum = shard_checksum(&header[..56], &payload);
            header[56..].copy_from_slice(&checksum.to_le_bytes());
            if let Ok(shard) = ShardRef::parse_split(&header, &payload) {
                prop_assert!(shard.header.validate().is_ok());
            }
        }
    }
}
