//! The on-disk format: superblock, segment header and record header. Pure encode and
//! decode; every decoder takes untrusted bytes and returns an error, never panics.
//!
//! All integers are little-endian. Checksums are xxh3-64 over the bytes before them.

use hive_wire::{ChunkId, EncodingTag, NodeId, ShardIndex, ShardName};
use twox_hash::XxHash3_64;

use crate::constants::{BLOCK, DELETES_PER_RECORD, RECORD_ALIGN};

/// First bytes of each superblock copy.
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"HIVESTOR";
/// First bytes of each segment header.
pub const SEGMENT_MAGIC: [u8; 4] = *b"HVSG";
/// First bytes of each record.
pub const RECORD_MAGIC: [u8; 4] = *b"HVRC";
/// The on-disk format version this build writes and reads. Version 2 added the scheme
/// (k, m) to every shard name (record header, delete entry, summary entry), in bytes
/// version 1 kept reserved. Version 3 holds shards of shard format 2 (with their
/// stream hash) and keeps each put's encoding tag in its summary entry, in bytes
/// version 2 kept reserved. Version 4 packs records at 16-byte offsets instead of
/// starting each on a 4 KiB block (record headers and summary entries give a byte
/// offset and length), and writes each segment's summary after its records, sized to
/// them, with its header in the segment's last block. Version 5 holds shards of shard
/// format 3 (64-byte headers), packs records at 8-byte offsets, and slims the record
/// header (48 to 32 bytes: a put's length comes from its shard's header, a delete's
/// count and checksum lead its data) and the summary entry (56 to 52 bytes: the
/// sequence number is kept relative to the segment's life). Older stores are refused
/// by version.
pub const FORMAT_VERSION: u16 = 5;
/// Bytes of a record header; the shard follows immediately.
pub const RECORD_HEADER_LEN: usize = 32;
/// Bytes at the start of a delete record's data: the number of entries (4), reserved
/// (4), and the xxh3-64 of the entries (8). The entries follow.
pub const DELETE_HEAD_LEN: usize = 16;
/// Bytes that decode any record's header: a put's header covers its shard's header
/// too (the shard's name and length are there, not repeated in the record header),
/// and a delete's its head (which is shorter).
pub const RECORD_PROBE_LEN: usize = RECORD_HEADER_LEN + hive_wire::SHARD_HEADER_LEN;

/// Why a block is not what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The magic bytes are wrong: not ours, or never written.
    #[error("bad magic")]
    BadMagic,
    /// Written by a format version this build cannot read.
    #[error("format version {0} is not supported (this build reads version {FORMAT_VERSION})")]
    Version(u16),
    /// The bytes changed after they were written, or the write was torn.
    #[error("checksum mismatch")]
    Checksum,
    /// A field holds a value the format forbids.
    #[error("invalid field: {0}")]
    Field(&'static str),
}

fn checksum(bytes: &[u8]) -> u64 {
    XxHash3_64::oneshot(bytes)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn check(b: &[u8], len: usize, magic: &[u8]) -> Result<(), FormatError> {
    if b.len() < len || &b[..magic.len()] != magic {
        return Err(FormatError::BadMagic);
    }
    let version = u16_at(b, magic.len());
    if version != FORMAT_VERSION {
        return Err(FormatError::Version(version));
    }
    if u64_at(b, len - 8) != checksum(&b[..len - 8]) {
        return Err(FormatError::Checksum);
    }
    Ok(())
}

/// Identity and geometry of a store; two identical copies live in blocks 0 and 1.
///
/// | offset | width | field |
/// |---:|---:|---|
/// | 0 | 8 | magic `HIVESTOR` |
/// | 8 | 2 | version |
/// | 10 | 2 | reserved, 0 |
/// | 12 | 4 | block size (4096) |
/// | 16 | 16 | store id |
/// | 32 | 8 | node id |
/// | 40 | 8 | bytes of the device the store uses |
/// | 48 | 4 | segment size |
/// | 52 | 4 | segment count |
/// | 56 | 8 | offset of segment 0 |
/// | 64 | 8 | created, seconds since the Unix epoch |
/// | 72 | 8 | checksum of bytes 0..72 |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Random id given at format; every segment header repeats it.
    pub store_id: [u8; 16],
    /// The node this store belongs to.
    pub node_id: NodeId,
    /// Bytes of the device in use.
    pub device_size: u64,
    /// Bytes per segment.
    pub segment_size: u32,
    /// Segments on the device.
    pub segment_count: u32,
    /// Offset of segment 0.
    pub data_start: u64,
    /// Format time.
    pub created: u64,
}

