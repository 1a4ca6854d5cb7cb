//! `space_small_files` (reported by `hive-bench gc`): the space a tree of many small
//! files takes on the stores, put through the client library as the mount puts them
//! (each file cut by the default chunker, each chunk compressed when that pays and
//! coded 4+2; files of 4 KiB or less too, which a mount would keep in the namespace
//! instead). Ours: the growth of the space the stores use: records (their headers and
//! alignment included), and the summary entries and segment headers that hold them.
//! Baseline: the same files each compressed on its own with zstd level 3, times
//! (k + m) / k. Ratio = baseline / ours.
//!
//! The tree: [`FILES`] files whose sizes follow a log-normal law fitted to a real
//! source tree (11,197 files, half of them under 4 KiB, 11.5 KiB on average), with
//! text-like content from a fixed seed.

use std::sync::Arc;

use anyhow::{Result, ensure};
use hive_client::chunk_io::ChunkStore;
use hive_client::local_cluster::Admin;
use hive_codec::{Chunker, ChunkerConfig};
use hive_testkit::{Rng, text_bytes};

use crate::report::{Better, Line};
use crate::suites::load;

/// Files in the tree.
const FILES: usize = 3000;
/// The tree's seed: the same files on every run.
const SEED: u64 = 0x5eed_f11e;
/// Median file size: half the files are smaller.
const MEDIAN: f64 = 3800.0;
/// Spread of the log-normal law: with [`MEDIAN`], a mean of some 11.5 KiB.
const SIGMA: f64 = 1.48;
/// Largest file.
const LARGEST: usize = 4 << 20;
/// Files put at once.
const PARALLELISM: usize = 8;
/// zstd level of the baseline (the default of the zstd tool).
const BASELINE_LEVEL: i32 = 3;

/// Puts the tree and returns the line.
pub async fn measure(suite: &'static str, store: &Arc<ChunkStore>, admin: &Admin) -> Result<Line> {
    let used = || async { Ok::<_, anyhow::Error>(load::store_use_now(admin).await?.0) };
    let (k, m) = (store.scheme().k(), store.scheme().m());
    let files = tree();
    let mut baseline = 0u64;
    for file in &files {
        baseline += zstd::bulk::compress(file, BASELINE_LEVEL)?.len() as u64;
    }
    let baseline = baseline * u64::from(k + m) / u64::from(k);
    let before = used().await?;
    let chunker = Arc::new(Chunker::new(ChunkerConfig::default())?);
    let mut running = tokio::task::JoinSet::new();
    for file in files {
        if running.len() == PARALLELISM {
            running.join_next().await.expect("a put is running")??;
        }
        let (store, chunker) = (store.clone(), chunker.clone());
        running.spawn(async move {
            for chunk in chunker.split(&file) {
                store.put(chunk).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(put) = running.join_next().await {
        put??;
    }
    store.settle(std::time::Duration::from_secs(30)).await;
    let ours = used().await?.saturating_sub(before);
    ensure!(ours > 0, "the tree took no space");
    Ok(Line {
        suite,
        name: "space_small_files",
        unit: "MB",
        hive: ours as f64 / 1e6,
        baseline: baseline as f64 / 1e6,
        better: Better::Lower,
        against: "each file compressed alone with zstd -3, times (k+m)/k",
    })
}

/// The files of the tree.
fn tree() -> Vec<Vec<u8>> {
    let mut rng = Rng::new(SEED);
    (0..FILES as u64)
        .map(|n| text_bytes(SEED ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15), size(&mut rng)))
        .collect()
}

/// A file size drawn from the log-normal law (Box–Muller for the normal deviate).
fn size(rng: &mut Rng) -> usize {
    let uniform = |rng: &mut Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let (u, v) = (uniform(rng).max(f64::MIN_POSITIVE), uniform(rng));
    let normal = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
    ((MEDIAN * (SIGMA * normal).exp()) as usize).clamp(1, LARGEST)
}
