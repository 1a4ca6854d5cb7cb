//! The metadata group's messages over the project's QUIC transport (mutual TLS): the
//! client side openraft sends through, and the service that hands what arrives to the
//! local replica. Only node identities may speak it.

use std::sync::{Arc, OnceLock};

use bincode::Options;
use bytes::Bytes;
use hive_wire::NodeId as WireNodeId;
use hive_wire::net::Client;
use hive_wire::net::message::{check_version, request};
use hive_wire::net::meta::{MetaRaft, OP_APPEND, OP_PROBE, OP_SNAPSHOT, OP_VOTE};
use hive_wire::net::pki::{Identity, Role};
use hive_wire::net::rpc::{Handler, Link, Peer, Refusal, Request, Response, RpcError, code};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Instant;

use super::{GroupTypes, codec};
use crate::group::store::LogStore;

type NodeId = u64;

/// Where openraft's messages leave from: this node's endpoint, known once the node's
/// server is bound (until then every peer is unreachable). Also what the leader's
/// lease is made of: when each follower last accepted its leadership.
#[derive(Clone, Default)]
pub struct Peers {
    client: Arc<OnceLock<Arc<Client>>>,
    acks: Acks,
}

/// For each replica, the leadership (vote) it last accepted in an append (a heartbeat
/// too) and when that append was sent: it promised then not to vote for anyone else
/// for a lease from when it received it, which is later.
#[derive(Clone, Default)]
pub struct Acks(Arc<std::sync::Mutex<std::collections::HashMap<NodeId, Accepted>>>);

/// A leadership a replica accepted, and when the append that carried it was sent.
type Accepted = (Vote<NodeId>, Instant);

impl Acks {
    fn record(&self, target: NodeId, vote: Vote<NodeId>, sent: Instant) {
        let mut acks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let newer = acks
            .get(&target)
            .is_none_or(|(v, at)| *v != vote || *at < sent);
        if newer {
            acks.insert(target, (vote, sent));
        }
    }

    /// When replica `target` last accepted leadership `vote` (the send time of that
    /// append), if it did.
    pub fn accepted(&self, target: NodeId, vote: &Vote<NodeId>) -> Option<Instant> {
        let acks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        acks.get(&target)
            .filter(|(v, _)| v == vote)
            .map(|(_, at)| *at)
    }
}

impl Peers {
    /// When each replica last accepted a leadership.
    pub fn acks(&self) -> &Acks {
        &self.acks
    }

    /// Sends through `client` from now on.
    pub fn connect_through(&self, client: Arc<Client>) {
        let _ = self.client.set(client);
    }

    /// A link to replica `id` at `addr`, if the endpoint is ready and `addr` parses.
    pub(crate) fn link(&self, id: NodeId, addr: &str) -> Result<Link, String> {
        let client = self
            .client
            .get()
            .ok_or_else(|| "this node's endpoint is not ready yet".to_string())?;
        let addr = addr
            .parse()
            .map_err(|e| format!("replica {id}'s address {addr:?}: {e}"))?;
        Ok(Link::new(
            client.clone(),
            addr,
            Identity::node(WireNodeId(id)),
        ))
    }
}

impl RaftNetworkFactory<GroupTypes> for Peers {
    type Network = PeerLink;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerLink {
        PeerLink {
            target,
            addr: node.addr.clone(),
            link: None,
            peers: self.clone(),
        }
    }
}

/// The link to one replica, made at its first message once this node's endpoint is
/// ready. Openraft makes its links when it starts leading, which a replica that
/// restarts with a vote of its own does before the node's server is bound: a link
/// made then, and kept, left the leader unable to reach anyone until another took
/// over (a test saw 15 s of a group without a usable leader after a restart).
pub struct PeerLink {
    target: NodeId,
    addr: String,
    link: Option<Link>,
    peers: Peers,
}

/// Why sending failed, as openraft takes it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SendError(String);

