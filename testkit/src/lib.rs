//! Seeded data for tests and benchmarks: the same seed gives the same bytes on every
//! machine, so a failure that prints its seed can be replayed exactly.

/// SplitMix64: tiny, fast, and good enough for test data (not for secrets).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; `n` must not be 0.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "below(0) has no answer");
        (self.next_u64() % n as u64) as usize
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// `len` incompressible bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `len` bytes of text-like data made of words from a small vocabulary: zstd level 1
/// shrinks it to roughly a third, like source code or logs.
pub fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "chunk",
        "shard",
        "node",
        "write",
        "read",
        "parity",
        "durable",
        "cluster",
        "placement",
        "group",
        "epoch",
        "fsync",
        "repair",
        "volume",
        "inode",
        "extent",
        "map",
        "quorum",
        "segment",
        "log",
        "index",
        "client",
        "server",
        "error",
        "ok",
        "retry",
        "timeout",
        "bytes",
        "offset",
        "length",
        "hash",
    ];
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let word = WORDS[rng.below(WORDS.len())];
        out.extend_from_slice(word.as_bytes());
        out.push(if rng.below(12) == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        assert_eq!(random_bytes(9, 1000), random_bytes(9, 1000));
        assert_ne!(random_bytes(9, 1000), random_bytes(10, 1000));
        assert_eq!(text_bytes(1, 777).len(), 777);
        assert_eq!(random_bytes(1, 0).len(), 0);
    }
}
