//! The store: its public API, formatting, and rebuilding the index at open.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use glommio::io::ReadResult;
use glommio::task::JoinHandle;
use hive_wire::{ChunkId, ChunkSetDigest, EncodingTag, NodeId, PgId, ShardName, ShardRef};

use crate::commit::{self, DeleteOf, Op, Request};
use crate::constants::{
    APPEND_QUEUE, BLOCK, DATA_START, DEFAULT_SEGMENT_SIZE, DEFAULT_TOUCH_WINDOW, MIN_SEGMENT_SIZE,
    QUEUED_BYTES, SCRUB_BATCH,
};
use crate::device::Device;
use crate::error::StoreError;
use crate::format::{RECORD_HEADER_LEN, RecordHeader, RecordKind, Superblock};
use crate::state::{Key, Location, State, Tombstone};
use crate::touches::Touches;

/// How to format a store.
#[derive(Debug, Clone)]
pub struct FormatOptions {
    /// The node the store will belong to.
    pub node_id: NodeId,
    /// Bytes to use. A regular file is created or resized to this; for a block device
    /// `None` uses the whole device.
    pub size: Option<u64>,
    /// Bytes per segment: a multiple of 4 KiB, at least 256 KiB.
    pub segment_size: u32,
}

impl FormatOptions {
    /// Defaults for `node_id`: 64 MiB segments, the whole device.
    pub fn new(node_id: NodeId) -> Self {
        Self {
            node_id,
            size: None,
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// Space accounting, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Bytes segments can hold.
    pub capacity: u64,
    /// Bytes written in segments' current lives (live, garbage and headers), and their
    /// summaries (written, or to be written when the segment fills).
    pub used: u64,
    /// Bytes of records the index points at.
    pub live: u64,
    /// Written bytes no longer pointed at: reclaimable.
    pub garbage: u64,
    /// Bytes in segments not yet written in their current life.
    pub free: u64,
    /// Shards stored.
    pub shards: u64,
    /// Bytes of chunk streams the shards hold, after compression and before parity:
    /// their payloads (headers left out) times k / (k + m) of their class. What the
    /// chunks would take stored once without erasure coding.
    pub stream: u64,
    /// Group commits (one write per segment touched, one fdatasync) since open.
    pub commits: u64,
    /// Reads of the device since open (a get is one, whatever the record's size and
    /// place).
    pub reads: u64,
    /// Heap bytes of the in-memory index.
    pub index_bytes: u64,
}

impl std::ops::Add for Stats {
    type Output = Stats;

    /// The figures of two stores together.
    fn add(self, o: Stats) -> Stats {
        Stats {
            capacity: self.capacity + o.capacity,
            used: self.used + o.used,
            live: self.live + o.live,
            garbage: self.garbage + o.garbage,
            free: self.free + o.free,
            shards: self.shards + o.shards,
            stream: self.stream + o.stream,
            commits: self.commits + o.commits,
            reads: self.reads + o.reads,
            index_bytes: self.index_bytes + o.index_bytes,
        }
    }
}

/// A shard store on one device, owned by one glommio executor.
///
/// Puts are durable when they return; gets verify what they read; a failed write or
/// sync makes the store refuse writes from then on, while reads keep working.
pub struct Store {
    state: Rc<RefCell<State>>,
    device: Rc<Device>,
    queue: Option<flume::Sender<Request>>,
    /// Bytes of record buffers waiting for the writer ([`QUEUED_BYTES`]).
    queued: glommio::sync::Semaphore,
    writer: Option<JoinHandle<()>>,
    damaged_at_open: Vec<Damaged>,
    /// Chunks stored or asked about lately (see [`Store::delete_untouched`]).
    touches: RefCell<Touches>,
    /// Shards a [`Store::delete_untouched`] has chosen and not yet finished deleting:
    /// `has` denies them and `put` writes them anew.
    doomed: RefCell<std::collections::HashSet<Key>>,
}

/// What a [`Store::delete_untouched`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UntouchedDelete {
    /// Shards deleted (durably).
    pub deleted: u64,
    /// Shards kept: their chunk may have been touched within the age asked about.
    pub touched: u64,
    /// Bytes the deleted shards' records took.
    pub bytes: u64,
}

/// The shards of one placement group that one holder keeps: class (k, m), shard
/// index `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupKey {
    /// The placement group.
    pub pg: u32,
    /// Data shards of the class.
    pub k: u8,
    /// Parity shards of the class.
    pub m: u8,
    /// The shard index.
    pub index: u8,
}

impl GroupKey {
    /// The group shard `name` belongs to, with `2^pg_bits` groups.
    pub fn of(name: &ShardName, pg_bits: u8) -> Self {
        Self {
            pg: pg_of(&name.chunk, pg_bits),
            k: name.k,
            m: name.m,
            index: name.index.get(),
        }
    }
}

