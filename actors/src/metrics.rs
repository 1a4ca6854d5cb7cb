//! A node's metrics in the Prometheus (OpenMetrics) text format, with the
//! prometheus-client crate. Request counters and latency histograms are kept as the
//! shard service answers ([`ShardMetrics`]); store, scrub and repair figures are read
//! when scraped ([`render`]), from the same sources as the heartbeat, so the two never
//! disagree. Every name is listed in ARCHITECTURE.md.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Shards;
use crate::repairer::RepairState;

/// The first latency bucket, in seconds: an index answer on NVMe.
const LATENCY_FIRST: f64 = 0.000_1;
/// Each bucket doubles the one before it...
const LATENCY_FACTOR: f64 = 2.0;
/// ...16 times, to about 3.3 s: a 16 MiB shard over a slow link.
const LATENCY_BUCKETS: u16 = 16;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        LATENCY_FIRST,
        LATENCY_FACTOR,
        LATENCY_BUCKETS,
    ))
}

/// Labels of a request: its operation and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// put, get, has, digests, list.
    pub op: &'static str,
    /// ok, or the kind of error: bad_request, forbidden, damaged, unavailable, internal,
    /// unsupported, revoked.
    pub outcome: &'static str,
}

/// Labels of an operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// put, get, has, digests, list.
    pub op: &'static str,
}

/// Labels of a count of chunks by health.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabels {
    class: String,
    healthy: u8,
}

/// The shard service's request metrics; cheap to clone (shared counters).
#[derive(Clone)]
pub struct ShardMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Family<OpLabels, Histogram>,
    bytes: Family<OpLabels, Counter>,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            seconds: Family::new_with_constructor(latency_histogram),
            bytes: Family::default(),
        }
    }
}

impl ShardMetrics {
    /// One request of `op` answered with `outcome` after `took`, moving `bytes` of
    /// shard data (put: in, get: out).
    pub fn observe(&self, op: &'static str, outcome: &'static str, took: Duration, bytes: u64) {
        self.requests
            .get_or_create(&RequestLabels { op, outcome })
            .inc();
        self.seconds
            .get_or_create(&OpLabels { op })
            .observe(took.as_secs_f64());
        if bytes > 0 {
            self.bytes.get_or_create(&OpLabels { op }).inc_by(bytes);
        }
    }
}

/// What a node's metrics are read from.
#[derive(Clone)]
pub struct MetricsSource {
    /// The shard service's request metrics.
    pub requests: ShardMetrics,
    /// The node's stores (space and scrub).
    pub shards: Shards,
    /// The repairer's figures.
    pub repair: Arc<RepairState>,
    /// On the map authority, its actor's registered name: the shards owed that
    /// writers reported are counted there.
    pub authority: Option<String>,
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(name, help, ConstCounter::new(value));
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(
        name,
        help,
        ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)),
    );
}

