//! Opening a store: every segment's current life is read (from its summary when it has
//! one, record by record otherwise) and its records are replayed into the index in
//! sequence order. Generic over how bytes are read, so the same code runs on the
//! store's executor (O_DIRECT through glommio) and offline ([`crate::layout`]).

use std::io;
use std::path::Path;
use std::rc::Rc;

use crate::constants::{BLOCK, RECORD_ALIGN, SCAN_WINDOW};
use crate::device::Device;
use crate::error::StoreError;
use crate::format::{
    DeleteEntry, RECORD_HEADER_LEN, RECORD_MAGIC, RECORD_PROBE_LEN, RecordHeader, RecordKind,
    SegmentHeader, Summary, SummaryEntry,
};
use crate::state::{Key, Location, SegmentUse, State, Tombstone};
use crate::store::{Damaged, io_err, verify_put};
use hive_wire::{EncodingTag, ShardName};

/// One record found while scanning, to be replayed in sequence order.
struct Found {
    kind: RecordKind,
    seq: u64,
    key: Key,
    at: Location,
    /// A delete record's entries.
    deletes: Vec<DeleteEntry>,
}

/// What reading one segment found.
#[derive(Default)]
struct SegmentScan {
    /// The segment's current life, if it is in use.
    base_seq: Option<u64>,
    /// Bytes used by records, the header's block included.
    used: u32,
    /// Records in this life (those of a segment without a summary that verified).
    records: u32,
    /// The records, for a summary if the segment has none yet.
    entries: Vec<SummaryEntry>,
    /// Whether a valid summary was read.
    summarized: bool,
}

/// Rebuilds the index and segment use by reading every segment's current life, then
/// seals every segment that had no summary yet (new records go to a fresh segment, so
/// each one is now final), making the next open fast.
pub(crate) async fn rebuild(
    state: &mut State,
    device: &Device,
) -> Result<Vec<Damaged>, StoreError> {
    let read = |pos: u64, len: usize| device.read(pos, len);
    let (damaged, unsealed) = replay(state, &read).await?;
    seal(state, device, unsealed).await?;
    Ok(damaged)
}

/// Reads every segment's current life through `read` (byte offset, length) and replays
/// its records into `state`'s index, in sequence order; the damage found and the
/// summaries of the segments that had none.
pub(crate) async fn replay<R, F, B>(
    state: &mut State,
    read: &R,
) -> Result<(Vec<Damaged>, Vec<Summary>), StoreError>
where
    R: Fn(u64, usize) -> F,
    F: std::future::Future<Output = io::Result<B>>,
    B: std::ops::Deref<Target = [u8]>,
{
    let mut found = Vec::new();
    let mut damaged = Vec::new();
    let mut max_seq = 0;
    let mut unsealed = Vec::new();
    for segment in 0..state.sb.segment_count {
        let scan = scan_segment(state, read, segment, &mut found, &mut damaged).await?;
        if let Some(base) = scan.base_seq {
            max_seq = max_seq.max(base);
            state.segments[segment as usize] = SegmentUse {
                base_seq: Some(base),
                used: scan.used,
                records: scan.records,
                live: 0,
            };
            if !scan.summarized {
                unsealed.push(Summary {
                    store_id: state.sb.store_id,
                    segment,
                    base_seq: base,
                    used: scan.used,
                    entries: scan.entries,
                });
            }
        }
    }
    found.sort_unstable_by_key(|f| f.seq);
    for f in &found {
        max_seq = max_seq.max(f.seq);
        if f.kind == RecordKind::Put {
            state.insert(f.key, f.at);
        }
        for entry in &f.deletes {
            let key = entry.name;
            state.remove(&key, entry.target_segment, entry.target_life);
            state.tombstones[f.at.segment as usize].push(Tombstone {
                key,
                segment: entry.target_segment,
                life: entry.target_life,
            });
        }
    }
    state.next_seq = max_seq + 1;
    state.head = None;
    Ok((damaged, unsealed))
}