const SUPERBLOCK_LEN: usize = 80;

impl Superblock {
    /// One 4 KiB block holding this superblock.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK as usize];
        b[0..8].copy_from_slice(&SUPERBLOCK_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        b[16..32].copy_from_slice(&self.store_id);
        b[32..40].copy_from_slice(&self.node_id.get().to_le_bytes());
        b[40..48].copy_from_slice(&self.device_size.to_le_bytes());
        b[48..52].copy_from_slice(&self.segment_size.to_le_bytes());
        b[52..56].copy_from_slice(&self.segment_count.to_le_bytes());
        b[56..64].copy_from_slice(&self.data_start.to_le_bytes());
        b[64..72].copy_from_slice(&self.created.to_le_bytes());
        let sum = checksum(&b[..72]);
        b[72..80].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Reads a superblock copy and checks that its geometry is coherent.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        check(b, SUPERBLOCK_LEN, &SUPERBLOCK_MAGIC)?;
        if u32_at(b, 12) != BLOCK as u32 {
            return Err(FormatError::Field("block size is not 4096"));
        }
        let mut store_id = [0u8; 16];
        store_id.copy_from_slice(&b[16..32]);
        let sb = Self {
            store_id,
            node_id: NodeId(u64_at(b, 32)),
            device_size: u64_at(b, 40),
            segment_size: u32_at(b, 48),
            segment_count: u32_at(b, 52),
            data_start: u64_at(b, 56),
            created: u64_at(b, 64),
        };
        let end = u64::from(sb.segment_size)
            .checked_mul(u64::from(sb.segment_count))
            .and_then(|bytes| bytes.checked_add(sb.data_start));
        if sb.segment_size == 0
            || !u64::from(sb.segment_size).is_multiple_of(BLOCK)
            || !sb.data_start.is_multiple_of(BLOCK)
            || end.is_none_or(|end| end > sb.device_size)
        {
            return Err(FormatError::Field(
                "segment geometry does not fit the device",
            ));
        }
        Ok(sb)
    }

    /// Byte offset of segment `segment`'s first block.
    pub fn segment_offset(&self, segment: u32) -> u64 {
        self.data_start + u64::from(segment) * u64::from(self.segment_size)
    }

    /// Blocks per segment.
    pub fn segment_blocks(&self) -> u32 {
        self.segment_size / BLOCK as u32
    }
}

/// The first block of a segment: which store it belongs to and the first sequence
/// number of its current life. A record with a lower sequence number was left by an
/// earlier life of the segment and is not read.
///
/// | offset | width | field |
/// |---:|---:|---|
/// | 0 | 4 | magic `HVSG` |
/// | 4 | 2 | version |
/// | 6 | 2 | reserved, 0 |
/// | 8 | 16 | store id |
/// | 24 | 4 | segment number |
/// | 28 | 4 | reserved, 0 |
/// | 32 | 8 | base sequence number |
/// | 40 | 8 | checksum of bytes 0..40 |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The store.
    pub store_id: [u8; 16],
    /// This segment's number.
    pub segment: u32,
    /// Sequence number of the first record of this life.
    pub base_seq: u64,
}

const SEGMENT_HEADER_LEN: usize = 48;

