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

use hive_codec::Chunker;
use hive_wire::ChunkId;
use tokio::task::JoinSet;

use crate::chunk_io::{ChunkError, ChunkStore};

const MAGIC: &[u8; 4] = b"HVOB";
const HEADER: usize = 20;
const ENTRY: usize = 36;
/// Chunks of one object written or read at once.
pub const OBJECT_PARALLELISM: usize = 8;

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
    let pieces: Vec<&[u8]> = chunker.split(data).collect();
    let mut chunks = Vec::with_capacity(pieces.len());
    for group in pieces.chunks(OBJECT_PARALLELISM) {
        let mut tasks = JoinSet::new();
        for (n, piece) in group.iter().enumerate() {
            let (store, piece) = (store.clone(), piece.to_vec());
            tasks.spawn(async move { (n, store.put(&piece).await, piece.len()) });
        }
        let mut done = Vec::with_capacity(group.len());
        while let Some(joined) = tasks.join_next().await {
            let (n, id, len) = joined.map_err(|e| ObjectError::Task(e.to_string()))?;
            done.push((n, id?, len));
        }
        done.sort_unstable_by_key(|(n, _, _)| *n);
        chunks.extend(done.into_iter().map(|(_, id, len)| {
            (
                id,
                u32::try_from(len).expect("invariant: chunks are at most 16 MiB"),
            )
        }));
    }
    let manifest = Manifest {
        len: data.len() as u64,
        chunks,
    };
    Ok(store.put(&manifest.encode()).await?)
}

/// Reads object `id` whole.
pub async fn get_object(store: &Arc<ChunkStore>, id: ChunkId) -> Result<Vec<u8>, ObjectError> {
    let manifest = Manifest::decode(id, &store.get(id).await?)?;
    let mut out = Vec::with_capacity(usize::try_from(manifest.len).unwrap_or(0));
    for group in manifest.chunks.chunks(OBJECT_PARALLELISM) {
        let mut tasks = JoinSet::new();
        for (n, (chunk, _)) in group.iter().enumerate() {
            let (store, chunk) = (store.clone(), *chunk);
            tasks.spawn(async move { (n, store.get(chunk).await) });
        }
        let mut done = Vec::with_capacity(group.len());
        while let Some(joined) = tasks.join_next().await {
            let (n, data) = joined.map_err(|e| ObjectError::Task(e.to_string()))?;
            done.push((n, data?));
        }
        done.sort_unstable_by_key(|(n, _)| *n);
        for (_, data) in done {
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
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
