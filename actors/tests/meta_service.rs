//! The metadata service over mutual-TLS QUIC: volume grants from the caller's
//! certificate, inodes confined to the volume a request names, administration for
//! admins only, errnos for misuse, and malformed requests refused without harm.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hive_actors::group::Group;
use hive_actors::{MetaStore, meta_service};
use hive_meta::{Durability, Namespace};
use hive_wire::NodeId;
use hive_wire::net::message;
use hive_wire::net::meta::{Meta, MetaCall, MetaClient, MetaOp, MetaReply, OP_CALL, rename_mode};
use hive_wire::net::pki::ALL_VOLUMES;
use hive_wire::net::rpc::code;
use hive_wire::net::tls::Revocations;
use hive_wire::net::{Client, ClusterCa, Credentials, Identity, Role, RpcError, Server, Validity};

const NODE: NodeId = NodeId(1);
const DEADLINE: Duration = Duration::from_secs(30);
const ENOENT: i32 = 2;
const EINVAL: i32 = 22;
const ENAMETOOLONG: i32 = 36;
const ENOTEMPTY: i32 = 39;

struct Setup {
    ca: ClusterCa,
    addr: SocketAddr,
    _server: Server,
}

impl Setup {
    async fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hive-meta-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let namespace = Arc::new(Namespace::open(&dir, Durability::Buffered).expect("namespace"));
        let alone = [(NODE.0, "127.0.0.1:1".to_string())].into();
        let group = Group::start(NODE.0, &dir.join("group"), namespace.clone(), alone)
            .await
            .expect("group");
        let store = MetaStore::new(namespace, group);
        let ca = ClusterCa::create("test").expect("ca");
        let validity = Validity::starting_now(Duration::from_secs(3600));
        let (cert, key) = ca
            .issue_with_key(Identity::node(NODE), validity)
            .expect("node cert");
        let server = Server::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            ca.cert(),
            &Credentials::new(cert, &key),
            Revocations::default(),
            meta_service(store),
        )
        .expect("server");
        let addr = server.local_addr();
        Self {
            ca,
            addr,
            _server: server,
        }
    }

    fn client(&self, role: Role, id: u64, volumes: &[&str]) -> MetaClient {
        let key = rcgen::KeyPair::generate().expect("key");
        let volumes: Vec<String> = volumes.iter().map(|v| v.to_string()).collect();
        let cert = self
            .ca
            .issue_with_volumes(
                Identity { role, id },
                &volumes,
                &key,
                Validity::starting_now(Duration::from_secs(3600)),
            )
            .expect("cert");
        let client =
            Client::new(self.ca.cert(), Some(&Credentials::new(cert, &key))).expect("client");
        MetaClient::new(Arc::new(client), self.addr, NODE)
    }
}

