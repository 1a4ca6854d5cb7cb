//! Enrollment over real QUIC on loopback: a joiner with only a token and its own key
//! gets a certificate; bad tokens are refused with the reason; renewal works over
//! mutual TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hive_wire::NodeId;
use hive_wire::net::enroll::{EnrollError, Enroller, enroll, renew};
use hive_wire::net::rpc::code;
use hive_wire::net::tls::Revocations;
use hive_wire::net::{
    Client, ClusterCa, Credentials, Identity, JoinToken, Role, RpcError, Server, TokenKey, Validity,
};

const DAY: Duration = Duration::from_secs(24 * 3600);

struct Setup {
    server: Server,
    fingerprint: hive_wire::net::Fingerprint,
    ca_cert: rustls::pki_types::CertificateDer<'static>,
    token_key: TokenKey,
}

fn setup() -> Setup {
    let ca = ClusterCa::create("test").expect("ca");
    let node = Identity::node(NodeId(1));
    let (cert, key) = ca
        .issue_with_key(node, Validity::starting_now(DAY))
        .expect("node cert");
    let mut me = Credentials::new(cert, &key);
    me.chain.push(ca.cert().clone());
    let token_key = TokenKey::generate();
    let next = Arc::new(AtomicU64::new(100));
    let ids = Arc::new(move |_role: Role| Ok(next.fetch_add(1, Ordering::SeqCst)));
    let (fingerprint, ca_cert) = (ca.fingerprint(), ca.cert().clone());
    let enroller = Arc::new(Enroller::new(ca, token_key.clone(), ids, 30 * DAY));
    let server = Server::bind_enrollment(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &ca_cert,
        &me,
        Revocations::default(),
        enroller.handler(),
    )
    .expect("enrollment server");
    Setup {
        server,
        fingerprint,
        ca_cert,
        token_key,
    }
}

fn refused_with(result: Result<impl Sized, EnrollError>, words: &str) {
    match result {
        Err(EnrollError::Rpc(RpcError::Remote(refusal))) => {
            assert_eq!(refusal.code, code::FORBIDDEN);
            assert!(
                refusal.message.contains(words),
                "expected {words:?} in {refusal}"
            );
        }
        Err(other) => panic!("expected a refusal naming {words:?}, got {other}"),
        Ok(_) => panic!("expected a refusal naming {words:?}, got a certificate"),
    }
}

