//! `hive-bench store`: the shard store against raw O_DIRECT I/O on the same file system,
//! both through io_uring (glommio), interleaved in one executor.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result};
use glommio::io::{DmaFile, OpenOptions};
use glommio::{LocalExecutorBuilder, Placement};
use hive_codec::{ChunkEncoder, CompressionConfig, ErasureScheme, chunk_id};
use hive_nvme::{FormatOptions, Store};
use hive_testkit::{Rng, random_bytes};
use hive_wire::NodeId;

use crate::measure::{Round, Rounds, Throughput};
use crate::report::{Better, Line, Report};

const SUITE: &str = "store";
const NODE: NodeId = NodeId(1);
/// Bytes the store file and the raw file may grow to (both sparse).
const FILE_SIZE: u64 = 4 << 30;
/// 1 MiB appends per sequential-write round.
const SEQ_PUTS_PER_ROUND: usize = 32;
/// Data bytes of a shard whose record fills exactly one 4 KiB block (record header 88,
/// shard header 64, payload 3904 rounded to 64).
const SMALL_DATA: usize = 3904;
/// Shards the random-read benchmark reads from (64 MiB of one-block records).
const READ_SET: usize = 16_384;
/// Concurrent reads.
const READ_DEPTH: usize = 32;
/// Reads per task per round.
const READS_PER_TASK: usize = 256;
/// Concurrent small puts, and puts per task per round.
const PUT_TASKS: usize = 64;
const PUTS_PER_TASK: usize = 16;
/// Raw write + fdatasync pairs per round of the small-put baseline.
const RAW_SYNCS_PER_ROUND: usize = 256;
/// The index target: bytes per entry (49 bytes an entry since records lie at any
/// 16-byte offset, plus the bucket table's share).
const INDEX_BUDGET: f64 = 50.0;

