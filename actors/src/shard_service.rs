//! The shard service: network requests to store and fetch shards, answered by a shard
//! actor after the caller is authorised.

use std::sync::Arc;

use bytes::Bytes;
use hive_codec::MAX_PG_BITS;
use hive_nvme::GroupKey;
use hive_wire::ChunkId;
use hive_wire::net::Role;
use hive_wire::net::auth::{Operation, authorise};
use hive_wire::net::message::{self, check_version};
use hive_wire::net::rpc::{Handler, Peer, Refusal, Request, Response, code};
use hive_wire::net::shard_service::{
    DeleteQuery, DeleteReply, DigestQuery, DigestReply, Found, GroupDigest, GroupShards, ListQuery,
    MAX_DELETE_BATCH, MAX_DIGEST_GROUPS, MAX_LIST_PAGE, MAX_SCAN_PAGE, OP_DELETE, OP_DIGESTS,
    OP_GET, OP_HAS, OP_HINT, OP_LIST, OP_PUT, OP_SCAN, PutOptions, ScanQuery, ShardKey,
    ShardService, encode_scan,
};

use crate::metrics::ShardMetrics;
use crate::shard_actor::ActorError;
use crate::shards::Shards;

/// A request handler that serves the shard service from a node's stores, counting
/// every request in `metrics`.
pub fn shard_service(actor: Shards, metrics: ShardMetrics) -> Handler {
    Arc::new(move |peer: Peer, request: Request| {
        let (actor, metrics) = (actor.clone(), metrics.clone());
        Box::pin(async move {
            let started = std::time::Instant::now();
            let (op, bytes_in) = (op_name(request.op), request.body.len() as u64);
            let result = handle(&actor, &peer, request).await;
            let (outcome, bytes) = match &result {
                Ok(response) => ("ok", bytes_in + response.body.len() as u64),
                Err(refusal) => (outcome_name(refusal.code), 0),
            };
            metrics.observe(op, outcome, started.elapsed(), bytes);
            result
        })
    })
}

fn op_name(op: u16) -> &'static str {
    match op {
        OP_PUT => "put",
        OP_GET => "get",
        OP_HAS => "has",
        OP_HINT => "hint",
        OP_DIGESTS => "digests",
        OP_LIST => "list",
        OP_DELETE => "delete",
        OP_SCAN => "scan",
        _ => "unknown",
    }
}

fn outcome_name(code: u16) -> &'static str {
    match code {
        code::FORBIDDEN => "forbidden",
        code::UNSUPPORTED => "unsupported",
        code::BAD_REQUEST => "bad_request",
        code::REVOKED => "revoked",
        code::UNAVAILABLE => "unavailable",
        code::DAMAGED => "damaged",
        code::FULL => "full",
        _ => "internal",
    }
}

fn refuse(err: ActorError) -> Refusal {
    match err {
        ActorError::Store(hive_nvme::StoreError::InvalidShard(e)) => {
            Refusal::new(code::BAD_REQUEST, format!("not a valid shard: {e}"))
        }
        ActorError::Store(e @ hive_nvme::StoreError::Corrupt { .. }) => {
            Refusal::new(code::DAMAGED, e.to_string())
        }
        ActorError::Store(
            e @ (hive_nvme::StoreError::StoreFull { .. } | hive_nvme::StoreError::Reserved { .. }),
        ) => Refusal::new(code::FULL, e.to_string()),
        other => Refusal::new(code::INTERNAL, other.to_string()),
    }
}

fn bad(e: impl std::fmt::Display) -> Refusal {
    Refusal::new(code::BAD_REQUEST, e.to_string())
}

fn group_key(g: &GroupShards) -> GroupKey {
    GroupKey {
        pg: g.pg,
        k: g.k,
        m: g.m,
        index: g.index,
    }
}

fn check_pg_bits(pg_bits: u8) -> Result<(), Refusal> {
    if pg_bits > MAX_PG_BITS {
        return Err(bad(format!(
            "pg_bits {pg_bits} is above the maximum {MAX_PG_BITS}"
        )));
    }
    Ok(())
}

