//! The CPU ceiling of the put and get paths on this machine, from what each stage of
//! them costs, measured in this run on a sample of the benchmark's own data.
//!
//! Every stage does, in this process, the work the cluster does for it (in the client
//! or in a node), and is charged the process's CPU time (user and system, from
//! `/proc`) per byte of user data. Each stage repeats passes over the sample until its
//! timed passes add up to [`STAGE_MIN`], long enough that the 10 ms tick of those CPU
//! times is under 1% of the figure. With every stage's cost summed, `cores` cores at
//! best move `cores / total` bytes per nanosecond: the ceiling.

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use hive_client::object::OBJECT_PARALLELISM;
use hive_codec::{
    ChunkDecoder, ChunkEncoder, Chunker, CompressionConfig, Compressor, ErasureScheme, ShardBytes,
    chunk_id,
};
use hive_wire::net::{Handler, Peer, Request, Response};
use hive_wire::{ChunkId, ShardIndex, ShardName};

use super::local::{K, M, own_cpu_time};
use crate::suites::net::{Loopback, Pki};
use crate::suites::store::{new_store, on_executor};

/// User bytes of the sample the stages run on: enough chunks (about 64) for FastCDC's
/// size spread, small enough to hold its shards in memory.
pub const SAMPLE: usize = 64 << 20;
/// Least time a stage's timed passes add up to, so the 10 ms tick of `/proc` CPU times
/// is under 1% of it.
const STAGE_MIN: Duration = Duration::from_secs(1);
/// The store stage's file (sparse), on the cluster's file system.
const STAGE_STORE_SIZE: u64 = 4 << 30;
/// Its segments: the size `hive cluster up` gives the nodes' stores.
const STAGE_SEGMENT: u32 = 16 << 20;
/// Store passes at most (each stores the sample's shards anew, 96 MiB): bounds the
/// disk the stage writes to 1.5 GiB of its file.
const STORE_PASSES_MAX: usize = 16;
/// The transport stand-in's operations: take a shard, or send back shard n.
const OP_TAKE: u16 = 1;
const OP_SEND: u16 = 2;
/// How long one transport request may take before the stage fails.
const TRANSPORT_DEADLINE: Duration = Duration::from_secs(30);

/// What one stage of a path costs.
pub struct Stage {
    /// `put` or `get`.
    pub path: &'static str,
    pub name: &'static str,
    /// Process CPU nanoseconds per byte of user data.
    pub ns_per_byte: f64,
    pub how: &'static str,
}

/// The stages of both paths and the cores they share.
pub struct Ceiling {
    pub stages: Vec<Stage>,
    pub cores: usize,
}

impl Ceiling {
    /// CPU nanoseconds one byte of user data costs on `path`.
    pub fn total(&self, path: &str) -> f64 {
        self.stages
            .iter()
            .filter(|s| s.path == path)
            .map(|s| s.ns_per_byte)
            .sum()
    }

    /// The most bytes per second `path` can move with every core busy.
    pub fn bytes_per_s(&self, path: &str) -> f64 {
        self.cores as f64 * 1e9 / self.total(path)
    }
}

/// The sample cut into chunks as `put_object` cuts it, with their ids.
struct Sample {
    chunks: Vec<Vec<u8>>,
    ids: Vec<ChunkId>,
    len: usize,
}

/// Process CPU time over the timed passes of one stage.
#[derive(Default)]
struct Meter {
    cpu: Duration,
    wall: Duration,
    bytes: f64,
}

/// Where one timed pass started.
struct Lap {
    cpu: Duration,
    wall: Instant,
}

impl Meter {
    fn wants_more(&self) -> bool {
        self.wall < STAGE_MIN
    }

    fn lap() -> Result<Lap> {
        Ok(Lap {
            cpu: own_cpu_time()?,
            wall: Instant::now(),
        })
    }

    /// Ends a pass that handled `user_bytes`.
    fn stop(&mut self, lap: Lap, user_bytes: usize) -> Result<()> {
        self.wall += lap.wall.elapsed();
        self.cpu += own_cpu_time()?.saturating_sub(lap.cpu);
        self.bytes += user_bytes as f64;
        Ok(())
    }

    fn ns_per_byte(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.bytes.max(1.0)
    }
}

/// A stage on this thread: one untimed pass (warming allocations and caches), then
/// timed passes; `pass` returns the user bytes it handled.
fn on_this_thread(mut pass: impl FnMut() -> Result<usize>) -> Result<f64> {
    pass()?;
    let mut meter = Meter::default();
    while meter.wants_more() {
        let lap = Meter::lap()?;
        let bytes = pass()?;
        meter.stop(lap, bytes)?;
    }
    Ok(meter.ns_per_byte())
}

