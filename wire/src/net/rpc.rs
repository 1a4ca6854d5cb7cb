//! Request/response on QUIC streams: one bidirectional stream per request, one frame
//! each way. Every request carries its protocol, version and operation; the server sees
//! the caller's verified identity, checks it is not revoked before every request, and
//! hands the request to its handler.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use rustls::pki_types::CertificateDer;

use super::frame::{FrameError, read_frame, read_lengths, read_parts, write_frame};
use super::pki::{Identity, identity_of};
use super::tls::{Credentials, Revocations, TlsError, client_config, server_config, server_name};

/// UDP socket buffers, both ways: enough for a burst of shards at line rate.
pub const SOCKET_BUFFER: usize = 4 << 20;
/// Concurrent requests (streams) a peer may have open on one connection.
pub const MAX_STREAMS: u32 = 1024;
/// Connections a server keeps open at once; more are refused at the door.
pub const MAX_CONNECTIONS: usize = 4096;
/// Bytes of request frames a server holds for one connection at once; a request that
/// would pass it waits until earlier ones are answered. Together with [`MAX_STREAMS`]
/// this bounds what one peer can make a server buffer.
pub const CONNECTION_BUFFER: usize = 64 << 20;
/// How long a server waits for a request frame to arrive whole.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection with no traffic for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a refusal may take to reach the caller before its connection is closed.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long a stopping server waits for its peers to acknowledge the closing of their
/// connections (a live peer does within milliseconds; a dead one never).
pub const SHUTDOWN_CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Application close code: the peer's certificate was revoked.
const CLOSE_REVOKED: u8 = 2;
/// Bytes of the request envelope before the message: protocol, version, operation.
const ENVELOPE: usize = 6;

/// Refusal codes a server answers with.
pub mod code {
    /// The caller's role may not perform the operation.
    pub const FORBIDDEN: u16 = 1;
    /// The server does not speak the request's protocol version.
    pub const UNSUPPORTED: u16 = 2;
    /// The request could not be understood.
    pub const BAD_REQUEST: u16 = 3;
    /// The caller's certificate was revoked.
    pub const REVOKED: u16 = 4;
    /// The server failed.
    pub const INTERNAL: u16 = 5;
    /// The server is shutting down; try another or try again.
    pub const UNAVAILABLE: u16 = 6;
    /// The stored data asked for failed verification (a damaged shard): ask another
    /// holder, and repair this one.
    pub const DAMAGED: u16 = 7;
    /// The server has no room for it (a full store, or room held for reservations):
    /// the cluster is out of space, not out of nodes.
    pub const FULL: u16 = 8;
}

/// A caller, as the server knows it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Who the caller's certificate says it is (verified against the cluster CA).
    /// Always present on mutual-TLS servers; `None` only on an enrollment server, for
    /// a joiner that has no certificate yet.
    pub identity: Option<Identity>,
    /// The volumes its certificate grants ([`super::pki::ALL_VOLUMES`] for all).
    pub volumes: Arc<[String]>,
    /// Where it connects from.
    pub addr: SocketAddr,
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Which message set (service).
    pub protocol: u16,
    /// That message set's version.
    pub version: u16,
    /// The operation within it.
    pub op: u16,
    /// The message.
    pub message: Bytes,
    /// Bulk bytes (a shard), sent without copies.
    pub body: Bytes,
}

/// One successful response.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// The message.
    pub message: Bytes,
    /// Bulk bytes.
    pub body: Bytes,
}

/// A refused request, as the server states it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct Refusal {
    /// One of [`code`].
    pub code: u16,
    /// What to tell the caller.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code`.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The TLS handshake refused us or the server; names the cause where the protocol
    /// tells it.
    #[error("{0}")]
    Refused(String),
    /// The server answered with a refusal.
    #[error("server refused the request: {0}")]
    Remote(Refusal),
    /// A malformed frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// No answer before the deadline; the request was cancelled.
    #[error("no answer within {0:?}; the request was cancelled")]
    Timeout(Duration),
    /// The connection failed.
    #[error("connection: {0}")]
    Connection(String),
    /// The server knows no such connection: it restarted since the connection was made
    /// (its stateless reset says so), so it processed nothing sent on it.
    #[error("connection reset: the node restarted since it was connected to")]
    Reset,
    /// Setting up an endpoint failed.
    #[error("endpoint: {0}")]
    Endpoint(String),
    /// A TLS configuration problem.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl RpcError {
    /// Whether the server refused for lack of room (`code::FULL`).
    pub fn is_full(&self) -> bool {
        matches!(self, RpcError::Remote(r) if r.code == code::FULL)
    }
}