/// Writes the summaries of segments that lack one, and makes them durable.
async fn seal(state: &State, device: &Device, summaries: Vec<Summary>) -> Result<(), StoreError> {
    if summaries.is_empty() {
        return Ok(());
    }
    for summary in summaries {
        let bytes = summary.encode();
        // The writer placed every record so that its summary fits after it; a segment
        // where it would not (never written so) is left to be scanned again.
        let Some(at) = u64::from(state.sb.segment_size)
            .checked_sub(bytes.len() as u64)
            .filter(|at| *at >= u64::from(summary.used))
        else {
            continue;
        };
        let mut buffer = device.buffer(bytes.len());
        buffer.as_bytes_mut().copy_from_slice(&bytes);
        device
            .write(
                Rc::new(buffer),
                state.sb.segment_offset(summary.segment) + at,
            )
            .await
            .map_err(io_err("writing a segment summary to", &state.path))?;
    }
    device
        .sync()
        .await
        .map_err(io_err("syncing segment summaries to", &state.path))
}

/// Reads one segment: from its summary if it has a valid one for its current life,
/// otherwise record by record.
async fn scan_segment<D, G, B>(
    state: &State,
    device_read: &D,
    segment: u32,
    found: &mut Vec<Found>,
    damaged: &mut Vec<Damaged>,
) -> Result<SegmentScan, StoreError>
where
    D: Fn(u64, usize) -> G,
    G: std::future::Future<Output = io::Result<B>>,
    B: std::ops::Deref<Target = [u8]>,
{
    // Reads `len` bytes at byte `at` of the segment.
    let read = |at: u32, len: u32| device_read(state.offset(segment, at), len as usize);
    let size = state.sb.segment_size;
    let head = read(0, BLOCK as u32)
        .await
        .map_err(io_err("reading", &state.path))?;
    let header = match SegmentHeader::decode(&head) {
        Ok(h) if h.store_id == state.sb.store_id && h.segment == segment => h,
        _ => return Ok(SegmentScan::default()),
    };
    let last = read(size - BLOCK as u32, BLOCK as u32)
        .await
        .map_err(io_err("reading", &state.path))?;
    // The summary's size, from its header in the last block, if it fits the segment.
    let summary_len = Summary::blocks_of(&last)
        .ok()
        .map(|blocks| u64::from(blocks) * BLOCK)
        .filter(|len| *len <= u64::from(size) - BLOCK);
    let summary = match summary_len {
        Some(len) => {
            let len = len as u32;
            let bytes = read(size - len, len)
                .await
                .map_err(io_err("reading", &state.path))?;
            Summary::decode(&bytes).ok().filter(|summary| {
                summary.store_id == state.sb.store_id
                    && summary.segment == segment
                    && summary.base_seq == header.base_seq
                    && summary.used <= size - len
            })
        }
        None => None,
    };
    match summary {
        Some(summary) => from_summary(&read, &state.path, segment, summary, found, damaged).await,
        None => scan_records(state, &read, segment, header, found, damaged).await,
    }
}

