//! The in-memory index: shard name (chunk, k, m, index) → where the record is and the
//! shard's encoding tag, in 49 bytes an entry.
//!
//! Chunk ids are BLAKE3 hashes, so their first bytes are uniform: they pick one of 2^bits
//! buckets, each an exactly-sized sorted array searched by binary search. No hash table
//! load factor, no per-entry pointers: the cost per entry is the entry plus a share of
//! its bucket's allocation.
//!
//! An entry packs the scheme and index into 16 bits (k - 1: 5 bits, m: 5 bits, index:
//! 6 bits, in that order, so packed names sort as (k, m, index) do), the record's byte
//! offset into 32 bits and its length, in units of `RECORD_ALIGN` (8) bytes, into 24
//! (a record is at most 16 MiB and some headers, under 128 MiB): 32 + 2 + 4 + 7 + 4 bytes.

use hive_wire::EncodingTag;

use crate::constants::RECORD_ALIGN;
use crate::state::{Key, Location};

/// One entry, packed without padding.
#[derive(Clone, Copy)]
struct Entry {
    id: [u8; 32],
    /// (k - 1) << 11 | m << 6 | index.
    name: [u8; 2],
    segment: [u8; 4],
    /// Byte offset (32 bits) then length in units of `RECORD_ALIGN` (24 bits),
    /// little-endian.
    place: [u8; 7],
    tag: [u8; 4],
}

/// The packed scheme and index of a valid shard name; `None` for a name no valid
/// shard has (k = 0, k > 32, m > 16, index >= 64), which is then never indexed.
fn pack(key: &Key) -> Option<u16> {
    let valid = (1..=32).contains(&key.k) && key.m <= 16 && key.index.get() < 64;
    valid.then(|| {
        (u16::from(key.k - 1) << 11) | (u16::from(key.m) << 6) | u16::from(key.index.get())
    })
}

impl Entry {
    fn new(key: &Key, at: Location) -> Self {
        let name = pack(key).expect("invariant: only verified shards are indexed");
        let units = at.len / RECORD_ALIGN;
        assert!(
            units < 1 << 24 && at.len.is_multiple_of(RECORD_ALIGN),
            "invariant: records are aligned and at most 16 MiB and some headers"
        );
        let mut place = [0u8; 7];
        place[..4].copy_from_slice(&at.offset.to_le_bytes());
        place[4..].copy_from_slice(&units.to_le_bytes()[..3]);
        Self {
            id: key.chunk.0,
            name: name.to_be_bytes(),
            segment: at.segment.to_le_bytes(),
            place,
            tag: at.tag.0.to_le_bytes(),
        }
    }

    fn name(&self) -> u16 {
        u16::from_be_bytes(self.name)
    }

    fn key(&self) -> Key {
        let name = self.name();
        hive_wire::ShardName {
            chunk: hive_wire::ChunkId(self.id),
            k: (name >> 11) as u8 + 1,
            m: ((name >> 6) & 0x1f) as u8,
            index: hive_wire::ShardIndex((name & 0x3f) as u8),
        }
    }

    fn sort_key(&self) -> ([u8; 32], u16) {
        (self.id, self.name())
    }

    fn location(&self) -> Location {
        let p = self.place;
        Location {
            segment: u32::from_le_bytes(self.segment),
            offset: u32::from_le_bytes([p[0], p[1], p[2], p[3]]),
            len: u32::from_le_bytes([p[4], p[5], p[6], 0]) * RECORD_ALIGN,
            tag: EncodingTag(u32::from_le_bytes(self.tag)),
        }
    }
}

/// The bucket table doubles when buckets average more than this many entries: enough
/// that the table costs under half a byte an entry, few enough that an insert (which
/// copies its bucket) stays cheap.
const ENTRIES_PER_BUCKET: usize = 64;
/// Buckets to start with.
const INITIAL_BUCKET_BITS: u32 = 4;
/// At most 2^24 buckets (256 MiB of table, for a billion entries).
const MAX_BUCKET_BITS: u32 = 24;

pub(crate) struct Index {
    bits: u32,
    buckets: Vec<Box<[Entry]>>,
    len: usize,
}