/// Handles requests: given the caller and the request, the response or a refusal.
pub type Handler = Arc<
    dyn Fn(Peer, Request) -> Pin<Box<dyn Future<Output = Result<Response, Refusal>> + Send>>
        + Send
        + Sync,
>;

/// The QUIC transport settings every HiveFS endpoint uses (the TLS configuration
/// builders in [`super::tls`] apply them).
pub fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(MAX_STREAMS.into());
    t.max_concurrent_uni_streams(0u8.into());
    t.max_idle_timeout(Some(
        IDLE_TIMEOUT
            .try_into()
            .expect("invariant: the idle timeout fits QUIC's varint"),
    ));
    Arc::new(t)
}

/// A quinn endpoint on `addr` with [`SOCKET_BUFFER`]-sized UDP buffers (the benchmark
/// gives bare quinn the same, so only the layers above differ).
pub fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, RpcError> {
    endpoint_with(addr, server, quinn::EndpointConfig::default())
}

/// The key a server signs its stateless resets with, derived from its private key: the
/// same across restarts, so a restarted node resets every connection its old process
/// had, at the first packet, and its peers connect afresh instead of waiting out the
/// idle timeout.
fn reset_key(me: &Credentials) -> Arc<ring::hmac::Key> {
    use rustls::pki_types::PrivatePkcs8KeyDer;
    let der: &PrivatePkcs8KeyDer<'_> = &me.key;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"hive stateless reset key\0");
    context.update(der.secret_pkcs8_der());
    let secret = context.finish();
    Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        secret.as_ref(),
    ))
}

fn endpoint_with(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    config: quinn::EndpointConfig,
) -> Result<quinn::Endpoint, RpcError> {
    let fail = |e: std::io::Error| RpcError::Endpoint(format!("{addr}: {e}"));
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(fail)?;
    socket.set_recv_buffer_size(SOCKET_BUFFER).map_err(fail)?;
    socket.set_send_buffer_size(SOCKET_BUFFER).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| RpcError::Endpoint("no tokio runtime is running".to_string()))?;
    quinn::Endpoint::new(config, server, socket.into(), runtime).map_err(fail)
}

/// A listening endpoint that answers requests with a handler.
pub struct Server {
    endpoint: quinn::Endpoint,
    inflight: Arc<InFlight>,
}

/// Requests being served, and whether the server is draining.
#[derive(Default)]
struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    draining: std::sync::atomic::AtomicBool,
    idle: tokio::sync::Notify,
}

/// Counts one request in flight for as long as it lives.
struct Serving(Arc<InFlight>);

