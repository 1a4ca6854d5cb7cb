//! A file's written but not yet committed bytes, later writes over earlier ones. Pure:
//! no I/O.
//!
//! The bytes are kept as ranges that never overlap and never cross a [`WINDOW`]
//! boundary; they may touch. The bound keeps every operation's cost to the bytes it
//! names plus at most one window: a write inside a range is copied in place, a write
//! that starts where a range ends extends it (a file written in sequence is one range
//! per window), and a write over the start of a range copies only that range's tail,
//! which is at most a window long. Merging whole neighbours instead made the cost
//! grow with the buffer: a 256 MiB mapping written back as 65,536 pages in reverse
//! order, or put back under newer writes after a failed commit, copied the buffer once
//! per page. [`Dirty::take`] joins touching ranges, so a commit cuts chunks from the
//! same runs of bytes as before.

use std::collections::BTreeMap;

/// The size (and alignment) of the windows no range crosses.
pub const WINDOW: u64 = 1 << 20;

/// Dirty ranges by file offset.
#[derive(Debug)]
pub struct Dirty {
    ranges: BTreeMap<u64, Vec<u8>>,
    bytes: u64,
    window: u64,
}

impl Default for Dirty {
    fn default() -> Self {
        Self::with_window(WINDOW)
    }
}

impl Dirty {
    /// An empty buffer whose ranges stay within `window`-aligned windows (tests use
    /// small windows to reach every boundary case).
    fn with_window(window: u64) -> Self {
        Self {
            ranges: BTreeMap::new(),
            bytes: 0,
            window: window.max(1),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The offset just past the last dirty byte (0 when empty).
    pub fn end(&self) -> u64 {
        self.ranges
            .iter()
            .next_back()
            .map_or(0, |(start, data)| start + data.len() as u64)
    }

    /// Records `data` written at `offset`, over whatever was dirty there.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        for (at, piece) in pieces(offset, data, self.window) {
            self.write_piece(at, piece);
        }
    }

    /// Adds `data` at `offset` only where nothing is dirty (older bytes under newer).
    pub fn underlay(&mut self, offset: u64, data: &[u8]) {
        for (at, piece) in pieces(offset, data, self.window) {
            self.underlay_piece(at, piece);
        }
    }

    /// Writes `data`, which lies within one window, at `offset`.
    fn write_piece(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        // Inside one range: copied in place.
        if let Some((&start, held)) = self.ranges.range_mut(..=offset).next_back()
            && start + held.len() as u64 >= end
        {
            let at = to_usize(offset - start);
            held[at..at + data.len()].copy_from_slice(data);
            return;
        }
        // Ranges starting inside the write go; the last one's tail past it stays.
        let covered: Vec<u64> = self.ranges.range(offset..end).map(|(s, _)| *s).collect();
        let mut tail = Vec::new();
        for start in covered {
            if let Some(old) = self.ranges.remove(&start) {
                self.bytes -= old.len() as u64;
                let old_end = start + old.len() as u64;
                if old_end > end {
                    tail = old[to_usize(end - start)..].to_vec();
                }
            }
        }
        // The range that reaches the write's start (in the same window) is extended.
        let window = offset / self.window;
        let head = match self.ranges.range(..offset).next_back() {
            Some((&start, held))
                if start + held.len() as u64 >= offset && start / self.window == window =>
            {
                Some(start)
            }
            _ => None,
        };
        let (start, mut joined) = match head.and_then(|s| self.ranges.remove(&s).map(|h| (s, h))) {
            Some((start, mut held)) => {
                self.bytes -= held.len() as u64;
                held.truncate(to_usize(offset - start));
                (start, held)
            }
            None => (offset, Vec::with_capacity(data.len() + tail.len())),
        };
        joined.extend_from_slice(data);
        joined.extend_from_slice(&tail);
        self.bytes += joined.len() as u64;
        self.ranges.insert(start, joined);
    }

