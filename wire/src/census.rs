//! The digest of a set of chunks: what holders of a placement group compare before
//! they exchange lists (see the census in `hive-actors`).
//!
//! Order-independent and incremental: a store adds its chunks in any order, and two
//! holders with the same set of chunks have the same digest. It is a count, a
//! wrapping sum and an XOR of two independent 64-bit hashes of each chunk id: a set
//! that lost or gained chunks changes the count or, for a swap, both sums with
//! probability 1 - 2^-64 or so. It protects against accidents, not against someone who
//! picks chunk contents to make two sets collide; the lists exchanged when digests
//! differ, and reads that verify every chunk end to end, are what repair relies on.

use twox_hash::XxHash3_64;

use crate::ChunkId;

/// Seed of the second hash, so the sum and the XOR are not of the same value.
const XOR_SEED: u64 = 0x6869_7665_6365_6e73;

/// The digest of a set of chunk ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ChunkSetDigest {
    /// Chunks in the set.
    pub count: u64,
    /// Wrapping sum of xxh3-64 of each id.
    pub sum: u64,
    /// XOR of xxh3-64 (seeded) of each id.
    pub xor: u64,
}

impl ChunkSetDigest {
    /// Adds `chunk` to the set (the caller adds each chunk once).
    pub fn add(&mut self, chunk: &ChunkId) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(XxHash3_64::oneshot(chunk.as_bytes()));
        self.xor ^= XxHash3_64::oneshot_with_seed(XOR_SEED, chunk.as_bytes());
    }

    /// Adds a disjoint set's digest (another store of the same node, say).
    pub fn merge(&mut self, other: &ChunkSetDigest) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
        self.xor ^= other.xor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId([n; 32])
    }

    #[test]
    fn equal_sets_in_any_order_agree_and_others_do_not() {
        let mut a = ChunkSetDigest::default();
        let mut b = ChunkSetDigest::default();
        for n in 0..50 {
            a.add(&id(n));
            b.add(&id(49 - n));
        }
        assert_eq!(a, b);
        let mut missing = ChunkSetDigest::default();
        let mut swapped = ChunkSetDigest::default();
        for n in 0..50 {
            if n != 7 {
                missing.add(&id(n));
            }
            swapped.add(&id(if n == 7 { 200 } else { n }));
        }
        assert_ne!(a, missing);
        assert_eq!(a.count, swapped.count);
        assert_ne!(a, swapped, "a swapped chunk changes the sums");
    }
}
