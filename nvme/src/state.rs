//! The store's in-memory state: the index, segment use and the write head. Pure; the
//! store and its group-commit writer are the only callers.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use hive_wire::{EncodingTag, ShardName};

use crate::constants::{BLOCK, RESERVED_SEGMENTS};
use crate::error::StoreError;
use crate::format::{RECORD_HEADER_LEN, RecordKind, Summary, SummaryEntry, Superblock};
use crate::index::Index;

/// What the index is keyed by.
pub(crate) type Key = ShardName;

/// Where a live record is, and the encoding of the shard it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Location {
    pub segment: u32,
    /// Byte offset of the record within its segment.
    pub offset: u32,
    /// Bytes the record takes.
    pub len: u32,
    /// The shard's encoding tag, answered to the dedup question without a read.
    pub tag: EncodingTag,
}

/// A delete, kept in memory so reclaim knows whether it must carry it forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tombstone {
    pub key: Key,
    /// The segment that held the deleted put...
    pub segment: u32,
    /// ...in this life of it.
    pub life: u64,
}

/// One segment's use in its current life.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SegmentUse {
    /// Sequence number of the first record of this life; `None` while free.
    pub base_seq: Option<u64>,
    /// Bytes written: the header's block, then the records.
    pub used: u32,
    /// Records written in this life: its summary's entries.
    pub records: u32,
    /// Bytes of records the index points at.
    pub live: u32,
}

pub(crate) struct State {
    pub path: PathBuf,
    pub sb: Superblock,
    pub index: Index,
    pub segments: Vec<SegmentUse>,
    /// Delete records in each segment's current life.
    pub tombstones: Vec<Vec<Tombstone>>,
    /// The segment new records go to.
    pub head: Option<u32>,
    /// The records placed in the head's current life, for its summary.
    pub head_records: Vec<SummaryEntry>,
    /// The head's last block as written so far, when records end inside it: the next
    /// group commit writes that block again, these bytes first, so records pack
    /// across commits instead of each commit starting a fresh block.
    pub tail: Vec<u8>,
    pub next_seq: u64,
    pub poison: Option<(&'static str, Arc<io::Error>)>,
    /// Group commits made durable since open.
    pub commits: u64,
    /// Shards indexed per storage class (k, m), and their payload bytes.
    pub classes: std::collections::BTreeMap<(u8, u8), ClassUse>,
}

/// The shards of one storage class a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClassUse {
    pub shards: u64,
    /// Bytes of their payloads (the record and shard headers left out, padding in).
    pub payload: u64,
}

impl ClassUse {
    /// The payload bytes of a record of `len` bytes.
    fn payload_of(len: u32) -> u64 {
        let headers = RECORD_HEADER_LEN + hive_wire::SHARD_HEADER_LEN;
        u64::from(len).saturating_sub(headers as u64)
    }

    fn add(&mut self, at: &Location) {
        self.shards += 1;
        self.payload += Self::payload_of(at.len);
    }

    fn sub(&mut self, at: &Location) {
        self.shards -= 1;
        self.payload -= Self::payload_of(at.len);
    }
}

/// Where the allocator put a record.
pub(crate) struct Placed {
    pub seq: u64,
    pub segment: u32,
    /// Byte offset within the segment.
    pub offset: u32,
    /// The record opens a new life of its segment, so the segment header must be
    /// written (block 0) with it.
    pub opens_segment: bool,
    /// The segment that was the head until this record, now full: its summary must be
    /// written with this record.
    pub sealed: Option<Summary>,
}

impl State {
    pub fn new(path: PathBuf, sb: Superblock) -> Self {
        Self {
            path,
            sb,
            index: Index::new(),
            segments: vec![SegmentUse::default(); sb.segment_count as usize],
            tombstones: vec![Vec::new(); sb.segment_count as usize],
            head: None,
            head_records: Vec::new(),
            tail: Vec::new(),
            next_seq: 1,
            poison: None,
            commits: 0,
            classes: Default::default(),
        }
    }