fn scheme() -> Result<ErasureScheme> {
    Ok(ErasureScheme::new(K, M)?)
}

/// The shards of `chunk` as `ChunkStore::put` sends them: encoded (compression off,
/// as the probe rejects random data) and each copied into its own buffer.
fn shards(encoder: &mut ChunkEncoder, id: ChunkId, chunk: &[u8]) -> Result<Vec<Vec<u8>>> {
    let encoded = encoder.encode(id, chunk)?;
    Ok((0..encoded.width())
        .map(|i| encoded.shard_to_vec(i))
        .collect())
}

/// Measures every stage of both paths on the first [`SAMPLE`] bytes of `data`; the
/// store stage keeps its file in `scratch`, on the cluster's file system.
pub fn measure(
    runtime: &tokio::runtime::Runtime,
    data: &[u8],
    chunker: &Chunker,
    scratch: &Path,
) -> Result<Ceiling> {
    let sample = &data[..SAMPLE.min(data.len())];
    let chunks: Vec<Vec<u8>> = chunker.split(sample).map(<[u8]>::to_vec).collect();
    let ids = chunks.iter().map(|c| chunk_id(c)).collect();
    let sample = Arc::new(Sample {
        chunks,
        ids,
        len: sample.len(),
    });
    let (transport_put, transport_get) = runtime.block_on(transport(&sample))?;
    let (store_put, store_get) = store(&sample, scratch)?;
    let put = [
        (
            "chunk",
            cut(chunker, &data[..sample.len])?,
            "FastCDC cuts, one thread",
        ),
        ("hash", hash(&sample)?, "BLAKE3 chunk ids, one thread"),
        (
            "probe",
            probe(&sample)?,
            "compression probe (rejects), one thread",
        ),
        (
            "encode",
            encode(&sample)?,
            "4+2 RS, headers, checksums, shard copies",
        ),
        (
            "transport",
            transport_put,
            "6 shards out, mTLS QUIC loopback, both ends",
        ),
        (
            "store",
            store_put,
            "6 shards into a store, 8 puts in flight",
        ),
    ];
    let get = [
        (
            "decode",
            decode(&sample)?,
            "4 data shards: checksums, concat, BLAKE3",
        ),
        (
            "transport",
            transport_get,
            "4 shards back, mTLS QUIC loopback, both ends",
        ),
        (
            "store",
            store_get,
            "4 shards out of a store, 8 gets in flight",
        ),
    ];
    let stages = (put.map(|s| ("put", s)).into_iter())
        .chain(get.map(|s| ("get", s)))
        .map(|(path, (name, ns_per_byte, how))| Stage {
            path,
            name,
            ns_per_byte,
            how,
        })
        .collect();
    let cores = std::thread::available_parallelism()
        .context("counting cores")?
        .get();
    Ok(Ceiling { stages, cores })
}

/// FastCDC finding the chunk boundaries of `sample`.
fn cut(chunker: &Chunker, sample: &[u8]) -> Result<f64> {
    on_this_thread(|| {
        std::hint::black_box(chunker.split(sample).count());
        Ok(sample.len())
    })
}

/// The chunk ids.
fn hash(sample: &Sample) -> Result<f64> {
    on_this_thread(|| {
        for chunk in &sample.chunks {
            std::hint::black_box(chunk_id(chunk));
        }
        Ok(sample.len)
    })
}

/// Encoding every chunk into its shards, as `ChunkStore::put` does after the probe.
fn encode(sample: &Sample) -> Result<f64> {
    let mut encoder = ChunkEncoder::new(scheme()?, CompressionConfig::off())?;
    on_this_thread(|| {
        for (chunk, id) in sample.chunks.iter().zip(&sample.ids) {
            std::hint::black_box(shards(&mut encoder, *id, chunk)?);
        }
        Ok(sample.len)
    })
}

/// The compression probe with the default policy, as `ChunkEncoder` runs it first.
fn probe(sample: &Sample) -> Result<f64> {
    let mut compressor = Compressor::new(CompressionConfig::default())?;
    let mut out = Vec::new();
    let mut kept = 0;
    let cost = on_this_thread(|| {
        for chunk in &sample.chunks {
            out.resize(chunk.len(), 0);
            kept += usize::from(compressor.compress_into(chunk, &mut out).is_some());
        }
        Ok(sample.len)
    })?;
    // The encode stage runs with compression off: right only if nothing was kept.
    ensure!(
        kept == 0,
        "random data compressed; the encode stage would be wrong"
    );
    Ok(cost)
}