impl Serving {
    fn new(inflight: &Arc<InFlight>) -> Self {
        inflight
            .count
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(inflight.clone())
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

impl Server {
    /// Listens on `addr` with `me`'s certificate, accepting only peers with
    /// certificates chained to `ca` and not in `revocations`.
    pub fn bind(
        addr: SocketAddr,
        ca: &CertificateDer<'static>,
        me: &Credentials,
        revocations: Revocations,
        handler: Handler,
    ) -> Result<Self, RpcError> {
        let config = server_config(ca, me, revocations.clone(), true)?;
        Self::bind_with(addr, config, reset_key(me), revocations, handler)
    }

    /// Listens for enrollment: peers without a certificate are let in (their
    /// [`Peer::identity`] is `None`); a certificate, if presented, is checked as usual.
    /// `me.chain` must end with the CA certificate, which joiners pin by fingerprint.
    pub fn bind_enrollment(
        addr: SocketAddr,
        ca: &CertificateDer<'static>,
        me: &Credentials,
        revocations: Revocations,
        handler: Handler,
    ) -> Result<Self, RpcError> {
        let config = server_config(ca, me, revocations.clone(), false)?;
        Self::bind_with(addr, config, reset_key(me), revocations, handler)
    }

    fn bind_with(
        addr: SocketAddr,
        config: quinn::ServerConfig,
        reset: Arc<ring::hmac::Key>,
        revocations: Revocations,
        handler: Handler,
    ) -> Result<Self, RpcError> {
        let endpoint = endpoint_with(addr, Some(config), quinn::EndpointConfig::new(reset))?;
        let inflight = Arc::new(InFlight::default());
        tokio::spawn(accept_loop(
            endpoint.clone(),
            revocations,
            handler,
            inflight.clone(),
        ));
        Ok(Self { endpoint, inflight })
    }

    /// Drains: refuses new connections and new requests (with `UNAVAILABLE`), waits up
    /// to `grace` for the requests in flight to be answered, then closes.
    pub async fn shutdown(&self, grace: Duration) {
        use std::sync::atomic::Ordering;
        self.inflight.draining.store(true, Ordering::SeqCst);
        self.endpoint.set_server_config(None);
        let drained = tokio::time::timeout(grace, async {
            loop {
                let idle = self.inflight.idle.notified();
                if self.inflight.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        });
        let _ = drained.await;
        self.endpoint.close(0u8.into(), b"server shutting down");
        // A peer that died with a connection open never acknowledges the close: quinn
        // would wait for that connection's idle timeout (a minute). Its close was sent;
        // waiting longer helps no one.
        let _ = tokio::time::timeout(SHUTDOWN_CLOSE_GRACE, self.endpoint.wait_idle()).await;
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .expect("invariant: a bound endpoint has an address")
    }

    /// Presents `me` (a renewed certificate) to new connections from now on, with the
    /// same CA and revocation list; open connections keep theirs.
    pub fn rotate(
        &self,
        ca: &CertificateDer<'static>,
        me: &Credentials,
        revocations: Revocations,
        mandatory: bool,
    ) -> Result<(), RpcError> {
        self.endpoint
            .set_server_config(Some(server_config(ca, me, revocations, mandatory)?));
        Ok(())
    }

    /// Stops accepting and closes every connection.
    pub fn close(&self) {
        self.endpoint.close(0u8.into(), b"server closing");
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    revocations: Revocations,
    handler: Handler,
    inflight: Arc<InFlight>,
) {
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    while let Some(incoming) = endpoint.accept().await {
        let Ok(slot) = open.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let (revocations, handler, inflight) =
            (revocations.clone(), handler.clone(), inflight.clone());
        tokio::spawn(async move {
            let _slot = slot;
            // A failed handshake (a refused certificate) ends here: the client is told
            // by the TLS alert.
            let Ok(connection) = incoming.await else {
                return;
            };
            let (identity, volumes) = peer_identity(&connection);
            let peer = Peer {
                identity,
                volumes: volumes.into(),
                addr: connection.remote_address(),
            };
            let budget = Arc::new(tokio::sync::Semaphore::new(CONNECTION_BUFFER));
            while let Ok((mut send, recv)) = connection.accept_bi().await {
                if inflight.draining.load(std::sync::atomic::Ordering::SeqCst) {
                    let refusal = Refusal::new(code::UNAVAILABLE, "server is shutting down");
                    let _ = write_frame(&mut send, &refusal_bytes(&refusal), Bytes::new()).await;
                    continue;
                }
                let serving = Serving::new(&inflight);
                if let Some(identity) = peer.identity.as_ref()
                    && revocations.is_revoked(identity)
                {
                    let refusal = Refusal::new(
                        code::REVOKED,
                        format!("certificate of {identity} is revoked"),
                    );
                    let mut send = send;
                    let _ = write_frame(&mut send, &refusal_bytes(&refusal), Bytes::new()).await;
                    // Let the refusal reach the caller before the connection goes.
                    let _ = tokio::time::timeout(CLOSE_GRACE, send.stopped()).await;
                    connection.close(CLOSE_REVOKED.into(), b"certificate revoked");
                    return;
                }
                let (peer, handler, budget) = (peer.clone(), handler.clone(), budget.clone());
                tokio::spawn(async move {
                    serve_stream(peer, send, recv, handler, budget).await;
                    drop(serving);
                });
            }
        });
    }
}

/// The identity and volume grants of a connection's client certificate, if any.
fn peer_identity(connection: &quinn::Connection) -> (Option<Identity>, Vec<String>) {
    let certs = connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok());
    let Some(cert) = certs.as_ref().and_then(|c| c.first()) else {
        return (None, Vec::new());
    };
    (
        identity_of(cert).ok(),
        super::pki::volumes_of(cert).unwrap_or_default(),
    )
}

/// Reads a request frame within the connection's buffer budget; the permit is held
/// until the request is answered.
async fn read_request(
    recv: &mut quinn::RecvStream,
    budget: &Arc<tokio::sync::Semaphore>,
) -> Result<(Request, tokio::sync::OwnedSemaphorePermit), Refusal> {
    let bad = |err: FrameError| Refusal::new(code::BAD_REQUEST, err.to_string());
    let (header_len, body_len) = read_lengths(recv).await.map_err(bad)?;
    let bytes = header_len + body_len;
    let permit = budget
        .clone()
        .acquire_many_owned(bytes)
        .await
        .map_err(|_| Refusal::new(code::INTERNAL, "connection closing"))?;
    let (header, body) = read_parts(recv, header_len, body_len).await.map_err(bad)?;
    Ok((parse_request(header, body)?, permit))
}

async fn serve_stream(
    peer: Peer,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    handler: Handler,
    budget: Arc<tokio::sync::Semaphore>,
) {
    let read = tokio::time::timeout(REQUEST_READ_TIMEOUT, read_request(&mut recv, &budget));
    let request = match read.await {
        Ok(result) => result,
        Err(_) => Err(Refusal::new(
            code::BAD_REQUEST,
            "request frame did not arrive in time",
        )),
    };
    let answer = match request {
        Ok((request, _permit)) => {
            // The caller dropping its request (deadline passed, future dropped) stops
            // our side of the stream: the handler is dropped with it.
            tokio::select! {
                answer = handler(peer, request) => answer,
                _ = send.stopped() => return,
            }
        }
        Err(refusal) => Err(refusal),
    };
    let _ = match answer {
        Ok(response) => {
            let mut header = BytesMut::with_capacity(1 + response.message.len());
            header.put_u8(0);
            header.extend_from_slice(&response.message);
            write_frame(&mut send, &header, response.body).await
        }
        Err(refusal) => {
            let result = write_frame(&mut send, &refusal_bytes(&refusal), Bytes::new()).await;
            if refusal.code == code::BAD_REQUEST {
                // Malformed input: stop reading the rest of it.
                let _ = recv.stop(1u8.into());
            }
            result
        }
    };
}

fn parse_request(header: Bytes, body: Bytes) -> Result<Request, Refusal> {
    if header.len() < ENVELOPE {
        return Err(Refusal::new(
            code::BAD_REQUEST,
            "request header shorter than its envelope",
        ));
    }
    let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
    Ok(Request {
        protocol: u16_at(0),
        version: u16_at(2),
        op: u16_at(4),
        message: header.slice(ENVELOPE..),
        body,
    })
}

fn refusal_bytes(refusal: &Refusal) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + refusal.message.len());
    out.push(1);
    out.extend_from_slice(&refusal.code.to_le_bytes());
    out.extend_from_slice(refusal.message.as_bytes());
    out
}

/// A client endpoint: connects to nodes with its own certificate. Clones share the
/// endpoint (one UDP socket).
#[derive(Clone)]
pub struct Client {
    endpoint: quinn::Endpoint,
}

impl Client {
    /// A client that trusts `ca` and proves itself with `me` (or with nothing).
    pub fn new(ca: &CertificateDer<'static>, me: Option<&Credentials>) -> Result<Self, RpcError> {
        Self::with_config(client_config(ca, me)?, [0, 0, 0, 0].into())
    }