    /// Adds `data`, which lies within one window, at `offset` where nothing is held.
    fn underlay_piece(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let held: Vec<(u64, u64)> = self
            .overlapping(offset, end)
            .map(|(s, d)| (s, s + d.len() as u64))
            .collect();
        let mut at = offset;
        for (start, stop) in held.into_iter().chain([(end, end)]) {
            if start > at {
                let gap = data[to_usize(at - offset)..to_usize(start - offset)].to_vec();
                self.bytes += gap.len() as u64;
                self.ranges.insert(at, gap);
            }
            at = at.max(stop);
        }
    }

    /// Drops everything at or past `size` (a truncation).
    pub fn truncate(&mut self, size: u64) {
        let past = self.ranges.split_off(&size);
        self.bytes -= past.values().map(|d| d.len() as u64).sum::<u64>();
        if let Some((&start, last)) = self.ranges.range_mut(..size).next_back() {
            let keep = to_usize(size - start);
            if last.len() > keep {
                self.bytes -= (last.len() - keep) as u64;
                last.truncate(keep);
            }
        }
    }

    /// Copies the dirty bytes that fall in `[offset, offset + out.len())` into `out`.
    pub fn overlay(&self, offset: u64, out: &mut [u8]) {
        let end = offset + out.len() as u64;
        for (start, data) in self.overlapping(offset, end) {
            let range_end = start + data.len() as u64;
            let from = offset.max(start);
            let to = end.min(range_end);
            let src = to_usize(from - start);
            let dst = to_usize(from - offset);
            let n = to_usize(to - from);
            out[dst..dst + n].copy_from_slice(&data[src..src + n]);
        }
    }

    /// The ranges that hold bytes in `[offset, end)`, by offset.
    fn overlapping(&self, offset: u64, end: u64) -> impl Iterator<Item = (u64, &Vec<u8>)> {
        let first = self
            .ranges
            .range(..=offset)
            .next_back()
            .map_or(offset, |(s, _)| *s);
        self.ranges
            .range(first..end)
            .map(|(s, d)| (*s, d))
            .filter(move |(s, d)| s + d.len() as u64 > offset)
    }

    /// Takes every byte out as runs by offset, touching ranges joined into one run (so
    /// no two runs touch).
    pub fn take(&mut self) -> Vec<(u64, Vec<u8>)> {
        self.bytes = 0;
        let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
        for (start, data) in std::mem::take(&mut self.ranges) {
            match runs.last_mut() {
                Some((run_start, run)) if *run_start + run.len() as u64 == start => {
                    run.extend_from_slice(&data);
                }
                _ => runs.push((start, data)),
            }
        }
        runs
    }

    /// Puts runs back (after a failed commit), under anything written since.
    pub fn restore(&mut self, runs: Vec<(u64, Vec<u8>)>) {
        for (offset, data) in runs {
            self.underlay(offset, &data);
        }
    }
}

/// `data` at `offset` cut at every multiple of `window`; empty pieces are left out.
fn pieces(offset: u64, data: &[u8], window: u64) -> impl Iterator<Item = (u64, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= data.len() {
            return None;
        }
        let pos = offset + at as u64;
        let room = window - pos % window;
        let n = to_usize(room).min(data.len() - at);
        let piece = (pos, &data[at..at + n]);
        at += n;
        Some(piece)
    })
}