/// Takes a sealed segment's records from its summary; only delete records are read,
/// for their entries.
async fn from_summary<R, F, B>(
    read: &R,
    path: &Path,
    segment: u32,
    summary: Summary,
    found: &mut Vec<Found>,
    damaged: &mut Vec<Damaged>,
) -> Result<SegmentScan, StoreError>
where
    R: Fn(u32, u32) -> F,
    F: std::future::Future<Output = io::Result<B>>,
    B: std::ops::Deref<Target = [u8]>,
{
    for e in &summary.entries {
        let at = Location {
            segment,
            offset: e.offset,
            len: e.len,
            tag: e.tag,
        };
        let key = e.name;
        let deletes = match e.kind {
            RecordKind::Put => Vec::new(),
            RecordKind::Delete => {
                let record = read(e.offset, e.len)
                    .await
                    .map_err(io_err("reading", path))?;
                match RecordHeader::decode(&record)
                    .and_then(|h| DeleteEntry::decode_all(&h, &record[RECORD_HEADER_LEN..]))
                {
                    Ok(entries) => entries,
                    Err(reason) => {
                        damaged.push(Damaged {
                            name: key,
                            segment,
                            offset: e.offset,
                            reason: format!("delete record: {reason}"),
                        });
                        continue;
                    }
                }
            }
        };
        found.push(Found {
            kind: e.kind,
            seq: e.seq,
            key,
            at,
            deletes,
        });
    }
    Ok(SegmentScan {
        base_seq: Some(summary.base_seq),
        used: summary.used,
        records: u32::try_from(summary.entries.len()).unwrap_or(u32::MAX),
        entries: Vec::new(),
        summarized: true,
    })
}

/// Bytes that fail to hold a record of the segment's current life, starting at
/// `offset`: a destroyed record header, a record whose contents fail verification, or
/// the unwritten end of the segment.
struct Gap {
    offset: u32,
    /// The record whose header is intact but whose contents are not, if that is what
    /// starts the gap.
    name: Option<ShardName>,
}

impl Gap {
    /// The gap as damage: something intact follows it, so it is not the torn tail of
    /// an unacknowledged batch but records damaged after they were written.
    fn damaged(self, segment: u32, until: u32) -> Damaged {
        let reason = match self.name {
            Some(_) => "record fails verification (found when the store was opened)".into(),
            None => format!(
                "record header destroyed: bytes {}..{until} hold no readable record (found when the store was opened)",
                self.offset
            ),
        };
        Damaged {
            name: self.name.unwrap_or(ShardName::NONE),
            segment,
            offset: self.offset,
            reason,
        }
    }
}

/// The end of the bytes a segment's records may take: its last block always holds a
/// summary's header.
fn records_end(state: &State) -> u32 {
    state.sb.segment_size - BLOCK as u32
}

/// Reads a segment record by record. Bytes that hold no record header of the
/// segment's current life (destroyed, torn or never written) start a gap, and the scan
/// looks for the next record at each following [`RECORD_ALIGN`] offset (every record
/// names its own segment, offset and sequence number, so nothing else passes for
/// one). A gap followed by an intact record is damage and is reported (with the
/// shard's name when its header survived); a gap that runs to the end is the torn
/// tail of an unacknowledged batch, or the segment's unwritten space. Neither is
/// indexed, so `has` never vouches for them.
async fn scan_records<R, F, B>(
    state: &State,
    read: &R,
    segment: u32,
    header: SegmentHeader,
    found: &mut Vec<Found>,
    damaged: &mut Vec<Damaged>,
) -> Result<SegmentScan, StoreError>
where
    R: Fn(u32, u32) -> F,
    F: std::future::Future<Output = io::Result<B>>,
    B: std::ops::Deref<Target = [u8]>,
{
    let limit = records_end(state);
    let mut offset = BLOCK as u32;
    let mut entries = Vec::new();
    let mut gap: Option<Gap> = None;
    // The byte after the last intact record, and that record's sequence number.
    let mut end = BLOCK as u32;
    let mut last_seq = None;
    while offset < limit {
        let Some(rec) = next_header(state, read, segment, &header, offset, last_seq).await? else {
            // Nothing of this life follows: the rest is a torn tail or unwritten.
            break;
        };
        if rec.offset != offset {
            // Found past a stretch of bytes with no record header.
            gap.get_or_insert(Gap { offset, name: None });
            offset = rec.offset;
        }
        let at = Location {
            segment,
            offset,
            len: rec.record_len(),
            tag: EncodingTag(0),
        };
        let key = rec.name;
        let record = read(offset, rec.record_len())
            .await
            .map_err(io_err("reading", &state.path))?;
        let (tag, deletes) = match rec.kind {
            RecordKind::Put => (
                verify_put(&record, &key, &at).ok().map(|(_, _, tag)| tag),
                Vec::new(),
            ),
            RecordKind::Delete => {
                match DeleteEntry::decode_all(&rec, &record[RECORD_HEADER_LEN..]) {
                    Ok(entries) => (Some(EncodingTag(0)), entries),
                    Err(_) => (None, Vec::new()),
                }
            }
        };
        last_seq = Some(rec.seq);
        if let Some(before) = gap.take() {
            damaged.push(before.damaged(segment, offset));
        }
        match tag {
            Some(tag) => {
                entries.push(SummaryEntry {
                    kind: rec.kind,
                    name: rec.name,
                    offset,
                    len: rec.record_len(),
                    tag,
                    seq: rec.seq,
                });
                found.push(Found {
                    kind: rec.kind,
                    seq: rec.seq,
                    key,
                    at: Location { tag, ..at },
                    deletes,
                });
                end = offset + rec.record_len();
            }
            None => {
                gap = Some(Gap {
                    offset,
                    name: Some(rec.name),
                })
            }
        }
        offset += rec.record_len();
    }
    Ok(SegmentScan {
        base_seq: Some(header.base_seq),
        used: end,
        records: u32::try_from(entries.len()).unwrap_or(u32::MAX),
        entries,
        summarized: false,
    })
}