    /// A client whose packets leave from `source` (a port of its own on that address):
    /// a node's connections come from the address it listens on, so its peers, and
    /// anything standing between them, see one address per node.
    pub fn from_address(
        source: std::net::IpAddr,
        ca: &CertificateDer<'static>,
        me: &Credentials,
    ) -> Result<Self, RpcError> {
        Self::with_config(client_config(ca, Some(me))?, source)
    }

    fn with_config(
        config: quinn::ClientConfig,
        source: std::net::IpAddr,
    ) -> Result<Self, RpcError> {
        let mut endpoint = endpoint(SocketAddr::new(source, 0), None)?;
        endpoint.set_default_client_config(config);
        Ok(Self { endpoint })
    }

    /// Uses `me` (a renewed certificate) for new connections from now on.
    pub fn rotate(
        &mut self,
        ca: &CertificateDer<'static>,
        me: &Credentials,
    ) -> Result<(), RpcError> {
        self.endpoint
            .set_default_client_config(client_config(ca, Some(me))?);
        Ok(())
    }

    /// A client with no certificate that trusts only a server whose chain holds the CA
    /// with fingerprint `pin`: the joiner's side of enrollment.
    pub fn pinned(pin: super::pki::Fingerprint) -> Result<Self, RpcError> {
        Self::with_config(super::tls::pinned_client_config(pin)?, [0, 0, 0, 0].into())
    }