impl SegmentHeader {
    /// Writes the header into the start of `block` (the rest is left as it is).
    pub fn encode_into(&self, block: &mut [u8]) {
        let b = &mut block[..SEGMENT_HEADER_LEN];
        b.fill(0);
        b[0..4].copy_from_slice(&SEGMENT_MAGIC);
        b[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[8..24].copy_from_slice(&self.store_id);
        b[24..28].copy_from_slice(&self.segment.to_le_bytes());
        b[32..40].copy_from_slice(&self.base_seq.to_le_bytes());
        let sum = checksum(&b[..40]);
        b[40..48].copy_from_slice(&sum.to_le_bytes());
    }

    /// Reads a segment header.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        check(b, SEGMENT_HEADER_LEN, &SEGMENT_MAGIC)?;
        let mut store_id = [0u8; 16];
        store_id.copy_from_slice(&b[8..24]);
        Ok(Self {
            store_id,
            segment: u32_at(b, 24),
            base_seq: u64_at(b, 32),
        })
    }
}

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A shard follows the header.
    Put,
    /// The puts named by the record's entries are deleted.
    Delete,
}

/// The header at the start of every record. A put record's shard follows it directly;
/// the record is padded to a multiple of [`RECORD_ALIGN`] bytes, and the next record
/// starts right after it.
///
/// | offset | width | field |
/// |---:|---:|---|
/// | 0 | 4 | magic `HVRC` |
/// | 4 | 2 | version |
/// | 6 | 1 | kind: 1 put, 2 delete |
/// | 7 | 1 | reserved, 0 |
/// | 8 | 8 | sequence number, unique and increasing per store |
/// | 16 | 4 | segment the record was written to |
/// | 20 | 4 | byte offset within that segment |
/// | 24 | 8 | checksum: xxh3-64 of the data's first bytes (a put's shard header, a delete's head), seeded with xxh3-64 of bytes 0..24 |
///
/// A put's key and length are its shard's, read from the shard's header (chunk id,
/// index, k, m; the stream's length), which the record checksum covers with the record
/// header, so they are as safe as the header without being written twice. The shard
/// carries its own checksum over its header and payload. A delete record's data starts
/// with [`DELETE_HEAD_LEN`] bytes (number of entries, reserved, xxh3-64 of the
/// entries), then one or more [`DeleteEntry`]s (many deletes of one group commit share
/// a record). The segment and offset fields catch a misdirected write: a record read
/// from anywhere but where it says it was written is refused. The record's length is
/// not stored: it is [`RecordHeader::len_for`] its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Put or delete.
    pub kind: RecordKind,
    /// Store-wide sequence number.
    pub seq: u64,
    /// Segment written to.
    pub segment: u32,
    /// Byte offset within the segment (a multiple of [`RECORD_ALIGN`]).
    pub offset: u32,
    /// Key of a put: the shard's name ([`ShardName::NONE`] for a delete record).
    pub name: ShardName,
    /// Bytes after the header (derived on decode: from a put's shard header, from a
    /// delete's entry count).
    pub data_len: u32,
    /// Delete: checksum of the entries.
    pub entries_checksum: u64,
    /// Delete: number of entries.
    pub entries: u32,
}

/// One deleted shard in a delete record: 48 bytes.
///
/// | offset | width | field |
/// |---:|---:|---|
/// | 0 | 32 | chunk id |
/// | 32 | 1 | shard index |
/// | 33 | 1 | k |
/// | 34 | 1 | m |
/// | 35 | 1 | reserved, 0 |
/// | 36 | 4 | segment that held the deleted put |
/// | 40 | 8 | that segment's life: its base sequence number when it held the put |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteEntry {
    /// The deleted shard.
    pub name: ShardName,
    /// Segment that held the deleted put.
    pub target_segment: u32,
    /// Base sequence number of that segment's life: once the segment is erased and
    /// reused, the put is gone and the delete no longer matters.
    pub target_life: u64,
}

/// Bytes of one [`DeleteEntry`].
pub const DELETE_ENTRY_LEN: usize = 48;

impl DeleteEntry {
    /// Appends the entry's 48 bytes to `out`.
    pub fn encode_into(&self, out: &mut [u8]) {
        out[..DELETE_ENTRY_LEN].fill(0);
        put_name_at(&self.name, out, 33);
        out[36..40].copy_from_slice(&self.target_segment.to_le_bytes());
        out[40..48].copy_from_slice(&self.target_life.to_le_bytes());
    }

