//! The workload: writers that store objects through the client library and record
//! every answer in the ledger, and readers that read acknowledged objects back while
//! the faults happen.
//!
//! A write is one object (put, then recorded in the namespace as the `hive put` tool
//! records it, so garbage collection keeps it). Its bytes are made from the run's seed
//! and the write's number: sizes spread evenly on a log scale between [`MIN_OBJECT`] and
//! [`MAX_OBJECT`], half of them text that compresses, half random bytes.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use hive_client::chunk_io::ChunkStore;
use hive_client::local_cluster::{put_recorded, report_bad, report_owed};
use hive_client::object::get_object;
use hive_codec::Chunker;
use hive_testkit::{Rng, random_bytes, text_bytes};
use hive_wire::ChunkId;
use hive_wire::net::control::ControlClient;
use hive_wire::net::meta::MetaClient;
use tokio::sync::Notify;

use crate::ledger::{Entry, Ledger};
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
}

/// What the writers and readers share, and what they found.
pub struct Workload {
    seed: u64,
    ops: u64,
    started: Instant,
    stop: AtomicBool,
    next_op: AtomicU64,
    ledger: Mutex<Ledger>,
    entries: Mutex<Vec<Entry>>,
    acked: Mutex<Vec<Acked>>,
    fresh: Notify,
    halt: Notify,
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
    /// Cuts objects into chunks.
    pub chunker: Arc<Chunker>,
}

impl Workload {
    /// A workload of at most `ops` writes (capped at [`MAX_OPS`]) from `seed`, its
    /// clock started now, its answers appended to `ledger`.
    pub fn new(seed: u64, ops: u64, ledger: Ledger) -> Arc<Self> {
        Arc::new(Self {
            seed,
            ops: ops.min(MAX_OPS),
            started: Instant::now(),
            stop: AtomicBool::new(false),
            next_op: AtomicU64::new(0),
            ledger: Mutex::new(ledger),
            entries: Mutex::new(Vec::new()),
            acked: Mutex::new(Vec::new()),
            fresh: Notify::new(),
            halt: Notify::new(),
            reads: AtomicU64::new(0),
            read_errors: AtomicU64::new(0),
            wrong: Mutex::new(Vec::new()),
        })
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

    /// The ledger's entries so far, in the order answered.
    pub fn entries(&self) -> Vec<Entry> {
        lock(&self.entries).clone()
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
            lock(&self.ledger).append(&entry)?;
            lock(&self.entries).push(entry);
            if let Ok(id) = result {
                lock(&self.acked).push(Acked { op, id, hash });
                self.fresh.notify_waiters();
            }
        }
        Ok(())
    }

    async fn reader(self: Arc<Self>, clients: Clients, n: u64) -> Result<()> {
        let mut rng = Rng::new(self.seed ^ 0x7265_6164_6572 ^ n);
        while !self.stop.load(Ordering::SeqCst) {
            let pick = {
                let acked = lock(&self.acked);
                (!acked.is_empty()).then(|| acked[rng.below(acked.len())])
            };
            let Some(acked) = pick else {
                let _ = tokio::time::timeout(IDLE_WAIT, self.fresh.notified()).await;
                continue;
            };
            self.reads.fetch_add(1, Ordering::SeqCst);
            match get_object(&clients.store, acked.id).await {
                Ok(bytes) if blake3::hash(&bytes) == acked.hash => {}
                Ok(bytes) => lock(&self.wrong).push(Finding {
                    op: acked.op,
                    object: acked.id.to_string(),
                    reason: format!(
                        "a read during the run returned {} bytes hashing to {}, not what was written ({})",
                        bytes.len(),
                        blake3::hash(&bytes).to_hex(),
                        acked.hash.to_hex()
                    ),
                }),
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
            report_owed(&clients.store, &clients.authority).await;
            if stopping {
                return Ok(());
            }
            let _ = tokio::time::timeout(REPORT_EVERY, self.halt.notified()).await;
        }
    }
}

/// Locks `m`; a task that panicked while holding it leaves its data usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
