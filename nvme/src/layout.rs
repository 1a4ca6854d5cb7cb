//! Where a store's live shards lie on its device, read offline with ordinary I/O (no
//! executor, no writes): the same replay that opening the store runs, over plain
//! reads. For tools and tests that must find a shard's bytes on disk, to damage them on
//! purpose (the repair tests, `hive-chaos`). Reading a store a node has open is safe;
//! the answer is as of the read.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use hive_wire::ShardName;

use crate::error::StoreError;
use crate::format::{RECORD_HEADER_LEN, RECORD_PROBE_LEN, RecordHeader};
use crate::recovery::replay;
use crate::state::State;
use crate::store::{io_err, read_superblock};

/// One live shard's place on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLocation {
    /// The shard.
    pub name: ShardName,
    /// Byte offset of its record (the record header comes first).
    pub record: u64,
    /// Byte offset of the shard itself (its header, then its payload).
    pub shard: u64,
    /// The shard's length in bytes.
    pub len: u64,
}

/// Every shard the store at `path` would index if it were opened now, in device order.
/// A record the index names whose header no longer decodes (damaged since it was
/// indexed) is left out: where its shard ends is not known.
pub fn shards(path: &Path) -> Result<Vec<ShardLocation>, StoreError> {
    let sb = read_superblock(path)?;
    let file = File::open(path).map_err(io_err("opening", path))?;
    let read = |pos: u64, len: usize| std::future::ready(read_at(&file, pos, len));
    let mut state = State::new(path.to_path_buf(), sb);
    block_on(replay(&mut state, &read))?;
    let mut found = Vec::with_capacity(state.index.len());
    for (name, at) in state.index.iter() {
        let record = state.offset(at.segment, at.offset);
        let header = read_at(&file, record, RECORD_PROBE_LEN).map_err(io_err("reading", path))?;
        let Ok(header) = RecordHeader::decode(&header) else {
            continue;
        };
        found.push(ShardLocation {
            name,
            record,
            shard: record + RECORD_HEADER_LEN as u64,
            len: u64::from(header.data_len),
        });
    }
    found.sort_unstable_by_key(|s| s.record);
    Ok(found)
}

fn read_at(file: &File, pos: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; len];
    file.read_exact_at(&mut buffer, pos)?;
    Ok(buffer)
}

/// Runs a future whose every await is ready at once (the reads above are synchronous).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}
