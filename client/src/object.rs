//! Objects: a byte stream cut into content-defined chunks, named by its manifest.
//!
//! The manifest lists the object's chunks in order and is itself stored as a chunk, so
//! the object id is the manifest's chunk id. Format (little-endian):
//!
//! | bytes | field |
//! | ---: | --- |
//! | 4 | magic `HVOB` |
//! | 2 | version, 1 |
//! | 2 | reserved, 0 |
//! | 8 | object length |
//! | 4 | chunk count n |
//! | 36 × n | per chunk: chunk id (32), length (u32) |

use std::sync::Arc;

use bytes::BufMut;
use hive_codec::Chunker;
use hive_wire::ChunkId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::chunk_io::{ChunkError, ChunkStore};

const MAGIC: &[u8; 4] = b"HVOB";
const HEADER: usize = 20;
const ENTRY: usize = 36;
/// Chunks of one object written or read at once.
pub const OBJECT_PARALLELISM: usize = 8;
/// Bytes of a streamed object read ahead for chunking (at least two maximum chunks are
/// used, so the chunker always finds a final chunk in the window).
pub const STREAM_WINDOW: usize = 16 << 20;

/// Why an object could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// A chunk failed.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// The id does not name an object manifest.
    #[error("{id} is not an object: {reason}")]
    NotAnObject {
        /// The id given.
        id: ChunkId,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A worker task died.
    #[error("object task failed: {0}")]
    Task(String),
    /// Reading the object's source or writing its destination failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An object's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Total length.
    pub len: u64,
    /// Its chunks in order, with their lengths.
    pub chunks: Vec<(ChunkId, u32)>,
}

impl Manifest {
    /// The manifest's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + ENTRY * self.chunks.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        let count = u32::try_from(self.chunks.len()).expect("invariant: under 2^32 chunks");
        out.extend_from_slice(&count.to_le_bytes());
        for (id, len) in &self.chunks {
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        out
    }

    /// Reads a manifest from untrusted bytes.
    pub fn decode(id: ChunkId, bytes: &[u8]) -> Result<Self, ObjectError> {
        let bad = |reason| ObjectError::NotAnObject { id, reason };
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return Err(bad("no manifest magic"));
        }
        if bytes[4..6] != 1u16.to_le_bytes() {
            return Err(bad("unknown manifest version"));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[8..16]);
        let count = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]) as usize;
        if bytes.len() != HEADER + count * ENTRY {
            return Err(bad("manifest length does not match its chunk count"));
        }
        let chunks: Vec<(ChunkId, u32)> = bytes[HEADER..]
            .chunks_exact(ENTRY)
            .map(|e| {
                let mut id = [0u8; 32];
                id.copy_from_slice(&e[..32]);
                (
                    ChunkId(id),
                    u32::from_le_bytes([e[32], e[33], e[34], e[35]]),
                )
            })
            .collect();
        let len = u64::from_le_bytes(len);
        if chunks.iter().map(|(_, l)| u64::from(*l)).sum::<u64>() != len {
            return Err(bad("chunk lengths do not add up to the object length"));
        }
        Ok(Self { len, chunks })
    }
}

/// Stores `data` as an object and returns its id.
pub async fn put_object(
    store: &Arc<ChunkStore>,
    chunker: &Chunker,
    data: &[u8],
) -> Result<ChunkId, ObjectError> {
    Ok(put_object_from(store, chunker, data).await?.0)
}

