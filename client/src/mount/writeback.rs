//! The write-back side of a mounted volume: writes collect in the file's buffer
//! ([`Dirty`]) and are committed — cut into chunks, put through the chunk store,
//! recorded as extents (or inline data for a small file) — when the file is flushed,
//! fsynced or closed, or when a buffer fills.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use hive_codec::ErasureScheme;
use hive_wire::limits::{MAX_EXTENTS_PER_COMMIT, MAX_FILE_SIZE, MAX_INLINE};
use hive_wire::net::meta::{ExtentMessage, MetaOp};
use tokio::task::JoinSet;

use super::dirty::Dirty;
use super::volume::{FileState, FsError, Result, SYSTEM, Volume, now_nanos};

/// Bytes a file may hold written but uncommitted before the write that passes it
/// commits them (the write then waits: backpressure).
pub const FILE_BUFFER: u64 = 32 << 20;
/// Bytes all files together may hold uncommitted; past it, a write commits its file.
pub const TOTAL_BUFFER: u64 = 256 << 20;
/// Chunks of one commit being put at once.
pub const COMMIT_PARALLELISM: usize = 8;

impl Volume {
    /// Buffers `data` at `offset`; commits when the file's or the mount's buffer is
    /// full, and at once for a file no one has open (a write-back of mmap pages).
    /// A write that would end past [`MAX_FILE_SIZE`] is EFBIG and buffers nothing.
    pub async fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > MAX_FILE_SIZE)
        {
            return Err(FsError::Errno(crate::errno::EFBIG));
        }
        let state = self.state_or_new(ino);
        let mut file = state.lock().await;
        let before = file.dirty.bytes();
        file.dirty.write(offset, data);
        file.written_at = Some(now_nanos());
        let after = file.dirty.bytes();
        self.account(before, after);
        if file.handles == 0 {
            let result = self.commit(ino, &mut file, true).await;
            self.forget_if_idle(ino, &file);
            return result;
        }
        if after >= FILE_BUFFER || self.buffered.load(Ordering::Relaxed) >= TOTAL_BUFFER {
            self.commit(ino, &mut file, false).await?;
        }
        Ok(())
    }

    fn account(&self, before: u64, after: u64) {
        if after >= before {
            self.buffered.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.buffered.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Commits the buffered bytes of `ino`: all of them, or (`all` false, a full
    /// buffer) all but the tail of the last range past its last content-defined cut,
    /// so a file written in sequence is cut as a whole file would be.
    pub(super) async fn commit(&self, ino: u64, file: &mut FileState, all: bool) -> Result<()> {
        if file.dirty.is_empty() {
            return Ok(());
        }
        let before = file.dirty.bytes();
        let mut ranges = file.dirty.take();
        let result = self.commit_ranges(ino, file, &mut ranges, all).await;
        if result.is_err() {
            // Nothing is lost: the bytes stay buffered for the next attempt.
            file.dirty.restore(ranges);
        }
        file.changed();
        if result.is_ok() && file.dirty.is_empty() {
            file.written_at = None;
        }
        self.account(before, file.dirty.bytes());
        result
    }

    async fn commit_ranges(
        &self,
        ino: u64,
        file: &mut FileState,
        ranges: &mut Vec<(u64, Vec<u8>)>,
        all: bool,
    ) -> Result<()> {
        let content = self.content(ino, file).await?;
        let end = ranges
            .last()
            .map_or(0, |(offset, data)| offset + data.len() as u64);
        if content.extents.is_empty() && content.attr.size.max(end) <= MAX_INLINE {
            // Each range stays in `ranges` until all are written (writing one again
            // after a failure is harmless), so a failure loses none of them.
            for (offset, data) in ranges.iter() {
                let op = MetaOp::WriteInline {
                    ino,
                    offset: *offset,
                    data: data.clone(),
                };
                self.apply(SYSTEM, op).await?;
            }
            ranges.clear();
            return Ok(());
        }
        if !content.inline.is_empty() {
            // The file outgrows inline data: its bytes move into the extents.
            let mut merged = Dirty::default();
            merged.restore(std::mem::take(ranges));
            merged.underlay(0, &content.inline);
            *ranges = merged.take();
        }
        if !all && let Some((offset, data)) = ranges.pop() {
            let (_, covered) = self.chunker.split_prefix(&data, false);
            if covered < data.len() {
                // The tail stays buffered whatever happens to the rest.
                file.dirty
                    .underlay(offset + covered as u64, &data[covered..]);
            }
            if covered > 0 {
                let mut data = data;
                data.truncate(covered);
                ranges.push((offset, data));
            }
        }
        // The buffers become the chunks' bytes without a copy; they come back as they
        // were if the put or the commit fails.
        let owned: Vec<(u64, Bytes)> = std::mem::take(ranges)
            .into_iter()
            .map(|(offset, data)| (offset, Bytes::from(data)))
            .collect();
        if let Err(e) = self.put_and_commit(ino, &owned).await {
            *ranges = owned
                .into_iter()
                .map(|(offset, data)| (offset, Vec::from(data)))
                .collect();
            return Err(e);
        }
        Ok(())
    }

    /// Puts `ranges` and commits their extents. A file with bytes reserved writes into
    /// the room nodes keep for reservations, and each commit draws on its reserve.
    ///
    /// A commit refused as stale (the volume writes another class since the chunks
    /// were stored) learns the volume's classes and stores and commits them again.
    async fn put_and_commit(&self, ino: u64, ranges: &[(u64, Bytes)]) -> Result<()> {
        let mut relearned = false;
        loop {
            let class = self.classes().write;
            let extents = self.put_ranges(ranges, self.reserved(ino), class).await?;
            match self.commit_extents(ino, &extents, class).await {
                Err(FsError::Errno(crate::errno::ESTALE)) if !relearned => {
                    relearned = true;
                    self.learn_classes().await?;
                }
                done => return done,
            }
        }
    }

    /// Commits `extents`, whose chunks are stored in `class`, a batch at a time.
    async fn commit_extents(
        &self,
        ino: u64,
        extents: &[ExtentMessage],
        class: ErasureScheme,
    ) -> Result<()> {
        for batch in extents.chunks(MAX_EXTENTS_PER_COMMIT) {
            let op = MetaOp::CommitExtents {
                ino,
                extents: batch.to_vec(),
                class: (class.k(), class.m()),
            };
            self.apply(SYSTEM, op).await?;
            self.drew(ino, batch.iter().map(|e| u64::from(e.len)).sum());
        }
        Ok(())
    }

    /// Cuts `ranges` into chunks, puts them in `class` (up to [`COMMIT_PARALLELISM`]
    /// at once; `reserved`: as part of a write into a reserved range) and returns
    /// their extents.
    pub(super) async fn put_ranges(
        &self,
        ranges: &[(u64, Bytes)],
        reserved: bool,
        class: ErasureScheme,
    ) -> Result<Vec<ExtentMessage>> {
        let mut pieces = Vec::new();
        for (offset, data) in ranges {
            let mut at = 0usize;
            for chunk in self.chunker.split(data) {
                pieces.push((*offset + at as u64, data.slice(at..at + chunk.len())));
                at += chunk.len();
            }
        }
        let mut extents = Vec::with_capacity(pieces.len());
        let mut running = JoinSet::new();
        let mut pending = pieces.into_iter();
        loop {
            while running.len() < COMMIT_PARALLELISM {
                let Some((offset, bytes)) = pending.next() else {
                    break;
                };
                let chunks = self.chunks.clone();
                let cache = self.cache.clone();
                running.spawn(async move {
                    let id = chunks.put_in(class, &bytes, reserved).await?;
                    // A copy of its own: a slice would keep the whole written range
                    // alive and the cache's bound would not hold.
                    cache.insert(id, Bytes::copy_from_slice(&bytes));
                    Ok::<_, crate::chunk_io::ChunkError>(ExtentMessage {
                        offset,
                        len: u32::try_from(bytes.len())
                            .expect("invariant: chunks are at most the chunker's maximum"),
                        chunk: *id.as_bytes(),
                        chunk_offset: 0,
                    })
                });
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            let extent = done
                .map_err(|e| FsError::Io(format!("chunk put task: {e}")))?
                .map_err(FsError::from)?;
            extents.push(extent);
        }
        extents.sort_by_key(|e| e.offset);
        Ok(extents)
    }
}
