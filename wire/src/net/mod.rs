//! The network layer (feature `net`): the cluster CA and identities, mutual-TLS QUIC
//! endpoints, framing and a request/response RPC on QUIC streams.

pub mod auth;
pub mod control;
pub mod enroll;
pub mod frame;
pub mod gc;
pub mod message;
pub mod meta;
pub mod pki;
pub mod rpc;
pub mod shard_service;
pub mod tls;
pub mod token;

pub use frame::{FrameError, MAX_FRAME_BODY, MAX_FRAME_HEADER};
pub use pki::{ClusterCa, Fingerprint, Identity, PkiError, Role, Validity, identity_of};
pub use rpc::{
    Client, Connection, Handler, Link, Peer, Refusal, Request, Response, RpcError, Server,
};
pub use rustls::pki_types as rustls_pki_types;
pub use tls::{Credentials, Revocations, TlsError};
pub use token::{JoinToken, TokenError, TokenKey, TokenLedger};
