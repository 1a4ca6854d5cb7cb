//! The workload: writers that store objects through the client library and record
//! every answer in the ledger, and readers that read acknowledged objects back while
//! the faults happen.
//!
//! A write is one object (put, then recorded in the namespace as the `hive put` tool
//! records it, so garbage collection keeps it). Its bytes are made from the run's seed
//! and the write's number: sizes spread evenly on a log scale between [`MIN_OBJECT`] and
//! [`MAX_OBJECT`], half of them text that compresses, half random bytes.
//!
//! The objects kept stay within a budget of bytes: past it, the oldest is deleted
//! (once no reader is reading it), and a garbage collection round is ordered every
//! [`GC_EVERY`], so a long run neither fills the stores nor leaves garbage collection
//! out of the faults.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use hive_client::chunk_io::ChunkStore;
use hive_client::local_cluster::{self, delete_recorded, put_recorded, report_bad, report_owed};
use hive_client::object::get_object;
use hive_codec::Chunker;
use hive_testkit::{Rng, random_bytes, text_bytes};
use hive_wire::ChunkId;
use hive_wire::net::control::ControlClient;
use hive_wire::net::gc::GcClient;
use hive_wire::net::meta::MetaClient;
use tokio::sync::Notify;

use crate::ledger::{Deletion, Entry, Ledger, Line};
use crate::report::Finding;

/// Smallest object written.
pub const MIN_OBJECT: usize = 1 << 10;
/// Largest object written: several chunks.
pub const MAX_OBJECT: usize = 4 << 20;
/// Writers running at once.
pub const WRITERS: usize = 2;
/// Readers running at once.
pub const READERS: usize = 1;
/// Most writes one run makes: the ledger and the readers' list stay within this.
pub const MAX_OPS: u64 = 1_000_000;
/// How often the shards owed and the damaged shards met are handed to repair.
pub const REPORT_EVERY: Duration = Duration::from_secs(2);
/// How long a reader with nothing to read waits for a write before it looks again.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How often a garbage collection round is ordered (when none is running).
pub const GC_EVERY: Duration = Duration::from_secs(15);
/// How long a delete waits for the readers of its object to finish before it looks
/// again.
const READ_WAIT: Duration = Duration::from_millis(200);

/// The bytes of write `op` of the run with `seed`.
pub fn content(seed: u64, op: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ op.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let span = (MAX_OBJECT as f64 / MIN_OBJECT as f64).ln();
    let len = ((MIN_OBJECT as f64) * (span * unit).exp()) as usize;
    let len = len.clamp(MIN_OBJECT, MAX_OBJECT);
    if rng.next_u64() & 1 == 0 {
        text_bytes(rng.next_u64(), len)
    } else {
        random_bytes(rng.next_u64(), len)
    }
}

/// An acknowledged write the readers may read back.
#[derive(Debug, Clone, Copy)]
struct Acked {
    op: u64,
    id: ChunkId,
    hash: blake3::Hash,
    len: u64,
}

/// The acknowledged objects kept, oldest first, and their bytes.
#[derive(Default)]
struct Live {
    objects: VecDeque<Acked>,
    bytes: u64,
}

/// What the writers and readers share, and what they found.
pub struct Workload {
    seed: u64,
    ops: u64,
    started: Instant,
    stop: AtomicBool,
    next_op: AtomicU64,
    budget: u64,
    ledger: Mutex<Ledger>,
    lines: Mutex<Vec<Line>>,
    live: Mutex<Live>,
    reading: Mutex<HashMap<u64, u32>>,
    fresh: Notify,
    halt: Notify,
    gc_rounds: AtomicU64,
    owed: AtomicU64,
    reads: AtomicU64,
    read_errors: AtomicU64,
    wrong: Mutex<Vec<Finding>>,
}

/// The clients a workload uses.
#[derive(Clone)]
pub struct Clients {
    /// Shards.
    pub store: Arc<ChunkStore>,
    /// The map authority (owed and damaged shards go there).
    pub authority: Arc<ControlClient>,
    /// The metadata service, as the administrator (objects are recorded there).
    pub meta: Arc<MetaClient>,
    /// Garbage collection, on the metadata group's leader when the run began.
    pub gc: Arc<GcClient>,
    /// The local cluster's directory, to find the leader again when it moves.
    pub cluster: std::path::PathBuf,
    /// Cuts objects into chunks.
    pub chunker: Arc<Chunker>,
}