/// The placement group of `chunk` among `2^pg_bits`: the low bits of its first four
/// bytes, as `hive_codec::ClusterMap::pg_of` computes it.
pub fn pg_of(chunk: &ChunkId, pg_bits: u8) -> u32 {
    let mask = if pg_bits >= 32 {
        u32::MAX
    } else {
        (1u32 << pg_bits) - 1
    };
    let b = chunk.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & mask
}

/// A record that failed verification, named so repair can replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    /// The shard.
    pub name: ShardName,
    /// Segment of the record.
    pub segment: u32,
    /// Byte offset of the record within the segment.
    pub offset: u32,
    /// What failed.
    pub reason: String,
}

/// A rate-limited pass over a store's records; see [`Store::scrubber`].
pub struct Scrubber {
    keys: std::vec::IntoIter<(Key, Location)>,
    bytes_per_second: u64,
    /// When the current rate took effect, and the bytes read by then.
    paced_from: (std::time::Instant, u64),
    /// Bytes of the records the pass covers.
    pub total: u64,
    /// Records verified so far.
    pub checked: u64,
    /// Bytes read so far.
    pub bytes: u64,
}

/// One step of a scrub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrubStep {
    /// The record verified (or was gone or moved since the pass began).
    Intact,
    /// The record failed verification.
    Damaged(Damaged),
    /// The pass is over.
    Done,
}

impl Scrubber {
    /// Changes the rate from now on (0: no limit).
    pub fn set_rate(&mut self, bytes_per_second: u64) {
        if bytes_per_second != self.bytes_per_second {
            self.bytes_per_second = bytes_per_second;
            self.paced_from = (std::time::Instant::now(), self.bytes);
        }
    }

    /// The rate in use (0: no limit).
    pub fn rate(&self) -> u64 {
        self.bytes_per_second
    }

    /// Verifies the next record, then waits as long as the rate asks.
    pub async fn next(&mut self, store: &Store) -> Result<ScrubStep, StoreError> {
        let Some((key, at)) = self.keys.next() else {
            return Ok(ScrubStep::Done);
        };
        let step = Self::step(key, store.get(key).await.map(drop))?;
        self.account(&at).await;
        Ok(step)
    }

    /// Verifies the next [`SCRUB_BATCH`] records, reading them at once (a disk serves
    /// several reads in flight much faster than one after another), then waits as
    /// long as the rate asks; no steps when the pass is over.
    pub async fn next_batch(&mut self, store: &Rc<Store>) -> Result<Vec<ScrubStep>, StoreError> {
        let batch: Vec<(Key, Location)> = self.keys.by_ref().take(SCRUB_BATCH).collect();
        let reads: Vec<_> = batch
            .iter()
            .map(|(key, _)| {
                let (store, key) = (store.clone(), *key);
                glommio::spawn_local(async move { store.get(key).await.map(drop) })
            })
            .collect();
        let mut steps = Vec::with_capacity(batch.len());
        for ((key, at), read) in batch.into_iter().zip(reads) {
            steps.push(Self::step(key, read.await)?);
            self.account(&at).await;
        }
        Ok(steps)
    }

    /// What a read of `key` says of its record.
    fn step(key: Key, read: Result<(), StoreError>) -> Result<ScrubStep, StoreError> {
        match read {
            Ok(()) => Ok(ScrubStep::Intact),
            Err(StoreError::Corrupt {
                segment,
                offset,
                reason,
                ..
            }) => Ok(ScrubStep::Damaged(Damaged {
                name: key,
                segment,
                offset,
                reason,
            })),
            Err(err) => Err(err),
        }
    }

    /// Counts a record verified and waits as long as the rate asks.
    async fn account(&mut self, at: &Location) {
        self.checked += 1;
        self.bytes += u64::from(at.len);
        if self.bytes_per_second > 0 {
            let (since, base) = self.paced_from;
            let due = std::time::Duration::from_secs_f64(
                (self.bytes - base) as f64 / self.bytes_per_second as f64,
            );
            if let Some(wait) = due.checked_sub(since.elapsed()) {
                glommio::timer::sleep(wait).await;
            }
        }
    }
}

/// What a reclaim did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReclaimReport {
    /// Segments made free.
    pub segments_freed: u32,
    /// Shard bytes rewritten to free them.
    pub bytes_moved: u64,
}

/// What one [`Store::reclaim_one`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReclaimStep {
    /// The segment compacted.
    pub segment: u32,
    /// Shard bytes rewritten at the head.
    pub bytes_moved: u64,
    /// Whether the segment was made free (not if a record in it failed verification).
    pub freed: bool,
}

/// What a scrub found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Shards read and verified.
    pub checked: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Shards that failed verification.
    pub damaged: Vec<Damaged>,
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source: Arc::new(source),
    }
}

