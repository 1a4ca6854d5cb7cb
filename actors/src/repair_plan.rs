//! What to rebuild, in what order, from where and onto where: a pure function of what
//! the census found, and the rate limiter that paces the rebuilding. The repairer only
//! carries the plan out.
//!
//! Risk order: chunks with the fewest intact shards first (a chunk one loss away from
//! unreadable comes before one that lost a single shard of four parities), then by
//! chunk id so every planner orders the same findings the same way. A chunk is rebuilt
//! onto the holders the current map names that are up and lack its shard; a missing
//! shard whose holder is down waits for it to come back (or to be marked out, when the
//! map names another holder). A chunk with fewer than k intact shards cannot be
//! rebuilt: it is counted and named, never guessed at.
//!
//! Rebalance is the same loop: after a placement change a shard may still sit on the
//! holder a past placement named (`moved`). It counts as intact, serves as a source,
//! and a missing shard that a past holder has is copied from there rather than rebuilt.

use std::time::Duration;

use hive_wire::ChunkId;

/// A chunk the census found short of shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    /// The chunk.
    pub chunk: ChunkId,
    /// Its class's data shards.
    pub k: u8,
    /// Its class's parity shards.
    pub m: u8,
    /// Bit i: holder i has shard i intact.
    pub present: u64,
    /// Bit i: holder i is up and was listed (a shard can be rebuilt onto it).
    pub up: u64,
    /// Bit i: shard i is not on holder i, but a holder under a past placement has it.
    pub moved: u64,
    /// Bit p: the group's p-th past holder (the census's numbering) has its shard.
    pub past: u64,
}

impl Finding {
    /// Intact shards, wherever they are.
    pub fn healthy(&self) -> u32 {
        (self.present | self.moved).count_ones()
    }

    fn width_mask(&self) -> u64 {
        let width = u32::from(self.k) + u32::from(self.m);
        if width >= 64 {
            u64::MAX
        } else {
            (1u64 << width) - 1
        }
    }
}

/// One chunk to rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// What the census found.
    pub finding: Finding,
    /// Shard indexes to read from, data shards first (reading k data shards needs no
    /// Reed-Solomon work).
    pub sources: Vec<u8>,
    /// Shard indexes to copy from a past placement's holder to their holder.
    pub copy: Vec<u8>,
    /// Shard indexes to rebuild and store on their holders.
    pub rebuild: Vec<u8>,
}

/// The plan for one census round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Chunks to rebuild, riskiest first.
    pub tasks: Vec<Task>,
    /// Chunks with fewer than k intact shards: unreadable until a holder with a shard
    /// comes back.
    pub unreadable: Vec<Finding>,
    /// Chunks whose only missing shards belong to holders that are down.
    pub waiting: usize,
}

fn indexes(mask: u64) -> Vec<u8> {
    (0..64u8).filter(|i| mask & (1 << i) != 0).collect()
}

/// Plans the rebuilding of `findings`.
pub fn plan(mut findings: Vec<Finding>) -> Plan {
    findings.sort_unstable_by_key(|f| (f.healthy(), f.chunk));
    let mut plan = Plan::default();
    for finding in findings {
        let missing = finding.up & !finding.present & finding.width_mask();
        if missing == 0 {
            plan.waiting += 1;
        } else if finding.healthy() < u32::from(finding.k) {
            plan.unreadable.push(finding);
        } else {
            plan.tasks.push(Task {
                finding,
                sources: indexes(finding.present | finding.moved),
                copy: indexes(missing & finding.moved),
                rebuild: indexes(missing & !finding.moved),
            });
        }
    }
    plan
}

/// Paces bytes to a rate (a token bucket holding at most one second's worth), with
/// the rate changeable at any time. Pure: the caller passes the time.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: u64,
    /// Bytes that may go now without waiting (negative: owed).
    allowance: f64,
    last: Option<std::time::Instant>,
}