impl Index {
    pub fn new() -> Self {
        Self {
            bits: INITIAL_BUCKET_BITS,
            buckets: vec![Box::default(); 1 << INITIAL_BUCKET_BITS],
            len: 0,
        }
    }

    fn bucket_of(id: &[u8; 32], bits: u32) -> usize {
        (u32::from_be_bytes([id[0], id[1], id[2], id[3]]) >> (32 - bits)) as usize
    }

    fn bucket(&self, key: &Key) -> usize {
        Self::bucket_of(&key.chunk.0, self.bits)
    }

    /// Doubles the bucket table: each bucket splits in two at the next id bit, which
    /// keeps both halves sorted.
    fn grow(&mut self) {
        let bits = self.bits + 1;
        let mut buckets = Vec::with_capacity(1 << bits);
        for (n, old) in self.buckets.iter().enumerate() {
            let split = old.partition_point(|e| Self::bucket_of(&e.id, bits) == 2 * n);
            buckets.push(Box::<[Entry]>::from(&old[..split]));
            buckets.push(Box::<[Entry]>::from(&old[split..]));
        }
        self.buckets = buckets;
        self.bits = bits;
    }

    /// The bucket of `key` and where in it the key is (or would go); `None` for a
    /// name no valid shard has.
    fn find(&self, key: &Key) -> Option<(usize, Result<usize, usize>)> {
        let bucket = self.bucket(key);
        let wanted = (key.chunk.0, pack(key)?);
        let found = self.buckets[bucket].binary_search_by(|e| e.sort_key().cmp(&wanted));
        Some((bucket, found))
    }

    pub fn get(&self, key: &Key) -> Option<Location> {
        match self.find(key)? {
            (bucket, Ok(at)) => Some(self.buckets[bucket][at].location()),
            _ => None,
        }
    }

    pub fn contains_key(&self, key: &Key) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the location replaced.
    pub fn insert(&mut self, key: Key, at: Location) -> Option<Location> {
        let entry = Entry::new(&key, at);
        let (bucket, found) = self
            .find(&key)
            .expect("invariant: only verified shards are indexed");
        match found {
            Ok(i) => {
                let old = self.buckets[bucket][i].location();
                self.buckets[bucket][i] = entry;
                Some(old)
            }
            Err(i) => {
                let mut grown = Vec::with_capacity(self.buckets[bucket].len() + 1);
                grown.extend_from_slice(&self.buckets[bucket][..i]);
                grown.push(entry);
                grown.extend_from_slice(&self.buckets[bucket][i..]);
                self.buckets[bucket] = grown.into_boxed_slice();
                self.len += 1;
                if self.len > self.buckets.len() * ENTRIES_PER_BUCKET && self.bits < MAX_BUCKET_BITS
                {
                    self.grow();
                }
                None
            }
        }
    }