    /// Decodes the entries of a delete record whose header is `header`, from the
    /// record's data (its head, then the entries).
    pub fn decode_all(header: &RecordHeader, data: &[u8]) -> Result<Vec<Self>, FormatError> {
        let len = header.entries as usize * DELETE_ENTRY_LEN;
        let bytes = data
            .get(DELETE_HEAD_LEN..DELETE_HEAD_LEN + len)
            .ok_or(FormatError::Field("delete entries cut short"))?;
        if checksum(bytes) != header.entries_checksum {
            return Err(FormatError::Checksum);
        }
        Ok(bytes
            .chunks_exact(DELETE_ENTRY_LEN)
            .map(|e| Self {
                name: name_at_k(e, 33),
                target_segment: u32_at(e, 36),
                target_life: u64_at(e, 40),
            })
            .collect())
    }
}

/// Writes a shard name as delete and summary entries hold it: chunk id (bytes 0..32),
/// index (32), k (`k_at`), m (`k_at + 1`).
fn put_name_at(name: &ShardName, out: &mut [u8], k_at: usize) {
    out[0..32].copy_from_slice(name.chunk.as_bytes());
    out[32] = name.index.get();
    out[k_at] = name.k;
    out[k_at + 1] = name.m;
}

/// Reads a shard name written by [`put_name_at`].
fn name_at_k(e: &[u8], k_at: usize) -> ShardName {
    let mut id = [0u8; 32];
    id.copy_from_slice(&e[0..32]);
    ShardName {
        chunk: ChunkId(id),
        k: e[k_at],
        m: e[k_at + 1],
        index: ShardIndex(e[32]),
    }
}

/// The checksum a delete record's header carries for its entry bytes.
pub fn entries_checksum(bytes: &[u8]) -> u64 {
    checksum(bytes)
}

impl RecordHeader {
    /// Bytes this record takes, padding included.
    pub fn record_len(&self) -> u32 {
        Self::len_for(self.data_len as usize)
    }

    /// Bytes a record with `data_len` bytes of shard takes: header, shard, and padding
    /// to [`RECORD_ALIGN`].
    pub fn len_for(data_len: usize) -> u32 {
        let len = (RECORD_HEADER_LEN + data_len).next_multiple_of(RECORD_ALIGN as usize);
        u32::try_from(len).expect("invariant: shards are at most 16 MiB")
    }

    /// Writes the header (and a delete's head) into the start of `record`, which
    /// holds the rest of the record already (a put's checksum covers its shard's
    /// header, a delete's its entries' checksum).
    pub fn encode_into(&self, record: &mut [u8]) {
        let b = &mut record[..RECORD_HEADER_LEN];
        b.fill(0);
        b[0..4].copy_from_slice(&RECORD_MAGIC);
        b[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[6] = match self.kind {
            RecordKind::Put => 1,
            RecordKind::Delete => 2,
        };
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..20].copy_from_slice(&self.segment.to_le_bytes());
        b[20..24].copy_from_slice(&self.offset.to_le_bytes());
        if self.kind == RecordKind::Delete {
            let head = &mut record[RECORD_HEADER_LEN..RECORD_HEADER_LEN + DELETE_HEAD_LEN];
            head.fill(0);
            head[0..4].copy_from_slice(&self.entries.to_le_bytes());
            head[8..16].copy_from_slice(&self.entries_checksum.to_le_bytes());
        }
        let sum = Self::checksum(record, self.kind);
        record[24..32].copy_from_slice(&sum.to_le_bytes());
    }

    /// The checksum of a record's header and the start of its data (a put's shard
    /// header, a delete's head).
    fn checksum(record: &[u8], kind: RecordKind) -> u64 {
        let head = checksum(&record[..24]);
        let covered = match kind {
            RecordKind::Put => hive_wire::SHARD_HEADER_LEN,
            RecordKind::Delete => DELETE_HEAD_LEN,
        };
        XxHash3_64::oneshot_with_seed(
            head,
            &record[RECORD_HEADER_LEN..RECORD_HEADER_LEN + covered],
        )
    }