    pub fn check_writable(&self) -> Result<(), StoreError> {
        match &self.poison {
            Some((op, cause)) => Err(StoreError::Poisoned {
                op,
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    pub fn poison(&mut self, op: &'static str, cause: io::Error) -> StoreError {
        let cause = Arc::new(cause);
        self.poison.get_or_insert((op, cause.clone()));
        StoreError::Poisoned { op, cause }
    }

    /// Bytes a segment's summary takes with `entries` entries.
    pub fn summary_bytes(entries: usize) -> u64 {
        u64::from(Summary::blocks_for(entries)) * BLOCK
    }

    /// Bytes segment `segment` still has for one more record, after the summary that
    /// record would grow.
    fn room(&self, segment: u32) -> u64 {
        let g = &self.segments[segment as usize];
        let summary = Self::summary_bytes(g.records as usize + 1);
        (u64::from(self.sb.segment_size) - summary).saturating_sub(u64::from(g.used))
    }

    /// The largest record a segment can hold: all but the header's block and the
    /// summary of that one record.
    pub fn max_record_len(&self) -> u32 {
        let most = u64::from(self.sb.segment_size) - BLOCK - Self::summary_bytes(1);
        u32::try_from(most).expect("invariant: below the segment size")
    }

    /// Places a record of `len` bytes at the head, opening the lowest free segment
    /// when the head is full. Only `reserve` records (deletes, reclaim's moves) may open
    /// one of the last [`RESERVED_SEGMENTS`] free segments, or write to a head opened
    /// from them: a put may use the head only while that many segments are still free,
    /// or puts would fill the reserve as soon as a delete opened it, and a full store
    /// could then never write the deletes that empty it.
    pub fn place(
        &mut self,
        len: u32,
        reserve: bool,
        kind: RecordKind,
        (key, tag): (Key, EncodingTag),
    ) -> Result<Placed, StoreError> {
        debug_assert!(len <= self.max_record_len());
        let seq = self.next_seq;
        let entry = |offset| SummaryEntry {
            kind,
            name: key,
            offset,
            len,
            tag,
            seq,
        };
        let free_count = self
            .segments
            .iter()
            .filter(|s| s.base_seq.is_none())
            .count();
        if let Some(head) = self.head
            && u64::from(len) <= self.room(head)
            && (reserve || free_count >= RESERVED_SEGMENTS)
        {
            let g = &mut self.segments[head as usize];
            let offset = g.used;
            g.used += len;
            g.records += 1;
            self.next_seq += 1;
            self.head_records.push(entry(offset));
            return Ok(Placed {
                seq,
                segment: head,
                offset,
                opens_segment: false,
                sealed: None,
            });
        }
        let allowed = reserve || free_count > RESERVED_SEGMENTS;
        let free = self.segments.iter().position(|s| s.base_seq.is_none());
        let Some(free) = free.filter(|_| allowed) else {
            let free_bytes = self.head.map(|h| self.room(h)).unwrap_or(0);
            return Err(StoreError::StoreFull {
                needed: u64::from(len),
                free_bytes,
            });
        };
        let segment = u32::try_from(free).expect("invariant: segment count is a u32");
        let sealed = self.head.map(|old| Summary {
            store_id: self.sb.store_id,
            segment: old,
            base_seq: self.segments[old as usize]
                .base_seq
                .expect("invariant: the head segment is in use"),
            used: self.segments[old as usize].used,
            entries: std::mem::take(&mut self.head_records),
        });
        let first = BLOCK as u32;
        self.segments[free] = SegmentUse {
            base_seq: Some(seq),
            used: first + len,
            records: 1,
            live: 0,
        };
        self.head = Some(segment);
        self.head_records.clear();
        self.tail.clear();
        self.head_records.push(entry(first));
        self.next_seq += 1;
        Ok(Placed {
            seq,
            segment,
            offset: first,
            opens_segment: true,
            sealed,
        })
    }

    /// Makes a durable put visible.
    pub fn insert(&mut self, key: Key, at: Location) {
        let class = self.classes.entry((key.k, key.m)).or_default();
        if let Some(old) = self.index.insert(key, at) {
            self.segments[old.segment as usize].live -= old.len;
            class.sub(&old);
        }
        class.add(&at);
        self.segments[at.segment as usize].live += at.len;
    }

    /// Makes a durable delete visible: removes the put if it is still the one in
    /// `segment`'s life `life`.
    pub fn remove(&mut self, key: &Key, segment: u32, life: u64) -> bool {
        let current = self.segments[segment as usize].base_seq == Some(life);
        match self.index.get(key) {
            Some(at) if at.segment == segment && current => {
                self.segments[at.segment as usize].live -= at.len;
                self.index.remove(key);
                if let Some(class) = self.classes.get_mut(&(key.k, key.m)) {
                    class.sub(&at);
                    if class.shards == 0 {
                        self.classes.remove(&(key.k, key.m));
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// The life of the segment holding `at`, to name the put in a delete.
    pub fn life_of(&self, at: &Location) -> u64 {
        self.segments[at.segment as usize]
            .base_seq
            .expect("invariant: an indexed record's segment is in use")
    }

    /// Whether a delete must still exist: the put it deletes is still part of its
    /// segment's current life, so a reopen would read it.
    pub fn tombstone_needed(&self, t: &Tombstone) -> bool {
        self.segments[t.segment as usize].base_seq == Some(t.life)
    }

    /// Forgets a segment whose header has been durably erased.
    pub fn free_segment(&mut self, segment: u32) {
        debug_assert_eq!(self.segments[segment as usize].live, 0);
        self.segments[segment as usize] = SegmentUse::default();
        self.tombstones[segment as usize].clear();
        if self.head == Some(segment) {
            self.head = None;
            self.head_records.clear();
            self.tail.clear();
        }
    }

    /// Byte offset on the device of byte `at` of `segment`.
    pub fn offset(&self, segment: u32, at: u32) -> u64 {
        self.sb.segment_offset(segment) + u64::from(at)
    }
}
