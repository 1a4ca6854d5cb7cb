//! The read side of a mounted volume: a file's bytes from its inline data and its
//! extents' chunks (through the chunk cache, with read-ahead of the next chunk), with
//! this mount's uncommitted writes laid over them.

use std::sync::Arc;

use bytes::Bytes;
use hive_wire::ChunkId;
use hive_wire::net::meta::MetaOp;

use super::classes::read_in;
use super::volume::{Content, FileState, FsError, Result, SYSTEM, Volume, now_nanos};

/// Access-time records a mount sends at once.
pub const ACCESS_RECORDS: usize = 16;
/// How old an access time relatime refreshes on a read even with no change since.
const RELATIME_AGE: i64 = 24 * 3600 * 1_000_000_000;

impl Volume {
    /// Reads up to `size` bytes of `ino` at `offset`: committed content with this
    /// mount's uncommitted writes over it. Starts fetching the next chunk (read-ahead).
    ///
    /// The chunks are fetched without the file's lock, so reads and writes of the file
    /// go on meanwhile. A commit in that time moves buffered bytes into the stored
    /// content: laying the (now emptied) buffer over the older content would return
    /// bytes older than a write that had completed. So the file's version is checked
    /// again under the lock, and the range read again, under it, if it moved.
    pub async fn read(self: &Arc<Self>, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let state = self.state_or_new(ino);
        let end = |content: &Content, file: &FileState| content.attr.size.max(file.dirty.end());
        let (mut content, ends, version) = {
            let mut file = state.lock().await;
            let content = self.content(ino, &mut file).await?;
            let ends = end(&content, &file);
            (content, ends, file.version)
        };
        let (mut out, next) = self.range(ino, &content, offset, size, ends).await?;
        let mut file = state.lock().await;
        if file.version != version {
            content = self.content(ino, &mut file).await?;
            let ends = end(&content, &file);
            (out, _) = self.range(ino, &content, offset, size, ends).await?;
        }
        file.dirty.overlay(offset, &mut out);
        self.note_access(ino, &mut file, &content);
        if file.handles == 0 {
            self.forget_if_idle(ino, &file);
        }
        drop(file);
        if let Some(next) = next {
            self.read_ahead(next);
        }
        Ok(out)
    }

    /// Records a read of `ino` if relatime asks for one: the access time is not later
    /// than the last change (this mount's unsaved writes included), or is a day old.
    /// The record is sent in the background, at most [`ACCESS_RECORDS`] at once (past
    /// that a read records nothing and the next read asks again): a read never waits
    /// for a metadata change.
    fn note_access(self: &Arc<Self>, ino: u64, file: &mut FileState, content: &Content) {
        let now = now_nanos();
        let attr = &content.attr;
        let changed = attr.mtime.max(attr.ctime).max(file.written_at.unwrap_or(0));
        let due = attr.atime <= changed || now.saturating_sub(attr.atime) >= RELATIME_AGE;
        if !self.access_times || !due {
            return;
        }
        let Ok(permit) = self.accesses.clone().try_acquire_owned() else {
            return;
        };
        if let Some(held) = file.content.as_mut() {
            held.attr.atime = now;
        }
        let volume = self.clone();
        tokio::spawn(async move {
            let op = MetaOp::Accessed { ino, atime: now };
            // An access time is advisory: a record that fails is not retried, and the
            // next read after a change sends another.
            let _ = volume.apply(SYSTEM, op).await;
            drop(permit);
        });
    }

    /// Up to `size` bytes of `content` at `offset` in a file that ends at `end`, and
    /// the chunk that follows the last one used.
    async fn range(
        &self,
        ino: u64,
        content: &Content,
        offset: u64,
        size: u32,
        end: u64,
    ) -> Result<(Vec<u8>, Option<ChunkId>)> {
        if offset >= end {
            return Ok((Vec::new(), None));
        }
        let len = u64::from(size).min(end - offset);
        self.assemble(ino, content, offset, len).await
    }

    /// `len` bytes of `content` from `offset` (holes and bytes past the extents read as
    /// zeros), and the chunk that follows the last one used.
    pub(super) async fn assemble(
        &self,
        ino: u64,
        content: &Content,
        offset: u64,
        len: u64,
    ) -> Result<(Vec<u8>, Option<ChunkId>)> {
        let mut out = vec![0u8; usize::try_from(len).unwrap_or(0)];
        let stop = offset + len;
        copy_into(&mut out, offset, 0, &content.inline);
        let first = content
            .extents
            .partition_point(|e| e.offset + u64::from(e.len) <= offset);
        let mut last_used = None;
        for (i, extent) in content.extents.iter().enumerate().skip(first) {
            if extent.offset >= stop {
                break;
            }
            let chunk = self.chunk(ChunkId(extent.chunk)).await?;
            let from = usize::try_from(extent.chunk_offset).unwrap_or(usize::MAX);
            let to = from.saturating_add(extent.len as usize);
            let piece = chunk.get(from..to).ok_or_else(|| {
                FsError::Io(format!(
                    "extent at {} of inode {ino} runs past its chunk's {} bytes",
                    extent.offset,
                    chunk.len()
                ))
            })?;
            copy_into(&mut out, offset, extent.offset, piece);
            last_used = Some(i);
        }
        let next = last_used
            .and_then(|i| content.extents.get(i + 1))
            .map(|e| ChunkId(e.chunk));
        Ok((out, next))
    }

    /// Chunk `id`, from the cache or the cluster. One the classes in use do not hold
    /// is looked for again if the volume's classes changed (a re-encode began or
    /// ended since the mount learned them).
    async fn chunk(&self, id: ChunkId) -> Result<Bytes> {
        match self.cached_chunk(id).await {
            Err(e) => match self.learn_classes().await {
                Ok(true) => self.cached_chunk(id).await,
                _ => Err(e),
            },
            found => found,
        }
    }

    async fn cached_chunk(&self, id: ChunkId) -> Result<Bytes> {
        let (chunks, classes) = (self.chunks.clone(), self.classes());
        self.cache
            .get_or_fetch(id, move || async move {
                read_in(&chunks, classes, id).await.map(Bytes::from)
            })
            .await
            .map_err(|e| FsError::Io(e.to_string()))
    }

    fn read_ahead(&self, id: ChunkId) {
        if self.cache.contains(&id) {
            return;
        }
        let (chunks, classes) = (self.chunks.clone(), self.classes());
        let cache = self.cache.clone();
        tokio::spawn(async move {
            // A failed read-ahead costs nothing: the read itself will ask again.
            let _ = cache
                .get_or_fetch(id, move || async move {
                    read_in(&chunks, classes, id).await.map(Bytes::from)
                })
                .await;
        });
    }
}

/// Copies the part of `piece` (which starts at file offset `at`) that falls in `out`
/// (which starts at file offset `offset`).
fn copy_into(out: &mut [u8], offset: u64, at: u64, piece: &[u8]) {
    let out_end = offset + out.len() as u64;
    let piece_end = at + piece.len() as u64;
    let from = offset.max(at);
    let to = out_end.min(piece_end);
    if from >= to {
        return;
    }
    let n = usize::try_from(to - from).unwrap_or(0);
    let dst = usize::try_from(from - offset).unwrap_or(0);
    let src = usize::try_from(from - at).unwrap_or(0);
    out[dst..dst + n].copy_from_slice(&piece[src..src + n]);
}
