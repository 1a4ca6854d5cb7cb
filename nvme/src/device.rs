//! The block device or file under a store: O_DIRECT reads and writes through glommio
//! (io_uring), plus the fault hooks the tests use.

use std::io;
use std::path::Path;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

#[cfg(feature = "faults")]
use crate::faults::Faults;

/// One open device, used only by the executor that opened it.
pub(crate) struct Device {
    file: DmaFile,
    /// Reads issued since open.
    reads: std::cell::Cell<u64>,
    #[cfg(feature = "faults")]
    pub(crate) faults: Rc<Faults>,
}

fn io_error(err: glommio::GlommioError<()>) -> io::Error {
    err.into()
}

impl Device {
    /// Opens `path` for direct I/O. The caller must have checked that the first block of
    /// the device holds data (see `Store::open` on glommio's iopoll probe).
    pub(crate) async fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(io_error)?;
        Ok(Self {
            file,
            reads: std::cell::Cell::new(0),
            #[cfg(feature = "faults")]
            faults: Rc::new(Faults::default()),
        })
    }

    /// A buffer suitable for direct I/O. Its contents are unspecified: callers set every
    /// byte they write (zeroing a whole 1 MiB buffer first cost a fifth of the append
    /// throughput).
    pub(crate) fn buffer(&self, len: usize) -> DmaBuffer {
        self.file.alloc_dma_buffer(len)
    }

    /// Writes all of `buf` at `pos`; a short write is an error.
    pub(crate) async fn write(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<()> {
        #[cfg(feature = "faults")]
        if let Some(result) = self.faults.intercept_write(&self.file, &buf, pos).await {
            return result;
        }
        let len = buf.len();
        let written = self.file.write_rc_at(buf, pos).await.map_err(io_error)?;
        if written != len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write at offset {pos}: {written} of {len} bytes"),
            ));
        }
        Ok(())
    }

    /// Reads `len` bytes at `pos`, in one read of the blocks that hold them (records
    /// lie at any 16-byte offset); a short read is an error.
    pub(crate) async fn read(&self, pos: u64, len: usize) -> io::Result<ReadResult> {
        self.reads.set(self.reads.get() + 1);
        let read = self.file.read_at(pos, len).await.map_err(io_error)?;
        if read.len() != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short read at offset {pos}: {} of {len} bytes", read.len()),
            ));
        }
        Ok(read)
    }

    /// Reads issued since open.
    pub(crate) fn reads(&self) -> u64 {
        self.reads.get()
    }

    /// Makes every completed write durable.
    pub(crate) async fn sync(&self) -> io::Result<()> {
        #[cfg(feature = "faults")]
        if let Some(result) = self.faults.intercept_sync() {
            return result;
        }
        self.file.fdatasync().await.map_err(io_error)
    }

    /// Closes the file.
    pub(crate) async fn close(self) -> io::Result<()> {
        self.file.close().await.map_err(io_error)
    }

    #[cfg(feature = "faults")]
    pub(crate) fn file(&self) -> &DmaFile {
        &self.file
    }
}
