//! A file's written but not yet committed bytes: non-overlapping ranges, later writes
//! over earlier ones. Pure: no I/O.

use std::collections::BTreeMap;

/// Dirty ranges by file offset; no two overlap or touch (touching ranges are merged).
#[derive(Default, Debug)]
pub struct Dirty {
    ranges: BTreeMap<u64, Vec<u8>>,
    bytes: u64,
}

impl Dirty {
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
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // The common case: appending to the range that ends where this write starts.
        let nothing_after = self.ranges.range(offset..=end).next().is_none();
        if nothing_after
            && let Some((&start, last)) = self.ranges.range_mut(..offset).next_back()
            && start + last.len() as u64 == offset
        {
            last.extend_from_slice(data);
            self.bytes += data.len() as u64;
            return;
        }
        // Every range that overlaps or touches [offset, end) merges with it.
        let touching: Vec<u64> = self
            .ranges
            .range(..=end)
            .filter(|(start, d)| *start + d.len() as u64 >= offset)
            .map(|(start, _)| *start)
            .collect();
        let mut merged_start = offset;
        let mut merged_end = end;
        for start in &touching {
            let len = self.ranges[start].len() as u64;
            merged_start = merged_start.min(*start);
            merged_end = merged_end.max(start + len);
        }
        let mut merged = vec![0u8; usize::try_from(merged_end - merged_start).unwrap_or(0)];
        for start in touching {
            if let Some(old) = self.ranges.remove(&start) {
                self.bytes -= old.len() as u64;
                let at = usize::try_from(start - merged_start).unwrap_or(0);
                merged[at..at + old.len()].copy_from_slice(&old);
            }
        }
        let at = usize::try_from(offset - merged_start).unwrap_or(0);
        merged[at..at + data.len()].copy_from_slice(data);
        self.bytes += merged.len() as u64;
        self.ranges.insert(merged_start, merged);
    }

    /// Adds `data` at `offset` only where nothing is dirty (older bytes under newer).
    pub fn underlay(&mut self, offset: u64, data: &[u8]) {
        let mut newer = Dirty::default();
        std::mem::swap(self, &mut newer);
        self.write(offset, data);
        for (start, bytes) in newer.ranges {
            self.write(start, &bytes);
        }
    }

    /// Drops everything at or past `size` (a truncation).
    pub fn truncate(&mut self, size: u64) {
        let past: Vec<u64> = self.ranges.range(size..).map(|(s, _)| *s).collect();
        for start in past {
            if let Some(old) = self.ranges.remove(&start) {
                self.bytes -= old.len() as u64;
            }
        }
        if let Some((&start, last)) = self.ranges.range_mut(..size).next_back() {
            let keep = usize::try_from(size - start).unwrap_or(usize::MAX);
            if last.len() > keep {
                self.bytes -= (last.len() - keep) as u64;
                last.truncate(keep);
            }
        }
    }

    /// Copies the dirty bytes that fall in `[offset, offset + out.len())` into `out`.
    pub fn overlay(&self, offset: u64, out: &mut [u8]) {
        let end = offset + out.len() as u64;
        let first = self
            .ranges
            .range(..=offset)
            .next_back()
            .map_or(offset, |(s, _)| *s);
        for (start, data) in self.ranges.range(first..end) {
            let range_end = start + data.len() as u64;
            if range_end <= offset {
                continue;
            }
            let from = offset.max(*start);
            let to = end.min(range_end);
            let src = usize::try_from(from - start).unwrap_or(0);
            let dst = usize::try_from(from - offset).unwrap_or(0);
            let n = usize::try_from(to - from).unwrap_or(0);
            out[dst..dst + n].copy_from_slice(&data[src..src + n]);
        }
    }

    /// Takes every range out, by offset.
    pub fn take(&mut self) -> Vec<(u64, Vec<u8>)> {
        self.bytes = 0;
        std::mem::take(&mut self.ranges).into_iter().collect()
    }

    /// Puts ranges back (after a failed commit), under anything written since.
    pub fn restore(&mut self, ranges: Vec<(u64, Vec<u8>)>) {
        for (offset, data) in ranges {
            self.underlay(offset, &data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The model: a flat byte array with a "written" mask.
    fn apply(model: &mut Vec<Option<u8>>, offset: u64, data: &[u8]) {
        let end = offset as usize + data.len();
        if model.len() < end {
            model.resize(end, None);
        }
        for (i, b) in data.iter().enumerate() {
            model[offset as usize + i] = Some(*b);
        }
    }

    proptest! {
        #[test]
        fn dirty_ranges_match_a_flat_model(
            writes in proptest::collection::vec((0u64..300, proptest::collection::vec(any::<u8>(), 0..64)), 0..40),
            cut in 0u64..400,
        ) {
            let mut dirty = Dirty::default();
            let mut model = Vec::new();
            for (offset, data) in &writes {
                dirty.write(*offset, data);
                apply(&mut model, *offset, data);
            }
            dirty.truncate(cut);
            model.truncate(cut as usize);
            let written = model.iter().filter(|b| b.is_some()).count() as u64;
            prop_assert_eq!(dirty.bytes(), written);
            let mut seen = vec![0xAAu8; model.len()];
            dirty.overlay(0, &mut seen);
            for (i, b) in model.iter().enumerate() {
                if let Some(b) = b {
                    prop_assert_eq!(seen[i], *b, "byte {}", i);
                }
            }
            let ranges = dirty.take();
            for pair in ranges.windows(2) {
                prop_assert!(pair[0].0 + (pair[0].1.len() as u64) < pair[1].0, "ranges touch");
            }
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
}