    /// Connects to `addr`, which must present the certificate of `node` (or of any node
    /// of the cluster, when `None`).
    pub async fn connect(
        &self,
        addr: SocketAddr,
        node: Option<Identity>,
    ) -> Result<Connection, RpcError> {
        let connecting = self
            .endpoint
            .connect(addr, &server_name(node))
            .map_err(|e| RpcError::Connection(e.to_string()))?;
        let connection = connecting.await.map_err(|e| explain(&e))?;
        Ok(Connection { connection })
    }
}

/// A connection to one server, on which requests run concurrently.
#[derive(Clone)]
pub struct Connection {
    connection: quinn::Connection,
}

impl Connection {
    /// Sends `request` and waits for the answer at most `deadline`; on timeout, or when
    /// the returned future is dropped, the request's stream is reset.
    pub async fn call(&self, request: Request, deadline: Duration) -> Result<Response, RpcError> {
        match tokio::time::timeout(deadline, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(RpcError::Timeout(deadline)),
        }
    }

    async fn exchange(&self, request: Request) -> Result<Response, RpcError> {
        let (mut send, mut recv) = self.connection.open_bi().await.map_err(|e| explain(&e))?;
        let mut header = BytesMut::with_capacity(ENVELOPE + request.message.len());
        header.put_u16_le(request.protocol);
        header.put_u16_le(request.version);
        header.put_u16_le(request.op);
        header.extend_from_slice(&request.message);
        let sent = write_frame(&mut send, &header, request.body).await;
        let (header, body) = match read_frame(&mut recv).await {
            Ok(frame) => frame,
            // A refused handshake surfaces as the connection closing under us.
            Err(err) => {
                return Err(self
                    .connection
                    .close_reason()
                    .map_or_else(|| RpcError::Frame(err), |reason| explain(&reason)));
            }
        };
        sent.map_err(RpcError::Frame)?;
        match header.first() {
            Some(0) => Ok(Response {
                message: header.slice(1..),
                body,
            }),
            Some(1) if header.len() >= 3 => Err(RpcError::Remote(Refusal {
                code: u16::from_le_bytes([header[1], header[2]]),
                message: String::from_utf8_lossy(&header[3..]).into_owned(),
            })),
            _ => Err(RpcError::Connection("malformed response".to_string())),
        }
    }

    /// A raw stream, for tools and tests that write frames themselves (or deliberately
    /// do not).
    pub async fn open_stream(&self) -> Result<(quinn::SendStream, quinn::RecvStream), RpcError> {
        self.connection.open_bi().await.map_err(|e| explain(&e))
    }

    /// The address of the server.
    pub fn remote_address(&self) -> SocketAddr {
        self.connection.remote_address()
    }

    /// Whether the connection has closed (the peer went away, was silent past the idle
    /// timeout, or closed it): a new one is needed.
    pub fn is_closed(&self) -> bool {
        self.connection.close_reason().is_some()
    }
}

/// Turns a connection error into what a user needs to know, naming the TLS alert's
/// cause when the handshake refused us.
fn explain(err: &quinn::ConnectionError) -> RpcError {
    if matches!(err, quinn::ConnectionError::Reset) {
        return RpcError::Reset;
    }
    let code = match err {
        quinn::ConnectionError::TransportError(e) => Some(u64::from(e.code)),
        quinn::ConnectionError::ConnectionClosed(c) => Some(u64::from(c.error_code)),
        _ => None,
    };
    if let quinn::ConnectionError::ApplicationClosed(close) = err
        && u64::from(close.error_code) == u64::from(CLOSE_REVOKED)
    {
        return RpcError::Refused("the server closed the connection: certificate revoked".into());
    }
    let alert = code
        .filter(|c| (0x100..0x200).contains(c))
        .map(|c| c - 0x100);
    let cause = match alert {
        Some(116) => "a client certificate is required",
        Some(48) => "the certificate is not signed by this cluster's CA (unknown CA)",
        Some(45) => "the certificate is expired or not yet valid",
        Some(44) => "the certificate is revoked",
        Some(42) => "the certificate is malformed or not valid for this peer",
        Some(49) => "the certificate does not name a HiveFS identity of the right role",
        Some(_) | None => return RpcError::Connection(err.to_string()),
    };
    RpcError::Refused(format!(
        "TLS handshake refused: {cause} (TLS alert {})",
        alert.unwrap_or_default()
    ))
}

/// How long connecting to a node may take: a dead node never answers, and QUIC would
/// wait for its idle timeout.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

/// A link's connection that has answered nothing for this long when a call on it
/// times out is given up: its node may have died, and QUIC backs its retransmissions
/// off further and further, so a request sent on it after the node restarts may not
/// reach the new process for many seconds. A connection that answers other calls
/// meanwhile is kept (a slow answer is not a dead node).
pub const LINK_SILENCE: Duration = Duration::from_secs(1);

/// One node's service as a client sees it: a connection made on first use and made
/// again after a transport failure (a refusal keeps it), or after a call timed out on
/// a connection silent for [`LINK_SILENCE`].
pub struct Link {
    client: Arc<Client>,
    addr: SocketAddr,
    node: Identity,
    connection: tokio::sync::Mutex<Option<Connection>>,
    /// When the connection last answered (or was made).
    heard: std::sync::Mutex<Instant>,
}

/// A call under way on a link: if it ends without an answer (timed out, or cancelled
/// by its caller's own timeout), the link's connection is given up if it has been
/// silent for [`LINK_SILENCE`].
struct Unanswered<'a> {
    link: &'a Link,
    answered: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let heard = *self.link.heard.lock().unwrap_or_else(|e| e.into_inner());
        // A connect under way holds the slot: it makes a new connection anyway.
        if heard.elapsed() >= LINK_SILENCE
            && let Ok(mut slot) = self.link.connection.try_lock()
        {
            slot.take();
        }
    }
}