/// Rebuilding each chunk from its 4 data shards, then copying it out as `get` and
/// `get_object` do.
fn decode(sample: &Sample) -> Result<f64> {
    let mut encoder = ChunkEncoder::new(scheme()?, CompressionConfig::off())?;
    let stored: Vec<Vec<Vec<u8>>> = sample
        .chunks
        .iter()
        .zip(&sample.ids)
        .map(|(chunk, id)| shards(&mut encoder, *id, chunk))
        .collect::<Result<_>>()?;
    let mut decoder = ChunkDecoder::new()?;
    let mut object = Vec::with_capacity(sample.len);
    on_this_thread(|| {
        object.clear();
        for (shards, id) in stored.iter().zip(&sample.ids) {
            let views: Vec<ShardBytes> = shards[..usize::from(K)]
                .iter()
                .zip(0u8..)
                .map(|(bytes, i)| ShardBytes::contiguous(bytes, Some(ShardIndex(i))))
                .collect();
            let chunk = decoder.decode(*id, &views)?.data.to_vec();
            object.extend_from_slice(&chunk);
        }
        ensure!(object.len() == sample.len, "decoded the wrong length");
        Ok(sample.len)
    })
}

/// The stand-in for a node's shard service: takes shards, or sends back the one named
/// by the message (a little-endian u32).
fn shard_server(shards: Arc<Vec<Bytes>>) -> Handler {
    Arc::new(move |_peer: Peer, request: Request| {
        let shards = shards.clone();
        Box::pin(async move {
            let body = match (request.op, <[u8; 4]>::try_from(&request.message[..])) {
                (OP_SEND, Ok(n)) => shards
                    .get(u32::from_le_bytes(n) as usize)
                    .cloned()
                    .unwrap_or_default(),
                _ => Bytes::new(),
            };
            Ok(Response {
                message: Bytes::new(),
                body,
            })
        })
    })
}

/// Our RPC over mTLS QUIC on loopback, client and server in this process: every shard
/// of the sample sent to the server (put), and its data shards sent back (get), with as
/// many requests in flight as `put_object` and `get_object` keep.
async fn transport(sample: &Sample) -> Result<(f64, f64)> {
    let mut encoder = ChunkEncoder::new(scheme()?, CompressionConfig::off())?;
    let mut all = Vec::new();
    let mut data_shards = Vec::new();
    for (chunk, id) in sample.chunks.iter().zip(&sample.ids) {
        for (i, shard) in shards(&mut encoder, *id, chunk)?.into_iter().enumerate() {
            let shard = Bytes::from(shard);
            if i < usize::from(K) {
                data_shards.push(shard.clone());
            }
            all.push(shard);
        }
    }
    let pki = Pki::new()?;
    let data_shards = Arc::new(data_shards);
    let link = Loopback::start(&pki, shard_server(data_shards.clone())).await?;
    let width = usize::from(K + M);
    let all = Arc::new(all);
    let take = {
        let all = all.clone();
        move |n: usize| (OP_TAKE, Bytes::new(), all[n].clone(), 0)
    };
    let put = over_link(
        &link,
        all.len(),
        OBJECT_PARALLELISM * width,
        sample.len,
        take,
    )
    .await?;
    let send = {
        let data_shards = data_shards.clone();
        move |n: usize| {
            let at = u32::try_from(n).expect("invariant: a few hundred shards");
            let message = Bytes::copy_from_slice(&at.to_le_bytes());
            (OP_SEND, message, Bytes::new(), data_shards[n].len())
        }
    };
    let k = usize::from(K);
    let get = over_link(
        &link,
        data_shards.len(),
        OBJECT_PARALLELISM * k,
        sample.len,
        send,
    )
    .await?;
    Ok((put, get))
}

/// Passes of `requests` calls (request n made by `make(n)`: op, message, body, and the
/// body length the answer must have), `in_flight` at once; CPU per user byte.
async fn over_link<F>(
    link: &Loopback,
    requests: usize,
    in_flight: usize,
    user_bytes: usize,
    make: F,
) -> Result<f64>
where
    F: Fn(usize) -> (u16, Bytes, Bytes, usize) + Clone + Send + 'static,
{
    let pass = async || -> Result<usize> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..in_flight {
            let (connection, next, make) = (link.connection.clone(), next.clone(), make.clone());
            tasks.spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        return anyhow::Ok(());
                    }
                    let (op, message, body, answer) = make(n);
                    let request = Request {
                        protocol: 1,
                        version: 1,
                        op,
                        message,
                        body,
                    };
                    let got = connection.call(request, TRANSPORT_DEADLINE).await?;
                    ensure!(
                        got.body.len() == answer,
                        "transport answered the wrong length"
                    );
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(user_bytes)
    };
    pass().await?;
    let mut meter = Meter::default();
    while meter.wants_more() {
        let lap = Meter::lap()?;
        let bytes = pass().await?;
        meter.stop(lap, bytes)?;
    }
    Ok(meter.ns_per_byte())
}