/// Stores everything `reader` yields as an object and returns its id and manifest (to
/// record the object in the namespace, which makes it a root of garbage collection),
/// holding at most
/// a window of [`STREAM_WINDOW`] bytes (or two maximum chunks, if larger) plus the
/// chunks in flight, whatever the object's size. Chunks are cut exactly as
/// [`Chunker::split`] would cut the whole stream, so streamed and buffered objects
/// deduplicate against each other.
pub async fn put_object_from<R: AsyncRead + Unpin>(
    store: &Arc<ChunkStore>,
    chunker: &Chunker,
    mut reader: R,
) -> Result<(ChunkId, Manifest), ObjectError> {
    let window = STREAM_WINDOW.max(2 * chunker.config().max as usize);
    let mut pending: Vec<u8> = Vec::with_capacity(window);
    let mut in_flight = JoinSet::new();
    let mut chunks: Vec<Option<(ChunkId, u32)>> = Vec::new();
    let mut len = 0u64;
    loop {
        let mut at_end = false;
        while pending.len() < window {
            let room = window - pending.len();
            if reader.read_buf(&mut (&mut pending).limit(room)).await? == 0 {
                at_end = true;
                break;
            }
        }
        let (pieces, covered) = chunker.split_prefix(&pending, at_end);
        for piece in pieces {
            if in_flight.len() == OBJECT_PARALLELISM {
                finish_one(&mut in_flight, &mut chunks).await?;
            }
            let (store, piece, n) = (store.clone(), piece.to_vec(), chunks.len());
            chunks.push(None);
            in_flight.spawn(async move { (n, store.put(&piece).await, piece.len()) });
        }
        pending.drain(..covered);
        len += covered as u64;
        if at_end {
            break;
        }
    }
    while !in_flight.is_empty() {
        finish_one(&mut in_flight, &mut chunks).await?;
    }
    let manifest = Manifest {
        len,
        chunks: chunks
            .into_iter()
            .map(|c| c.expect("invariant: every chunk put has finished"))
            .collect(),
    };
    let id = store.put(&manifest.encode()).await?;
    Ok((id, manifest))
}

type PutResult = (usize, Result<ChunkId, ChunkError>, usize);

/// Waits for one chunk put and records its id in its place.
async fn finish_one(
    in_flight: &mut JoinSet<PutResult>,
    chunks: &mut [Option<(ChunkId, u32)>],
) -> Result<(), ObjectError> {
    let Some(joined) = in_flight.join_next().await else {
        return Ok(());
    };
    let (n, id, len) = joined.map_err(|e| ObjectError::Task(e.to_string()))?;
    let len = u32::try_from(len).expect("invariant: chunks are at most 16 MiB");
    chunks[n] = Some((id?, len));
    Ok(())
}

/// Reads object `id` whole.
pub async fn get_object(store: &Arc<ChunkStore>, id: ChunkId) -> Result<Vec<u8>, ObjectError> {
    let mut out = Vec::new();
    get_object_to(store, id, &mut out).await?;
    Ok(out)
}

/// Reads object `id` into `writer`, in order, with up to [`OBJECT_PARALLELISM`] chunks
/// fetched ahead; returns its length. On an error, what was written is a prefix of the
/// object.
pub async fn get_object_to<W: AsyncWrite + Unpin>(
    store: &Arc<ChunkStore>,
    id: ChunkId,
    writer: &mut W,
) -> Result<u64, ObjectError> {
    let manifest = Manifest::decode(id, &store.get(id).await?)?;
    let mut ahead = std::collections::VecDeque::with_capacity(OBJECT_PARALLELISM);
    let mut next = manifest.chunks.iter();
    loop {
        while ahead.len() < OBJECT_PARALLELISM
            && let Some((chunk, _)) = next.next()
        {
            let (store, chunk) = (store.clone(), *chunk);
            ahead.push_back(tokio::spawn(async move { store.get(chunk).await }));
        }
        let Some(task) = ahead.pop_front() else { break };
        let data = task.await.map_err(|e| ObjectError::Task(e.to_string()))??;
        writer.write_all(&data).await?;
    }
    writer.flush().await?;
    Ok(manifest.len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_and_lies_are_refused() {
        let m = Manifest {
            len: 30,
            chunks: vec![(ChunkId([1; 32]), 10), (ChunkId([2; 32]), 20)],
        };
        let id = ChunkId([9; 32]);
        assert_eq!(Manifest::decode(id, &m.encode()).expect("valid"), m);
        let mut lying = m.encode();
        lying[8] = 31;
        assert!(Manifest::decode(id, &lying).is_err());
        assert!(Manifest::decode(id, b"just some chunk").is_err());
        assert!(Manifest::decode(id, &m.encode()[..25]).is_err());
    }
}
