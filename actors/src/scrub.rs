//! Scrub: every shard a store holds is read and verified in the background, a pass
//! after another, each paced to take the configured period; an administrator's order
//! starts a new pass at once, at the rate it names. A damaged shard is dropped from the
//! store (durably: `has` and the census no longer count it) and named on the node's
//! damage channel, so the census that follows has the shard rebuilt.
//!
//! The loop runs on the store's own executor (glommio); its figures are atomics that
//! the heartbeat reads from the tokio side. Orders are numbered per node (a ticket):
//! every store of the node takes the newest order at its next shard, and records the
//! ticket of each ordered pass it finishes, so `hive scrub --wait` knows when the pass
//! it asked for is done (a newer order covers an older one).

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hive_nvme::{ScrubStep, Store};
use hive_wire::ShardName;
use hive_wire::net::control::ScrubFigures;

use crate::constants::{SCRUB_IDLE_RECHECK, SCRUB_MIN_RATE, SCRUB_ORDER_POLL};

/// A store's scrub as the rest of the node sees it.
#[derive(Default)]
pub struct ScrubState {
    passes: AtomicU64,
    pass_done: AtomicU64,
    pass_total: AtomicU64,
    bytes: AtomicU64,
    damaged: AtomicU64,
    rate: AtomicU64,
    /// The ticket of the last ordered pass finished.
    ordered: AtomicU64,
    /// How long the last finished pass took, in microseconds.
    pass_micros: AtomicU64,
}

impl ScrubState {
    /// The figures now.
    pub fn figures(&self) -> ScrubFigures {
        ScrubFigures {
            passes: self.passes.load(Ordering::Relaxed),
            pass_done: self.pass_done.load(Ordering::Relaxed),
            pass_total: self.pass_total.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            damaged: self.damaged.load(Ordering::Relaxed),
            rate: self.rate.load(Ordering::Relaxed),
            ordered: self.ordered.load(Ordering::Relaxed),
            pass_micros: self.pass_micros.load(Ordering::Relaxed),
        }
    }
}

/// The newest scrub order of a node, shared by its stores.
#[derive(Default)]
pub struct ScrubOrders {
    ticket: AtomicU64,
    rate: AtomicU64,
}

