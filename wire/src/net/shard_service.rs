//! The shard service's messages: what clients and nodes send a node to store and fetch
//! shards, and what holders of a placement group compare in a census. The shard itself
//! travels as the frame body, never inside a message.

use rkyv::{Archive, Deserialize, Serialize};

use super::message::MessageSet;
use crate::{ChunkId, ShardIndex, ShardName};

/// The shard service message set.
pub struct ShardService;

impl MessageSet for ShardService {
    const PROTOCOL: u16 = 2;
    /// Version 2 added the scheme (k, m) to shard names. Version 3 added the encoding
    /// tag to [`Found`], the census operations `OP_DIGESTS` and `OP_LIST`, and
    /// `OP_HINT`. Version 4 added `OP_DELETE` and `OP_SCAN`.
    const VERSION: u16 = 4;
    const NAME: &'static str = "shard service";
}

/// Store the shard in the body (durable when answered). Message: none, or
/// [`PutOptions`]. A full node refuses it with `code::FULL`.
pub const OP_PUT: u16 = 1;

/// How a shard is put.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PutOptions {
    /// The shard is part of a write into a reserved range (fallocate): it may use the
    /// room the node keeps for reservations.
    pub reserved: bool,
}
/// Fetch a shard. Message: [`ShardKey`]; answer: [`Found`], the shard in the body.
pub const OP_GET: u16 = 2;
/// Whether a shard is stored (the dedup question). Message: [`ShardKey`]; answer:
/// [`Found`], no body.
pub const OP_HAS: u16 = 3;
/// The digests of the chunks the node holds a given shard of, for several placement
/// groups. Message: [`DigestQuery`]; answer: [`DigestReply`]. Nodes and administrators.
pub const OP_DIGESTS: u16 = 4;
/// The chunks the node holds a given shard of in one placement group, in ascending id
/// order, a page at a time. Message: [`ListQuery`]; answer: none, the ids in the body
/// (32 bytes each). Nodes and administrators.
pub const OP_LIST: u16 = 5;

/// A writer could not store this shard after its chunk was acknowledged: the node
/// asked (the primary of the shard's placement group) takes a census soon. Message:
/// [`ShardKey`]; answer: none. A hint only: the census finds the shard anyway.
pub const OP_HINT: u16 = 6;

/// Garbage collection's delete: delete each named shard whose chunk the node has not
/// stored or been asked about (the dedup question) for the age the query names, durably
/// when answered. Message: [`DeleteQuery`]; answer: [`DeleteReply`]. Nodes only
/// (garbage collection runs on a node): a client cannot delete.
pub const OP_DELETE: u16 = 7;

/// The shards a node holds, in name order, a page at a time, each with the bytes its
/// record takes: what garbage collection sweeps. Message: [`ScanQuery`]; answer: none,
/// the entries in the body ([`SCAN_ENTRY_LEN`] bytes each: chunk id, k, m, index, bytes
/// as a little-endian u64). Nodes and administrators.
pub const OP_SCAN: u16 = 8;

/// Entries one [`OP_SCAN`] answer carries at most (344 KiB).
pub const MAX_SCAN_PAGE: u32 = 8192;

/// Bytes of one [`OP_SCAN`] entry.
pub const SCAN_ENTRY_LEN: usize = 32 + 3 + 8;

/// Shards one [`DeleteQuery`] may name (40 bytes each).
pub const MAX_DELETE_BATCH: usize = 1024;

/// Groups one [`DigestQuery`] may name: its answer (24 bytes a group, plus framing)
/// stays well inside a frame header.
pub const MAX_DIGEST_GROUPS: usize = 1024;
/// Chunk ids one [`OP_LIST`] answer carries at most (256 KiB).
pub const MAX_LIST_PAGE: u32 = 8192;

/// Shards to delete: at most [`MAX_DELETE_BATCH`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DeleteQuery {
    /// The shards.
    pub shards: Vec<ShardKey>,
    /// Only shards whose chunk was untouched for this long, in milliseconds of the
    /// node's own clock.
    pub untouched_for_ms: u64,
}

