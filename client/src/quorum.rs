//! When a chunk write is acknowledged, when a chunk counts as stored already (dedup),
//! and when a slow read is hedged: plain state machines fed with events, no I/O, no
//! clock (the caller passes durations).

use std::collections::VecDeque;
use std::time::Duration;

use hive_wire::{EncodingTag, ShardIndex};

/// Recent shard-read latencies kept for the hedging estimate.
pub const LATENCY_WINDOW: usize = 256;
/// Hedge delay before any latency has been seen.
pub const INITIAL_HEDGE_DELAY: Duration = Duration::from_millis(50);
/// Bounds of the learned hedge delay.
pub const MIN_HEDGE_DELAY: Duration = Duration::from_millis(1);
/// Above this, waiting longer only hides a dead node.
pub const MAX_HEDGE_DELAY: Duration = Duration::from_secs(2);

/// How a chunk write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// k shards are durable: the chunk is written. The rest continue in the background.
    Acked,
    /// Too many shards failed for k to be durable.
    Failed {
        /// Shards durable when it became impossible.
        durable: usize,
        /// Shards needed (k).
        needed: usize,
        /// Shards that could still have succeeded (k + m minus failures).
        available: usize,
    },
}

/// Counts the shards of one chunk write as their nodes answer.
#[derive(Debug, Clone)]
pub struct WriteQuorum {
    k: usize,
    width: usize,
    durable: u64,
    failed: u64,
    outcome: Option<WriteOutcome>,
}

impl WriteQuorum {
    /// A write of k data + m parity shards (k + m at most 64).
    pub fn new(k: u8, m: u8) -> Self {
        let width = usize::from(k) + usize::from(m);
        assert!(k >= 1 && width <= 64, "a chunk has 1..=64 shards");
        Self {
            k: usize::from(k),
            width,
            durable: 0,
            failed: 0,
            outcome: None,
        }
    }

    fn bit(&self, shard: ShardIndex) -> u64 {
        let i = usize::from(shard.get());
        assert!(i < self.width, "shard {i} of a {}-shard chunk", self.width);
        1 << i
    }

    fn count(bits: u64) -> usize {
        bits.count_ones() as usize
    }

    /// A node answered that `shard` is durable. Returns the outcome the first time it
    /// is decided, and `None` otherwise (including every later event).
    pub fn on_shard_durable(&mut self, shard: ShardIndex) -> Option<WriteOutcome> {
        let bit = self.bit(shard);
        debug_assert_eq!(
            self.failed & bit,
            0,
            "a shard reported both durable and failed"
        );
        self.durable |= bit;
        self.decide()
    }

    /// Writing `shard` failed (error, timeout, node down).
    pub fn on_shard_failed(&mut self, shard: ShardIndex) -> Option<WriteOutcome> {
        let bit = self.bit(shard);
        if self.durable & bit == 0 {
            self.failed |= bit;
        }
        self.decide()
    }

    fn decide(&mut self) -> Option<WriteOutcome> {
        if self.outcome.is_some() {
            return None;
        }
        let durable = Self::count(self.durable);
        let available = self.width - Self::count(self.failed);
        let outcome = if durable >= self.k {
            WriteOutcome::Acked
        } else if available < self.k {
            WriteOutcome::Failed {
                durable,
                needed: self.k,
                available,
            }
        } else {
            return None;
        };
        self.outcome = Some(outcome.clone());
        Some(outcome)
    }

    /// Whether `shard` has answered (durable or failed).
    pub fn is_answered(&self, shard: ShardIndex) -> bool {
        (self.durable | self.failed) & (1 << shard.get()) != 0
    }

    /// Whether every shard has answered.
    pub fn is_settled(&self) -> bool {
        Self::count(self.durable | self.failed) == self.width
    }

    /// Shards that failed after an acknowledged write: owed to repair.
    pub fn owed(&self) -> Vec<ShardIndex> {
        if self.outcome != Some(WriteOutcome::Acked) {
            return Vec::new();
        }
        (0..self.width)
            .filter(|i| self.failed & (1 << i) != 0)
            .map(|i| ShardIndex(u8::try_from(i).expect("invariant: at most 64 shards")))
            .collect()
    }
}

/// The dedup question: is a chunk stored already, so that nothing need be sent? Only
/// if at least k of its holders confirm an intact shard of one encoding: then any k of
/// them decode together, and the chunk is as readable as a fresh write would make it.
/// Fewer is "not stored" (the chunk is written, which restores what is missing: a
/// holder keeps an intact identical shard and takes any other).
#[derive(Debug, Clone)]
pub struct DedupQuorum {
    k: usize,
    outstanding: usize,
    /// Holders that confirmed each encoding.
    tags: Vec<(EncodingTag, usize)>,
    decided: bool,
}

impl DedupQuorum {
    /// A question to `asked` holders of a chunk with `k` data shards.
    pub fn new(k: u8, asked: usize) -> Self {
        assert!(k >= 1, "k is at least 1");
        Self {
            k: usize::from(k),
            outstanding: asked,
            tags: Vec::new(),
            decided: false,
        }
    }

    /// A holder answered: `Some(tag)` if it has an intact shard of encoding `tag`,
    /// `None` if not. Returns the answer the first time it is decided.
    pub fn on_answer(&mut self, answer: Option<EncodingTag>) -> Option<bool> {
        self.outstanding = self.outstanding.saturating_sub(1);
        if let Some(tag) = answer {
            match self.tags.iter_mut().find(|(t, _)| *t == tag) {
                Some((_, n)) => *n += 1,
                None => self.tags.push((tag, 1)),
            }
        }
        self.decide()
    }