    /// Reads a record header (from at least [`RECORD_PROBE_LEN`] bytes for a put,
    /// [`RECORD_HEADER_LEN`] and [`DELETE_HEAD_LEN`] for a delete) and checks its
    /// fields against each other.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < RECORD_HEADER_LEN || b[..4] != RECORD_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = u16_at(b, 4);
        if version != FORMAT_VERSION {
            return Err(FormatError::Version(version));
        }
        let (kind, covered) = match b[6] {
            1 => (RecordKind::Put, hive_wire::SHARD_HEADER_LEN),
            2 => (RecordKind::Delete, DELETE_HEAD_LEN),
            _ => return Err(FormatError::Field("unknown record kind")),
        };
        if b.len() < RECORD_HEADER_LEN + covered {
            return Err(FormatError::Field("a record's covered head is cut off"));
        }
        if u64_at(b, 24) != Self::checksum(b, kind) {
            return Err(FormatError::Checksum);
        }
        let data = &b[RECORD_HEADER_LEN..];
        let (name, data_len, entries, entries_checksum) = match kind {
            RecordKind::Put => (name_at_k(&data[8..], 33), Self::shard_len(data)?, 0, 0),
            RecordKind::Delete => {
                let entries = u32_at(data, 0);
                if entries == 0 || entries as usize > DELETES_PER_RECORD {
                    return Err(FormatError::Field("delete entry count out of range"));
                }
                let len = DELETE_HEAD_LEN + entries as usize * DELETE_ENTRY_LEN;
                (ShardName::NONE, len as u32, entries, u64_at(data, 8))
            }
        };
        let h = Self {
            kind,
            seq: u64_at(b, 8),
            segment: u32_at(b, 16),
            offset: u32_at(b, 20),
            name,
            data_len,
            entries,
            entries_checksum,
        };
        if !h.offset.is_multiple_of(RECORD_ALIGN) {
            return Err(FormatError::Field("record offset is not aligned"));
        }
        Ok(h)
    }

    /// A put's data length, from its shard's header: the header and the payload the
    /// shard format derives from the stream's length and k.
    fn shard_len(shard: &[u8]) -> Result<u32, FormatError> {
        let (k, stream_len) = (shard[41], u32_at(shard, 48));
        if !(1..=hive_wire::MAX_DATA_SHARDS).contains(&k) || stream_len > hive_wire::MAX_CHUNK_LEN {
            return Err(FormatError::Field("a put's shard header is out of range"));
        }
        let len =
            hive_wire::SHARD_HEADER_LEN + hive_wire::shard_payload_len(stream_len as usize, k);
        Ok(len as u32)
    }
}

/// First bytes of a segment summary.
pub const SUMMARY_MAGIC: [u8; 4] = *b"HVSM";
/// Bytes of the summary header before its entries.
pub const SUMMARY_HEADER_LEN: usize = 64;
/// Bytes of one summary entry.
pub const SUMMARY_ENTRY_LEN: usize = 52;

/// One record of a sealed segment, as its summary lists it.
///
/// | offset | width | field |
/// |---:|---:|---|
/// | 0 | 32 | chunk id (zero for a delete record) |
/// | 32 | 1 | shard index |
/// | 33 | 1 | kind: 1 put, 2 delete |
/// | 34 | 1 | k |
/// | 35 | 1 | m |
/// | 36 | 4 | byte offset |
/// | 40 | 4 | bytes |
/// | 44 | 4 | a put's encoding tag (see `hive_wire::EncodingTag`); a delete: 0 |
/// | 48 | 4 | sequence number, less the base sequence number of the segment's life |
///
/// Every record of a life has a sequence number at or after the life's base, and each
/// takes at least 96 bytes of a segment of at most 4 GiB, so the difference fits 32
/// bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryEntry {
    /// The record's kind.
    pub kind: RecordKind,
    /// A put's name ([`ShardName::NONE`] for a delete record).
    pub name: ShardName,
    /// Byte offset of the record within the segment.
    pub offset: u32,
    /// Bytes it takes.
    pub len: u32,
    /// A put's encoding tag (0 for a delete record).
    pub tag: EncodingTag,
    /// Its sequence number.
    pub seq: u64,
}

