//! A Bloom filter of chunk ids: the one kind of approximate set HiveFS keeps, for the
//! chunks a store touched lately and for garbage collection's mark. A chunk id is a
//! BLAKE3 hash, so its words are independent uniform hashes already: the i-th bit
//! position is `w0 + i * w1` (double hashing), and nothing is hashed again.
//!
//! A false positive says "maybe present" for an absent chunk; every use here makes that
//! the safe answer (a chunk kept one more round), never a lost one.

use crate::ChunkId;

/// A Bloom filter of chunk ids with a fixed number of bits.
#[derive(Clone)]
pub struct ChunkBloom {
    words: Box<[u64]>,
    hashes: u32,
}

impl ChunkBloom {
    /// A filter of `bits` bits (rounded up to a multiple of 64, at least 64) setting
    /// `hashes` bits per chunk (at least 1).
    pub fn new(bits: u64, hashes: u32) -> Self {
        let words = usize::try_from(bits.div_ceil(64).max(1)).expect("invariant: bits fit memory");
        Self {
            words: vec![0u64; words].into_boxed_slice(),
            hashes: hashes.max(1),
        }
    }

    /// A filter for about `chunks` chunks at about 1% false positives (10 bits and 7
    /// hashes a chunk), but of at most `max_bytes` bytes: past that, false positives
    /// grow, and nothing else.
    pub fn for_chunks(chunks: u64, max_bytes: u64) -> Self {
        let bits = chunks
            .saturating_mul(10)
            .clamp(64, max_bytes.saturating_mul(8).max(64));
        Self::new(bits, 7)
    }

    /// The bit positions of `chunk` in a filter of `bits` bits.
    fn positions(chunk: &ChunkId, hashes: u32, bits: u64) -> impl Iterator<Item = u64> {
        let word = |n: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&chunk.0[n * 8..n * 8 + 8]);
            u64::from_le_bytes(w)
        };
        let (first, step) = (word(0), word(1) | 1);
        (0..u64::from(hashes)).map(move |i| first.wrapping_add(i.wrapping_mul(step)) % bits)
    }

    /// Adds a chunk.
    pub fn insert(&mut self, chunk: &ChunkId) {
        let bits = self.words.len() as u64 * 64;
        for bit in Self::positions(chunk, self.hashes, bits) {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// Whether the chunk may have been added: `false` only if it never was.
    pub fn contains(&self, chunk: &ChunkId) -> bool {
        let bits = self.words.len() as u64 * 64;
        Self::positions(chunk, self.hashes, bits)
            .all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// Bytes of memory the bits take.
    pub fn memory_bytes(&self) -> u64 {
        self.words.len() as u64 * 8
    }
}

/// The member that stands for `chunk` under `salt`: the id with the two words the bit
/// positions come from mixed with the salt. A BLAKE3 id's words are uniform, and so
/// are they after a fixed XOR, so the filter's odds are unchanged; and a chunk that is
/// a false positive under one salt is one under another only by chance.
pub fn salted(chunk: &ChunkId, salt: u64) -> ChunkId {
    let mut id = chunk.0;
    for (n, mixed) in [mix(salt), mix(mix(salt))].into_iter().enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&id[n * 8..n * 8 + 8]);
        id[n * 8..n * 8 + 8].copy_from_slice(&(u64::from_le_bytes(w) ^ mixed).to_le_bytes());
    }
    ChunkId(id)
}

/// The salt that stands for storage class k + m (see [`salted`]): never 0, the salt of
/// "any class".
pub fn class_salt(k: u8, m: u8) -> u64 {
    (u64::from(k) << 8) | u64::from(m) | (1 << 16)
}

/// splitmix64's finaliser: a bijection that spreads every input bit.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u64) -> ChunkId {
        // Uniform-looking ids, as BLAKE3 hashes are.
        let mut id = [0u8; 32];
        let mut x = n.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for word in id.chunks_exact_mut(8) {
            x ^= x >> 31;
            x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            word.copy_from_slice(&x.to_le_bytes());
        }
        ChunkId(id)
    }

    #[test]
    fn members_are_always_found_and_strangers_rarely() {
        let mut bloom = ChunkBloom::for_chunks(10_000, 1 << 20);
        for n in 0..10_000 {
            bloom.insert(&chunk(n));
        }
        assert!((0..10_000).all(|n| bloom.contains(&chunk(n))));
        let false_positives = (10_000..110_000)
            .filter(|n| bloom.contains(&chunk(*n)))
            .count();
        assert!(
            false_positives < 2_000,
            "{false_positives} of 100000 strangers found"
        );
    }

    #[test]
    fn a_chunk_in_one_class_is_not_the_chunk_in_another() {
        let in_class = |c: &ChunkId, k, m| salted(c, class_salt(k, m));
        let mut bloom = ChunkBloom::for_chunks(10_000, 1 << 20);
        for n in 0..10_000 {
            bloom.insert(&in_class(&chunk(n), 4, 2));
        }
        assert!((0..10_000).all(|n| bloom.contains(&in_class(&chunk(n), 4, 2))));
        for other in [salted(&chunk(0), 0), in_class(&chunk(0), 2, 4)] {
            assert_ne!(other, in_class(&chunk(0), 4, 2));
        }
        let strangers = (0..10_000)
            .filter(|n| {
                bloom.contains(&salted(&chunk(*n), 0))
                    || bloom.contains(&in_class(&chunk(*n), 1, 2))
                    || bloom.contains(&in_class(&chunk(*n), 2, 4))
            })
            .count();
        assert!(
            strangers < 600,
            "{strangers} of 10000 found in the wrong class"
        );
    }

    #[test]
    fn a_false_positive_under_one_salt_is_rarely_one_under_another() {
        let mut one = ChunkBloom::for_chunks(1_000, 1 << 20);
        let mut two = one.clone();
        for n in 0..1_000 {
            one.insert(&salted(&chunk(n), 1));
            two.insert(&salted(&chunk(n), 2));
        }
        let strangers: Vec<u64> = (1_000..101_000)
            .filter(|n| one.contains(&salted(&chunk(*n), 1)))
            .collect();
        assert!(!strangers.is_empty() && strangers.len() < 2_000);
        let again = strangers
            .iter()
            .filter(|n| two.contains(&salted(&chunk(**n), 2)))
            .count();
        assert!(
            again * 20 < strangers.len(),
            "{again} of {} false positives came back under another salt",
            strangers.len()
        );
    }

    #[test]
    fn the_memory_budget_caps_the_size() {
        let bloom = ChunkBloom::for_chunks(100_000_000, 128 << 20);
        assert_eq!(bloom.memory_bytes(), 125_000_000);
        let capped = ChunkBloom::for_chunks(1 << 40, 1 << 20);
        assert_eq!(capped.memory_bytes(), 1 << 20);
        assert_eq!(ChunkBloom::for_chunks(0, 1 << 20).memory_bytes(), 8);
    }
}
