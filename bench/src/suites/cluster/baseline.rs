//! The local-disk baselines: the same bytes written to one file with one fdatasync at
//! the end, and read back with O_DIRECT, on the file system the cluster's stores use.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use glommio::io::DmaStreamReaderBuilder;

use crate::suites::store::{on_executor, open_direct};

/// Bytes per write() of the baseline file, as a copy tool would write.
const WRITE_PIECE: usize = 1 << 20;
/// Bytes per O_DIRECT read of the baseline file.
const READ_PIECE: usize = 1 << 20;
/// O_DIRECT reads in flight ahead of the one being consumed: about the 8 chunks
/// `get_object` reads at once.
const READ_AHEAD: usize = 8;

/// Writes `data` to a new file at `path` in 1 MiB pieces and makes it durable with one
/// fdatasync; the time includes the fdatasync.
pub fn write(path: &Path, data: &[u8]) -> Result<Duration> {
    let start = Instant::now();
    let mut file =
        std::fs::File::create_new(path).with_context(|| format!("creating {}", path.display()))?;
    for piece in data.chunks(WRITE_PIECE) {
        file.write_all(piece)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    file.sync_data()
        .with_context(|| format!("fdatasync of {}", path.display()))?;
    Ok(start.elapsed())
}

/// Reads the file at `path` whole with O_DIRECT (through io_uring, as the stores read)
/// and checks it is `len` bytes long; returns the time the reads took.
pub fn read_direct(path: &Path, len: u64) -> Result<Duration> {
    let (elapsed, read) = stream_read(path, None)?;
    ensure!(
        read == len,
        "read {read} bytes of the baseline file, wrote {len}"
    );
    Ok(elapsed)
}

/// Reads the first `len` bytes of the file at `path` with O_DIRECT; returns the time
/// the reads took.
pub fn read_direct_prefix(path: &Path, len: u64) -> Result<Duration> {
    let (elapsed, read) = stream_read(path, Some(len))?;
    ensure!(
        read >= len,
        "{} holds {read} bytes, {len} asked",
        path.display()
    );
    Ok(elapsed)
}

/// Reads the file at `path` from its start with O_DIRECT, to its end or past `limit`
/// bytes; the time the reads took and the bytes read.
fn stream_read(path: &Path, limit: Option<u64>) -> Result<(Duration, u64)> {
    let path = path.to_path_buf();
    on_executor("hive-bench-baseline", move || async move {
        let file = open_direct(&path).await?;
        let start = Instant::now();
        let mut reader = DmaStreamReaderBuilder::new(file)
            .with_buffer_size(READ_PIECE)
            .with_read_ahead(READ_AHEAD)
            .build();
        let mut read = 0u64;
        while limit.is_none_or(|limit| read < limit) {
            let buffer = reader
                .get_buffer_aligned(READ_PIECE as u64)
                .await
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            if buffer.is_empty() {
                break;
            }
            read += buffer.len() as u64;
        }
        let elapsed = start.elapsed();
        reader
            .close()
            .await
            .map_err(|e| anyhow::anyhow!("closing {}: {e}", path.display()))?;
        Ok((elapsed, read))
    })
}
