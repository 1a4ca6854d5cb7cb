use hive_wire::ChunkId;

/// Names a chunk: the BLAKE3 hash of its uncompressed bytes.
pub fn chunk_id(chunk: &[u8]) -> ChunkId {
    ChunkId(*blake3::hash(chunk).as_bytes())
}
