//! Fault hooks (cargo feature `faults`): each is armed by a test, or in a running chaos
//! build of the node by a signal (a failed next write or sync, for hive-chaos), and
//! fires on the next write or sync of the store's device.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile};

/// Pre-images of unsynced writes: (offset, bytes that were there before).
type Undo = Vec<(u64, Vec<u8>)>;

/// Faults armed for the next operations of one store.
#[derive(Default)]
pub struct Faults {
    fail_write: Cell<bool>,
    fail_sync: Cell<bool>,
    tear_write: Cell<Option<u64>>,
    misdirect_write: Cell<Option<u64>>,
    /// When set, the prior contents of every range written since the last sync, so a
    /// power cut can put them back.
    unsynced: RefCell<Option<Undo>>,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure (EIO)"))
}

impl Faults {
    /// The next write fails with EIO and writes nothing.
    pub fn fail_next_write(&self) {
        self.fail_write.set(true);
    }

    /// The next fdatasync fails with EIO.
    pub fn fail_next_sync(&self) {
        self.fail_sync.set(true);
    }

    /// Only the first `blocks` blocks of the next write land; the write then fails as a
    /// crash mid-write would end it.
    pub fn tear_next_write(&self, blocks: u64) {
        self.tear_write.set(Some(blocks));
    }

    /// The next write lands `blocks` blocks further on than asked and reports success.
    pub fn misdirect_next_write(&self, blocks: u64) {
        self.misdirect_write.set(Some(blocks));
    }

    /// Starts remembering what each write overwrites, so [`Faults::power_cut`] can undo
    /// everything not yet synced.
    pub fn track_unsynced(&self) {
        *self.unsynced.borrow_mut() = Some(Vec::new());
    }

    /// Puts back what every write since the last sync overwrote, newest first, as if
    /// power failed before the data reached stable storage. The store must be dropped
    /// and reopened afterwards.
    pub async fn power_cut(&self, file: &DmaFile) -> io::Result<()> {
        let undo = self.unsynced.borrow_mut().as_mut().map(std::mem::take);
        for (pos, old) in undo.unwrap_or_default().into_iter().rev() {
            let mut buf = file.alloc_dma_buffer(old.len());
            buf.as_bytes_mut().copy_from_slice(&old);
            file.write_at(buf, pos).await.map_err(io::Error::from)?;
        }
        file.fdatasync().await.map_err(io::Error::from)
    }

    /// Flips one bit of the device at byte `pos`, bit `bit`, and syncs it.
    pub async fn flip_bit(&self, file: &DmaFile, pos: u64, bit: u8) -> io::Result<()> {
        let block = pos - pos % 4096;
        let old = file
            .read_at_aligned(block, 4096)
            .await
            .map_err(io::Error::from)?;
        let mut buf = file.alloc_dma_buffer(4096);
        buf.as_bytes_mut().copy_from_slice(&old);
        buf.as_bytes_mut()[(pos - block) as usize] ^= 1 << (bit % 8);
        file.write_at(buf, block).await.map_err(io::Error::from)?;
        file.fdatasync().await.map_err(io::Error::from)
    }

    /// Applies an armed write fault, or records the write's pre-image. `None` lets the
    /// write proceed normally.
    pub(crate) async fn intercept_write(
        &self,
        file: &DmaFile,
        buf: &Rc<DmaBuffer>,
        pos: u64,
    ) -> Option<io::Result<()>> {
        if self.fail_write.take() {
            return Some(Err(injected("write")));
        }
        let target = pos + self.misdirect_write.take().unwrap_or(0) * 4096;
        let len = match self.tear_write.take() {
            Some(blocks) => (blocks as usize * 4096).min(buf.len()),
            None => buf.len(),
        };
        self.remember(file, target, len).await;
        if target == pos && len == buf.len() {
            return None;
        }
        let mut partial = file.alloc_dma_buffer(len);
        partial
            .as_bytes_mut()
            .copy_from_slice(&buf.as_bytes()[..len]);
        if let Err(err) = file.write_at(partial, target).await {
            return Some(Err(err.into()));
        }
        Some(if len < buf.len() {
            Err(injected("torn write"))
        } else {
            Ok(())
        })
    }

    async fn remember(&self, file: &DmaFile, pos: u64, len: usize) {
        if self.unsynced.borrow().is_none() || len == 0 {
            return;
        }
        if let Ok(old) = file.read_at_aligned(pos, len).await
            && let Some(undo) = self.unsynced.borrow_mut().as_mut()
        {
            undo.push((pos, old.to_vec()));
        }
    }

    /// Applies an armed sync fault; on a successful sync, forgets the pre-images.
    pub(crate) fn intercept_sync(&self) -> Option<io::Result<()>> {
        if self.fail_sync.take() {
            return Some(Err(injected("fdatasync")));
        }
        if let Some(undo) = self.unsynced.borrow_mut().as_mut() {
            undo.clear();
        }
        None
    }
}