/// The node's metrics now, as OpenMetrics text.
pub async fn render(source: &MetricsSource) -> Result<String, String> {
    let mut registry = Registry::with_prefix("hive");
    registry.register(
        "shard_requests",
        "Shard service requests answered, by operation and outcome",
        source.requests.requests.clone(),
    );
    registry.register(
        "shard_request_seconds",
        "Time to answer a shard service request, by operation",
        source.requests.seconds.clone(),
    );
    registry.register(
        "shard_bytes",
        "Shard bytes stored (put) and served (get)",
        source.requests.bytes.clone(),
    );
    let stats = source.shards.stats().await.map_err(|e| e.to_string())?;
    let r = &mut registry;
    gauge(
        r,
        "store_capacity_bytes",
        "Bytes the node's stores can hold",
        stats.capacity,
    );
    gauge(
        r,
        "store_used_bytes",
        "Bytes written in the stores (live, garbage, headers)",
        stats.used,
    );
    gauge(
        r,
        "store_live_bytes",
        "Bytes of shards the stores' indexes point at",
        stats.live,
    );
    gauge(
        r,
        "store_garbage_bytes",
        "Bytes written and no longer pointed at",
        stats.garbage,
    );
    gauge(r, "store_shards", "Shards stored", stats.shards);
    counter(
        r,
        "store_commits",
        "Group commits since the stores opened",
        stats.commits,
    );
    let scrub = source.shards.scrub_figures();
    counter(
        r,
        "scrub_passes",
        "Scrub passes finished over every store",
        scrub.passes,
    );
    counter(
        r,
        "scrub_bytes",
        "Bytes read and verified by scrub",
        scrub.bytes,
    );
    counter(
        r,
        "scrub_damaged_shards",
        "Damaged shards scrub found and dropped",
        scrub.damaged,
    );
    gauge(
        r,
        "scrub_pass_done_bytes",
        "Bytes verified in the pass under way",
        scrub.pass_done,
    );
    gauge(
        r,
        "scrub_pass_total_bytes",
        "Bytes the pass under way covers",
        scrub.pass_total,
    );
    gauge(
        r,
        "scrub_rate_bytes_per_second",
        "The pass's read rate (0: no limit)",
        scrub.rate,
    );
    let (freed, moved) = source.shards.reclaim_figures();
    counter(
        r,
        "reclaim_segments_freed",
        "Segments reclaim compacted and made free",
        freed,
    );
    counter(
        r,
        "reclaim_moved_bytes",
        "Shard bytes reclaim rewrote to free segments",
        moved,
    );
    let repair = source.repair.figures();
    gauge(
        r,
        "repair_groups",
        "Placement groups (per class) this node is primary for",
        repair.groups,
    );
    gauge(
        r,
        "repair_censused_groups",
        "Of those, censused in the round under way",
        repair.censused,
    );
    counter(r, "repair_rounds", "Census rounds finished", repair.rounds);
    gauge(
        r,
        "repair_queued_chunks",
        "Chunks found short of shards, not yet rebuilt",
        repair.queued,
    );
    gauge(
        r,
        "repair_queued_bytes",
        "Shard bytes those chunks still need",
        repair.queued_bytes,
    );
    counter(
        r,
        "repair_rebuilt_shards",
        "Shards rebuilt",
        repair.shards_rebuilt,
    );
    counter(
        r,
        "repair_rebuilt_bytes",
        "Bytes of shards rebuilt",
        repair.bytes_rebuilt,
    );
    counter(
        r,
        "repair_failed",
        "Rebuilds that failed (tried again next round)",
        repair.failed,
    );
    gauge(
        r,
        "repair_unreadable_chunks",
        "Chunks found with fewer than k intact shards",
        repair.unreadable,
    );
    let chunks: Family<HealthLabels, Gauge> = Family::default();
    // Every level of every class the node holds, so the series are there (at 0) before
    // the first census counts anything.
    let classes = source.shards.classes().await.map_err(|e| e.to_string())?;
    for (k, m) in classes {
        for healthy in 0..=k.saturating_add(m) {
            chunks
                .get_or_create(&HealthLabels {
                    class: format!("{k}+{m}"),
                    healthy,
                })
                .set(0);
        }
    }
    for count in &repair.health {
        let labels = HealthLabels {
            class: format!("{}+{}", count.class.k, count.class.m),
            healthy: count.healthy,
        };
        chunks
            .get_or_create(&labels)
            .set(i64::try_from(count.chunks).unwrap_or(i64::MAX));
    }
    registry.register(
        "chunks",
        "Chunks of the groups this node is primary for, by class and intact shards (last census)",
        chunks,
    );
    if let Some(owed) = owed_reported(source).await {
        counter(
            &mut registry,
            "shards_owed_reported",
            "Shards writers reported owed since the map authority started (this node is it)",
            owed,
        );
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(|e| e.to_string())?;
    Ok(text)
}

/// The authority's count of owed shards, when this node is the authority.
async fn owed_reported(source: &MetricsSource) -> Option<u64> {
    let name = source.authority.as_deref()?;
    let actor: ractor::ActorRef<crate::AuthorityMsg> = ractor::registry::where_is(name)?.into();
    ractor::call!(actor, crate::AuthorityMsg::Status)
        .ok()
        .map(|status| status.shards_owed)
}
