//! Background compaction: a file whose extent map has become fragmented (many small
//! writes, each its own extent and chunk) is read whole and written again as
//! content-defined chunks — most of which already exist, so dedup sends little — and
//! its extent map is replaced in one metadata operation that succeeds only if the file
//! has not changed since it was read (its ctime). The bytes never change, only how
//! they are cut.

use std::sync::Arc;

use bytes::Bytes;
use hive_wire::net::meta::MetaOp;

use super::volume::{FsError, Result, SYSTEM, Volume, errno};

/// A file is compacted once it has at least this many extents...
pub const COMPACT_MIN_EXTENTS: usize = 16;
/// ...and they average fewer bytes than this (the chunker's smallest chunk).
pub const COMPACT_BELOW: u64 = 256 << 10;
/// Largest file compacted: it is read whole into memory.
pub const COMPACT_MAX_FILE: u64 = 64 << 20;
/// Compactions one mount runs at once; a file closed while they are all busy waits for
/// its next close.
pub const COMPACTIONS: usize = 1;

/// Whether a file of `size` bytes in `extents` extents is worth compacting.
pub fn fragmented(size: u64, extents: usize) -> bool {
    extents >= COMPACT_MIN_EXTENTS
        && size <= COMPACT_MAX_FILE
        && size / (extents as u64) < COMPACT_BELOW
}

impl Volume {
    /// Compacts `ino` in the background if it is fragmented and a compaction slot is
    /// free.
    pub(super) fn compact_later(self: &Arc<Self>, ino: u64) {
        let Ok(permit) = self.compactions.clone().try_acquire_owned() else {
            return;
        };
        let volume = self.clone();
        tokio::spawn(async move {
            if let Err(e) = volume.compact(ino).await {
                eprintln!("hive mount: compacting inode {ino} failed (nothing changed): {e:?}");
            }
            drop(permit);
        });
    }

    /// Compacts `ino` if it is fragmented; whether it did.
    pub async fn compact(&self, ino: u64) -> Result<bool> {
        let content = self.fetch_content(ino).await?;
        let size = content.attr.size;
        if !content.inline.is_empty() || !fragmented(size, content.extents.len()) {
            return Ok(false);
        }
        let (data, _) = self.assemble(ino, &content, 0, size).await?;
        let class = self.classes().write;
        let extents = self
            .put_ranges(&[(0, Bytes::from(data))], false, class)
            .await?;
        let op = MetaOp::ReplaceExtents {
            ino,
            ctime: content.attr.ctime,
            extents,
            class: (class.k(), class.m()),
        };
        match self.apply(SYSTEM, op).await {
            Ok(_) => {}
            // Changed meanwhile: the next close tries again.
            Err(FsError::Errno(errno::EAGAIN)) => return Ok(false),
            // The volume writes another class now: so does the next try.
            Err(FsError::Errno(errno::ESTALE)) => {
                self.learn_classes().await?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        if let Some(state) = self.state(ino) {
            state.lock().await.changed();
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_many_small_extents_are_fragmented() {
        assert!(!fragmented(1 << 20, 4), "few extents");
        assert!(fragmented(1 << 20, 64), "64 pieces of 16 KiB");
        assert!(!fragmented(64 << 20, 16), "16 pieces of 4 MiB");
        assert!(!fragmented(1 << 30, 100_000), "too large to read whole");
    }
}