/// The list of a sealed segment's records, written in the segment's last
/// [`Summary::blocks_for`] blocks when the segment fills, so that opening the store
/// reads one summary instead of every record. The entries (52 bytes each) fill the
/// first blocks; the header is the start of the last block of the segment.
///
/// The header:
///
/// | offset | width | field |
/// |---:|---:|---|
/// | 0 | 4 | magic `HVSM` |
/// | 4 | 2 | version |
/// | 6 | 2 | reserved, 0 |
/// | 8 | 4 | segment number |
/// | 12 | 4 | number of entries |
/// | 16 | 8 | base sequence number of the segment's life it describes |
/// | 24 | 8 | bytes used by records (the segment header's block included) |
/// | 32 | 8 | xxh3-64 of the entries |
/// | 40 | 16 | store id |
/// | 56 | 8 | checksum of bytes 0..56 |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The store.
    pub store_id: [u8; 16],
    /// The segment.
    pub segment: u32,
    /// The life it describes.
    pub base_seq: u64,
    /// Bytes used by records, the segment header's block included.
    pub used: u32,
    /// The records in offset order.
    pub entries: Vec<SummaryEntry>,
}

impl Summary {
    /// Blocks a summary of `entries` entries takes: the header's block, after the
    /// blocks of its entries.
    pub fn blocks_for(entries: usize) -> u32 {
        let entry_bytes = (entries * SUMMARY_ENTRY_LEN) as u64;
        u32::try_from(1 + entry_bytes.div_ceil(BLOCK)).unwrap_or(u32::MAX)
    }

