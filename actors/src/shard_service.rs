//! The shard service: network requests to store and fetch shards, answered by a shard
//! actor after the caller is authorised.

use std::sync::Arc;

use bytes::Bytes;
use hive_wire::net::auth::{Operation, authorise};
use hive_wire::net::message::{self, check_version};
use hive_wire::net::rpc::{Handler, Peer, Refusal, Request, Response, code};
use hive_wire::net::shard_service::{Found, OP_GET, OP_HAS, OP_PUT, ShardKey, ShardService};

use crate::shard_actor::ActorError;
use crate::shards::Shards;

/// A request handler that serves the shard service from a node's stores.
pub fn shard_service(actor: Shards) -> Handler {
    Arc::new(move |peer: Peer, request: Request| {
        let actor = actor.clone();
        Box::pin(async move { handle(&actor, &peer, request).await })
    })
}

fn refuse(err: ActorError) -> Refusal {
    match err {
        ActorError::Store(hive_nvme::StoreError::InvalidShard(e)) => {
            Refusal::new(code::BAD_REQUEST, format!("not a valid shard: {e}"))
        }
        ActorError::Store(e @ hive_nvme::StoreError::Corrupt { .. }) => {
            Refusal::new(code::DAMAGED, e.to_string())
        }
        other => Refusal::new(code::INTERNAL, other.to_string()),
    }
}

async fn handle(actor: &Shards, peer: &Peer, request: Request) -> Result<Response, Refusal> {
    check_version::<ShardService>(&request)?;
    authorise(peer, Operation::ShardIo)?;
    let key = || -> Result<ShardKey, Refusal> {
        message::decode("ShardKey", &request.message)
            .map_err(|e| Refusal::new(code::BAD_REQUEST, e.to_string()))
    };
    match request.op {
        OP_PUT => {
            actor.put(request.body.clone()).await.map_err(refuse)?;
            Ok(Response::default())
        }
        OP_GET => {
            let found = actor.get(key()?.name()).await.map_err(refuse)?;
            Ok(Response {
                message: message::encode(&Found {
                    present: found.is_some(),
                }),
                body: found.unwrap_or_else(Bytes::new),
            })
        }
        OP_HAS => {
            let present = actor.has(key()?.name()).await.map_err(refuse)?;
            Ok(Response {
                message: message::encode(&Found { present }),
                body: Bytes::new(),
            })
        }
        op => Err(Refusal::new(
            code::BAD_REQUEST,
            format!("unknown shard operation {op}"),
        )),
    }
}