impl Store {
    /// Writes a new, empty store on `path`: a regular file (created if missing) or a
    /// block device. Uses ordinary buffered I/O and fsync, so it needs no executor.
    pub fn format(path: &Path, options: &FormatOptions) -> Result<Superblock, StoreError> {
        let bad = |reason: String| StoreError::BadGeometry {
            path: path.to_path_buf(),
            reason,
        };
        let seg = options.segment_size;
        if seg < MIN_SEGMENT_SIZE || !u64::from(seg).is_multiple_of(BLOCK) {
            return Err(bad(format!(
                "segment size {seg} must be a multiple of 4096 and at least {MIN_SEGMENT_SIZE}"
            )));
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err("opening", path))?;
        let is_block_device = {
            use std::os::unix::fs::FileTypeExt;
            file.metadata()
                .map_err(io_err("inspecting", path))?
                .file_type()
                .is_block_device()
        };
        let size = if is_block_device {
            let device_size = file
                .seek(SeekFrom::End(0))
                .map_err(io_err("sizing", path))?;
            match options.size {
                Some(size) if size > device_size => {
                    return Err(bad(format!(
                        "{size} bytes asked, the device has {device_size}"
                    )));
                }
                Some(size) => size,
                None => device_size,
            }
        } else {
            let size = options
                .size
                .ok_or_else(|| bad("a regular file needs a size".to_string()))?;
            file.set_len(size).map_err(io_err("sizing", path))?;
            size
        };
        let segment_count = size.saturating_sub(DATA_START) / u64::from(seg);
        if segment_count < 2 {
            return Err(bad(format!(
                "{size} bytes hold fewer than two {seg}-byte segments after the 1 MiB header area"
            )));
        }
        let sb = Superblock {
            store_id: random_id(),
            node_id: options.node_id,
            device_size: size,
            segment_size: seg,
            segment_count: u32::try_from(segment_count)
                .map_err(|_| bad("more than 2^32 segments; use larger segments".to_string()))?,
            data_start: DATA_START,
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        // Zero every segment header so no earlier life of the device is read as ours,
        // then write the two superblock copies, each made durable before the next.
        let zero = vec![0u8; BLOCK as usize];
        for segment in 0..sb.segment_count {
            write_at(&mut file, sb.segment_offset(segment), &zero, path)?;
        }
        file.sync_data().map_err(io_err("syncing", path))?;
        let block = sb.encode();
        for copy in 0..2 {
            write_at(&mut file, copy * BLOCK, &block, path)?;
            file.sync_data().map_err(io_err("syncing", path))?;
        }
        Ok(sb)
    }

    /// Opens the store on `path` for node `node_id`, rebuilding the index by reading the
    /// segments. Must run on a glommio executor, which then owns the store.
    pub async fn open(path: &Path, node_id: NodeId) -> Result<Self, StoreError> {
        let sb = read_superblock(path)?;
        if sb.node_id != node_id {
            return Err(StoreError::WrongNode {
                path: path.to_path_buf(),
                found: sb.node_id,
                expected: node_id,
            });
        }
        // glommio probes io_uring polling with a read of the first block of the first
        // file an executor opens on a device; on an empty file that read "succeeds" and
        // every later read fails with EOPNOTSUPP. Our device always starts with a written
        // superblock (checked just above), so the probe reads real data.
        let device = Rc::new(Device::open(path).await.map_err(io_err("opening", path))?);
        let mut state = State::new(path.to_path_buf(), sb);
        let damaged_at_open = crate::recovery::rebuild(&mut state, &device).await?;
        let state = Rc::new(RefCell::new(state));
        let (queue, requests) = flume::bounded(APPEND_QUEUE);
        let writer =
            glommio::spawn_local(commit::writer(state.clone(), device.clone(), requests)).detach();
        Ok(Self {
            state,
            device,
            queue: Some(queue),
            queued: glommio::sync::Semaphore::new(QUEUED_BYTES),
            writer: Some(writer),
            damaged_at_open,
            touches: RefCell::new(Touches::new(DEFAULT_TOUCH_WINDOW, Instant::now())),
            doomed: RefCell::default(),
        })
    }

    /// Records found damaged while the index was rebuilt at open (not indexed).
    pub fn damaged_at_open(&self) -> &[Damaged] {
        &self.damaged_at_open
    }

    /// Reads and verifies every stored shard, at most `bytes_per_second` (0: no limit),
    /// and reports each damaged record by name. Damaged shards stay indexed so that a
    /// `get` keeps failing loudly until repair replaces them.
    pub async fn scrub(&self, bytes_per_second: u64) -> Result<ScrubReport, StoreError> {
        let mut scrub = self.scrubber(bytes_per_second);
        let mut report = ScrubReport::default();
        loop {
            match scrub.next(self).await? {
                ScrubStep::Intact => {}
                ScrubStep::Damaged(damaged) => report.damaged.push(damaged),
                ScrubStep::Done => break,
            }
        }
        report.checked = scrub.checked;
        report.bytes = scrub.bytes;
        Ok(report)
    }

    /// A scrub that goes one record at a time, in disk order, at most
    /// `bytes_per_second` (0: no limit): for a repair loop that acts on each finding as
    /// it comes. It covers the shards indexed when it was made.
    pub fn scrubber(&self, bytes_per_second: u64) -> Scrubber {
        let mut keys: Vec<(Key, Location)> = self.state.borrow().index.iter().collect();
        keys.sort_unstable_by_key(|(_, at)| (at.segment, at.offset));
        let total = keys.iter().map(|(_, at)| u64::from(at.len)).sum();
        Scrubber {
            keys: keys.into_iter(),
            bytes_per_second,
            paced_from: (std::time::Instant::now(), 0),
            total,
            checked: 0,
            bytes: 0,
        }
    }

    /// The superblock.
    pub fn superblock(&self) -> Superblock {
        self.state.borrow().sb
    }

    /// Stores a shard (header and payload, as `hive_codec` seals it) durably. Storing a
    /// shard that is already present, intact and of the same encoding is a no-op; one
    /// whose stored copy is damaged or of another encoding replaces it.
    pub async fn put(&self, shard: &[u8]) -> Result<(), StoreError> {
        self.put_keeping(shard, 0).await
    }

    /// [`Store::put`], refused with [`StoreError::Reserved`] if storing the shard anew
    /// would leave less than `keep` bytes free (the room kept for reservations).
    pub async fn put_keeping(&self, shard: &[u8], keep: u64) -> Result<(), StoreError> {
        let parsed = ShardRef::parse(shard).map_err(StoreError::InvalidShard)?;
        let key = parsed.header.name();
        let tag = parsed.header.encoding();
        // Touched before anything waits: garbage collection sees it from now on.
        self.touches.borrow_mut().touch(&key.chunk, Instant::now());
        let stored = {
            let s = self.state.borrow();
            s.check_writable()?;
            if RecordHeader::len_for(shard.len()) > s.max_record_len() {
                return Err(StoreError::TooLarge {
                    len: shard.len(),
                    segment_size: s.sb.segment_size,
                });
            }
            s.index.contains_key(&key)
        };
        // A copy being deleted by garbage collection is not kept: this put writes anew.
        if stored && self.holds_intact(key, shard).await? && !self.doomed.borrow().contains(&key) {
            return Ok(());
        }
        if keep > 0 {
            let (needed, free) = (commit::buffer_len(shard.len()) as u64, self.stats().free);
            if free < needed.saturating_add(keep) {
                return Err(StoreError::Reserved {
                    needed,
                    free,
                    kept: keep,
                });
            }
        }
        let _room = self.room_for(shard.len()).await?;
        self.append(Op::Put {
            key,
            tag,
            record: Some(commit::record_buffer(&self.device, shard)),
            data_len: shard.len(),
            moves: None,
        })
        .await
    }

    /// Whether the stored copy of `key` is intact and exactly `shard`: the same
    /// encoding (every header field, the stream hash among them) and the same bytes.
    async fn holds_intact(&self, key: ShardName, shard: &[u8]) -> Result<bool, StoreError> {
        match self.get(key).await {
            Ok(Some(stored)) => Ok(&stored[..] == shard),
            Ok(None) => Ok(false),
            Err(StoreError::Corrupt { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Deletes a shard durably; `false` if it was not stored.
    pub async fn delete(&self, name: ShardName) -> Result<bool, StoreError> {
        Ok(self.delete_many(&[name]).await? == 1)
    }

    /// Deletes many shards durably, sharing group commits and delete records (48 bytes
    /// a shard instead of a record each); returns how many were stored.
    pub async fn delete_many(&self, shards: &[ShardName]) -> Result<usize, StoreError> {
        let mut answers = Vec::new();
        for key in shards {
            if !self.state.borrow().index.contains_key(key) {
                continue;
            }
            // Which put is deleted is settled by the writer, after any move of it.
            let op = Op::Delete {
                key: *key,
                of: DeleteOf::Current,
            };
            answers.push(self.submit(op).await?);
        }
        let deleted = answers.len();
        await_all(&mut answers).await?;
        Ok(deleted)
    }

    /// Waits until a record of `len` shard bytes fits in [`QUEUED_BYTES`].
    async fn room_for(&self, len: usize) -> Result<glommio::sync::Permit<'_>, StoreError> {
        let bytes = commit::buffer_len(len) as u64;
        self.queued
            .acquire_permit(bytes.min(QUEUED_BYTES))
            .await
            .map_err(|_| StoreError::Closed)
    }

    async fn append(&self, op: Op) -> Result<(), StoreError> {
        let answer = self.submit(op).await?;
        answer.recv_async().await.map_err(|_| StoreError::Closed)?
    }

    /// Queues an append and returns where its answer will arrive, so several appends
    /// can share one group commit.
    async fn submit(&self, op: Op) -> Result<flume::Receiver<Result<(), StoreError>>, StoreError> {
        let (reply, answer) = flume::bounded(1);
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        queue
            .send_async(Request { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(answer)
    }

    /// Compacts every segment (but the one being written) whose live fraction (live
    /// bytes over the bytes it can hold records in) is below `max_live_fraction` when
    /// called, emptiest first: see [`Store::reclaim_one`].
    pub async fn reclaim(&self, max_live_fraction: f64) -> Result<ReclaimReport, StoreError> {
        let mut report = ReclaimReport::default();
        for segment in self.reclaimable(max_live_fraction)? {
            let step = self.compact(segment).await?;
            report.bytes_moved += step.bytes_moved;
            report.segments_freed += u32::from(step.freed);
        }
        Ok(report)
    }

    /// Compacts the emptiest segment (but the one being written) whose live fraction is
    /// below `max_live_fraction`: its live records and still-needed deletes are
    /// rewritten at the head, durably, and only then is its header erased (durably)
    /// and the segment made free. `None` if no segment qualifies. A store with no free
    /// segment left can still reclaim segments holding nothing live.
    pub async fn reclaim_one(
        &self,
        max_live_fraction: f64,
    ) -> Result<Option<ReclaimStep>, StoreError> {
        match self.reclaimable(max_live_fraction)?.first() {
            Some(&segment) => Ok(Some(self.compact(segment).await?)),
            None => Ok(None),
        }
    }

    /// The segments below `max_live_fraction` live, emptiest first.
    fn reclaimable(&self, max_live_fraction: f64) -> Result<Vec<u32>, StoreError> {
        let s = self.state.borrow();
        s.check_writable()?;
        // Measured against the whole record area: a segment sealed early (every open
        // starts a fresh one) wastes its unwritten tail too.
        let area = f64::from(s.max_record_len());
        let mut candidates: Vec<(u32, u32)> = s
            .segments
            .iter()
            .enumerate()
            .filter(|(n, g)| {
                g.base_seq.is_some()
                    && s.head != Some(*n as u32)
                    && f64::from(g.live) / area < max_live_fraction
            })
            .map(|(n, g)| (n as u32, g.live))
            .collect();
        candidates.sort_unstable_by_key(|&(_, live)| live);
        Ok(candidates.into_iter().map(|(n, _)| n).collect())
    }

    /// Rewrites a segment's live records at the head, then frees it.
    async fn compact(&self, segment: u32) -> Result<ReclaimStep, StoreError> {
        let bytes_moved = self.evacuate(segment).await?;
        let freed = self.erase_segment(segment).await?;
        Ok(ReclaimStep {
            segment,
            bytes_moved,
            freed,
        })
    }

    /// Rewrites a segment's live records and needed deletes at the head.
    async fn evacuate(&self, segment: u32) -> Result<u64, StoreError> {
        let (live, tombstones): (Vec<(Key, Location)>, Vec<Tombstone>) = {
            let s = self.state.borrow();
            let live = s
                .index
                .iter()
                .filter(|(_, at)| at.segment == segment)
                .collect();
            let needed = s.tombstones[segment as usize]
                .iter()
                .filter(|t| s.tombstone_needed(t))
                .copied()
                .collect();
            (live, needed)
        };
        let mut answers = Vec::with_capacity(live.len() + tombstones.len());
        let mut permits = Vec::new();
        let mut window = 0;
        let mut moved = 0;
        for (key, at) in live {
            // A record that no longer verifies cannot be moved; it is left to repair
            // (the shard stays indexed until then, so gets keep reporting it).
            let Ok(Some(shard)) = self.get(key).await else {
                continue;
            };
            // Moves go in windows of half the queue budget, each waited for before the
            // next, so reclaim never holds more room than puts can spare.
            let bytes = commit::buffer_len(shard.len()) as u64;
            if window + bytes > QUEUED_BYTES / 2 {
                await_all(&mut answers).await?;
                permits.clear();
                window = 0;
            }
            window += bytes;
            moved += shard.len() as u64;
            permits.push(self.room_for(shard.len()).await?);
            answers.push(self.submit(self.move_op(key, at, &shard)).await?);
        }
        for t in tombstones {
            let op = Op::Delete {
                key: t.key,
                of: DeleteOf::Carried {
                    segment: t.segment,
                    life: t.life,
                },
            };
            answers.push(self.submit(op).await?);
        }
        await_all(&mut answers).await?;
        Ok(moved)
    }

    /// Reclaim's copy of the record of `key` at `at` (holding `shard`) to the head.
    fn move_op(&self, key: Key, at: Location, shard: &[u8]) -> Op {
        Op::Put {
            key,
            tag: at.tag,
            record: Some(commit::record_buffer(&self.device, shard)),
            data_len: shard.len(),
            moves: Some(at),
        }
    }

    /// Durably erases a segment's header, then frees it, if nothing live is left in it
    /// (a record that no longer verifies stays until repair replaces it); whether it
    /// was freed.
    async fn erase_segment(&self, segment: u32) -> Result<bool, StoreError> {
        let pos = {
            let s = self.state.borrow();
            if s.segments[segment as usize].live > 0 {
                return Ok(false);
            }
            s.offset(segment, 0)
        };
        let mut zero = self.device.buffer(BLOCK as usize);
        zero.as_bytes_mut().fill(0);
        let zero = Rc::new(zero);
        let written = match self.device.write(zero, pos).await {
            Ok(()) => self.device.sync().await.map_err(|e| ("fdatasync", e)),
            Err(e) => Err(("write", e)),
        };
        let mut s = self.state.borrow_mut();
        if let Err((op, cause)) = written {
            return Err(s.poison(op, cause));
        }
        s.free_segment(segment);
        Ok(true)
    }

    /// The encoding of shard `name` if it is stored (and not known to be damaged): the
    /// dedup question, answered from the index without a read.
    ///
    /// The chunk counts as touched now: garbage collection leaves it alone for its
    /// grace period. A shard being deleted by garbage collection counts as absent (the
    /// writer then stores it anew).
    pub fn has(&self, name: ShardName) -> Option<EncodingTag> {
        self.touches.borrow_mut().touch(&name.chunk, Instant::now());
        if self.doomed.borrow().contains(&name) {
            return None;
        }
        self.state.borrow().index.get(&name).map(|at| at.tag)
    }

    /// Sets how long each generation of recent touches covers: garbage collection's
    /// grace period must be at most twice this for its deletes to be allowed.
    pub fn set_touch_window(&self, window: std::time::Duration) {
        self.touches.borrow_mut().set_window(window, Instant::now());
    }

    /// Garbage collection's delete: deletes each of `names` that is stored and whose
    /// chunk was not touched (stored, or asked about with `has`) within `age`, durably.
    ///
    /// Race-free against writers: the choice is made at once (no await between the
    /// touch check and naming the exact records), a `has` or `put` that touches the
    /// chunk before that is seen, and one after it finds the shard doomed (`has` says
    /// absent, `put` writes a new record, which the delete does not name and so does not
    /// remove).
    pub async fn delete_untouched(
        &self,
        names: &[ShardName],
        age: std::time::Duration,
    ) -> Result<UntouchedDelete, StoreError> {
        let mut outcome = UntouchedDelete::default();
        let mut chosen = Vec::new();
        {
            let s = self.state.borrow();
            s.check_writable()?;
            let now = Instant::now();
            let mut touches = self.touches.borrow_mut();
            let mut doomed = self.doomed.borrow_mut();
            for name in names {
                let Some(at) = s.index.get(name) else {
                    continue;
                };
                if touches.maybe_touched_within(&name.chunk, age, now) {
                    outcome.touched += 1;
                    continue;
                }
                if doomed.insert(*name) {
                    let of = DeleteOf::Exact {
                        segment: at.segment,
                        offset: at.offset,
                        life: s.life_of(&at),
                    };
                    chosen.push((*name, of, u64::from(at.len)));
                }
            }
        }
        // However this ends, the names stop being doomed.
        let _release = Release(&self.doomed, chosen.iter().map(|(n, ..)| *n).collect());
        let mut answers = Vec::with_capacity(chosen.len());
        for (key, of, _) in &chosen {
            answers.push(self.submit(Op::Delete { key: *key, of: *of }).await?);
        }
        await_all(&mut answers).await?;
        for (name, _, bytes) in &chosen {
            if !self.state.borrow().index.contains_key(name) {
                outcome.deleted += 1;
                outcome.bytes += bytes;
            }
        }
        Ok(outcome)
    }

    /// Reads and verifies a shard; `None` if it is not stored. A record that fails
    /// verification is an error naming it, never bytes.
    pub async fn get(&self, name: ShardName) -> Result<Option<ReadResult>, StoreError> {
        match self.get_once(name).await {
            // Reclaim may have moved the record while it was read: look again once.
            Err(StoreError::Corrupt {
                segment, offset, ..
            }) if self
                .state
                .borrow()
                .index
                .get(&name)
                .is_some_and(|at| (at.segment, at.offset) != (segment, offset)) =>
            {
                self.get_once(name).await
            }
            other => other,
        }
    }

    async fn get_once(&self, key: ShardName) -> Result<Option<ReadResult>, StoreError> {
        let (at, pos, path) = {
            let s = self.state.borrow();
            let Some(at) = s.index.get(&key) else {
                return Ok(None);
            };
            (at, s.offset(at.segment, at.offset), s.path.clone())
        };
        let record = self
            .device
            .read(pos, at.len as usize)
            .await
            .map_err(io_err("reading", &path))?;
        let corrupt = |reason: String| StoreError::Corrupt {
            name: key,
            segment: at.segment,
            offset: at.offset,
            reason,
        };
        let (start, len, _) = verify_put(&record, &key, &at).map_err(corrupt)?;
        Ok(ReadResult::slice(&record, start, len))
    }

    /// Up to `limit` stored shards named above `after` (all with `None`), ascending by
    /// name, each with the bytes its record takes: garbage collection's sweep pages
    /// through a store with it.
    pub fn scan(&self, after: Option<ShardName>, limit: usize) -> Vec<(ShardName, u64)> {
        let s = self.state.borrow();
        s.index
            .iter_after(after.as_ref())
            .take(limit)
            .map(|(key, at)| (key, u64::from(at.len)))
            .collect()
    }

    /// Every stored shard whose chunk falls in placement group `pg` of `2^pg_bits`
    /// (the same mapping as `hive_codec::ClusterMap::pg_of`).
    pub fn list_pg(&self, pg_bits: u8, pg: PgId) -> Vec<ShardName> {
        let s = self.state.borrow();
        let mut keys: Vec<Key> = s
            .index
            .iter()
            .map(|(key, _)| key)
            .filter(|name| pg_of(&name.chunk, pg_bits) == pg.get())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// The digest of the chunks this store holds shard `index` of class (k, m) of, for
    /// each group in `groups` (placement group of `2^pg_bits`, as
    /// `hive_codec::ClusterMap::pg_of` maps them): one pass over the index.
    pub fn digests(&self, pg_bits: u8, groups: &[GroupKey]) -> Vec<ChunkSetDigest> {
        let wanted: std::collections::HashMap<GroupKey, usize> =
            groups.iter().enumerate().map(|(n, g)| (*g, n)).collect();
        let mut digests = vec![ChunkSetDigest::default(); groups.len()];
        let s = self.state.borrow();
        for (key, _) in s.index.iter() {
            if let Some(&n) = wanted.get(&GroupKey::of(&key, pg_bits)) {
                digests[n].add(&key.chunk);
            }
        }
        digests
    }

    /// Up to `limit` chunks above `after` (in ascending id order) that this store holds
    /// shard `group.index` of, class (`group.k`, `group.m`), in placement group
    /// `group.pg` of `2^pg_bits`.
    pub fn list_group(
        &self,
        pg_bits: u8,
        group: GroupKey,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Vec<ChunkId> {
        let s = self.state.borrow();
        let mut chunks: Vec<ChunkId> = s
            .index
            .iter()
            .filter(|(key, _)| {
                GroupKey::of(key, pg_bits) == group && after.is_none_or(|a| key.chunk > a)
            })
            .map(|(key, _)| key.chunk)
            .collect();
        chunks.sort_unstable();
        chunks.truncate(limit);
        chunks
    }

    /// Drops a shard found damaged, durably, so that neither `has` nor a census counts
    /// it and repair writes it again; `false` if the index no longer points at the
    /// damaged record (it was replaced or deleted meanwhile).
    pub async fn drop_damaged(&self, damaged: &Damaged) -> Result<bool, StoreError> {
        let target = {
            let s = self.state.borrow();
            match s.index.get(&damaged.name) {
                Some(at) if (at.segment, at.offset) == (damaged.segment, damaged.offset) => {
                    Some((at.segment, at.offset, s.life_of(&at)))
                }
                _ => None,
            }
        };
        let Some((segment, offset, life)) = target else {
            return Ok(false);
        };
        self.append(Op::Delete {
            key: damaged.name,
            of: DeleteOf::Exact {
                segment,
                offset,
                life,
            },
        })
        .await?;
        Ok(true)
    }

    /// The storage classes (k, m) this store holds shards of, with their counts.
    pub fn classes(&self) -> Vec<((u8, u8), u64)> {
        let s = self.state.borrow();
        s.classes
            .iter()
            .map(|(class, n)| (*class, n.shards))
            .collect()
    }

    /// Space accounting.
    pub fn stats(&self) -> Stats {
        let s = self.state.borrow();
        let capacity = u64::from(s.sb.segment_count) * u64::from(s.sb.segment_size);
        // A segment in use takes its header's block, its records, and the summary
        // that is or will be written at its end.
        let used: u64 = s
            .segments
            .iter()
            .filter(|g| g.base_seq.is_some())
            .map(|g| u64::from(g.used) + State::summary_bytes(g.records as usize))
            .sum();
        let live: u64 = s.segments.iter().map(|g| u64::from(g.live)).sum();
        Stats {
            capacity,
            used,
            live,
            garbage: used.saturating_sub(live),
            free: capacity.saturating_sub(used),
            shards: s.index.len() as u64,
            stream: s
                .classes
                .iter()
                .map(|((k, m), class)| class.payload * u64::from(*k) / u64::from(k + m))
                .sum(),
            commits: s.commits,
            reads: self.device.reads(),
            index_bytes: s.index.heap_bytes(),
        }
    }

    /// The armed faults of this store's device.
    #[cfg(feature = "faults")]
    pub fn faults(&self) -> &crate::faults::Faults {
        &self.device.faults
    }

    /// Simulates a power cut: everything written since the last sync is undone (needs
    /// `faults().track_unsynced()` armed before the writes). Reopen the store after it.
    #[cfg(feature = "faults")]
    pub async fn power_cut(&self) -> io::Result<()> {
        self.device.faults.power_cut(self.device.file()).await
    }

    /// Flips bit `bit` of the byte at `offset` into shard `name`'s record.
    #[cfg(feature = "faults")]
    pub async fn flip_stored_bit(&self, name: ShardName, offset: u64, bit: u8) -> io::Result<()> {
        let pos = {
            let s = self.state.borrow();
            let at = s.index.get(&name).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "no such shard in the store")
            })?;
            s.offset(at.segment, at.offset) + offset
        };
        self.device
            .faults
            .flip_bit(self.device.file(), pos, bit)
            .await
    }

    /// Waits for queued appends to finish and closes the device.
    pub async fn close(mut self) -> Result<(), StoreError> {
        self.queue = None;
        if let Some(writer) = self.writer.take() {
            writer.await;
        }
        let path = self.state.borrow().path.clone();
        match Rc::try_unwrap(self.device) {
            Ok(device) => device.close().await.map_err(io_err("closing", &path)),
            Err(_) => Ok(()),
        }
    }
}

/// Waits for every queued append's answer; the first failure wins.
async fn await_all(
    answers: &mut Vec<flume::Receiver<Result<(), StoreError>>>,
) -> Result<(), StoreError> {
    for answer in answers.drain(..) {
        answer
            .recv_async()
            .await
            .map_err(|_| StoreError::Closed)??;
    }
    Ok(())
}

/// Checks a put record read from the index's location: header intact, written where it
/// says and when the index says, holding the right key, and its shard intact. Returns
/// where the shard lies in the record and its encoding.
pub(crate) fn verify_put(
    record: &[u8],
    key: &Key,
    at: &Location,
) -> Result<(usize, usize, EncodingTag), String> {
    let header = RecordHeader::decode(record).map_err(|e| format!("record header: {e}"))?;
    if (header.segment, header.offset) != (at.segment, at.offset) {
        return Err(format!(
            "record was written for segment {} offset {} (misdirected write)",
            header.segment, header.offset
        ));
    }
    if header.kind != RecordKind::Put || header.record_len() != at.len {
        return Err("found another record where this one was written (lost write)".to_string());
    }
    if header.name != *key {
        return Err("record holds another shard".to_string());
    }
    let len = header.data_len as usize;
    let data = record
        .get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len)
        .ok_or("record shorter than its shard")?;
    let shard = ShardRef::parse(data).map_err(|e| format!("shard: {e}"))?;
    if shard.header.name() != *key {
        return Err("shard header names another shard".to_string());
    }
    Ok((RECORD_HEADER_LEN, len, shard.header.encoding()))
}

fn write_at(file: &mut File, pos: u64, bytes: &[u8], path: &Path) -> Result<(), StoreError> {
    file.seek(SeekFrom::Start(pos))
        .and_then(|_| file.write_all(bytes))
        .map_err(io_err("writing", path))
}

pub(crate) fn read_superblock(path: &Path) -> Result<Superblock, StoreError> {
    let mut file = File::open(path).map_err(io_err("opening", path))?;
    let mut blocks = vec![0u8; 2 * BLOCK as usize];
    let mut filled = 0;
    while filled < blocks.len() {
        match file
            .read(&mut blocks[filled..])
            .map_err(io_err("reading", path))?
        {
            0 => break,
            n => filled += n,
        }
    }
    let first = Superblock::decode(&blocks[..BLOCK as usize]);
    let second = Superblock::decode(&blocks[BLOCK as usize..]);
    first.or(second).map_err(|reason| StoreError::NotAStore {
        path: path.to_path_buf(),
        reason,
    })
}

fn random_id() -> [u8; 16] {
    // RandomState is seeded from the operating system's randomness.
    let mut id = [0u8; 16];
    for half in id.chunks_exact_mut(8) {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(u64::from(std::process::id()));
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    id
}

/// Removes names from the doomed set when dropped.
struct Release<'a>(&'a RefCell<std::collections::HashSet<Key>>, Vec<Key>);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let mut doomed = self.0.borrow_mut();
        for name in &self.1 {
            doomed.remove(name);
        }
    }
}

#[cfg(test)]
mod races;