#[tokio::test]
async fn a_token_buys_exactly_one_certificate() {
    let s = setup();
    let token = JoinToken::new(s.fingerprint, Role::Node, None, Duration::from_secs(900))
        .seal(&s.token_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let enrolled = enroll(s.server.local_addr(), &token, &key)
        .await
        .expect("enroll");
    assert_eq!(
        enrolled.identity,
        Identity {
            role: Role::Node,
            id: 100
        }
    );
    assert_eq!(enrolled.ca, s.ca_cert);
    let remaining = enrolled
        .not_after
        .saturating_sub(hive_wire::net::enroll::now_unix());
    assert!(remaining > 29 * 24 * 3600, "default validity is 30 days");
    let again = rcgen::KeyPair::generate().expect("key");
    refused_with(
        enroll(s.server.local_addr(), &token, &again).await,
        "already used",
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_reason() {
    let s = setup();
    let key = rcgen::KeyPair::generate().expect("key");
    let addr = s.server.local_addr();
    // Expired.
    let mut token = JoinToken::new(s.fingerprint, Role::Client, None, Duration::from_secs(900));
    token.expires = 1;
    refused_with(
        enroll(addr, &token.seal(&s.token_key), &key).await,
        "expired at 1970",
    );
    // Sealed with another key: tampered, or not this cluster's.
    let forged = JoinToken::new(s.fingerprint, Role::Admin, None, Duration::from_secs(900))
        .seal(&TokenKey::generate());
    refused_with(
        enroll(addr, &forged, &key).await,
        "altered or not issued by this cluster",
    );
    // Another cluster's CA: the joiner will not trust this server at all.
    let foreign = ClusterCa::create("other").expect("ca");
    let wrong = JoinToken::new(
        foreign.fingerprint(),
        Role::Node,
        None,
        Duration::from_secs(900),
    )
    .seal(&s.token_key);
    match enroll(addr, &wrong, &key).await {
        Err(EnrollError::Rpc(err)) => assert!(!err.to_string().is_empty()),
        Err(other) => panic!("expected a TLS refusal, got {other}"),
        Ok(_) => panic!("enrolled with a server whose CA the token does not name"),
    }
    // Not a token.
    assert!(matches!(
        enroll(addr, "hive1-abcd", &key).await,
        Err(EnrollError::Token(_))
    ));
}

#[tokio::test]
async fn an_enrolled_member_renews_its_certificate() {
    let s = setup();
    let token = JoinToken::new(
        s.fingerprint,
        Role::Client,
        Some("photos".into()),
        Duration::from_secs(900),
    )
    .seal(&s.token_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let enrolled = enroll(s.server.local_addr(), &token, &key)
        .await
        .expect("enroll");
    let me = Credentials::new(enrolled.cert.clone(), &key);
    let client = Client::new(&enrolled.ca, Some(&me)).expect("client");
    let connection = client
        .connect(s.server.local_addr(), None)
        .await
        .expect("connect");
    let new_key = rcgen::KeyPair::generate().expect("key");
    let renewed = renew(&connection, &enrolled.ca, &new_key)
        .await
        .expect("renew");
    assert_eq!(renewed.identity, enrolled.identity);
    assert_ne!(renewed.cert, enrolled.cert);
    // The token's volume grant is in the certificate, and survives renewal.
    for cert in [&enrolled.cert, &renewed.cert] {
        let volumes = hive_wire::net::pki::volumes_of(cert).expect("volumes");
        assert_eq!(volumes, vec!["photos".to_string()]);
    }
}

#[tokio::test]
async fn garbage_messages_and_other_versions_get_clear_refusals() {
    use bytes::Bytes;
    use hive_wire::net::Request;
    let s = setup();
    let client = Client::pinned(s.fingerprint).expect("client");
    let connection = client
        .connect(s.server.local_addr(), None)
        .await
        .expect("connect");
    let call = |protocol, version, message: &'static [u8]| {
        let connection = connection.clone();
        async move {
            let request = Request {
                protocol,
                version,
                op: hive_wire::net::enroll::OP_JOIN,
                message: Bytes::from_static(message),
                body: Bytes::new(),
            };
            connection.call(request, Duration::from_secs(10)).await
        }
    };
    let refusal = |result: Result<_, RpcError>| match result {
        Err(RpcError::Remote(refusal)) => refusal,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, got an answer"),
    };
    // A well-framed request whose message is not a valid rkyv Join.
    let r = refusal(call(1, 1, b"\xff\x00garbage that is not a Join message").await);
    assert_eq!(r.code, code::BAD_REQUEST, "{r}");
    assert!(r.message.contains("invalid Join message"), "{r}");
    // Another version of the protocol.
    let r = refusal(call(1, 9, b"").await);
    assert_eq!(r.code, code::UNSUPPORTED);
    assert!(
        r.message
            .contains("version 9 is not spoken here (this server speaks version 1)"),
        "{r}"
    );
    // Another protocol.
    let r = refusal(call(7, 1, b"").await);
    assert!(r.message.contains("not protocol 7"), "{r}");
    // And the endpoint still serves.
    let token = JoinToken::new(s.fingerprint, Role::Node, None, Duration::from_secs(900))
        .seal(&s.token_key);
    let key = rcgen::KeyPair::generate().expect("key");
    enroll(s.server.local_addr(), &token, &key)
        .await
        .expect("still serving");
}

#[tokio::test]
async fn renewed_certificates_are_rotated_in_without_a_restart() {
    use hive_wire::net::enroll::{renew_at, validity_of};
    let s = setup();
    let token = JoinToken::new(s.fingerprint, Role::Node, None, Duration::from_secs(900))
        .seal(&s.token_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let enrolled = enroll(s.server.local_addr(), &token, &key)
        .await
        .expect("enroll");
    let (from, to) = validity_of(&enrolled.cert).expect("validity");
    let due = renew_at(from, to);
    assert!(
        from < due && due < to && to - due >= (to - from) / 3,
        "renew with a third of the life left"
    );
    // The member serves with its new certificate, then renews and rotates.
    let mut serving = Credentials::new(enrolled.cert.clone(), &key);
    let echo: hive_wire::net::Handler = Arc::new(|peer: hive_wire::net::Peer, _r| {
        Box::pin(async move {
            Ok(hive_wire::net::Response {
                message: bytes::Bytes::from(
                    peer.identity.map(|i| i.to_string()).unwrap_or_default(),
                ),
                body: bytes::Bytes::new(),
            })
        })
    });
    let member = Server::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &enrolled.ca,
        &serving,
        Revocations::default(),
        echo,
    )
    .expect("member serves");
    let mut client = Client::new(&enrolled.ca, Some(&serving)).expect("client");
    let to_enroller = client
        .connect(s.server.local_addr(), None)
        .await
        .expect("connect");
    let new_key = rcgen::KeyPair::generate().expect("key");
    let renewed = renew(&to_enroller, &enrolled.ca, &new_key)
        .await
        .expect("renew");
    serving = Credentials::new(renewed.cert.clone(), &new_key);
    member
        .rotate(&enrolled.ca, &serving, Revocations::default(), true)
        .expect("rotate server");
    client
        .rotate(&enrolled.ca, &serving)
        .expect("rotate client");
    let connection = client
        .connect(member.local_addr(), Some(enrolled.identity))
        .await
        .expect("connect after rotation");
    let request = hive_wire::net::Request {
        protocol: 1,
        version: 1,
        op: 1,
        message: bytes::Bytes::new(),
        body: bytes::Bytes::new(),
    };
    let answer = connection
        .call(request, Duration::from_secs(10))
        .await
        .expect("call");
    assert_eq!(
        answer.message,
        bytes::Bytes::from(enrolled.identity.to_string())
    );
}
