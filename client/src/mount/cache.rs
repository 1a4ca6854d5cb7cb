//! Chunks recently read or written by the mount, bounded in bytes, least recently used
//! out first. Concurrent reads of one chunk share one fetch.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hive_wire::ChunkId;
use tokio::sync::OnceCell;

/// Bytes of chunks the cache keeps: room for read-ahead of a few streams of 4 MiB
/// chunks.
pub const CHUNK_CACHE_BYTES: u64 = 96 << 20;

struct Entry {
    cell: Arc<OnceCell<Bytes>>,
    used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<ChunkId, Entry>,
    tick: u64,
    bytes: u64,
}

/// The cache.
#[derive(Default)]
pub struct ChunkCache {
    inner: Mutex<Inner>,
}

impl ChunkCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .expect("invariant: the chunk cache lock is never poisoned")
    }

    /// Whether `id` is cached or being fetched.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.lock().entries.contains_key(id)
    }

    /// Keeps `bytes` as chunk `id`.
    pub fn insert(&self, id: ChunkId, bytes: Bytes) {
        let cell = Arc::new(OnceCell::new_with(Some(bytes.clone())));
        let mut inner = self.lock();
        inner.tick += 1;
        let used = inner.tick;
        let old = inner.entries.insert(id, Entry { cell, used });
        if let Some(old) = old.and_then(|e| e.cell.get().map(Bytes::len)) {
            inner.bytes -= old as u64;
        }
        inner.bytes += bytes.len() as u64;
        evict(&mut inner);
    }

    /// Chunk `id`, from the cache or from `fetch` (once, however many ask at once).
    pub async fn get_or_fetch<F, Fut, E>(&self, id: ChunkId, fetch: F) -> Result<Bytes, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
    {
        let cell = {
            let mut inner = self.lock();
            inner.tick += 1;
            let used = inner.tick;
            let entry = inner.entries.entry(id).or_insert_with(|| Entry {
                cell: Arc::new(OnceCell::new()),
                used,
            });
            entry.used = used;
            entry.cell.clone()
        };
        let mut fetched = false;
        let result = cell
            .get_or_try_init(|| {
                fetched = true;
                fetch()
            })
            .await
            .cloned();
        let mut inner = self.lock();
        match &result {
            Ok(bytes) if fetched => {
                inner.bytes += bytes.len() as u64;
                evict(&mut inner);
            }
            Ok(_) => {}
            Err(_) => {
                // Not kept: the next read asks the cluster again.
                if inner
                    .entries
                    .get(&id)
                    .is_some_and(|e| e.cell.get().is_none())
                {
                    inner.entries.remove(&id);
                }
            }
        }
        result
    }
}

/// Drops least recently used fetched chunks until the cache is within its bound.
fn evict(inner: &mut Inner) {
    while inner.bytes > CHUNK_CACHE_BYTES {
        let oldest = inner
            .entries
            .iter()
            .filter(|(_, e)| e.cell.get().is_some())
            .min_by_key(|(_, e)| e.used)
            .map(|(id, _)| *id);
        let Some(id) = oldest else {
            return;
        };
        if let Some(entry) = inner.entries.remove(&id) {
            inner.bytes -= entry.cell.get().map_or(0, |b| b.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cache_stays_within_its_bound_and_fetches_once() {
        let cache = ChunkCache::default();
        let big = Bytes::from(vec![7u8; (CHUNK_CACHE_BYTES / 4) as usize]);
        for n in 0..8u8 {
            cache.insert(ChunkId([n; 32]), big.clone());
        }
        assert!(cache.lock().bytes <= CHUNK_CACHE_BYTES);
        assert!(!cache.contains(&ChunkId([0; 32])), "the oldest went first");
        assert!(cache.contains(&ChunkId([7; 32])));
        let mut calls = 0;
        for _ in 0..2 {
            let got: Result<Bytes, ()> = cache
                .get_or_fetch(ChunkId([9; 32]), || {
                    calls += 1;
                    async { Ok(Bytes::from_static(b"x")) }
                })
                .await;
            assert_eq!(got, Ok(Bytes::from_static(b"x")));
        }
        assert_eq!(calls, 1);
        let failed: Result<Bytes, &str> = cache
            .get_or_fetch(ChunkId([10; 32]), || async { Err("down") })
            .await;
        assert!(failed.is_err());
        assert!(!cache.contains(&ChunkId([10; 32])), "failures are not kept");
    }
}