/// What a delete did.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeleteReply {
    /// Shards durably deleted.
    pub deleted: u32,
    /// Shards kept because their chunk may have been touched within the age asked.
    pub touched: u32,
    /// Bytes the deleted shards took on the store.
    pub bytes: u64,
}

/// A page of a node's shards: those named above `after` (from the first with
/// `None`), at most `limit` (capped at [`MAX_SCAN_PAGE`]).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ScanQuery {
    /// The last name of the page before.
    pub after: Option<ShardKey>,
    /// Entries wanted.
    pub limit: u32,
}

/// Lays out [`OP_SCAN`] entries as the answer's body.
pub fn encode_scan(entries: &[(ShardName, u64)]) -> Vec<u8> {
    let mut body = Vec::with_capacity(entries.len() * SCAN_ENTRY_LEN);
    for (name, bytes) in entries {
        body.extend_from_slice(name.chunk.as_bytes());
        body.extend_from_slice(&[name.k, name.m, name.index.get()]);
        body.extend_from_slice(&bytes.to_le_bytes());
    }
    body
}

/// Reads [`OP_SCAN`] entries from an answer's body; `None` if its length is not a whole
/// number of entries.
pub fn decode_scan(body: &[u8]) -> Option<Vec<(ShardName, u64)>> {
    if !body.len().is_multiple_of(SCAN_ENTRY_LEN) {
        return None;
    }
    let entries = body
        .chunks_exact(SCAN_ENTRY_LEN)
        .map(|e| {
            let mut chunk = [0u8; 32];
            chunk.copy_from_slice(&e[..32]);
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&e[35..]);
            let name = ShardName {
                chunk: ChunkId(chunk),
                k: e[32],
                m: e[33],
                index: ShardIndex(e[34]),
            };
            (name, u64::from_le_bytes(bytes))
        })
        .collect();
    Some(entries)
}

/// Names one shard: see [`ShardName`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardKey {
    /// The chunk.
    pub chunk: [u8; 32],
    /// Data shards of the chunk's scheme.
    pub k: u8,
    /// Parity shards of the chunk's scheme.
    pub m: u8,
    /// The shard index.
    pub index: u8,
}

impl ShardKey {
    /// The key of the shard named `name`.
    pub fn new(name: ShardName) -> Self {
        Self {
            chunk: name.chunk.0,
            k: name.k,
            m: name.m,
            index: name.index.get(),
        }
    }

    /// The shard's name.
    pub fn name(&self) -> ShardName {
        ShardName {
            chunk: ChunkId(self.chunk),
            k: self.k,
            m: self.m,
            index: ShardIndex(self.index),
        }
    }
}

/// Whether the shard asked for is stored.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Stored or not.
    pub present: bool,
    /// Its encoding tag (`hive_wire::EncodingTag`) when present: shards of equal tags
    /// decode together.
    pub tag: u32,
}

/// The shards of one placement group that one holder keeps: those of class (k, m)
/// with shard index `index`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupShards {
    /// The placement group.
    pub pg: u32,
    /// Data shards of the class.
    pub k: u8,
    /// Parity shards of the class.
    pub m: u8,
    /// The shard index.
    pub index: u8,
}

/// Asks for the digests of several groups' shards.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DigestQuery {
    /// The map's placement-group bits (a group is the low bits of a chunk id).
    pub pg_bits: u8,
    /// The groups, at most [`MAX_DIGEST_GROUPS`].
    pub groups: Vec<GroupShards>,
}

/// The digest of one group's shards: see `hive_wire::ChunkSetDigest`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupDigest {
    /// Chunks.
    pub count: u64,
    /// Wrapping sum of their hashes.
    pub sum: u64,
    /// XOR of their seeded hashes.
    pub xor: u64,
}