pub fn run(rounds: &Rounds, report: &mut Report, dir: &Path) -> Result<()> {
    let work = dir.join(format!("hive-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let rounds_n = rounds.count();
    let result = on_executor("hive-bench-store", {
        let work = work.clone();
        move || async move { measure(rounds_n, &work).await }
    });
    let _ = std::fs::remove_dir_all(&work);
    for line in result? {
        report.add(line);
    }
    Ok(())
}

/// Runs `work` on a new glommio executor thread (stores and O_DIRECT files live on
/// one) and waits for its result.
pub fn on_executor<T, F, Fut>(name: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .spawn(work)
        .map_err(|e| anyhow::anyhow!("starting a glommio executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("the benchmark executor failed: {e}"))?
}

/// Formats a store for [`NODE`] at `path`, `size` bytes (sparse) in segments of
/// `segment_size`, and opens it; call on a glommio executor.
pub async fn new_store(path: &Path, size: u64, segment_size: u32) -> Result<Store> {
    let options = FormatOptions {
        node_id: NODE,
        size: Some(size),
        segment_size,
    };
    Store::format(path, &options)?;
    Ok(Store::open(path, NODE).await?)
}

/// Opens `path` for O_DIRECT reads and writes; call on a glommio executor.
pub async fn open_direct(path: &Path) -> Result<DmaFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(path)
        .await
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))
}

/// One shard made of `data_len` random bytes (replication 1+0: the record holds them
/// whole).
fn shard(seed: u64, data_len: usize) -> Vec<u8> {
    let data = random_bytes(seed, data_len);
    let scheme = ErasureScheme::new(1, 0).expect("1+0 is a valid scheme");
    let mut encoder = ChunkEncoder::new(scheme, CompressionConfig::off()).expect("encoder");
    let encoded = encoder.encode(chunk_id(&data), &data).expect("encode");
    encoded.shard_to_vec(0)
}

fn line(name: &'static str, unit: &'static str, t: Throughput, against: &'static str) -> Line {
    Line::rate(SUITE, name, unit, t, against)
}

async fn measure(rounds_n: u32, work: &Path) -> Result<Vec<Line>> {
    let rounds = Rounds::new(rounds_n, 1);
    let store_path = work.join("store");
    let raw_path = work.join("raw");
    // The raw file starts with real data: glommio's first DmaFile on a device must not
    // be empty (see the nvme crate).
    let raw_len = 64 << 20;
    std::fs::write(&raw_path, random_bytes(7, raw_len))?;
    let store = Rc::new(new_store(&store_path, FILE_SIZE, 64 << 20).await?);
    let raw = Rc::new(open_direct(&raw_path).await?);
    let mut lines = Vec::new();
    lines.push(seq_write(&rounds, &store, &raw).await?);
    lines.push(rand_read(&rounds, &store, &raw, raw_len as u64).await?);
    lines.push(small_put(&rounds, &store, &raw).await?);
    let stats = store.stats();
    let per_entry = stats.index_bytes as f64 / stats.shards.max(1) as f64;
    lines.push(Line {
        suite: SUITE,
        name: "index_bytes_per_entry",
        unit: "bytes",
        hive: per_entry,
        baseline: INDEX_BUDGET,
        better: Better::Lower,
        against: "the 50-byte budget",
    });
    Ok(lines)
}

/// 1 MiB shard appends, each durable before the next, against O_DIRECT writes of the
/// same size on disk (shard, record header, padding) each followed by fdatasync. Both
/// count 1 MiB of shard per write.
async fn seq_write(rounds: &Rounds, store: &Rc<Store>, raw: &Rc<DmaFile>) -> Result<Line> {
    const MIB: usize = 1 << 20;
    let shards: Vec<Vec<u8>> = (0..rounds.count() as usize * SEQ_PUTS_PER_ROUND)
        .map(|n| shard(0x5e9_0000 + n as u64, MIB - 64))
        .collect();
    // The raw side writes what one of our appends writes: the shard plus its record
    // header, padded to whole blocks (1 MiB + 4 KiB), at advancing offsets.
    let record = (hive_nvme::format::RecordHeader::len_for(MIB) as usize).next_multiple_of(4096);
    let mut buffer = raw.alloc_dma_buffer(record);
    buffer
        .as_bytes_mut()
        .copy_from_slice(&random_bytes(3, record));
    let buffer = Rc::new(buffer);
    let mut raw_pos = 0u64;
    let t = rounds
        .interleaved(
            async |round| {
                let batch = &shards[round as usize * SEQ_PUTS_PER_ROUND..][..SEQ_PUTS_PER_ROUND];
                Round::time((SEQ_PUTS_PER_ROUND * MIB) as f64, async {
                    for s in batch {
                        store.put(s).await.expect("put");
                    }
                })
                .await
            },
            async |_| {
                Round::time((SEQ_PUTS_PER_ROUND * MIB) as f64, async {
                    for _ in 0..SEQ_PUTS_PER_ROUND {
                        raw.write_rc_at(buffer.clone(), raw_pos)
                            .await
                            .expect("write");
                        raw.fdatasync().await.expect("fdatasync");
                        raw_pos = (raw_pos + record as u64) % (FILE_SIZE / 2);
                    }
                })
                .await
            },
        )
        .await;
    let mib = |x: f64| x / MIB as f64;
    Ok(line(
        "store_seq_write",
        "MiB/s",
        Throughput {
            hive: mib(t.hive),
            baseline: mib(t.baseline),
        },
        "raw O_DIRECT write of the same size + fdatasync",
    ))
}

/// Random gets of one-block shards at queue depth 32 against random 4 KiB O_DIRECT
/// reads of a file of the same size.
async fn rand_read(
    rounds: &Rounds,
    store: &Rc<Store>,
    raw: &Rc<DmaFile>,
    raw_len: u64,
) -> Result<Line> {
    let mut keys = Vec::with_capacity(READ_SET);
    let mut pending = Vec::new();
    for n in 0..READ_SET {
        let bytes = shard(0x4ead_0000 + n as u64, SMALL_DATA);
        let parsed = hive_wire::ShardRef::parse(&bytes)?;
        keys.push(parsed.header.name());
        let store = store.clone();
        pending.push(glommio::spawn_local(async move { store.put(&bytes).await }));
        if pending.len() == PUT_TASKS {
            for p in pending.drain(..) {
                p.await?;
            }
        }
    }
    for p in pending {
        p.await?;
    }
    let keys = Rc::new(keys);
    let reads = (READ_DEPTH * READS_PER_TASK) as f64;
    let t = rounds
        .interleaved(
            async |round| {
                Round::time(reads, async {
                    let tasks: Vec<_> = (0..READ_DEPTH)
                        .map(|task| {
                            let (store, keys) = (store.clone(), keys.clone());
                            let mut rng = Rng::new(u64::from(round) << 16 | task as u64);
                            glommio::spawn_local(async move {
                                for _ in 0..READS_PER_TASK {
                                    let name = keys[rng.below(keys.len())];
                                    store.get(name).await.expect("get").expect("stored");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await;
                    }
                })
                .await
            },
            async |round| {
                Round::time(reads, async {
                    let tasks: Vec<_> = (0..READ_DEPTH)
                        .map(|task| {
                            let raw = raw.clone();
                            let mut rng = Rng::new(u64::from(round) << 16 | task as u64);
                            glommio::spawn_local(async move {
                                let blocks = (raw_len / 4096) as usize;
                                for _ in 0..READS_PER_TASK {
                                    let pos = rng.below(blocks) as u64 * 4096;
                                    raw.read_at_aligned(pos, 4096).await.expect("read");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await;
                    }
                })
                .await
            },
        )
        .await;
    Ok(line(
        "store_rand_read_4k",
        "ops/s",
        t,
        "raw O_DIRECT 4 KiB random reads, depth 32",
    ))
}

/// One-block puts from 64 concurrent writers (group commit) against a loop of 4 KiB
/// O_DIRECT writes each followed by fdatasync.
async fn small_put(rounds: &Rounds, store: &Rc<Store>, raw: &Rc<DmaFile>) -> Result<Line> {
    let per_round = PUT_TASKS * PUTS_PER_TASK;
    let shards: Rc<Vec<Vec<u8>>> = Rc::new(
        (0..rounds.count() as usize * per_round)
            .map(|n| shard(0x5a11_0000 + n as u64, SMALL_DATA))
            .collect(),
    );
    let mut buffer = raw.alloc_dma_buffer(4096);
    buffer.as_bytes_mut().fill(0x5a);
    let buffer = Rc::new(buffer);
    let mut raw_pos = FILE_SIZE / 2;
    let t = rounds
        .interleaved(
            async |round| {
                Round::time(per_round as f64, async {
                    let tasks: Vec<_> = (0..PUT_TASKS)
                        .map(|task| {
                            let (store, shards) = (store.clone(), shards.clone());
                            let first = round as usize * per_round + task * PUTS_PER_TASK;
                            glommio::spawn_local(async move {
                                for s in &shards[first..first + PUTS_PER_TASK] {
                                    store.put(s).await.expect("put");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await;
                    }
                })
                .await
            },
            async |_| {
                Round::time(RAW_SYNCS_PER_ROUND as f64, async {
                    for _ in 0..RAW_SYNCS_PER_ROUND {
                        raw.write_rc_at(buffer.clone(), raw_pos)
                            .await
                            .expect("write");
                        raw.fdatasync().await.expect("fdatasync");
                        raw_pos += 4096;
                    }
                })
                .await
            },
        )
        .await;
    Ok(line(
        "store_small_put",
        "ops/s",
        t,
        "raw 4 KiB write + fdatasync loop",
    ))
}

/// Where the benchmark puts its files unless told otherwise.
pub fn default_dir() -> PathBuf {
    std::env::temp_dir()
}
