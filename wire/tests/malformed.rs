//! Malformed input on real QUIC streams: every bad frame is refused on its own stream,
//! and the server goes on serving other streams and other connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hive_wire::NodeId;
use hive_wire::net::rpc::code;
use hive_wire::net::{
    Client, ClusterCa, Connection, Credentials, Handler, Identity, Peer, Request, Response,
    Revocations, Role, RpcError, Server, Validity,
};
use proptest::prelude::*;

const DEADLINE: Duration = Duration::from_secs(10);

fn echo() -> Handler {
    Arc::new(|_peer: Peer, request: Request| {
        Box::pin(async move {
            Ok(Response {
                message: request.message,
                body: request.body,
            })
        })
    })
}

struct Setup {
    _server: Server,
    client: Client,
    addr: SocketAddr,
    node: Identity,
}

fn setup() -> Setup {
    setup_with(echo())
}

fn setup_with(handler: Handler) -> Setup {
    let ca = ClusterCa::create("test").expect("ca");
    let node = Identity::node(NodeId(1));
    let validity = Validity::starting_now(Duration::from_secs(3600));
    let (cert, key) = ca.issue_with_key(node, validity).expect("node cert");
    let server = Server::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ca.cert(),
        &Credentials::new(cert, &key),
        Revocations::default(),
        handler,
    )
    .expect("server");
    let me = Identity {
        role: Role::Client,
        id: 1,
    };
    let (cert, key) = ca.issue_with_key(me, validity).expect("client cert");
    let client = Client::new(ca.cert(), Some(&Credentials::new(cert, &key))).expect("client");
    Setup {
        addr: server.local_addr(),
        _server: server,
        client,
        node,
    }
}

fn ping() -> Request {
    Request {
        protocol: 1,
        version: 1,
        op: 1,
        message: Bytes::from_static(b"hello"),
        body: Bytes::from_static(b"body"),
    }
}

/// Writes `bytes` raw on a new stream, finishes it, and returns what the server says.
async fn send_raw(connection: &Connection, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = connection.open_stream().await.map_err(|e| e.to_string())?;
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    let answer = tokio::time::timeout(DEADLINE, recv.read_to_end(1 << 20))
        .await
        .map_err(|_| "no answer".to_string())?;
    answer.map_err(|e| e.to_string())
}

fn frame(header_len: u32, body_len: u32, rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(rest);
    out
}

/// The refusal code in a response frame, if it is one.
fn refusal_code(answer: &[u8]) -> Option<u16> {
    let header_len = u32::from_le_bytes(answer.get(..4)?.try_into().ok()?) as usize;
    let header = answer.get(8..8 + header_len)?;
    (header.first() == Some(&1)).then(|| u16::from_le_bytes([header[1], header[2]]))
}

async fn still_serving(s: &Setup, connection: &Connection) {
    let answer = connection
        .call(ping(), DEADLINE)
        .await
        .expect("same connection");
    assert_eq!(answer.message, Bytes::from_static(b"hello"));
    let fresh = s
        .client
        .connect(s.addr, Some(s.node))
        .await
        .expect("new connection");
    fresh
        .call(ping(), DEADLINE)
        .await
        .expect("new connection serves");
}