    pub fn remove(&mut self, key: &Key) -> Option<Location> {
        let Some((bucket, Ok(i))) = self.find(key) else {
            return None;
        };
        let old = self.buckets[bucket][i].location();
        let mut shrunk = self.buckets[bucket].to_vec();
        shrunk.remove(i);
        self.buckets[bucket] = shrunk.into_boxed_slice();
        self.len -= 1;
        Some(old)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = (Key, Location)> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.iter().map(|e| (e.key(), e.location())))
    }

    /// The entries above `after` in name order (chunk id, then scheme and index),
    /// ascending; all of them with `None`.
    pub fn iter_after(&self, after: Option<&Key>) -> impl Iterator<Item = (Key, Location)> + '_ {
        let cursor = after.map(|k| (k.chunk.0, pack(k)));
        let (first, skip) = match cursor {
            Some((id, Some(name))) => {
                let bucket = Self::bucket_of(&id, self.bits);
                let skip = self.buckets[bucket].partition_point(|e| e.sort_key() <= (id, name));
                (bucket, skip)
            }
            // A name no shard has: from its chunk's bucket, skipping by comparison.
            Some((id, None)) => (Self::bucket_of(&id, self.bits), 0),
            None => (0, 0),
        };
        let after = after.copied();
        self.buckets[first..]
            .iter()
            .enumerate()
            .flat_map(move |(n, b)| b[if n == 0 { skip } else { 0 }..].iter())
            .map(|e| (e.key(), e.location()))
            .filter(move |(key, _)| after.is_none_or(|a| *key > a))
    }

    /// Heap bytes the index holds: the bucket table, each bucket's array, and the
    /// allocator's own overhead per allocation (glibc: 8 bytes of header, 16-byte
    /// granularity, 32 bytes at least).
    pub fn heap_bytes(&self) -> u64 {
        let table = self.buckets.capacity() * std::mem::size_of::<Box<[Entry]>>();
        let arrays: usize = self
            .buckets
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| {
                (std::mem::size_of_val(&**b) + 8)
                    .next_multiple_of(16)
                    .max(32)
            })
            .sum();
        (table + arrays) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_wire::{ChunkId, ShardIndex, ShardName};

    fn key(n: u64) -> Key {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        id[8..16].copy_from_slice(&n.to_le_bytes());
        ShardName {
            chunk: ChunkId(id),
            k: 4 - (n % 2) as u8,
            m: 2,
            index: ShardIndex((n % 5) as u8),
        }
    }

    fn at(n: u64) -> Location {
        Location {
            segment: n as u32,
            offset: (n * 3) as u32 * RECORD_ALIGN,
            len: ((n % 4000) as u32 + 1) * RECORD_ALIGN,
            tag: EncodingTag((n * 7919) as u32),
        }
    }

    #[test]
    fn behaves_like_a_map() {
        let mut index = Index::new();
        let mut model = std::collections::HashMap::new();
        for n in 0..5000 {
            assert_eq!(index.insert(key(n), at(n)), model.insert(key(n), at(n)));
        }
        for n in (0..5000).step_by(3) {
            assert_eq!(index.remove(&key(n)), model.remove(&key(n)));
        }
        assert_eq!(index.insert(key(1), at(9)), model.insert(key(1), at(9)));
        assert_eq!(index.len(), model.len());
        for n in 0..5100 {
            assert_eq!(index.get(&key(n)), model.get(&key(n)).copied());
        }
        // Names no valid shard has are simply absent.
        for (k, m, i) in [(0, 2, 1), (33, 2, 1), (4, 17, 1), (4, 2, 64)] {
            let bad = ShardName {
                k,
                m,
                index: ShardIndex(i),
                ..key(1)
            };
            assert_eq!(index.get(&bad), None);
            assert_eq!(index.remove(&bad), None);
        }
        // Pages from a cursor give every entry once, in name order.
        let mut sorted: Vec<_> = model.iter().map(|(k, at)| (*k, *at)).collect();
        sorted.sort_unstable_by_key(|(k, _)| *k);
        let mut paged = Vec::new();
        loop {
            let page: Vec<_> = index
                .iter_after(paged.last().map(|(k, _)| k))
                .take(37)
                .collect();
            if page.is_empty() {
                break;
            }
            paged.extend(page);
        }
        assert!(
            paged == sorted,
            "paging by cursor lost or reordered entries"
        );
        let invalid = ShardName {
            k: 0,
            ..sorted[100].0
        };
        let rest: Vec<_> = index.iter_after(Some(&invalid)).map(|(k, _)| k).collect();
        let expected: Vec<_> = sorted
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| *k > invalid)
            .collect();
        assert_eq!(rest, expected);
        let mut listed: Vec<_> = index.iter().collect();
        listed.sort_unstable_by_key(|(k, _)| *k);
        let mut expected: Vec<_> = model.into_iter().collect();
        expected.sort_unstable_by_key(|(k, _)| *k);
        assert_eq!(listed, expected);
    }

    #[test]
    fn an_entry_costs_at_most_50_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 49);
        let mut index = Index::new();
        for n in 0..300_000 {
            index.insert(key(n), at(n));
            if n % 10_000 == 9_999 {
                let per_entry = index.heap_bytes() as f64 / index.len() as f64;
                assert!(per_entry <= 50.0, "{per_entry:.1} bytes per entry at {n}");
            }
        }
    }
}