impl Workload {
    /// A workload of at most `ops` writes (capped at [`MAX_OPS`]) from `seed` that
    /// keeps at most `budget` bytes of objects, its clock started now, its answers
    /// appended to `ledger`.
    pub fn new(seed: u64, ops: u64, budget: u64, ledger: Ledger) -> Arc<Self> {
        Arc::new(Self {
            seed,
            ops: ops.min(MAX_OPS),
            started: Instant::now(),
            stop: AtomicBool::new(false),
            next_op: AtomicU64::new(0),
            budget,
            ledger: Mutex::new(ledger),
            lines: Mutex::new(Vec::new()),
            live: Mutex::new(Live::default()),
            reading: Mutex::new(HashMap::new()),
            fresh: Notify::new(),
            halt: Notify::new(),
            gc_rounds: AtomicU64::new(0),
            owed: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            read_errors: AtomicU64::new(0),
            wrong: Mutex::new(Vec::new()),
        })
    }

    /// When the workload started: the run's clock.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Milliseconds since the workload started.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Starts the writers, the readers and the reporter on the current runtime.
    pub fn spawn(self: &Arc<Self>, clients: &Clients) -> tokio::task::JoinSet<Result<()>> {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..WRITERS {
            tasks.spawn(self.clone().writer(clients.clone()));
        }
        for n in 0..READERS {
            tasks.spawn(self.clone().reader(clients.clone(), n as u64));
        }
        tasks.spawn(self.clone().reporter(clients.clone()));
        tasks.spawn(self.clone().collector(clients.clone()));
        tasks
    }