/// The first record header of the segment's current life at or after byte `from`,
/// reading [`SCAN_WINDOW`] bytes at a time; `None` if there is none before the
/// summary. A header counts only if its checksum holds, it names this segment and the
/// offset it lies at, its sequence number belongs to this life and follows `after`,
/// and the record fits the segment.
async fn next_header<R, F, B>(
    state: &State,
    read: &R,
    segment: u32,
    header: &SegmentHeader,
    from: u32,
    after: Option<u64>,
) -> Result<Option<RecordHeader>, StoreError>
where
    R: Fn(u32, u32) -> F,
    F: std::future::Future<Output = io::Result<B>>,
    B: std::ops::Deref<Target = [u8]>,
{
    let limit = records_end(state);
    let header_len = RECORD_HEADER_LEN as u32;
    let probe = RECORD_PROBE_LEN as u32;
    let of_this_life = |bytes: &[u8], offset: u32| {
        RecordHeader::decode(bytes).ok().filter(|rec| {
            rec.seq >= header.base_seq
                && after.is_none_or(|last| rec.seq > last)
                && (rec.segment, rec.offset) == (segment, offset)
                && rec.record_len() >= header_len
                && rec.record_len() <= limit - offset
        })
    };
    if from + header_len > limit {
        return Ok(None);
    }
    // The usual case: the next record starts right where the last one ended.
    let first = read(from, probe.min(limit - from))
        .await
        .map_err(io_err("reading", &state.path))?;
    if let Some(rec) = of_this_life(&first, from) {
        return Ok(Some(rec));
    }
    // Then every aligned offset after it. Windows overlap by what decodes a header,
    // so a header across a window's end is seen whole in the next one; the last
    // window takes what is left.
    let mut start = from + RECORD_ALIGN;
    while start + header_len <= limit {
        let len = (limit - start).min(SCAN_WINDOW);
        let last = start + len >= limit;
        let window = read(start, len)
            .await
            .map_err(io_err("reading", &state.path))?;
        let mut at = 0;
        while at + header_len <= len && (last || at + probe <= len) {
            let bytes = &window[at as usize..(at + probe).min(len) as usize];
            // Most offsets fail the magic: checked first, without decoding.
            if bytes[..4] == RECORD_MAGIC
                && let Some(rec) = of_this_life(bytes, start + at)
            {
                return Ok(Some(rec));
            }
            at += RECORD_ALIGN;
        }
        if last {
            break;
        }
        start += at;
    }
    Ok(None)
}