impl ScrubOrders {
    /// Orders a pass at `bytes_per_second` (0: no limit) on every store; its ticket.
    pub fn order(&self, bytes_per_second: u64) -> u64 {
        self.rate.store(bytes_per_second, Ordering::Release);
        self.ticket.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The newest order, if it is newer than `seen`: its ticket and rate.
    fn newer_than(&self, seen: u64) -> Option<(u64, u64)> {
        let ticket = self.ticket.load(Ordering::Acquire);
        (ticket > seen).then(|| (ticket, self.rate.load(Ordering::Acquire)))
    }
}

/// Adds two stores' figures together (a node's figures are its stores' sum); the
/// passes of a node are those all its stores finished.
pub fn sum(a: ScrubFigures, b: ScrubFigures) -> ScrubFigures {
    ScrubFigures {
        passes: a.passes.min(b.passes),
        ordered: a.ordered.min(b.ordered),
        pass_micros: a.pass_micros.max(b.pass_micros),
        pass_done: a.pass_done + b.pass_done,
        pass_total: a.pass_total + b.pass_total,
        bytes: a.bytes + b.bytes,
        damaged: a.damaged + b.damaged,
        rate: a.rate.saturating_add(b.rate),
    }
}

/// The background pace: `total` bytes spread over `period`, but never below
/// [`SCRUB_MIN_RATE`] (a nearly empty store is not read a block a minute).
pub fn background_rate(total: u64, period: Duration) -> u64 {
    let seconds = period.as_secs().max(1);
    (total / seconds).max(SCRUB_MIN_RATE)
}

/// Runs scrub passes over `store` until the task is cancelled (the node stopped).
pub async fn run(
    store: Rc<Store>,
    state: Arc<ScrubState>,
    period: Duration,
    orders: Arc<ScrubOrders>,
    damaged: flume::Sender<ShardName>,
) {
    let mut seen = 0;
    loop {
        let started = std::time::Instant::now();
        let (rate, ticket) = match orders.newer_than(seen) {
            Some((ticket, rate)) => {
                seen = ticket;
                (rate, Some(ticket))
            }
            None if store.stats().shards == 0 => {
                // Nothing to verify: look again later, or when ordered.
                wait_for_order(&orders, seen, SCRUB_IDLE_RECHECK).await;
                continue;
            }
            None => (background_rate(store.stats().live, period), None),
        };
        let finished = pass(&store, &state, rate, &orders, seen, &damaged).await;
        if finished {
            state.passes.fetch_add(1, Ordering::Relaxed);
            match ticket {
                Some(ticket) => state.ordered.store(ticket, Ordering::Relaxed),
                // One background pass a period: a small store, read at the minimum
                // rate, waits out the rest of it.
                None => {
                    let rest = period.saturating_sub(started.elapsed());
                    wait_for_order(&orders, seen, rest).await;
                }
            }
        }
    }
}

/// Waits up to `wait` for an order newer than `seen`.
async fn wait_for_order(orders: &ScrubOrders, seen: u64, wait: Duration) {
    let until = std::time::Instant::now() + wait;
    while orders.newer_than(seen).is_none() && std::time::Instant::now() < until {
        glommio::timer::sleep(SCRUB_ORDER_POLL).await;
    }
}

/// Drops a damaged shard (durably, if the index still points at it), counts it and
/// names it to the repairer.
async fn drop_damaged(
    store: &Store,
    state: &ScrubState,
    damaged: &flume::Sender<ShardName>,
    found: hive_nvme::Damaged,
) {
    state.damaged.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        "scrub: shard {} is damaged (segment {} offset {}: {}); dropped for repair",
        found.name,
        found.segment,
        found.offset,
        found.reason
    );
    if let Err(err) = store.drop_damaged(&found).await {
        tracing::error!("scrub: dropping damaged shard {}: {err}", found.name);
    }
    // A full channel only delays the repair to the next census.
    let _ = damaged.try_send(found.name);
}

/// One pass over the shards indexed when it starts; `false` if a newer order cut it
/// short (the next pass starts at once, at that order's rate).
async fn pass(
    store: &Rc<Store>,
    state: &ScrubState,
    rate: u64,
    orders: &ScrubOrders,
    seen: u64,
    damaged: &flume::Sender<ShardName>,
) -> bool {
    let mut scrub = store.scrubber(rate);
    state.pass_total.store(scrub.total, Ordering::Relaxed);
    state.pass_done.store(0, Ordering::Relaxed);
    state.rate.store(rate, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let finished = loop {
        if orders.newer_than(seen).is_some() {
            break false;
        }
        let before = scrub.bytes;
        let steps = match scrub.next_batch(store).await {
            Ok(steps) if steps.is_empty() => break true,
            Ok(steps) => steps,
            Err(err) => {
                // A read error (not damage) ends the pass; the next one tries again.
                tracing::error!("scrub: pass stopped: {err}");
                wait_for_order(orders, seen, SCRUB_IDLE_RECHECK).await;
                break false;
            }
        };
        for step in steps {
            if let ScrubStep::Damaged(found) = step {
                drop_damaged(store, state, damaged, found).await;
            }
        }
        state
            .bytes
            .fetch_add(scrub.bytes - before, Ordering::Relaxed);
        state.pass_done.store(scrub.bytes, Ordering::Relaxed);
    };
    if finished {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        state.pass_micros.store(micros, Ordering::Relaxed);
    }
    state.pass_done.store(0, Ordering::Relaxed);
    state.pass_total.store(0, Ordering::Relaxed);
    finished
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_background_pace_spreads_a_pass_over_the_period() {
        let week = Duration::from_secs(7 * 24 * 3600);
        assert_eq!(background_rate(0, week), SCRUB_MIN_RATE);
        let tb = 1u64 << 40;
        assert_eq!(background_rate(tb, week), tb / week.as_secs());
        assert_eq!(background_rate(1 << 30, Duration::ZERO), 1 << 30);
    }
}
