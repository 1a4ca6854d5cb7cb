//! Mutual TLS over real QUIC on loopback: who gets in, who is refused, and what the
//! refused side is told. Every refusal is proven with a request, not with connect.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hive_wire::NodeId;
use hive_wire::net::auth::{Operation, authorise};
use hive_wire::net::rpc::code;
use hive_wire::net::{
    Client, ClusterCa, Credentials, Handler, Identity, Peer, Request, Response, Revocations, Role,
    RpcError, Server, Validity,
};

const DEADLINE: Duration = Duration::from_secs(10);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// The operation only admins may call.
const ADMIN_OP: u16 = 2;

fn valid() -> Validity {
    Validity::starting_now(30 * DAY)
}

fn client_id(id: u64) -> Identity {
    Identity {
        role: Role::Client,
        id,
    }
}

/// Echoes the caller's identity; `ADMIN_OP` administers the cluster, anything else is
/// shard I/O, and the authorisation function decides.
fn handler() -> Handler {
    Arc::new(|peer: Peer, request: Request| {
        Box::pin(async move {
            let op = if request.op == ADMIN_OP {
                Operation::Administer
            } else {
                Operation::ShardIo
            };
            authorise(&peer, op)?;
            let identity = peer.identity.expect("authorised peers have an identity");
            Ok(Response {
                message: Bytes::from(identity.to_string()),
                body: request.body,
            })
        })
    })
}

struct Cluster {
    ca: ClusterCa,
    server: Server,
    revocations: Revocations,
    node: Identity,
}

fn cluster() -> Cluster {
    let ca = ClusterCa::create("test").expect("ca");
    let node = Identity::node(NodeId(1));
    let (cert, key) = ca.issue_with_key(node, valid()).expect("node cert");
    let revocations = Revocations::default();
    let server = Server::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ca.cert(),
        &Credentials::new(cert, &key),
        revocations.clone(),
        handler(),
    )
    .expect("server");
    Cluster {
        ca,
        server,
        revocations,
        node,
    }
}

fn request(op: u16) -> Request {
    Request {
        protocol: 1,
        version: 1,
        op,
        message: Bytes::new(),
        body: Bytes::from_static(b"ping"),
    }
}

/// Connects with `me` and makes one request.
async fn call_as(c: &Cluster, me: Option<&Credentials>, op: u16) -> Result<Response, RpcError> {
    let client = Client::new(c.ca.cert(), me)?;
    let connection = client.connect(c.server.local_addr(), Some(c.node)).await?;
    connection.call(request(op), DEADLINE).await
}

fn refused_because(result: Result<Response, RpcError>, cause: &str) {
    match result {
        Err(RpcError::Refused(text)) => {
            assert!(text.contains(cause), "expected {cause:?} in {text:?}")
        }
        other => panic!(
            "expected a refusal naming {cause:?}, got {:?}",
            other.map(|r| r.message)
        ),
    }
}

#[tokio::test]
async fn a_valid_identity_passes_and_the_handler_sees_it() {
    let c = cluster();
    let (cert, key) = c.ca.issue_with_key(client_id(7), valid()).expect("cert");
    let response = call_as(&c, Some(&Credentials::new(cert, &key)), 1)
        .await
        .expect("call");
    assert_eq!(response.message, Bytes::from("client/0000000000000007"));
    assert_eq!(response.body, Bytes::from_static(b"ping"));
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let c = cluster();
    refused_because(call_as(&c, None, 1).await, "client certificate is required");
}

