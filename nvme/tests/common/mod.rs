//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};

use glommio::{LocalExecutorBuilder, Placement};
use hive_codec::{ChunkEncoder, CompressionConfig, ErasureScheme, chunk_id};
use hive_nvme::{FormatOptions, Store};
use hive_testkit::{Rng, random_bytes};
use hive_wire::{ChunkId, NodeId, ShardIndex, ShardName};

pub const NODE: NodeId = NodeId(7);

/// Runs `f` on a new glommio executor thread (unpinned) and returns its result.
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(f)
        .expect("a glommio executor starts")
        .join()
        .expect("the executor thread does not panic")
}

/// A scratch directory removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hive-nvme-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Formats a store file of `size` bytes with `segment` byte segments.
pub fn format(path: &Path, size: u64, segment: u32) {
    let options = FormatOptions {
        node_id: NODE,
        size: Some(size),
        segment_size: segment,
    };
    Store::format(path, &options).expect("format");
}

/// The name of shard `index` of `chunk` coded 4+2, as [`shard`] makes them.
pub fn name(chunk: ChunkId, index: ShardIndex) -> ShardName {
    ShardName {
        chunk,
        k: 4,
        m: 2,
        index,
    }
}

/// One real shard (4+2 encoding of seeded random bytes): its key and bytes.
pub fn shard(seed: u64, len: usize) -> (ChunkId, ShardIndex, Vec<u8>) {
    let data = random_bytes(seed, len);
    let mut rng = Rng::new(seed);
    let scheme = ErasureScheme::new(4, 2).expect("4+2");
    let mut encoder = ChunkEncoder::new(scheme, CompressionConfig::off()).expect("encoder");
    let id = chunk_id(&data);
    let chunk = encoder.encode(id, &data).expect("encode");
    let index = rng.below(6);
    (id, ShardIndex(index as u8), chunk.shard_to_vec(index))
}

/// Shard `index` of seeded random bytes coded `k`+`m`: its name and bytes.
pub fn shard_coded(seed: u64, len: usize, k: u8, m: u8, index: u8) -> (ShardName, Vec<u8>) {
    let data = random_bytes(seed, len);
    let scheme = ErasureScheme::new(k, m).expect("a valid scheme");
    let mut encoder = ChunkEncoder::new(scheme, CompressionConfig::off()).expect("encoder");
    let id = chunk_id(&data);
    let chunk = encoder.encode(id, &data).expect("encode");
    let name = ShardName {
        chunk: id,
        k,
        m,
        index: ShardIndex(index),
    };
    (name, chunk.shard_to_vec(usize::from(index)))
}

pub async fn open(path: &Path) -> Store {
    Store::open(path, NODE).await.expect("open")
}
