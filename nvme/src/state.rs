//! The store's in-memory state: the index, segment use and the write head. Pure; the
//! store and its group-commit writer are the only callers.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use hive_wire::{EncodingTag, ShardName};

use crate::constants::RESERVED_SEGMENTS;
use crate::error::StoreError;
use crate::format::{RecordKind, Summary, SummaryEntry, Superblock, summary_blocks};
use crate::index::Index;

/// What the index is keyed by.
pub(crate) type Key = ShardName;

/// Where a live record is, and the encoding of the shard it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Location {
    pub segment: u32,
    pub block: u32,
    pub blocks: u32,
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
    /// Blocks written, header included.
    pub used: u32,
    /// Blocks of records the index points at.
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
    pub next_seq: u64,
    pub poison: Option<(&'static str, Arc<io::Error>)>,
    /// Group commits made durable since open.
    pub commits: u64,
    /// Shards indexed per storage class (k, m).
    pub classes: std::collections::BTreeMap<(u8, u8), u64>,
}

/// Where the allocator put a record.
pub(crate) struct Placed {
    pub seq: u64,
    pub segment: u32,
    pub block: u32,
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

    /// Blocks of a segment that hold its header and records; the rest is its summary.
    pub fn record_area(&self) -> u32 {
        let blocks = self.sb.segment_blocks();
        blocks - summary_blocks(blocks)
    }

    /// The largest record a segment can hold.
    pub fn max_record_blocks(&self) -> u32 {
        self.record_area() - 1
    }

    /// Places a record of `blocks` blocks at the head, opening the lowest free segment
    /// when the head is full. Only `reserve` records (deletes, reclaim's moves) may open
    /// one of the last [`RESERVED_SEGMENTS`] free segments.
    pub fn place(
        &mut self,
        blocks: u32,
        reserve: bool,
        kind: RecordKind,
        (key, tag): (Key, EncodingTag),
    ) -> Result<Placed, StoreError> {
        debug_assert!(blocks <= self.max_record_blocks());
        let area = self.record_area();
        let seq = self.next_seq;
        let entry = |block| SummaryEntry {
            kind,
            name: key,
            block,
            blocks,
            tag,
            seq,
        };
        if let Some(head) = self.head {
            let used = &mut self.segments[head as usize];
            if used.used + blocks <= area {
                let block = used.used;
                used.used += blocks;
                self.next_seq += 1;
                self.head_records.push(entry(block));
                return Ok(Placed {
                    seq,
                    segment: head,
                    block,
                    opens_segment: false,
                    sealed: None,
                });
            }
        }
        let free_count = self
            .segments
            .iter()
            .filter(|s| s.base_seq.is_none())
            .count();
        let allowed = reserve || free_count > RESERVED_SEGMENTS;
        let free = self.segments.iter().position(|s| s.base_seq.is_none());
        let Some(free) = free.filter(|_| allowed) else {
            let free_blocks = self
                .head
                .map(|h| area - self.segments[h as usize].used)
                .unwrap_or(0);
            return Err(StoreError::StoreFull {
                needed: u64::from(blocks) * crate::constants::BLOCK,
                free_bytes: u64::from(free_blocks) * crate::constants::BLOCK,
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
        self.segments[free] = SegmentUse {
            base_seq: Some(seq),
            used: 1 + blocks,
            live: 0,
        };
        self.head = Some(segment);
        self.head_records.clear();
        self.head_records.push(entry(1));
        self.next_seq += 1;
        Ok(Placed {
            seq,
            segment,
            block: 1,
            opens_segment: true,
            sealed,
        })
    }

    /// Makes a durable put visible.
    pub fn insert(&mut self, key: Key, at: Location) {
        match self.index.insert(key, at) {
            Some(old) => self.segments[old.segment as usize].live -= old.blocks,
            None => *self.classes.entry((key.k, key.m)).or_default() += 1,
        }
        self.segments[at.segment as usize].live += at.blocks;
    }

    /// Makes a durable delete visible: removes the put if it is still the one in
    /// `segment`'s life `life`.
    pub fn remove(&mut self, key: &Key, segment: u32, life: u64) -> bool {
        let current = self.segments[segment as usize].base_seq == Some(life);
        match self.index.get(key) {
            Some(at) if at.segment == segment && current => {
                self.segments[at.segment as usize].live -= at.blocks;
                self.index.remove(key);
                if let Some(n) = self.classes.get_mut(&(key.k, key.m)) {
                    *n -= 1;
                    if *n == 0 {
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
        }
    }

    /// Byte offset of a block.
    pub fn offset(&self, segment: u32, block: u32) -> u64 {
        self.sb.segment_offset(segment) + u64::from(block) * crate::constants::BLOCK
    }
}
