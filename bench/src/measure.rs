//! Timing our code and its baseline interleaved, so both see the same machine state.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// How much to measure.
pub struct Rounds {
    rounds: u32,
    round: Duration,
}

/// Bytes per second of both sides, each the median over its rounds.
pub struct Throughput {
    pub hive: f64,
    pub baseline: f64,
}

/// What one timed round did: how many units (bytes, operations) in how long.
pub struct Round {
    pub units: f64,
    pub elapsed: Duration,
}

impl Round {
    /// Times `work`, which does `units` units.
    pub async fn time<T>(units: f64, work: impl Future<Output = T>) -> Self {
        let start = Instant::now();
        black_box(work.await);
        Self {
            units,
            elapsed: start.elapsed(),
        }
    }
}

impl Rounds {
    /// Rounds to run per side.
    pub fn count(&self) -> u32 {
        self.rounds
    }

    /// Runs `hive` and `baseline` rounds alternately (who goes first alternates too);
    /// each round does its own untimed setup and returns what it timed. Returns each
    /// side's median rate in units per second.
    pub async fn interleaved<H, B>(&self, mut hive: H, mut baseline: B) -> Throughput
    where
        H: AsyncFnMut(u32) -> Round,
        B: AsyncFnMut(u32) -> Round,
    {
        let rate = |r: Round| r.units / r.elapsed.as_secs_f64().max(1e-9);
        let mut ours = Vec::with_capacity(self.rounds as usize);
        let mut theirs = Vec::with_capacity(self.rounds as usize);
        for round in 0..self.rounds {
            if round % 2 == 0 {
                ours.push(rate(hive(round).await));
                theirs.push(rate(baseline(round).await));
            } else {
                theirs.push(rate(baseline(round).await));
                ours.push(rate(hive(round).await));
            }
            if std::env::var_os("HIVE_BENCH_TRACE").is_some() {
                eprintln!(
                    "round {round}: hive {:.0} baseline {:.0}",
                    ours[ours.len() - 1],
                    theirs[theirs.len() - 1]
                );
            }
        }
        Throughput {
            hive: median(&mut ours),
            baseline: median(&mut theirs),
        }
    }

    pub fn new(rounds: u32, round_ms: u32) -> Self {
        Self {
            rounds,
            round: Duration::from_millis(u64::from(round_ms)),
        }
    }

    /// Times `hive` and `baseline`, each processing `bytes` per call, alternating
    /// rounds (which side goes first alternates too). Each call returns a value that is
    /// kept from the optimiser.
    pub fn throughput<A, B>(
        &self,
        bytes: u64,
        mut hive: impl FnMut() -> A,
        mut baseline: impl FnMut() -> B,
    ) -> Throughput {
        // Warm up both (allocations, page faults, caches), then size the batches so a
        // round lasts at least `self.round`.
        let hive_calls = calls_per_round(self.round, || {
            black_box(hive());
        });
        let base_calls = calls_per_round(self.round, || {
            black_box(baseline());
        });
        let mut ours = Vec::with_capacity(self.rounds as usize);
        let mut theirs = Vec::with_capacity(self.rounds as usize);
        for round in 0..self.rounds {
            let mut time_hive = || timed(hive_calls, || black_box(hive()));
            let mut time_base = || timed(base_calls, || black_box(baseline()));
            let (h, b) = if round % 2 == 0 {
                let h = time_hive();
                (h, time_base())
            } else {
                let b = time_base();
                (time_hive(), b)
            };
            ours.push(rate(bytes, hive_calls, h));
            theirs.push(rate(bytes, base_calls, b));
        }
        Throughput {
            hive: median(&mut ours),
            baseline: median(&mut theirs),
        }
    }
}

fn calls_per_round(round: Duration, mut op: impl FnMut()) -> u32 {
    op();
    let start = Instant::now();
    op();
    let one = start.elapsed().max(Duration::from_micros(1));
    u32::try_from(round.as_nanos() / one.as_nanos())
        .unwrap_or(u32::MAX)
        .clamp(1, 1_000_000)
}

fn timed<T>(calls: u32, mut op: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    for _ in 0..calls {
        black_box(op());
    }
    start.elapsed()
}

fn rate(bytes: u64, calls: u32, elapsed: Duration) -> f64 {
    (bytes as f64 * f64::from(calls)) / elapsed.as_secs_f64().max(1e-9)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