    /// The summary as the bytes of [`Summary::blocks_for`] blocks, written at the end of
    /// its segment: the entries from the first block on, the header in the last
    /// block, so an open finds the header at a fixed place whatever the count.
    pub fn encode(&self) -> Vec<u8> {
        let blocks = Self::blocks_for(self.entries.len()) as usize;
        let mut b = vec![0u8; blocks * BLOCK as usize];
        let end = self.entries.len() * SUMMARY_ENTRY_LEN;
        for (e, out) in self
            .entries
            .iter()
            .zip(b[..end].chunks_exact_mut(SUMMARY_ENTRY_LEN))
        {
            put_name_at(&e.name, out, 34);
            out[33] = match e.kind {
                RecordKind::Put => 1,
                RecordKind::Delete => 2,
            };
            out[36..40].copy_from_slice(&e.offset.to_le_bytes());
            out[40..44].copy_from_slice(&e.len.to_le_bytes());
            out[44..48].copy_from_slice(&e.tag.0.to_le_bytes());
            let since = e
                .seq
                .checked_sub(self.base_seq)
                .and_then(|d| u32::try_from(d).ok())
                .expect("invariant: a life's records follow its base, within 2^32");
            out[48..52].copy_from_slice(&since.to_le_bytes());
        }
        let entries_sum = checksum(&b[..end]);
        let h = &mut b[(blocks - 1) * BLOCK as usize..];
        h[0..4].copy_from_slice(&SUMMARY_MAGIC);
        h[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[8..12].copy_from_slice(&self.segment.to_le_bytes());
        let count = u32::try_from(self.entries.len()).expect("invariant: bounded by blocks");
        h[12..16].copy_from_slice(&count.to_le_bytes());
        h[16..24].copy_from_slice(&self.base_seq.to_le_bytes());
        h[24..32].copy_from_slice(&u64::from(self.used).to_le_bytes());
        h[32..40].copy_from_slice(&entries_sum.to_le_bytes());
        h[40..56].copy_from_slice(&self.store_id);
        let sum = checksum(&h[..56]);
        h[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Reads the header in a segment's last block: the blocks the whole summary takes,
    /// to read them next.
    pub fn blocks_of(last_block: &[u8]) -> Result<u32, FormatError> {
        check(last_block, SUMMARY_HEADER_LEN, &SUMMARY_MAGIC)?;
        Ok(Self::blocks_for(u32_at(last_block, 12) as usize))
    }

    /// Reads a summary from the blocks [`Summary::blocks_of`] named, the header's
    /// block last.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        let header_at = b
            .len()
            .checked_sub(BLOCK as usize)
            .ok_or(FormatError::BadMagic)?;
        let h = &b[header_at..];
        check(h, SUMMARY_HEADER_LEN, &SUMMARY_MAGIC)?;
        let count = u32_at(h, 12) as usize;
        if Self::blocks_for(count) as usize * BLOCK as usize != b.len() {
            return Err(FormatError::Field(
                "summary entry count does not fit its blocks",
            ));
        }
        let end = count * SUMMARY_ENTRY_LEN;
        if checksum(&b[..end]) != u64_at(h, 32) {
            return Err(FormatError::Checksum);
        }
        let mut store_id = [0u8; 16];
        store_id.copy_from_slice(&h[40..56]);
        let base_seq = u64_at(h, 16);
        let mut entries = Vec::with_capacity(count);
        for e in b[..end].chunks_exact(SUMMARY_ENTRY_LEN) {
            let kind = match e[33] {
                1 => RecordKind::Put,
                2 => RecordKind::Delete,
                _ => return Err(FormatError::Field("unknown record kind in summary")),
            };
            entries.push(SummaryEntry {
                kind,
                name: name_at_k(e, 34),
                offset: u32_at(e, 36),
                len: u32_at(e, 40),
                tag: EncodingTag(u32_at(e, 44)),
                seq: base_seq
                    .checked_add(u64::from(u32_at(e, 48)))
                    .ok_or(FormatError::Field("summary sequence number out of range"))?,
            });
        }
        Ok(Self {
            store_id,
            segment: u32_at(h, 8),
            base_seq,
            used: u32::try_from(u64_at(h, 24))
                .map_err(|_| FormatError::Field("summary used bytes out of range"))?,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn superblock() -> Superblock {
        Superblock {
            store_id: [9; 16],
            node_id: NodeId(42),
            device_size: 100 << 20,
            segment_size: 1 << 20,
            segment_count: 99,
            data_start: 1 << 20,
            created: 1_700_000_000,
        }
    }

    fn record() -> RecordHeader {
        RecordHeader {
            kind: RecordKind::Put,
            seq: 7,
            segment: 3,
            offset: 12 * 8,
            name: ShardName {
                chunk: ChunkId([5; 32]),
                k: 4,
                m: 2,
                index: ShardIndex(2),
            },
            data_len: 5000,
            entries_checksum: 0,
            entries: 0,
        }
    }

    #[test]
    fn round_trips() {
        let sb = superblock();
        assert_eq!(Superblock::decode(&sb.encode()), Ok(sb));
        let seg = SegmentHeader {
            store_id: [1; 16],
            segment: 4,
            base_seq: 99,
        };
        let mut block = vec![0u8; 4096];
        seg.encode_into(&mut block);
        assert_eq!(SegmentHeader::decode(&block), Ok(seg));
        let rec = record();
        // A put's name is its shard's: chunk id at 8, index, k and m at 40..43 of the
        // shard header that follows the record header; its length is the shard's
        // header and the payload its stream's length (at 48) makes at k = 4.
        let shard = &mut block[RECORD_HEADER_LEN..];
        shard[8..40].copy_from_slice(&[5; 32]);
        shard[40..43].copy_from_slice(&[2, 4, 2]);
        shard[48..52].copy_from_slice(&(4 * (5000 - 64) as u32).to_le_bytes());
        rec.encode_into(&mut block);
        assert_eq!(RecordHeader::decode(&block), Ok(rec));
        assert_eq!(
            rec.record_len(),
            5032,
            "header and shard, to a multiple of 8"
        );
        // The record checksum covers the shard's name.
        block[RECORD_HEADER_LEN + 9] ^= 1;
        assert_eq!(RecordHeader::decode(&block), Err(FormatError::Checksum));
        block[RECORD_HEADER_LEN + 9] ^= 1;
        assert_eq!(
            RecordHeader::decode(&block[..RECORD_PROBE_LEN - 1]),
            Err(FormatError::Field("a record's covered head is cut off"))
        );
        // A delete entry keeps the whole name, scheme included.
        let deleted = DeleteEntry {
            name: ShardName {
                chunk: ChunkId([6; 32]),
                k: 2,
                m: 1,
                index: ShardIndex(2),
            },
            target_segment: 8,
            target_life: 77,
        };
        let mut bytes = vec![0u8; RECORD_HEADER_LEN + DELETE_HEAD_LEN + DELETE_ENTRY_LEN];
        deleted.encode_into(&mut bytes[RECORD_HEADER_LEN + DELETE_HEAD_LEN..]);
        let header = RecordHeader {
            kind: RecordKind::Delete,
            name: ShardName::NONE,
            data_len: (DELETE_HEAD_LEN + DELETE_ENTRY_LEN) as u32,
            entries_checksum: entries_checksum(&bytes[RECORD_HEADER_LEN + DELETE_HEAD_LEN..]),
            entries: 1,
            ..record()
        };
        header.encode_into(&mut bytes);
        assert_eq!(RecordHeader::decode(&bytes), Ok(header));
        assert_eq!(
            DeleteEntry::decode_all(&header, &bytes[RECORD_HEADER_LEN..]),
            Ok(vec![deleted])
        );
        // The record checksum covers a delete's entry count.
        bytes[RECORD_HEADER_LEN] ^= 2;
        assert_eq!(RecordHeader::decode(&bytes), Err(FormatError::Checksum));
        // A version 1 record (no scheme in its name) is refused, naming its version.
        rec.encode_into(&mut block);
        block[4..6].copy_from_slice(&1u16.to_le_bytes());
        let sum = RecordHeader::checksum(&block, RecordKind::Put);
        block[24..32].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(RecordHeader::decode(&block), Err(FormatError::Version(1)));
    }

    #[test]
    fn summaries_round_trip_whatever_their_size() {
        for count in [0, 1, 78, 79, 10_000] {
            let entry = SummaryEntry {
                kind: RecordKind::Put,
                name: ShardName {
                    chunk: ChunkId([3; 32]),
                    k: 3,
                    m: 1,
                    index: ShardIndex(1),
                },
                offset: 4096,
                len: 176,
                tag: EncodingTag(0xdead_beef),
                seq: 9 + u64::from(u32::MAX),
            };
            let summary = Summary {
                store_id: [4; 16],
                segment: 2,
                base_seq: 9,
                used: 5 << 12,
                entries: vec![entry; count],
            };
            let bytes = summary.encode();
            assert_eq!(bytes.len(), Summary::blocks_for(count) as usize * 4096);
            let last = &bytes[bytes.len() - 4096..];
            assert_eq!(Summary::blocks_of(last), Ok(Summary::blocks_for(count)));
            assert_eq!(Summary::decode(&bytes), Ok(summary));
        }
        assert_eq!(Summary::blocks_for(0), 1);
        assert_eq!(Summary::blocks_for(78), 2, "78 entries fill one block");
        assert_eq!(Summary::blocks_for(79), 3);
    }

    #[test]
    fn damage_and_lies_are_refused() {
        let mut sb = superblock().encode();
        sb[33] ^= 1;
        assert_eq!(Superblock::decode(&sb), Err(FormatError::Checksum));
        let too_big = Superblock {
            segment_count: 100,
            ..superblock()
        };
        assert!(matches!(
            Superblock::decode(&too_big.encode()),
            Err(FormatError::Field(_))
        ));
        let mut block = vec![0u8; 4096];
        assert_eq!(RecordHeader::decode(&block), Err(FormatError::BadMagic));
        // A put whose shard header holds k = 0 has no length; one at an unaligned
        // offset was never written by a store.
        let unaligned = RecordHeader {
            offset: 9,
            ..record()
        };
        for (k, lie) in [(0, record()), (4, unaligned)] {
            block[RECORD_HEADER_LEN + 41] = k;
            lie.encode_into(&mut block);
            assert!(
                matches!(RecordHeader::decode(&block), Err(FormatError::Field(_))),
                "{lie:?} with k {k}"
            );
        }
        // A delete counting no entries, or more than a record may hold.
        for entries in [0, DELETES_PER_RECORD as u32 + 1] {
            RecordHeader {
                kind: RecordKind::Delete,
                entries,
                ..record()
            }
            .encode_into(&mut block);
            assert!(
                matches!(RecordHeader::decode(&block), Err(FormatError::Field(_))),
                "{entries} entries"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_blocks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Superblock::decode(&bytes);
            let _ = SegmentHeader::decode(&bytes);
            let _ = RecordHeader::decode(&bytes);
            let _ = Summary::decode(&bytes);
            let _ = Summary::blocks_of(&bytes);
        }
    }
}