/// A store on a glommio executor, as a node keeps one, on the cluster's file system:
/// every shard of the sample stored (put; each pass stores the sample with its first
/// bytes changed, so no shard is already there), and the data shards read back and
/// copied out as a node's shard actor does (get). Returns (put, get) CPU per user byte.
fn store(sample: &Arc<Sample>, scratch: &Path) -> Result<(f64, f64)> {
    let path = scratch.join("stage-store");
    let sample = sample.clone();
    let result = on_executor("hive-bench-stage", {
        let path = path.clone();
        move || async move {
            let store = Rc::new(new_store(&path, STAGE_STORE_SIZE, STAGE_SEGMENT).await?);
            let mut encoder = ChunkEncoder::new(scheme()?, CompressionConfig::off())?;
            let mut stored: Vec<Vec<ShardName>> = Vec::new();
            let mut meter = Meter::default();
            // Pass 0 warms up and is not timed.
            while stored.len() < STORE_PASSES_MAX && (stored.is_empty() || meter.wants_more()) {
                let pass = stored.len() as u64 + 1;
                let mut shards_of_pass = Vec::new();
                let mut keys = Vec::new();
                for chunk in &sample.chunks {
                    let mut chunk = chunk.clone();
                    for (byte, tweak) in chunk.iter_mut().zip(pass.to_le_bytes()) {
                        *byte ^= tweak;
                    }
                    let id = chunk_id(&chunk);
                    keys.extend((0..K).map(|i| ShardName {
                        chunk: id,
                        k: K,
                        m: M,
                        index: ShardIndex(i),
                    }));
                    shards_of_pass.extend(shards(&mut encoder, id, &chunk)?);
                }
                let shards_of_pass = Rc::new(shards_of_pass);
                let lap = Meter::lap()?;
                in_flight(shards_of_pass.len(), {
                    let (store, shards_of_pass) = (store.clone(), shards_of_pass.clone());
                    move |n| {
                        let (store, shards_of_pass) = (store.clone(), shards_of_pass.clone());
                        async move { Ok(store.put(&shards_of_pass[n]).await?) }
                    }
                })
                .await?;
                if !stored.is_empty() {
                    meter.stop(lap, sample.len)?;
                }
                stored.push(keys);
            }
            let put = meter.ns_per_byte();
            let mut meter = Meter::default();
            for pass in (0..stored.len()).cycle() {
                if !meter.wants_more() {
                    break;
                }
                let keys = Rc::new(stored[pass].clone());
                let lap = Meter::lap()?;
                in_flight(keys.len(), {
                    let (store, keys) = (store.clone(), keys.clone());
                    move |n| {
                        let (store, name) = (store.clone(), keys[n]);
                        async move {
                            let found = store.get(name).await?.context("shard not stored")?;
                            std::hint::black_box(Bytes::copy_from_slice(&found));
                            Ok(())
                        }
                    }
                })
                .await?;
                meter.stop(lap, sample.len)?;
            }
            if let Ok(store) = Rc::try_unwrap(store) {
                store.close().await?;
            }
            Ok((put, meter.ns_per_byte()))
        }
    });
    let _ = std::fs::remove_file(&path);
    result
}

/// Runs `op(0..n)` on the glommio executor, [`OBJECT_PARALLELISM`] at once (the shard
/// requests one node has in flight while an object is written or read).
async fn in_flight<F, Fut>(n: usize, op: F) -> Result<()>
where
    F: Fn(usize) -> Fut + Clone + 'static,
    Fut: Future<Output = Result<()>> + 'static,
{
    let next = Rc::new(Cell::new(0));
    let tasks: Vec<_> = (0..OBJECT_PARALLELISM)
        .map(|_| {
            let (next, op) = (next.clone(), op.clone());
            glommio::spawn_local(async move {
                loop {
                    let i = next.get();
                    if i >= n {
                        return anyhow::Ok(());
                    }
                    next.set(i + 1);
                    op(i).await?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    Ok(())
}
