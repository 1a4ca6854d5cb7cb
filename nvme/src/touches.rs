//! Recent touches: which chunks a store stored a shard of, or said it holds one of (the
//! dedup question), lately. Garbage collection deletes a shard only if its chunk was not
//! touched for its grace period, so a chunk being written, or deduplicated against, is
//! never taken away under its writer.
//!
//! Bounded memory: [`TOUCH_GENERATIONS`] Bloom filters ([`ChunkBloom`]) of
//! [`TOUCH_FILTER_BITS`] bits, each covering one window of time; the oldest is dropped
//! as a new one starts. A false positive only keeps garbage for another round. Nothing is persisted: after an open,
//! every chunk counts as touched until the filters cover the whole age asked about.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hive_wire::ChunkId;
use hive_wire::bloom::ChunkBloom;

use crate::constants::{TOUCH_FILTER_BITS, TOUCH_GENERATIONS, TOUCH_HASHES};

struct Generation {
    from: Instant,
    chunks: ChunkBloom,
}

impl Generation {
    fn new(from: Instant) -> Self {
        Self {
            from,
            chunks: ChunkBloom::new(TOUCH_FILTER_BITS, TOUCH_HASHES),
        }
    }
}

/// The touches of one store.
pub(crate) struct Touches {
    window: Duration,
    /// Since when every touch is recorded: the open, then the oldest generation's start.
    since: Instant,
    /// Oldest first.
    generations: VecDeque<Generation>,
}

impl Touches {
    pub fn new(window: Duration, now: Instant) -> Self {
        Self {
            window,
            since: now,
            generations: VecDeque::from([Generation::new(now)]),
        }
    }

    /// Sets how long each generation covers (touches already recorded stay).
    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    fn rotate(&mut self, now: Instant) {
        let newest = self.generations.back().map_or(now, |g| g.from);
        if now.saturating_duration_since(newest) < self.window {
            return;
        }
        if self.generations.len() == TOUCH_GENERATIONS {
            self.generations.pop_front();
            if let Some(oldest) = self.generations.front() {
                self.since = self.since.max(oldest.from);
            }
        }
        self.generations.push_back(Generation::new(now));
    }

    /// Records that `chunk` was touched now.
    pub fn touch(&mut self, chunk: &ChunkId, now: Instant) {
        self.rotate(now);
        self.generations
            .back_mut()
            .expect("invariant: a generation is always open")
            .chunks
            .insert(chunk);
    }

    /// Whether `chunk` may have been touched within `age` of now: `true` when unsure
    /// (the filters do not reach back that far, or a filter says maybe).
    pub fn maybe_touched_within(&mut self, chunk: &ChunkId, age: Duration, now: Instant) -> bool {
        self.rotate(now);
        now.saturating_duration_since(self.since) < age
            || self.generations.iter().any(|g| g.chunks.contains(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u8) -> ChunkId {
        hive_codec::chunk_id(&[n])
    }

    #[test]
    fn touches_are_remembered_for_as_long_as_the_filters_reach() {
        let start = Instant::now();
        let window = Duration::from_secs(60);
        let mut touches = Touches::new(window, start);
        let hour = Duration::from_secs(3600);
        let minute = Duration::from_secs(60);
        // Just opened: everything counts as touched for any age longer than the uptime.
        assert!(touches.maybe_touched_within(&chunk(1), minute, start));
        let later = start + 2 * minute;
        assert!(!touches.maybe_touched_within(&chunk(1), minute, later));
        assert!(touches.maybe_touched_within(&chunk(1), hour, later));
        touches.touch(&chunk(2), later);
        assert!(touches.maybe_touched_within(&chunk(2), minute, later));
        assert!(touches.maybe_touched_within(&chunk(2), minute, later + 30 * window / 60));
        // A window later, a new generation starts; once TOUCH_GENERATIONS more have, the
        // touch's generation is dropped and the touch forgotten. The filters then
        // still reach back (TOUCH_GENERATIONS - 1) windows.
        let mut now = later;
        for _ in 0..TOUCH_GENERATIONS {
            assert!(touches.maybe_touched_within(&chunk(2), minute, now));
            now += window;
            touches.rotate(now);
        }
        let reach = window * (TOUCH_GENERATIONS as u32 - 1);
        assert!(!touches.maybe_touched_within(&chunk(2), reach, now));
        assert!(!touches.maybe_touched_within(&chunk(3), reach, now));
        assert!(touches.maybe_touched_within(&chunk(3), reach + minute, now));
    }
}
