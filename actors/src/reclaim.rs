//! Reclaim: each store compacts, in the background, the segments whose live fraction
//! fell below a threshold (deleted shards leave garbage behind), emptiest first, one
//! segment at a time, paced so that the shard bytes it rewrites stay under a rate.
//! The space shows up as free in the store's figures (and so in `hive status`).
//!
//! Like the scrub, the loop runs on the store's own executor. A store that failed a
//! write or a sync is fail-stop: reclaim stops with it and says so once.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hive_nvme::{Store, StoreError};

use crate::constants::{
    DEFAULT_GC_GRACE, DEFAULT_RECLAIM_INTERVAL, DEFAULT_RECLAIM_RATE, DEFAULT_RECLAIM_THRESHOLD,
};

/// How a node's stores get space back.
#[derive(Debug, Clone, Copy)]
pub struct SpaceArgs {
    /// Reclaim compacts a segment once less than this fraction of it is live.
    pub threshold: f64,
    /// Shard bytes reclaim rewrites per second, at most (0: no limit).
    pub rate: u64,
    /// Time between reclaim's looks for segments to compact.
    pub interval: Duration,
    /// Garbage collection's grace period: the stores remember which chunks were
    /// written or asked about for at least this long (each touch window is this long;
    /// two always reach back), and delete nothing touched more recently than a
    /// delete request says.
    pub grace: Duration,
}

impl Default for SpaceArgs {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_RECLAIM_THRESHOLD,
            rate: DEFAULT_RECLAIM_RATE,
            interval: DEFAULT_RECLAIM_INTERVAL,
            grace: DEFAULT_GC_GRACE,
        }
    }
}

/// A store's reclaim as the rest of the node sees it.
#[derive(Default)]
pub struct ReclaimState {
    segments_freed: AtomicU64,
    bytes_moved: AtomicU64,
}

impl ReclaimState {
    /// Segments freed and shard bytes rewritten since the node started.
    pub fn figures(&self) -> (u64, u64) {
        (
            self.segments_freed.load(Ordering::Relaxed),
            self.bytes_moved.load(Ordering::Relaxed),
        )
    }
}

/// Runs until cancelled, or until the store stops taking writes (a failed write or
/// sync raises `poison`).
pub async fn run(
    store: Rc<Store>,
    args: SpaceArgs,
    state: Arc<ReclaimState>,
    poison: crate::shard_actor::PoisonAlarm,
) {
    loop {
        glommio::timer::sleep(args.interval).await;
        let result = pass(&store, &args, &state).await;
        crate::shard_actor::raise_if_poisoned(&poison, &result);
        if let Err(err) = result {
            if matches!(err, StoreError::Poisoned { .. } | StoreError::Closed) {
                tracing::error!("reclaim stops: {err}");
                return;
            }
            tracing::warn!("reclaim: {err}");
        }
    }
}

/// Compacts segments below the threshold until none is left, pacing each.
async fn pass(store: &Store, args: &SpaceArgs, state: &ReclaimState) -> Result<(), StoreError> {
    let (mut freed, mut moved) = (0u64, 0u64);
    while let Some(step) = store.reclaim_one(args.threshold).await? {
        state
            .bytes_moved
            .fetch_add(step.bytes_moved, Ordering::Relaxed);
        moved += step.bytes_moved;
        if !step.freed {
            // A record in it no longer verifies: repair replaces it, then a later
            // pass frees the segment.
            break;
        }
        state.segments_freed.fetch_add(1, Ordering::Relaxed);
        freed += 1;
        if args.rate > 0 {
            glommio::timer::sleep(Duration::from_secs_f64(
                step.bytes_moved as f64 / args.rate as f64,
            ))
            .await;
        }
    }
    if freed > 0 {
        tracing::info!("reclaim: {freed} segments freed, {moved} shard bytes rewritten");
    }
    Ok(())
}
