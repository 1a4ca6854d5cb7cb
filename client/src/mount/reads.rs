//! The read side of a mounted volume: a file's bytes from its inline data and its
//! extents' chunks (through the chunk cache, with read-ahead of the next chunk), with
//! this mount's uncommitted writes laid over them.

use bytes::Bytes;
use hive_wire::ChunkId;

use super::volume::{Content, FsError, Result, Volume};

impl Volume {
    /// Reads up to `size` bytes of `ino` at `offset`: committed content with this
    /// mount's uncommitted writes over it. Starts fetching the next chunk (read-ahead).
    pub async fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let state = self.state_or_new(ino);
        let (content, end) = {
            let mut file = state.lock().await;
            let content = self.content(ino, &mut file).await?;
            let end = content.attr.size.max(file.dirty.end());
            (content, end)
        };
        if offset >= end {
            return Ok(Vec::new());
        }
        let len = u64::from(size).min(end - offset);
        let (mut out, next) = self.assemble(ino, &content, offset, len).await?;
        if let Some(next) = next {
            self.read_ahead(next);
        }
        let file = state.lock().await;
        file.dirty.overlay(offset, &mut out);
        if file.handles == 0 {
            self.forget_if_idle(ino, &file);
        }
        Ok(out)
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

    async fn chunk(&self, id: ChunkId) -> Result<Bytes> {
        let chunks = self.chunks.clone();
        self.cache
            .get_or_fetch(
                id,
                move || async move { chunks.get(id).await.map(Bytes::from) },
            )
            .await
            .map_err(|e| FsError::Io(e.to_string()))
    }

    fn read_ahead(&self, id: ChunkId) {
        if self.cache.contains(&id) {
            return;
        }
        let chunks = self.chunks.clone();
        let cache = self.cache.clone();
        tokio::spawn(async move {
            // A failed read-ahead costs nothing: the read itself will ask again.
            let _ = cache
                .get_or_fetch(
                    id,
                    move || async move { chunks.get(id).await.map(Bytes::from) },
                )
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