    /// A holder did not answer (down, slow or failed).
    pub fn on_silence(&mut self) -> Option<bool> {
        self.on_answer(None)
    }

    fn decide(&mut self) -> Option<bool> {
        if self.decided {
            return None;
        }
        let best = self.tags.iter().map(|(_, n)| *n).max().unwrap_or(0);
        let answer = if best >= self.k {
            true
        } else if best + self.outstanding < self.k {
            false
        } else {
            return None;
        };
        self.decided = true;
        Some(answer)
    }
}

/// Recent read latencies, for deciding when a slow holder is hedged.
#[derive(Debug, Clone, Default)]
pub struct HedgeTimer {
    recent: VecDeque<Duration>,
}

impl HedgeTimer {
    /// Records how long a shard read took.
    pub fn record(&mut self, latency: Duration) {
        if self.recent.len() == LATENCY_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(latency);
    }

    /// How long to wait for a holder before asking the next one: the 95th percentile of
    /// recent reads, within [`MIN_HEDGE_DELAY`]..=[`MAX_HEDGE_DELAY`].
    pub fn delay(&self) -> Duration {
        if self.recent.is_empty() {
            return INITIAL_HEDGE_DELAY;
        }
        let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        let at = (sorted.len() * 95).div_ceil(100).saturating_sub(1);
        sorted[at].clamp(MIN_HEDGE_DELAY, MAX_HEDGE_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_testkit::Rng;

    #[test]
    fn a_write_is_acked_exactly_when_k_shards_are_durable() {
        for seed in 0..200u64 {
            let mut rng = Rng::new(seed);
            let (k, m) = (1 + rng.below(8) as u8, rng.below(5) as u8);
            let width = usize::from(k) + usize::from(m);
            let mut order: Vec<usize> = (0..width).collect();
            rng.shuffle(&mut order);
            let fail: Vec<bool> = (0..width).map(|_| rng.below(3) == 0).collect();
            let mut q = WriteQuorum::new(k, m);
            let mut outcomes = Vec::new();
            let (mut durable, mut failed) = (0, 0);
            for &i in &order {
                let shard = ShardIndex(i as u8);
                let out = if fail[i] {
                    failed += 1;
                    q.on_shard_failed(shard)
                } else {
                    durable += 1;
                    q.on_shard_durable(shard)
                };
                if let Some(out) = out {
                    match &out {
                        WriteOutcome::Acked => assert_eq!(durable, usize::from(k), "seed {seed}"),
                        WriteOutcome::Failed { available, .. } => {
                            assert!(*available < usize::from(k), "seed {seed}");
                            assert_eq!(width - failed, *available, "seed {seed}");
                        }
                    }
                    outcomes.push(out);
                }
            }
            assert_eq!(outcomes.len(), 1, "seed {seed}: decided exactly once");
            assert!(q.is_settled());
            let total_durable = fail.iter().filter(|f| !**f).count();
            let acked = total_durable >= usize::from(k);
            assert_eq!(outcomes[0] == WriteOutcome::Acked, acked, "seed {seed}");
            if acked {
                assert_eq!(q.owed().len(), width - total_durable, "seed {seed}");
            }
        }
    }

    #[test]
    fn a_failure_names_the_counts() {
        let mut q = WriteQuorum::new(4, 2);
        for i in 0..2 {
            assert_eq!(q.on_shard_failed(ShardIndex(i)), None);
        }
        assert_eq!(q.on_shard_durable(ShardIndex(2)), None);
        assert_eq!(
            q.on_shard_failed(ShardIndex(3)),
            Some(WriteOutcome::Failed {
                durable: 1,
                needed: 4,
                available: 3
            })
        );
        assert!(
            q.owed().is_empty(),
            "nothing is owed for a write that failed"
        );
    }

    #[test]
    fn dedup_needs_k_holders_of_one_encoding() {
        let (a, b) = (EncodingTag(1), EncodingTag(2));
        // 4+2: four confirmations of one encoding decide "stored" at once.
        let mut q = DedupQuorum::new(4, 6);
        for _ in 0..3 {
            assert_eq!(q.on_answer(Some(a)), None);
        }
        assert_eq!(q.on_answer(Some(a)), Some(true));
        assert_eq!(q.on_answer(None), None, "decided once");
        // Three holders lost their shards (the case a single "yes" used to hide).
        let mut q = DedupQuorum::new(4, 6);
        assert_eq!(q.on_answer(Some(a)), None);
        assert_eq!(q.on_answer(None), None);
        assert_eq!(q.on_silence(), None);
        assert_eq!(
            q.on_answer(None),
            Some(false),
            "at most 3 of 4 can confirm now"
        );
        // Two encodings never add up.
        let mut q = DedupQuorum::new(4, 6);
        for tag in [a, b, a, b, a] {
            assert_eq!(q.on_answer(Some(tag)), None);
        }
        assert_eq!(q.on_answer(Some(b)), Some(false));
    }

    #[test]
    fn the_hedge_delay_follows_recent_reads() {
        let mut timer = HedgeTimer::default();
        assert_eq!(timer.delay(), INITIAL_HEDGE_DELAY);
        for ms in 1..=100 {
            timer.record(Duration::from_millis(ms));
        }
        assert_eq!(timer.delay(), Duration::from_millis(95));
        for _ in 0..LATENCY_WINDOW {
            timer.record(Duration::from_secs(60));
        }
        assert_eq!(
            timer.delay(),
            MAX_HEDGE_DELAY,
            "old readings age out; the cap holds"
        );
    }
}