impl Link {
    /// Talks to `node` at `addr` through `client`.
    pub fn new(client: Arc<Client>, addr: SocketAddr, node: Identity) -> Self {
        Self {
            client,
            addr,
            node,
            connection: tokio::sync::Mutex::new(None),
            heard: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn hear(&self) {
        *self.heard.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node.
    pub fn node(&self) -> Identity {
        self.node
    }

    /// Sends `request` on the link's connection (connecting first if need be, within
    /// [`CONNECT_DEADLINE`]) and waits at most `deadline` for the answer. A reused
    /// connection the node reset (it restarted since) is replaced and the request sent
    /// once more: a reset says the node processed nothing of it.
    pub async fn call(&self, request: Request, deadline: Duration) -> Result<Response, RpcError> {
        let (connection, reused) = self.connection().await?;
        match connection.call(request.clone(), deadline).await {
            Ok(answer) => {
                self.hear();
                Ok(answer)
            }
            Err(RpcError::Reset) if reused => {
                self.connection.lock().await.take();
                let (fresh, _) = self.connection().await?;
                self.settle(fresh.call(request, deadline).await).await
            }
            Err(err) => self.settle(Err(err)).await,
        }
    }

    /// [`Link::call`] with the connect counted in `deadline` too. A call that ends
    /// unanswered (timed out here, or cancelled by the caller) gives the connection up
    /// if it has been silent for [`LINK_SILENCE`].
    pub async fn call_within(
        &self,
        request: Request,
        deadline: Duration,
    ) -> Result<Response, RpcError> {
        let mut pending = Unanswered {
            link: self,
            answered: false,
        };
        let answer = tokio::time::timeout(deadline, self.call(request, deadline))
            .await
            .unwrap_or(Err(RpcError::Timeout(deadline)));
        pending.answered = !matches!(answer, Err(RpcError::Timeout(_)));
        answer
    }

    /// Drops the connection after a transport failure (a refusal keeps it); notes an
    /// answer.
    async fn settle(&self, result: Result<Response, RpcError>) -> Result<Response, RpcError> {
        match &result {
            Ok(_) | Err(RpcError::Remote(_)) => self.hear(),
            Err(_) => {
                self.connection.lock().await.take();
            }
        }
        result
    }

    /// The link's connection, made if need be; whether it was made before this call.
    async fn connection(&self) -> Result<(Connection, bool), RpcError> {
        let mut slot = self.connection.lock().await;
        // A connection that closed while idle (its peer went away) is replaced before
        // use, so no call fails for it.
        if let Some(c) = slot.as_ref()
            && !c.is_closed()
        {
            return Ok((c.clone(), true));
        }
        let connecting = self.client.connect(self.addr, Some(self.node));
        let c = tokio::time::timeout(CONNECT_DEADLINE, connecting)
            .await
            .map_err(|_| {
                RpcError::Connection(format!(
                    "{} at {} did not answer within {CONNECT_DEADLINE:?}",
                    self.node, self.addr
                ))
            })??;
        *slot = Some(c.clone());
        self.hear();
        Ok((c, false))
    }
}