impl RateLimiter {
    /// A limiter at `bytes_per_second` (0: no limit).
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            rate: bytes_per_second,
            allowance: 0.0,
            last: None,
        }
    }

    /// Changes the rate from now on.
    pub fn set_rate(&mut self, bytes_per_second: u64) {
        self.rate = bytes_per_second;
    }

    /// Gives back `bytes` taken but not sent (the caller chose to wait and ask again).
    pub fn refund(&mut self, bytes: u64) {
        if self.rate > 0 {
            self.allowance += bytes as f64;
        }
    }

    /// Takes `bytes` at `now`; how long the caller must wait before sending them.
    pub fn take(&mut self, now: std::time::Instant, bytes: u64) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let rate = self.rate as f64;
        if let Some(last) = self.last {
            let earned = now.saturating_duration_since(last).as_secs_f64() * rate;
            self.allowance = (self.allowance + earned).min(rate);
        }
        self.last = Some(now);
        self.allowance -= bytes as f64;
        if self.allowance >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.allowance / rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId([n; 32])
    }

    fn finding(n: u8, present: u64, up: u64) -> Finding {
        Finding {
            chunk: id(n),
            k: 4,
            m: 2,
            present,
            up,
            moved: 0,
            past: 0,
        }
    }

    const ALL: u64 = 0b11_1111;

    #[test]
    fn the_fewest_healthy_shards_go_first() {
        let findings = vec![
            finding(1, 0b11_1110, ALL), // 5 of 6
            finding(2, 0b00_1111, ALL), // 4 of 6: one more loss and it is gone
            finding(3, 0b11_1011, ALL), // 5 of 6
            finding(4, 0b01_1111, ALL), // 5 of 6
        ];
        let plan = plan(findings);
        let order: Vec<ChunkId> = plan.tasks.iter().map(|t| t.finding.chunk).collect();
        assert_eq!(order, vec![id(2), id(1), id(3), id(4)]);
        assert_eq!(plan.tasks[0].rebuild, vec![4, 5]);
        assert_eq!(plan.tasks[0].sources, vec![0, 1, 2, 3]);
        assert_eq!(plan.tasks[1].rebuild, vec![0]);
    }

    #[test]
    fn down_holders_wait_and_too_few_shards_are_unreadable() {
        let plan = plan(vec![
            // Shard 5 missing, but its holder is down: wait for it.
            finding(1, 0b01_1111, 0b01_1111),
            // Only 3 of 4 needed: cannot be rebuilt.
            finding(2, 0b00_0111, ALL),
            // Shards 4 and 5 missing; 5's holder is down: rebuild 4 only.
            finding(3, 0b00_1111, 0b01_1111),
        ]);
        assert_eq!(plan.waiting, 1);
        assert_eq!(plan.unreadable.len(), 1);
        assert_eq!(plan.unreadable[0].chunk, id(2));
        assert_eq!(plan.tasks.len(), 1);
        assert_eq!(plan.tasks[0].rebuild, vec![4]);
    }

    #[test]
    fn shards_on_past_holders_count_and_are_copied_not_rebuilt() {
        // Four of six slots moved to new holders that have nothing yet; the old
        // holders of shards 0, 1 and 4 still have theirs.
        let moved = Finding {
            moved: 0b01_0011,
            ..finding(1, 0b10_1000, ALL)
        };
        assert_eq!(moved.healthy(), 5);
        let plan = plan(vec![moved]);
        assert!(plan.unreadable.is_empty());
        let task = &plan.tasks[0];
        assert_eq!(task.sources, vec![0, 1, 3, 4, 5]);
        assert_eq!(task.copy, vec![0, 1, 4]);
        assert_eq!(task.rebuild, vec![2]);
    }

    #[test]
    fn a_take_larger_than_a_second_of_rate_waits_its_time() {
        // A 4 MiB shard at 1 MiB/s: four seconds, not forever.
        let t0 = std::time::Instant::now();
        let mut limiter = RateLimiter::new(1 << 20);
        let wait = limiter.take(t0, 4 << 20);
        assert_eq!(wait, Duration::from_secs(4));
        assert_eq!(limiter.take(t0 + wait, 0), Duration::ZERO);
    }

    #[test]
    fn the_limiter_holds_the_rate_and_follows_changes() {
        let t0 = std::time::Instant::now();
        let mut limiter = RateLimiter::new(1000);
        // 10 000 bytes at 1000/s: the sender is told to wait as it goes, 10 s in all.
        let mut now = t0;
        for _ in 0..10 {
            now += limiter.take(now, 1000);
        }
        let took = now.duration_since(t0).as_secs_f64();
        assert!((9.0..=10.01).contains(&took), "{took}");
        limiter.set_rate(0);
        assert_eq!(limiter.take(now, 1 << 40), Duration::ZERO);
        // At most a second's worth is saved up: 2 MiB at 1 MiB/s waits about 1 s.
        limiter.set_rate(1 << 20);
        let wait = limiter.take(now, 1 << 21);
        assert!(
            (Duration::from_millis(900)..=Duration::from_millis(1100)).contains(&wait),
            "{wait:?}"
        );
    }
}