impl PeerLink {
    /// Sends `op` with `message`; the peer's answer: its result, or its Raft error.
    async fn send<Q: Serialize, A: DeserializeOwned, E: DeserializeOwned + std::error::Error>(
        &mut self,
        op: u16,
        message: &Q,
        option: &RPCOption,
    ) -> Result<A, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        let link = match self.link.take() {
            Some(link) => link,
            None => self
                .peers
                .link(self.target, &self.addr)
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&SendError(e))))?,
        };
        let link = &*self.link.insert(link);
        let body = codec()
            .serialize(message)
            .map_err(|e| RPCError::Network(NetworkError::new(&SendError(e.to_string()))))?;
        let asked = request::<MetaRaft>(op, Bytes::new(), Bytes::from(body));
        // Openraft cancels the call at its hard limit; an unanswered call lets the
        // link give up a connection gone silent (a replica that restarted).
        let answer = link
            .call_within(asked, option.hard_ttl())
            .await
            .map_err(|e| match e {
                RpcError::Remote(_) => RPCError::Network(NetworkError::new(&e)),
                e => RPCError::Unreachable(Unreachable::new(&e)),
            })?;
        let result: Result<A, RaftError<NodeId, E>> = codec()
            .deserialize(&answer.body)
            .map_err(|e| RPCError::Network(NetworkError::new(&SendError(e.to_string()))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<GroupTypes> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<GroupTypes>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let (vote, sent) = (rpc.vote, Instant::now());
        let answer = self.send(OP_APPEND, &rpc, &option).await?;
        if !matches!(answer, AppendEntriesResponse::HigherVote(_)) {
            self.peers.acks.record(self.target, vote, sent);
        }
        Ok(answer)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<GroupTypes>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(OP_SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(OP_VOTE, &rpc, &option).await
    }
}

/// Asks replica `link` whether it holds no replicated state.
pub(crate) async fn probe(link: &Link) -> Result<bool, RpcError> {
    let asked = request::<MetaRaft>(OP_PROBE, Bytes::new(), Bytes::new());
    let answer = link.call(asked, super::GROUP_PROBE_DEADLINE).await?;
    codec()
        .deserialize(&answer.body)
        .map_err(|e| RpcError::Connection(format!("a probe answer: {e}")))
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    codec()
        .deserialize(body)
        .map_err(|e| Refusal::new(code::BAD_REQUEST, format!("a replication message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response, Refusal> {
    let body = codec()
        .serialize(value)
        .map_err(|e| Refusal::new(code::INTERNAL, e.to_string()))?;
    Ok(Response {
        message: Bytes::new(),
        body: Bytes::from(body),
    })
}

/// Serves the group's messages to the local replica `raft`.
pub fn group_service(raft: Raft<GroupTypes>, log: LogStore) -> Handler {
    Arc::new(move |peer: Peer, request: Request| {
        let (raft, log) = (raft.clone(), log.clone());
        Box::pin(async move {
            check_version::<MetaRaft>(&request)?;
            if !matches!(
                peer.identity,
                Some(Identity {
                    role: Role::Node,
                    ..
                })
            ) {
                return Err(Refusal::new(
                    code::FORBIDDEN,
                    "metadata replication is between nodes only",
                ));
            }
            match request.op {
                OP_APPEND => encode(&raft.append_entries(decode(&request.body)?).await),
                OP_VOTE => encode(&raft.vote(decode(&request.body)?).await),
                OP_SNAPSHOT => encode(&raft.install_snapshot(decode(&request.body)?).await),
                OP_PROBE => {
                    let blank = tokio::task::spawn_blocking(move || log.is_blank())
                        .await
                        .map_err(|e| Refusal::new(code::INTERNAL, e.to_string()))?
                        .map_err(|e| Refusal::new(code::INTERNAL, e.to_string()))?;
                    encode(&blank)
                }
                op => Err(Refusal::new(
                    code::BAD_REQUEST,
                    format!("unknown replication operation {op}"),
                )),
            }
        })
    })
}