fn refused(result: Result<MetaReply, RpcError>) -> u16 {
    match result {
        Err(RpcError::Remote(refusal)) => refusal.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn attr_ino(reply: MetaReply) -> u64 {
    match reply {
        MetaReply::Attr(a) => a.ino,
        other => panic!("expected attributes, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_confine_callers_to_their_volumes() {
    let setup = Setup::start("grants").await;
    let admin = setup.client(Role::Admin, 1, &[]);
    let photos = setup.client(Role::Client, 2, &["photos"]);
    let everything = setup.client(Role::Client, 3, &[ALL_VOLUMES]);
    let node = setup.client(Role::Node, 4, &[]);

    let create = MetaCall::Apply(MetaOp::CreateVolume {
        name: b"photos".to_vec(),
        k: 4,
        m: 2,
    });
    assert_eq!(
        refused(photos.call("", 0, 0, create.clone()).await),
        code::FORBIDDEN,
        "clients do not create volumes"
    );
    admin.call("", 0, 0, create).await.expect("admin creates");
    let mounted = photos
        .call("photos", 0, 0, MetaCall::Mount)
        .await
        .expect("mount");
    let MetaReply::Mounted(volume) = mounted else {
        panic!("expected the volume, got {mounted:?}");
    };
    assert_eq!((volume.k, volume.m), (4, 2));
    assert_eq!(
        refused(photos.call("default", 0, 0, MetaCall::Mount).await),
        code::FORBIDDEN,
        "a client granted photos may not mount default"
    );
    assert_eq!(
        refused(node.call("photos", 0, 0, MetaCall::Mount).await),
        code::FORBIDDEN,
        "nodes mount nothing"
    );
    assert_eq!(
        everything
            .call("nope", 0, 0, MetaCall::Mount)
            .await
            .expect("asked"),
        MetaReply::Errno(ENOENT),
        "an unknown volume"
    );

    // An inode of another volume is out of reach, whatever the grant.
    let file = attr_ino(
        everything
            .call(
                "default",
                0,
                0,
                MetaCall::Apply(MetaOp::Create {
                    parent: 1,
                    name: b"secret".to_vec(),
                    mode: 0o600,
                }),
            )
            .await
            .expect("create in default"),
    );
    assert_eq!(
        refused(
            photos
                .call("photos", 0, 0, MetaCall::GetAttr { ino: file })
                .await
        ),
        code::FORBIDDEN
    );
    let link = MetaCall::Apply(MetaOp::Link {
        ino: file,
        parent: volume.root,
        name: b"stolen".to_vec(),
    });
    assert_eq!(
        refused(everything.call("photos", 0, 0, link).await),
        code::FORBIDDEN,
        "a link naming an inode of another volume"
    );

    // Misuse inside a volume answers the POSIX errno.
    let apply = |op| everything.call("photos", 0, 0, MetaCall::Apply(op));
    for (name, errno) in [
        (b"nul\0inside".to_vec(), EINVAL),
        (vec![b'n'; 256], ENAMETOOLONG),
        (b"a/b".to_vec(), EINVAL),
    ] {
        let made = apply(MetaOp::Create {
            parent: volume.root,
            name,
            mode: 0o644,
        })
        .await
        .expect("asked");
        assert_eq!(made, MetaReply::Errno(errno));
    }
    let dir = attr_ino(
        apply(MetaOp::Mkdir {
            parent: volume.root,
            name: b"d".to_vec(),
            mode: 0o755,
        })
        .await
        .expect("mkdir"),
    );
    apply(MetaOp::Mkdir {
        parent: dir,
        name: b"child".to_vec(),
        mode: 0o755,
    })
    .await
    .expect("mkdir child");
    assert_eq!(
        apply(MetaOp::Rmdir {
            parent: volume.root,
            name: b"d".to_vec()
        })
        .await
        .expect("asked"),
        MetaReply::Errno(ENOTEMPTY)
    );
    let child = attr_ino(
        everything
            .call(
                "photos",
                0,
                0,
                MetaCall::Lookup {
                    parent: dir,
                    name: b"child".to_vec(),
                },
            )
            .await
            .expect("lookup"),
    );
    assert_eq!(
        apply(MetaOp::Rename {
            from: volume.root,
            from_name: b"d".to_vec(),
            to: child,
            to_name: b"d".to_vec(),
            mode: rename_mode::REPLACE,
        })
        .await
        .expect("asked"),
        MetaReply::Errno(EINVAL),
        "a directory into its own child"
    );
    assert_eq!(
        apply(MetaOp::Rename {
            from: volume.root,
            from_name: b"d".to_vec(),
            to: volume.root,
            to_name: b"e".to_vec(),
            mode: 7,
        })
        .await
        .expect("asked"),
        MetaReply::Errno(EINVAL),
        "a rename mode no operation has"
    );
    let listed = admin
        .call("", 0, 0, MetaCall::ListVolumes)
        .await
        .expect("list");
    let MetaReply::Volumes(volumes) = listed else {
        panic!("expected volumes, got {listed:?}");
    };
    let names: Vec<_> = volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["default", "photos"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_the_service_goes_on() {
    let setup = Setup::start("malformed").await;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = setup
        .ca
        .issue_with_volumes(
            Identity {
                role: Role::Client,
                id: 5,
            },
            &[ALL_VOLUMES.to_string()],
            &key,
            Validity::starting_now(Duration::from_secs(3600)),
        )
        .expect("cert");
    let client = Client::new(setup.ca.cert(), Some(&Credentials::new(cert, &key))).expect("client");
    let connection = client
        .connect(setup.addr, Some(Identity::node(NODE)))
        .await
        .expect("connect");
    let mut rng = hive_testkit::Rng::new(0x3e7a);
    for n in 0..200usize {
        let garbage = Bytes::from(hive_testkit::random_bytes(rng.next_u64(), n % 97));
        let request = message::request::<Meta>(OP_CALL, Bytes::new(), garbage);
        match connection.call(request, DEADLINE).await {
            Err(RpcError::Remote(r)) => assert_eq!(r.code, code::BAD_REQUEST, "{r}"),
            other => panic!("garbage request {n} was not refused: {other:?}"),
        }
    }
    let unknown = message::request::<Meta>(77, Bytes::new(), Bytes::new());
    assert!(matches!(
        connection.call(unknown, DEADLINE).await,
        Err(RpcError::Remote(r)) if r.code == code::BAD_REQUEST
    ));
    let meta = MetaClient::new(Arc::new(client), setup.addr, NODE);
    assert!(matches!(
        meta.call("default", 0, 0, MetaCall::GetAttr { ino: 1 })
            .await,
        Ok(MetaReply::Attr(_))
    ));
}
