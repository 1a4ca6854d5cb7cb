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
    /// Touches from this instant...
    from: Instant,
    /// ...until this one (`from` + the window): no generation covers a stretch without
    /// touches, and a touch past `until` starts a new generation.
    until: Instant,
    chunks: ChunkBloom,
}

impl Generation {
    fn new(from: Instant, window: Duration) -> Self {
        Self {
            from,
            until: from + window,
            chunks: ChunkBloom::new(TOUCH_FILTER_BITS, TOUCH_HASHES),
        }
    }
}

/// The touches of one store.
pub(crate) struct Touches {
    window: Duration,
    /// Since when every touch is recorded: the open, then the end of the last
    /// generation dropped.
    since: Instant,
    /// Oldest first; never empty.
    generations: VecDeque<Generation>,
}

impl Touches {
    pub fn new(window: Duration, now: Instant) -> Self {
        Self {
            window,
            since: now,
            generations: VecDeque::from([Generation::new(now, window)]),
        }
    }

    /// Sets how long each generation covers (touches already recorded stay). The open
    /// generation ends a window after it began, or now if that has passed: it holds
    /// touches up to now.
    pub fn set_window(&mut self, window: Duration, now: Instant) {
        self.window = window;
        if let Some(open) = self.generations.back_mut() {
            open.until = (open.from + window).max(now);
        }
    }

    /// Starts a new generation at `now` if the newest has ended, dropping the oldest
    /// past [`TOUCH_GENERATIONS`].
    fn rotate(&mut self, now: Instant) {
        if self.generations.back().is_some_and(|g| now < g.until) {
            return;
        }
        if self.generations.len() == TOUCH_GENERATIONS
            && let Some(dropped) = self.generations.pop_front()
        {
            self.since = self.since.max(dropped.until);
        }
        self.generations
            .push_back(Generation::new(now, self.window));
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
    /// (the filters do not reach back that far, or a filter of a generation that
    /// overlaps the age says maybe).
    pub fn maybe_touched_within(&mut self, chunk: &ChunkId, age: Duration, now: Instant) -> bool {
        self.rotate(now);
        let Some(cutoff) = now.checked_sub(age) else {
            return true;
        };
        self.since > cutoff
            || self
                .generations
                .iter()
                .any(|g| g.until > cutoff && g.chunks.contains(chunk))
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
        assert!(touches.maybe_touched_within(&chunk(2), minute, later + window / 2));
        // Its generation covers one window from the touch: asked about an age that
        // reaches into it, the touch is seen; an age that ends after it, not.
        let after = later + 2 * window;
        assert!(touches.maybe_touched_within(&chunk(2), window * 2, after));
        assert!(!touches.maybe_touched_within(&chunk(2), window / 2, after));
        // Idle for long, then asked: the touch is long past (a generation ends after
        // one window even when nothing starts the next).
        let idle = later + 10 * window;
        assert!(!touches.maybe_touched_within(&chunk(2), minute, idle));
        assert!(touches.maybe_touched_within(&chunk(2), 10 * window, idle));
    }

    #[test]
    fn a_dropped_generation_makes_the_store_unsure_of_what_it_covered() {
        let start = Instant::now();
        let window = Duration::from_secs(60);
        let mut touches = Touches::new(window, start);
        touches.touch(&chunk(2), start + window / 2);
        // TOUCH_GENERATIONS more generations start: the first is dropped.
        let mut now = start;
        for _ in 0..TOUCH_GENERATIONS {
            now += window;
            touches.touch(&chunk(3), now);
        }
        // Ages that reach into the dropped generation are unsure, whatever the chunk.
        let reach = now - (start + window);
        assert!(!touches.maybe_touched_within(&chunk(2), reach, now));
        assert!(touches.maybe_touched_within(&chunk(2), reach + window, now));
        assert!(touches.maybe_touched_within(&chunk(4), reach + window, now));
        assert!(!touches.maybe_touched_within(&chunk(4), reach, now));
        assert!(touches.maybe_touched_within(&chunk(3), reach, now));
    }

    #[test]
    fn a_shorter_window_set_after_the_open_takes_effect_at_once() {
        let start = Instant::now();
        let mut touches = Touches::new(Duration::from_secs(3600), start);
        let second = Duration::from_secs(1);
        touches.touch(&chunk(1), start + 9 * second);
        touches.set_window(5 * second, start + 10 * second);
        // The open generation now ends at the change: its touch counts as recent
        // until then, and no later.
        assert!(touches.maybe_touched_within(&chunk(1), 2 * second, start + 11 * second));
        assert!(!touches.maybe_touched_within(&chunk(1), 5 * second, start + 20 * second));
    }
}