/// The digests, in the order asked.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DigestReply {
    /// One per group asked.
    pub digests: Vec<GroupDigest>,
}

/// Asks for a page of one group's chunk ids.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    /// The map's placement-group bits.
    pub pg_bits: u8,
    /// The group's shards.
    pub group: GroupShards,
    /// Only ids above this one (all ids when `None`).
    pub after: Option<[u8; 32]>,
    /// At most this many ids (capped at [`MAX_LIST_PAGE`]).
    pub limit: u32,
}

/// How long a shard request may take before it counts as failed.
pub const SHARD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a census request (digests or a list page) may take.
pub const CENSUS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// A client of one node's shard service.
pub struct ShardClient {
    link: super::rpc::Link,
}

impl ShardClient {
    /// Talks to node `node` at `addr` through `client`.
    pub fn new(
        client: std::sync::Arc<super::rpc::Client>,
        addr: std::net::SocketAddr,
        node: crate::NodeId,
    ) -> Self {
        Self {
            link: super::rpc::Link::new(client, addr, super::pki::Identity::node(node)),
        }
    }

    /// The node's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.link.addr()
    }

    async fn call(
        &self,
        op: u16,
        message: bytes::Bytes,
        body: bytes::Bytes,
        deadline: std::time::Duration,
    ) -> Result<super::rpc::Response, super::rpc::RpcError> {
        let request = super::message::request::<ShardService>(op, message, body);
        self.link.call(request, deadline).await
    }

    fn decode<T>(what: &'static str, bytes: &[u8]) -> Result<T, super::rpc::RpcError>
    where
        T: Archive,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + Deserialize<T, rkyv::rancor::Strategy<rkyv::de::Pool, rkyv::rancor::Error>>,
    {
        super::message::decode(what, bytes)
            .map_err(|e| super::rpc::RpcError::Connection(e.to_string()))
    }

    /// Stores a shard (durable when this returns).
    pub async fn put(&self, shard: bytes::Bytes) -> Result<(), super::rpc::RpcError> {
        self.call(OP_PUT, bytes::Bytes::new(), shard, SHARD_DEADLINE)
            .await
            .map(|_| ())
    }

    /// Fetches a shard; `None` if the node does not have it.
    pub async fn get(&self, name: ShardName) -> Result<Option<bytes::Bytes>, super::rpc::RpcError> {
        let key = super::message::encode(&ShardKey::new(name));
        let answer = self
            .call(OP_GET, key, bytes::Bytes::new(), SHARD_DEADLINE)
            .await?;
        let found: Found = Self::decode("Found", &answer.message)?;
        Ok(found.present.then_some(answer.body))
    }

    /// The encoding tag of a shard if the node has it.
    pub async fn has(
        &self,
        name: ShardName,
        deadline: std::time::Duration,
    ) -> Result<Option<crate::EncodingTag>, super::rpc::RpcError> {
        let key = super::message::encode(&ShardKey::new(name));
        let answer = self
            .call(OP_HAS, key, bytes::Bytes::new(), deadline)
            .await?;
        let found: Found = Self::decode("Found", &answer.message)?;
        Ok(found.present.then_some(crate::EncodingTag(found.tag)))
    }

    /// Tells the node (the primary of the shard's group) that `name` was not stored.
    pub async fn hint(&self, name: ShardName) -> Result<(), super::rpc::RpcError> {
        let key = super::message::encode(&ShardKey::new(name));
        self.call(OP_HINT, key, bytes::Bytes::new(), CENSUS_DEADLINE)
            .await
            .map(|_| ())
    }

    /// A page of the node's shards above `after` (see [`OP_SCAN`]).
    pub async fn scan(
        &self,
        after: Option<ShardName>,
        limit: u32,
    ) -> Result<Vec<(ShardName, u64)>, super::rpc::RpcError> {
        let query = super::message::encode(&ScanQuery {
            after: after.map(ShardKey::new),
            limit,
        });
        let answer = self
            .call(OP_SCAN, query, bytes::Bytes::new(), CENSUS_DEADLINE)
            .await?;
        decode_scan(&answer.body).ok_or_else(|| {
            super::rpc::RpcError::Connection(format!(
                "a scan answer of {} bytes is not a whole number of {SCAN_ENTRY_LEN}-byte entries",
                answer.body.len()
            ))
        })
    }

    /// Deletes the shards (at most [`MAX_DELETE_BATCH`]) whose chunk the node has not
    /// touched for `untouched_for`, durably (see [`OP_DELETE`]).
    pub async fn delete(
        &self,
        names: &[ShardName],
        untouched_for: std::time::Duration,
    ) -> Result<DeleteReply, super::rpc::RpcError> {
        let query = super::message::encode(&DeleteQuery {
            shards: names.iter().map(|n| ShardKey::new(*n)).collect(),
            untouched_for_ms: u64::try_from(untouched_for.as_millis()).unwrap_or(u64::MAX),
        });
        let answer = self
            .call(OP_DELETE, query, bytes::Bytes::new(), SHARD_DEADLINE)
            .await?;
        Self::decode("DeleteReply", &answer.message)
    }

    /// The digests of `groups` (at most [`MAX_DIGEST_GROUPS`]), in the order asked.
    pub async fn digests(
        &self,
        pg_bits: u8,
        groups: Vec<GroupShards>,
    ) -> Result<Vec<GroupDigest>, super::rpc::RpcError> {
        let asked = groups.len();
        let query = super::message::encode(&DigestQuery { pg_bits, groups });
        let answer = self
            .call(OP_DIGESTS, query, bytes::Bytes::new(), CENSUS_DEADLINE)
            .await?;
        let reply: DigestReply = Self::decode("DigestReply", &answer.message)?;
        if reply.digests.len() != asked {
            return Err(super::rpc::RpcError::Connection(format!(
                "asked for {asked} digests, got {}",
                reply.digests.len()
            )));
        }
        Ok(reply.digests)
    }

    /// A page of a group's chunk ids above `after`, ascending, at most `limit`.
    pub async fn list(
        &self,
        pg_bits: u8,
        group: GroupShards,
        after: Option<crate::ChunkId>,
        limit: u32,
    ) -> Result<Vec<crate::ChunkId>, super::rpc::RpcError> {
        let query = super::message::encode(&ListQuery {
            pg_bits,
            group,
            after: after.map(|c| c.0),
            limit,
        });
        let answer = self
            .call(OP_LIST, query, bytes::Bytes::new(), CENSUS_DEADLINE)
            .await?;
        let ids = answer.body.chunks_exact(crate::ChunkId::LEN);
        if !ids.remainder().is_empty() || ids.len() > limit as usize {
            return Err(super::rpc::RpcError::Connection(format!(
                "a list page of {} bytes is not at most {limit} chunk ids",
                answer.body.len()
            )));
        }
        Ok(ids
            .map(|b| {
                let mut id = [0u8; 32];
                id.copy_from_slice(b);
                crate::ChunkId(id)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_entries_round_trip_and_odd_lengths_are_refused() {
        let entries: Vec<(ShardName, u64)> = (0..5u8)
            .map(|n| {
                let name = ShardName {
                    chunk: ChunkId([n; 32]),
                    k: 4,
                    m: 2,
                    index: ShardIndex(n),
                };
                (name, u64::from(n) << 40 | 4096)
            })
            .collect();
        let body = encode_scan(&entries);
        assert_eq!(body.len(), entries.len() * SCAN_ENTRY_LEN);
        assert!(decode_scan(&body) == Some(entries));
        for cut in [1, SCAN_ENTRY_LEN - 1, SCAN_ENTRY_LEN + 1] {
            assert!(decode_scan(&body[..cut]).is_none(), "{cut} bytes accepted");
        }
        assert_eq!(decode_scan(&[]).map(|e| e.len()), Some(0));
    }
}