async fn handle(actor: &Shards, peer: &Peer, request: Request) -> Result<Response, Refusal> {
    check_version::<ShardService>(&request)?;
    match request.op {
        OP_DIGESTS | OP_LIST | OP_SCAN => return census(actor, peer, request).await,
        OP_DELETE => return delete(actor, peer, request).await,
        _ => authorise(peer, Operation::ShardIo)?,
    }
    let key = || -> Result<ShardKey, Refusal> {
        message::decode("ShardKey", &request.message)
            .map_err(|e| Refusal::new(code::BAD_REQUEST, e.to_string()))
    };
    match request.op {
        OP_PUT => {
            // Repair (from a node) restores what was stored already: it may use the
            // room kept for reservations, like a write into a reserved range.
            let options: PutOptions = if request.message.is_empty() {
                PutOptions::default()
            } else {
                message::decode("PutOptions", &request.message).map_err(bad)?
            };
            let from_node = peer.identity.is_some_and(|i| i.role == Role::Node);
            actor
                .put_as(request.body.clone(), options.reserved || from_node)
                .await
                .map_err(refuse)?;
            Ok(Response::default())
        }
        OP_GET => {
            let found = actor.get(key()?.name()).await.map_err(refuse)?;
            Ok(Response {
                message: message::encode(&Found {
                    present: found.is_some(),
                    tag: 0,
                }),
                body: found.unwrap_or_else(Bytes::new),
            })
        }
        OP_HAS => {
            let tag = actor.has(key()?.name()).await.map_err(refuse)?;
            Ok(Response {
                message: message::encode(&Found {
                    present: tag.is_some(),
                    tag: tag.map_or(0, |t| t.0),
                }),
                body: Bytes::new(),
            })
        }
        OP_HINT => {
            actor.hint(key()?.name());
            Ok(Response::default())
        }
        op => Err(Refusal::new(
            code::BAD_REQUEST,
            format!("unknown shard operation {op}"),
        )),
    }
}

/// Deletes: node-to-node work (garbage collection runs on a node).
async fn delete(actor: &Shards, peer: &Peer, request: Request) -> Result<Response, Refusal> {
    authorise(peer, Operation::DeleteShards)?;
    let query: DeleteQuery = message::decode("DeleteQuery", &request.message).map_err(bad)?;
    if query.shards.len() > MAX_DELETE_BATCH {
        return Err(bad(format!(
            "{} shards named, at most {MAX_DELETE_BATCH} per request",
            query.shards.len()
        )));
    }
    let names = query.shards.iter().map(ShardKey::name).collect();
    let age = std::time::Duration::from_millis(query.untouched_for_ms);
    let done = actor.delete_untouched(names, age).await.map_err(refuse)?;
    // Both counts are at most MAX_DELETE_BATCH per store.
    let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(Response {
        message: message::encode(&DeleteReply {
            deleted: count(done.deleted),
            touched: count(done.touched),
            bytes: done.bytes,
        }),
        body: Bytes::new(),
    })
}

/// The census operations and the scan: node-to-node work (administrators may look).
async fn census(actor: &Shards, peer: &Peer, request: Request) -> Result<Response, Refusal> {
    authorise(peer, Operation::NodeInternal)?;
    match request.op {
        OP_DIGESTS => {
            let query: DigestQuery =
                message::decode("DigestQuery", &request.message).map_err(bad)?;
            check_pg_bits(query.pg_bits)?;
            if query.groups.len() > MAX_DIGEST_GROUPS {
                return Err(bad(format!(
                    "{} groups asked, at most {MAX_DIGEST_GROUPS} per request",
                    query.groups.len()
                )));
            }
            let groups = query.groups.iter().map(group_key).collect();
            let digests = actor
                .digests(query.pg_bits, groups)
                .await
                .map_err(refuse)?
                .into_iter()
                .map(|d| GroupDigest {
                    count: d.count,
                    sum: d.sum,
                    xor: d.xor,
                })
                .collect();
            Ok(Response {
                message: message::encode(&DigestReply { digests }),
                body: Bytes::new(),
            })
        }
        OP_SCAN => {
            let query: ScanQuery = message::decode("ScanQuery", &request.message).map_err(bad)?;
            let limit = query.limit.min(MAX_SCAN_PAGE) as usize;
            let after = query.after.as_ref().map(ShardKey::name);
            let entries = actor.scan(after, limit).await.map_err(refuse)?;
            Ok(Response {
                message: Bytes::new(),
                body: Bytes::from(encode_scan(&entries)),
            })
        }
        _ => {
            let query: ListQuery = message::decode("ListQuery", &request.message).map_err(bad)?;
            check_pg_bits(query.pg_bits)?;
            let limit = query.limit.min(MAX_LIST_PAGE) as usize;
            let chunks = actor
                .list(
                    query.pg_bits,
                    group_key(&query.group),
                    query.after.map(ChunkId),
                    limit,
                )
                .await
                .map_err(refuse)?;
            let mut body = Vec::with_capacity(chunks.len() * ChunkId::LEN);
            for chunk in &chunks {
                body.extend_from_slice(chunk.as_bytes());
            }
            Ok(Response {
                message: Bytes::new(),
                body: Bytes::from(body),
            })
        }
    }
}
