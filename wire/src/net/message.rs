//! Message sets: the typed messages of one service, encoded with rkyv and validated
//! (bytecheck) before any field is read. Each set has a protocol id and a version; a
//! request for another protocol or version is refused with a message saying which.

use bytes::Bytes;
use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use super::rpc::{Refusal, Request, code};

/// A service's message set.
pub trait MessageSet {
    /// Its id on the wire.
    const PROTOCOL: u16;
    /// The version this build speaks.
    const VERSION: u16;
    /// Its name, for errors.
    const NAME: &'static str;
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} message: {reason}")]
pub struct MessageError {
    /// What was being decoded.
    pub what: &'static str,
    /// What bytecheck or rkyv said.
    pub reason: String,
}

/// Encodes a message.
pub fn encode<T>(value: &T) -> Bytes
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    let bytes = rkyv::to_bytes::<rancor::Error>(value)
        .expect("invariant: serialising an in-memory message cannot fail");
    Bytes::from(bytes.into_vec())
}

/// Validates and decodes a message from untrusted bytes.
pub fn decode<T>(what: &'static str, bytes: &[u8]) -> Result<T, MessageError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, rkyv::rancor::Strategy<rkyv::de::Pool, rancor::Error>>,
{
    // rkyv reads in place, so the bytes must be aligned: copy them into a buffer that is.
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|e| MessageError {
        what,
        reason: e.to_string(),
    })
}

/// Checks that a request is for message set `M` at the version this build speaks.
pub fn check_version<M: MessageSet>(request: &Request) -> Result<(), Refusal> {
    if request.protocol != M::PROTOCOL {
        return Err(Refusal::new(
            code::UNSUPPORTED,
            format!(
                "this endpoint serves {} (protocol {}), not protocol {}",
                M::NAME,
                M::PROTOCOL,
                request.protocol
            ),
        ));
    }
    if request.version != M::VERSION {
        return Err(Refusal::new(
            code::UNSUPPORTED,
            format!(
                "{} version {} is not spoken here (this server speaks version {}); upgrade the older side",
                M::NAME,
                request.version,
                M::VERSION
            ),
        ));
    }
    Ok(())
}

/// A request of message set `M` carrying `message`.
pub fn request<M: MessageSet>(op: u16, message: Bytes, body: Bytes) -> Request {
    Request {
        protocol: M::PROTOCOL,
        version: M::VERSION,
        op,
        message,
        body,
    }
}
