//! Scrub: every shard a store holds is read and verified in the background, a pass
//! after another, each paced to take the configured period; an administrator's order
//! starts a new pass at once, at the rate it names. A damaged shard is dropped from the
//! store (durably: `has` and the census no longer count it) and named on the node's
//! damage channel, so the census that follows has the shard rebuilt.
//!
//! The loop runs on the store's own executor (glommio); its figures are atomics that
//! the heartbeat reads from the tokio side.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hive_nvme::{ScrubStep, Store};
use hive_wire::ShardName;
use hive_wire::net::control::ScrubFigures;

use crate::constants::{SCRUB_IDLE_RECHECK, SCRUB_MIN_RATE};

/// A store's scrub as the rest of the node sees it.
#[derive(Default)]
pub struct ScrubState {
    passes: AtomicU64,
    pass_done: AtomicU64,
    pass_total: AtomicU64,
    bytes: AtomicU64,
    damaged: AtomicU64,
    rate: AtomicU64,
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
        }
    }
}

/// Adds two stores' figures together (a node's figures are its stores' sum); the
/// passes of a node are those all its stores finished.
pub fn sum(a: ScrubFigures, b: ScrubFigures) -> ScrubFigures {
    ScrubFigures {
        passes: a.passes.min(b.passes),
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

/// Why a pass began.
enum Start {
    /// The schedule: at the background pace.
    Scheduled,
    /// An order: at this rate (0: no limit).
    Ordered(u64),
}

/// Runs scrub passes over `store` until `orders` is closed (the node stopped).
pub async fn run(
    store: Rc<Store>,
    state: Arc<ScrubState>,
    period: Duration,
    orders: flume::Receiver<u64>,
    damaged: flume::Sender<ShardName>,
) {
    let mut next = Start::Scheduled;
    loop {
        let rate = match next {
            Start::Ordered(rate) => rate,
            Start::Scheduled => {
                if store.stats().shards == 0 {
                    // Nothing to verify: look again later, or when ordered.
                    match wait_for_order(&orders, SCRUB_IDLE_RECHECK).await {
                        Waited::Order(rate) => next = Start::Ordered(rate),
                        Waited::Nothing => {}
                        Waited::Closed => return,
                    }
                    continue;
                }
                background_rate(store.stats().live, period)
            }
        };
        match pass(&store, &state, rate, &orders, &damaged).await {
            PassEnd::Finished => {
                state.passes.fetch_add(1, Ordering::Relaxed);
                next = Start::Scheduled;
            }
            PassEnd::Ordered(rate) => next = Start::Ordered(rate),
            PassEnd::Closed => return,
        }
    }
}

/// How a pass ended.
enum PassEnd {
    /// Every shard it covers was verified.
    Finished,
    /// An order came: a new pass starts at its rate.
    Ordered(u64),
    /// The node is stopping.
    Closed,
}

enum Waited {
    Order(u64),
    Nothing,
    Closed,
}

async fn wait_for_order(orders: &flume::Receiver<u64>, wait: Duration) -> Waited {
    let received = glommio::timer::timeout(wait, async { Ok(orders.recv_async().await) }).await;
    match received {
        Ok(Ok(rate)) => Waited::Order(rate),
        Ok(Err(_)) => Waited::Closed,
        Err(_) => Waited::Nothing,
    }
}

/// One pass over the shards indexed when it starts.
async fn pass(
    store: &Store,
    state: &ScrubState,
    rate: u64,
    orders: &flume::Receiver<u64>,
    damaged: &flume::Sender<ShardName>,
) -> PassEnd {
    let mut scrub = store.scrubber(rate);
    state.pass_total.store(scrub.total, Ordering::Relaxed);
    state.pass_done.store(0, Ordering::Relaxed);
    state.rate.store(rate, Ordering::Relaxed);
    let end = loop {
        match orders.try_recv() {
            Ok(rate) => break PassEnd::Ordered(rate),
            Err(flume::TryRecvError::Disconnected) => break PassEnd::Closed,
            Err(flume::TryRecvError::Empty) => {}
        }
        let before = scrub.bytes;
        match scrub.next(store).await {
            Ok(ScrubStep::Intact) => {}
            Ok(ScrubStep::Damaged(found)) => {
                state.damaged.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "scrub: shard {} is damaged (segment {} block {}: {}); dropped for repair",
                    found.name,
                    found.segment,
                    found.block,
                    found.reason
                );
                if let Err(err) = store.drop_damaged(&found).await {
                    tracing::error!("scrub: dropping damaged shard {}: {err}", found.name);
                }
                // A full channel only delays the repair to the next census.
                let _ = damaged.try_send(found.name);
            }
            Ok(ScrubStep::Done) => break PassEnd::Finished,
            Err(err) => {
                // A read error (not damage) ends the pass; the next one tries again.
                tracing::error!("scrub: pass stopped: {err}");
                glommio::timer::sleep(SCRUB_IDLE_RECHECK).await;
                break PassEnd::Finished;
            }
        }
        state
            .bytes
            .fetch_add(scrub.bytes - before, Ordering::Relaxed);
        state.pass_done.store(scrub.bytes, Ordering::Relaxed);
    };
    state.pass_done.store(0, Ordering::Relaxed);
    state.pass_total.store(0, Ordering::Relaxed);
    end
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
