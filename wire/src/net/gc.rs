//! The garbage collection service, on the node that hosts the metadata service: start a
//! round now (`hive gc`), and follow rounds (`hive gc --wait`, `hive status`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use rkyv::{Archive, Deserialize, Serialize};

use super::message::{MessageSet, decode, encode, request};
use super::pki::Identity;
use super::rpc::{Client, Link, RpcError};
use crate::NodeId;

/// The garbage collection message set.
pub struct Gc;

impl MessageSet for Gc {
    const PROTOCOL: u16 = 5;
    /// Version 2 added the bytes the mark's references cover, and of their distinct
    /// chunks, to a round.
    const VERSION: u16 = 2;
    const NAME: &'static str = "garbage collection";
}

/// Starts a round as soon as the one running (if any) ends. Message: [`GcOrder`];
/// answer: [`GcTicket`]. Administrators only.
pub const OP_GC_START: u16 = 1;
/// The rounds: the one running and the last finished. Message: none; answer:
/// [`GcStatus`]. Administrators only.
pub const OP_GC_STATUS: u16 = 2;

/// Deadline of a garbage collection call.
pub const GC_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);
/// Problems one round reports at most (nodes it could not sweep, and why).
pub const MAX_GC_PROBLEMS: usize = 16;

/// What a round does now.
pub mod phase {
    /// Waiting for its turn.
    pub const QUEUED: u8 = 0;
    /// Reading every reference from one metadata snapshot.
    pub const MARKING: u8 = 1;
    /// Paging through the nodes' shards, deleting the unreferenced.
    pub const SWEEPING: u8 = 2;
    /// Finished.
    pub const DONE: u8 = 3;
    /// Stopped by an error (the round's problems say which).
    pub const FAILED: u8 = 4;
}

/// An order to run a round.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcOrder {
    /// Count what would be deleted, delete nothing.
    pub dry_run: bool,
}

/// The round that will carry an order out.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcTicket {
    /// Its number.
    pub round: u64,
}

/// One round's figures, as it goes and once done.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct GcRound {
    /// Its number (from 1, counted since the node started).
    pub round: u64,
    /// Counting only.
    pub dry_run: bool,
    /// One of [`phase`].
    pub phase: u8,
    /// How long it has run (or ran), in milliseconds.
    pub elapsed_ms: u64,
    /// References the mark read (extents and object chunks).
    pub references: u64,
    /// Memory the mark set takes, in bytes.
    pub mark_bytes: u64,
    /// Bytes the references cover: what files and objects hold, as written.
    pub referenced_bytes: u64,
    /// Bytes of the distinct chunks among them (each chunk counted once, at its first
    /// reference; a false positive of the mark leaves one out): what deduplication
    /// left to store.
    pub distinct_bytes: u64,
    /// Nodes to sweep: those up when the sweep began.
    pub nodes: u32,
    /// Nodes swept to the end.
    pub nodes_swept: u32,
    /// How far through the node being swept, in millionths (chunk ids are uniform, so
    /// the sweep's cursor says it).
    pub node_progress_ppm: u32,
    /// Shards the sweep looked at.
    pub scanned_shards: u64,
    /// Their bytes on the stores.
    pub scanned_bytes: u64,
    /// Shards of chunks no reference names: garbage, unless touched within the grace.
    pub garbage_shards: u64,
    /// Their bytes.
    pub garbage_bytes: u64,
    /// Shards deleted.
    pub deleted_shards: u64,
    /// Their bytes (space reclaim then frees).
    pub deleted_bytes: u64,
    /// Garbage shards kept because their chunk was written or deduplicated against
    /// within the grace period (taken by a later round).
    pub kept_touched: u64,
    /// Nodes not swept and why, and what stopped a failed round.
    pub problems: Vec<String>,
}

/// Garbage collection's state on the node that runs it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GcStatus {
    /// The round running or queued.
    pub current: Option<GcRound>,
    /// The last round finished.
    pub last: Option<GcRound>,
    /// The highest round number given out since the node started (a round ordered
    /// with a higher number was lost with a restart).
    pub issued: u64,
    /// Milliseconds since the last round finished.
    pub last_age_ms: u64,
    /// Milliseconds until the next round starts by itself.
    pub next_in_ms: u64,
    /// The grace period, in milliseconds.
    pub grace_ms: u64,
    /// Time between rounds that start by themselves, in milliseconds.
    pub interval_ms: u64,
}

/// A client of the garbage collection service.
pub struct GcClient {
    link: Link,
}

impl GcClient {
    /// Talks to node `node` at `addr` through `client`.
    pub fn new(client: Arc<Client>, addr: SocketAddr, node: NodeId) -> Self {
        Self {
            link: Link::new(client, addr, Identity::node(node)),
        }
    }

    /// Orders a round; the number of the round that carries it out.
    pub async fn start(&self, dry_run: bool) -> Result<u64, RpcError> {
        let message = encode(&GcOrder { dry_run });
        let answer = self
            .link
            .call(
                request::<Gc>(OP_GC_START, message, Bytes::new()),
                GC_DEADLINE,
            )
            .await?;
        decode::<GcTicket>("GcTicket", &answer.message)
            .map(|t| t.round)
            .map_err(|e| RpcError::Connection(e.to_string()))
    }

    /// The rounds.
    pub async fn status(&self) -> Result<GcStatus, RpcError> {
        let answer = self
            .link
            .call(
                request::<Gc>(OP_GC_STATUS, Bytes::new(), Bytes::new()),
                GC_DEADLINE,
            )
            .await?;
        decode("GcStatus", &answer.message).map_err(|e| RpcError::Connection(e.to_string()))
    }
}