#[tokio::test]
async fn self_signed_and_foreign_certificates_are_refused() {
    let c = cluster();
    let rogue = ClusterCa::create("rogue").expect("rogue ca");
    let (foreign, key) = rogue.issue_with_key(client_id(8), valid()).expect("cert");
    refused_because(
        call_as(&c, Some(&Credentials::new(foreign, &key)), 1).await,
        "unknown CA",
    );
    // A self-signed certificate naming an identity: it vouches for itself.
    let self_signed = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["client-0000000000000009.hive".to_string()])
            .expect("params");
    params.subject_alt_names.push(rcgen::SanType::URI(
        "hive://client/0000000000000009".try_into().expect("uri"),
    ));
    let cert = params.self_signed(&self_signed).expect("self-signed");
    let creds = Credentials::new(cert.der().clone(), &self_signed);
    refused_because(call_as(&c, Some(&creds), 1).await, "unknown CA");
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    let c = cluster();
    let now = SystemTime::now();
    let expired = Validity {
        not_before: now - 10 * DAY,
        not_after: now - DAY,
    };
    let (cert, key) = c.ca.issue_with_key(client_id(10), expired).expect("cert");
    refused_because(
        call_as(&c, Some(&Credentials::new(cert, &key)), 1).await,
        "expired or not yet valid",
    );
    let future = Validity {
        not_before: now + DAY,
        not_after: now + 10 * DAY,
    };
    let (cert, key) = c.ca.issue_with_key(client_id(11), future).expect("cert");
    refused_because(
        call_as(&c, Some(&Credentials::new(cert, &key)), 1).await,
        "expired or not yet valid",
    );
}

#[tokio::test]
async fn revoked_certificates_are_refused_even_while_connected() {
    let c = cluster();
    let (cert, key) = c.ca.issue_with_key(client_id(12), valid()).expect("cert");
    let creds = Credentials::new(cert, &key);
    let client = Client::new(c.ca.cert(), Some(&creds)).expect("client");
    let connection = client
        .connect(c.server.local_addr(), Some(c.node))
        .await
        .expect("connect");
    connection
        .call(request(1), DEADLINE)
        .await
        .expect("allowed before revocation");
    c.revocations.revoke(client_id(12));
    match connection.call(request(1), DEADLINE).await {
        Err(RpcError::Remote(refusal)) => assert_eq!(refusal.code, code::REVOKED, "{refusal}"),
        other => panic!(
            "expected a revocation refusal, got {:?}",
            other.map(|r| r.message)
        ),
    }
    // New connections are refused in the handshake.
    refused_because(call_as(&c, Some(&creds), 1).await, "revoked");
}

#[tokio::test]
async fn a_role_without_the_right_gets_forbidden() {
    let c = cluster();
    let (cert, key) = c.ca.issue_with_key(client_id(13), valid()).expect("cert");
    match call_as(&c, Some(&Credentials::new(cert, &key)), ADMIN_OP).await {
        Err(RpcError::Remote(refusal)) => {
            assert_eq!(refusal.code, code::FORBIDDEN);
            assert!(
                refusal.message.contains("may not administer the cluster"),
                "{refusal}"
            );
        }
        other => panic!("expected forbidden, got {:?}", other.map(|r| r.message)),
    }
    let admin = Identity {
        role: Role::Admin,
        id: 1,
    };
    let (cert, key) = c.ca.issue_with_key(admin, valid()).expect("cert");
    call_as(&c, Some(&Credentials::new(cert, &key)), ADMIN_OP)
        .await
        .expect("admin may");
}

#[tokio::test]
async fn a_client_refuses_a_server_that_is_not_the_node_it_wanted() {
    let c = cluster();
    let (cert, key) = c.ca.issue_with_key(client_id(14), valid()).expect("cert");
    let client = Client::new(c.ca.cert(), Some(&Credentials::new(cert, &key))).expect("client");
    let other_node = Identity::node(NodeId(2));
    let result = async {
        client
            .connect(c.server.local_addr(), Some(other_node))
            .await?
            .call(request(1), DEADLINE)
            .await
    }
    .await;
    assert!(
        result.is_err(),
        "connected to node 1 while asking for node 2"
    );
    // Any node of the cluster is accepted when the caller does not name one.
    let connection = client
        .connect(c.server.local_addr(), None)
        .await
        .expect("any node");
    connection.call(request(1), DEADLINE).await.expect("call");
}