/// An in-memory length or offset difference as a `usize` (every one here indexes a
/// buffer that exists, so it fits).
fn to_usize(n: u64) -> usize {
    usize::try_from(n).expect("invariant: an offset within a buffer fits in usize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Write(u64, Vec<u8>),
        Underlay(u64, Vec<u8>),
        Truncate(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let data = || proptest::collection::vec(any::<u8>(), 0..64);
        prop_oneof![
            4 => (0u64..300, data()).prop_map(|(o, d)| Op::Write(o, d)),
            2 => (0u64..300, data()).prop_map(|(o, d)| Op::Underlay(o, d)),
            1 => (0u64..400).prop_map(Op::Truncate),
        ]
    }

    /// The model: a flat byte array with a "written" mask.
    fn apply(model: &mut Vec<Option<u8>>, op: &Op) {
        let (offset, data, over) = match op {
            Op::Write(o, d) => (*o as usize, d, true),
            Op::Underlay(o, d) => (*o as usize, d, false),
            Op::Truncate(size) => {
                model.truncate(*size as usize);
                return;
            }
        };
        if model.len() < offset + data.len() {
            model.resize(offset + data.len(), None);
        }
        for (i, b) in data.iter().enumerate() {
            let slot = &mut model[offset + i];
            if over || slot.is_none() {
                *slot = Some(*b);
            }
        }
    }

    proptest! {
        #[test]
        fn dirty_ranges_match_a_flat_model(
            ops in proptest::collection::vec(op(), 0..40),
            window in 1u64..70,
        ) {
            let mut dirty = Dirty::with_window(window);
            let mut model = Vec::new();
            for op in &ops {
                match op {
                    Op::Write(o, d) => dirty.write(*o, d),
                    Op::Underlay(o, d) => dirty.underlay(*o, d),
                    Op::Truncate(size) => dirty.truncate(*size),
                }
                apply(&mut model, op);
            }
            while model.last() == Some(&None) {
                model.pop();
            }
            let written = model.iter().filter(|b| b.is_some()).count() as u64;
            prop_assert_eq!(dirty.bytes(), written);
            prop_assert_eq!(dirty.end(), model.len() as u64);
            for (start, data) in &dirty.ranges {
                prop_assert!(!data.is_empty(), "empty range at {}", start);
                let last = start + data.len() as u64 - 1;
                prop_assert_eq!(start / window, last / window, "range at {} crosses", start);
            }
            let mut seen = vec![0xAAu8; model.len()];
            dirty.overlay(0, &mut seen);
            for (i, b) in model.iter().enumerate() {
                if let Some(b) = b {
                    prop_assert_eq!(seen[i], *b, "byte {}", i);
                }
            }
            let runs = dirty.take();
            for pair in runs.windows(2) {
                prop_assert!(pair[0].0 + (pair[0].1.len() as u64) < pair[1].0, "runs touch");
            }
            let mut taken = vec![None; model.len()];
            for (start, data) in &runs {
                for (i, b) in data.iter().enumerate() {
                    taken[*start as usize + i] = Some(*b);
                }
            }
            prop_assert_eq!(taken, model);
            prop_assert_eq!(dirty.bytes(), 0);
        }
    }

    #[test]
    fn underlay_keeps_newer_bytes() {
        let mut dirty = Dirty::default();
        dirty.write(2, b"NEW");
        dirty.underlay(0, b"oldoldold");
        let mut out = [0u8; 9];
        dirty.overlay(0, &mut out);
        assert_eq!(&out, b"olNEWdold");
        assert_eq!(dirty.bytes(), 9);
    }

    #[test]
    fn many_pages_out_of_order_and_their_restore_stay_cheap() {
        // 256 MiB written back as pages in reverse order, the way a mapping's pages may
        // reach the mount; merging neighbours copied the buffer once per page.
        const PAGE: usize = 4096;
        const PAGES: u64 = 65_536;
        let mut dirty = Dirty::default();
        for page in (0..PAGES).rev() {
            dirty.write(page * PAGE as u64, &[(page % 251) as u8; PAGE]);
        }
        assert_eq!(dirty.bytes(), PAGES * PAGE as u64);
        let runs = dirty.take();
        assert_eq!(runs.len(), 1, "one run of touching pages");
        // A newer write lands, then the failed commit's bytes go back under it.
        dirty.write(5 * PAGE as u64, b"newer");
        dirty.restore(runs);
        assert_eq!(dirty.bytes(), PAGES * PAGE as u64);
        let mut out = vec![0u8; PAGE];
        dirty.overlay(5 * PAGE as u64, &mut out);
        assert_eq!(&out[..5], b"newer");
        assert!(out[5..].iter().all(|&b| b == 5));
        let mut last = vec![0u8; PAGE];
        dirty.overlay((PAGES - 1) * PAGE as u64, &mut last);
        assert!(last.iter().all(|&b| b == ((PAGES - 1) % 251) as u8));
    }
}