#[tokio::test]
async fn fixed_cases_are_refused_and_the_server_keeps_serving() {
    let s = setup();
    let connection = s
        .client
        .connect(s.addr, Some(s.node))
        .await
        .expect("connect");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty stream", Vec::new()),
        ("truncated lengths", vec![1, 0, 0]),
        ("truncated header", frame(100, 0, b"short")),
        ("truncated body", frame(6, 1000, &[1, 0, 1, 0, 1, 0, 9, 9])),
        ("header over the maximum", frame(u32::MAX, 0, b"")),
        ("body over the maximum", frame(6, u32::MAX, b"")),
        ("header shorter than its envelope", frame(2, 0, &[1, 0])),
    ];
    for (name, bytes) in cases {
        match send_raw(&connection, &bytes).await {
            Ok(answer) => assert_eq!(refusal_code(&answer), Some(code::BAD_REQUEST), "{name}"),
            // The server may reset the stream instead of answering: also a refusal.
            Err(err) => assert!(!err.contains("no answer"), "{name}: {err}"),
        }
    }
    still_serving(&s, &connection).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_break_the_server(blobs in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..600), 1..8)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let failure = runtime.block_on(async move {
            let s = setup();
            let connection = s.client.connect(s.addr, Some(s.node)).await.expect("connect");
            for blob in &blobs {
                if let Ok(answer) = send_raw(&connection, blob).await {
                    // Whatever the bytes, the answer is a well-formed frame.
                    if answer.len() < 8 {
                        return Some(format!("short answer {answer:?} to {blob:?}"));
                    }
                }
            }
            match connection.call(ping(), DEADLINE).await {
                Ok(_) => None,
                Err(RpcError::Timeout(_)) => Some("server stopped answering".to_string()),
                Err(err) => Some(format!("server broke: {err}")),
            }
        });
        prop_assert!(failure.is_none(), "{}", failure.unwrap_or_default());
    }
}

#[tokio::test]
async fn a_thousand_concurrent_streams_complete() {
    let s = setup();
    let connection = s
        .client
        .connect(s.addr, Some(s.node))
        .await
        .expect("connect");
    let calls: Vec<_> = (0..1000u32)
        .map(|n| {
            let connection = connection.clone();
            tokio::spawn(async move {
                let mut request = ping();
                request.message = Bytes::from(n.to_le_bytes().to_vec());
                let answer = connection
                    .call(request, Duration::from_secs(60))
                    .await
                    .expect("call");
                assert_eq!(answer.message, Bytes::from(n.to_le_bytes().to_vec()));
            })
        })
        .collect();
    for call in calls {
        call.await.expect("task");
    }
}

#[tokio::test]
async fn a_slow_reader_does_not_stall_other_streams() {
    let s = setup();
    let connection = s
        .client
        .connect(s.addr, Some(s.node))
        .await
        .expect("connect");
    // A stream that sends a large body and never reads the (large) echo.
    let (mut send, _recv_never_read) = connection.open_stream().await.expect("stream");
    let big = vec![7u8; 8 << 20];
    let mut header = frame(6, big.len() as u32, &[1, 0, 1, 0, 1, 0]);
    header.extend_from_slice(&big);
    let writer = tokio::spawn(async move {
        let _ = send.write_all(&header).await;
        let _ = send.finish();
        send
    });
    for _ in 0..50 {
        connection
            .call(ping(), DEADLINE)
            .await
            .expect("other streams flow");
    }
    drop(writer);
}

#[tokio::test]
async fn a_dropped_request_cancels_its_handler() {
    use std::sync::atomic::{AtomicBool, Ordering};
    /// Sets its flag when the handler future holding it is dropped.
    struct Cancelled(Arc<AtomicBool>, Arc<tokio::sync::Notify>);
    impl Drop for Cancelled {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
            self.1.notify_one();
        }
    }
    let flag = Arc::new(AtomicBool::new(false));
    let notify = Arc::new(tokio::sync::Notify::new());
    let (f, n) = (flag.clone(), notify.clone());
    let never: Handler = Arc::new(move |_peer: Peer, _request: Request| {
        let guard = Cancelled(f.clone(), n.clone());
        Box::pin(async move {
            let _guard = guard;
            std::future::pending::<Result<Response, hive_wire::net::Refusal>>().await
        })
    });
    let s = setup_with(never);
    let connection = s
        .client
        .connect(s.addr, Some(s.node))
        .await
        .expect("connect");
    let result = connection.call(ping(), Duration::from_millis(200)).await;
    assert!(
        matches!(result, Err(RpcError::Timeout(_))),
        "{:?}",
        result.map(|r| r.message)
    );
    // The server side gives up the handler: wait for that, with a generous deadline.
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !flag.load(Ordering::SeqCst) {
            notify.notified().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the handler was never dropped");
}