    /// Tells every task to finish what it is doing and stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.fresh.notify_waiters();
        self.halt.notify_waiters();
    }

    /// Whether every write the workload may make has been made.
    pub fn writes_done(&self) -> bool {
        self.next_op.load(Ordering::SeqCst) >= self.ops
    }

    /// The ledger's lines so far, in the order answered.
    pub fn lines(&self) -> Vec<Line> {
        lock(&self.lines).clone()
    }

    /// Garbage collection rounds ordered.
    pub fn gc_rounds(&self) -> u64 {
        self.gc_rounds.load(Ordering::SeqCst)
    }

    /// Shards of acknowledged writes that did not reach their nodes and were handed
    /// to repair as owed.
    pub fn owed(&self) -> u64 {
        self.owed.load(Ordering::SeqCst)
    }

    /// Appends `line` to the ledger.
    pub fn record(&self, line: Line) -> Result<()> {
        lock(&self.ledger).append(&line)?;
        lock(&self.lines).push(line);
        Ok(())
    }

    /// Reads made, and reads that failed (during faults they may).
    pub fn reads(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::SeqCst),
            self.read_errors.load(Ordering::SeqCst),
        )
    }

    /// Reads that returned bytes other than those written.
    pub fn wrong_reads(&self) -> Vec<Finding> {
        lock(&self.wrong).clone()
    }

    /// Makes the ledger durable.
    pub fn sync_ledger(&self) -> Result<()> {
        lock(&self.ledger).sync()
    }

    async fn writer(self: Arc<Self>, clients: Clients) -> Result<()> {
        while !self.stop.load(Ordering::SeqCst) {
            let op = self.next_op.fetch_add(1, Ordering::SeqCst);
            if op >= self.ops {
                break;
            }
            let data = content(self.seed, op);
            let hash = blake3::hash(&data);
            let started_ms = self.now_ms();
            let put = put_recorded(&clients.meta, &clients.store, &clients.chunker, &data[..]);
            let result = put.await;
            let entry = Entry {
                op,
                object: result.as_ref().ok().map(ChunkId::to_string),
                len: data.len() as u64,
                blake3: hash.to_hex().to_string(),
                started_ms,
                answered_ms: self.now_ms(),
                refused: result.as_ref().err().map(|e| format!("{e:#}")),
            };
            let len = entry.len;
            self.record(Line::Write(entry))?;
            if let Ok(id) = result {
                {
                    let mut live = lock(&self.live);
                    live.objects.push_back(Acked { op, id, hash, len });
                    live.bytes += len;
                }
                self.fresh.notify_waiters();
                self.trim(&clients).await?;
            }
        }
        Ok(())
    }

    /// Deletes the oldest objects while those kept are over the budget.
    async fn trim(&self, clients: &Clients) -> Result<()> {
        loop {
            let oldest = {
                let mut live = lock(&self.live);
                if live.bytes <= self.budget {
                    return Ok(());
                }
                let oldest = live.objects.pop_front();
                if let Some(o) = &oldest {
                    live.bytes -= o.len;
                }
                oldest
            };
            let Some(oldest) = oldest else {
                return Ok(());
            };
            // No reader picks it any more; those reading it finish first, or their
            // read could race garbage collection.
            while lock(&self.reading).contains_key(&oldest.op) {
                tokio::time::sleep(READ_WAIT).await;
            }
            let started_ms = self.now_ms();
            let deleted = delete_recorded(&clients.meta, oldest.id).await;
            self.record(Line::Delete(Deletion {
                op: oldest.op,
                object: oldest.id.to_string(),
                started_ms,
                refused: deleted.err().map(|e| format!("{e:#}")),
            }))?;
        }
    }

    async fn reader(self: Arc<Self>, clients: Clients, n: u64) -> Result<()> {
        let mut rng = Rng::new(self.seed ^ 0x7265_6164_6572 ^ n);
        while !self.stop.load(Ordering::SeqCst) {
            let pick = {
                let live = lock(&self.live);
                let pick =
                    (!live.objects.is_empty()).then(|| live.objects[rng.below(live.objects.len())]);
                if let Some(p) = &pick {
                    *lock(&self.reading).entry(p.op).or_default() += 1;
                }
                pick
            };
            let Some(acked) = pick else {
                let _ = tokio::time::timeout(IDLE_WAIT, self.fresh.notified()).await;
                continue;
            };
            self.reads.fetch_add(1, Ordering::SeqCst);
            let read = get_object(&clients.store, acked.id).await;
            {
                let mut reading = lock(&self.reading);
                if let Some(n) = reading.get_mut(&acked.op) {
                    *n -= 1;
                    if *n == 0 {
                        reading.remove(&acked.op);
                    }
                }
            }
            match read {
                Ok(bytes) if blake3::hash(&bytes) == acked.hash => {}
                Ok(bytes) => {
                    // One finding a write, however often it is read wrong: the list
                    // stays within the writes.
                    let mut wrong = lock(&self.wrong);
                    if !wrong.iter().any(|f| f.op == acked.op) {
                        wrong.push(Finding {
                            op: acked.op,
                            object: acked.id.to_string(),
                            reason: format!(
                                "a read during the run returned {} bytes hashing to {}, not what was written ({})",
                                bytes.len(),
                                blake3::hash(&bytes).to_hex(),
                                acked.hash.to_hex()
                            ),
                        });
                    }
                }
                Err(_) => {
                    self.read_errors.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        Ok(())
    }

    /// Hands the shards owed and the damaged shards met to repair, every
    /// [`REPORT_EVERY`] and once more at the end.
    async fn reporter(self: Arc<Self>, clients: Clients) -> Result<()> {
        loop {
            let stopping = self.stop.load(Ordering::SeqCst);
            report_bad(&clients.store, &clients.authority).await;
            let owed = report_owed(&clients.store, &clients.authority).await;
            self.owed.fetch_add(owed as u64, Ordering::SeqCst);
            if stopping {
                return Ok(());
            }
            let _ = tokio::time::timeout(REPORT_EVERY, self.halt.notified()).await;
        }
    }
}

impl Workload {
    /// Orders a garbage collection round every [`GC_EVERY`] unless one is running.
    async fn collector(self: Arc<Self>, clients: Clients) -> Result<()> {
        let mut gc = clients.gc.clone();
        while !self.stop.load(Ordering::SeqCst) {
            let _ = tokio::time::timeout(GC_EVERY, self.halt.notified()).await;
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            // The leader may be busy, briefly unreachable or no longer the leader (a
            // replica that does not lead refuses the order): the next tick tries again,
            // at the leader the group names then.
            let status = gc.status().await;
            let idle = status.as_ref().is_ok_and(|s| s.current.is_none());
            let ordered = idle && gc.start(false).await.is_ok();
            if ordered {
                self.gc_rounds.fetch_add(1, Ordering::SeqCst);
            } else if (status.is_err() || idle)
                && let Ok(found) = local_cluster::gc_client(&clients.cluster).await
            {
                gc = Arc::new(found);
            }
        }
        Ok(())
    }
}

/// Locks `m`; a task that panicked while holding it leaves its data usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
