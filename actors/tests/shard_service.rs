//! The shard service end to end: a client stores and fetches shards over mutual-TLS
//! QUIC; a node's two stores, each behind a shard actor on its own glommio executor,
//! share the chunks.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hive_actors::reclaim::SpaceArgs;
use hive_actors::{ShardActor, Shards, shard_service};
use hive_codec::{ChunkEncoder, CompressionConfig, ErasureScheme, chunk_id};
use hive_nvme::{FormatOptions, Store};
use hive_testkit::random_bytes;
use hive_wire::net::message;
use hive_wire::net::rpc::code;
use hive_wire::net::shard_service::{
    Found, MAX_DELETE_BATCH, OP_DELETE, OP_GET, OP_HAS, OP_PUT, ShardClient, ShardKey, ShardService,
};
use hive_wire::net::tls::Revocations;
use hive_wire::net::{
    Client, ClusterCa, Connection, Credentials, Identity, Role, RpcError, Server, Validity,
};
use hive_wire::{ChunkId, NodeId, ShardIndex};

const NODE: NodeId = NodeId(3);
const DEADLINE: Duration = Duration::from_secs(30);

/// All six shards of a 4+2 encoding of seeded bytes.
fn shards(seed: u64, len: usize) -> (ChunkId, Vec<Vec<u8>>) {
    let data = random_bytes(seed, len);
    let scheme = ErasureScheme::new(4, 2).expect("4+2");
    let mut encoder = ChunkEncoder::new(scheme, CompressionConfig::default()).expect("encoder");
    let id = chunk_id(&data);
    let chunk = encoder.encode(id, &data).expect("encode");
    (id, (0..6).map(|i| chunk.shard_to_vec(i)).collect())
}

async fn call(
    connection: &Connection,
    op: u16,
    message: Bytes,
    body: Bytes,
) -> Result<hive_wire::net::Response, RpcError> {
    connection
        .call(
            message::request::<ShardService>(op, message, body),
            DEADLINE,
        )
        .await
}

/// The key of shard `index` of `chunk`, coded 4+2 as the shards here are.
fn key(chunk: ChunkId, index: usize) -> Bytes {
    message::encode(&ShardKey::new(hive_wire::ShardName {
        chunk,
        k: 4,
        m: 2,
        index: ShardIndex(index as u8),
    }))
}

/// Scrub at the default pace, its damage reports dropped (no repairer here).
fn scrub_args() -> hive_actors::ScrubArgs {
    hive_actors::ScrubArgs::new(hive_actors::constants::DEFAULT_SCRUB_PERIOD).0
}

/// A CA and the shard service of `actor` on loopback, as node [`NODE`].
fn serve(actor: &Shards) -> (ClusterCa, Server) {
    let ca = ClusterCa::create("test").expect("ca");
    let validity = Validity::starting_now(Duration::from_secs(3600));
    let (cert, key_pair) = ca
        .issue_with_key(Identity::node(NODE), validity)
        .expect("node cert");
    let server = Server::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ca.cert(),
        &Credentials::new(cert, &key_pair),
        Revocations::default(),
        shard_service(actor.clone(), Default::default()),
    )
    .expect("server");
    (ca, server)
}

/// A client with a certificate of `role` from `ca`.
fn client_as(ca: &ClusterCa, role: Role) -> std::sync::Arc<Client> {
    let validity = Validity::starting_now(Duration::from_secs(3600));
    let (cert, key_pair) = ca
        .issue_with_key(Identity { role, id: 9 }, validity)
        .expect("client cert");
    std::sync::Arc::new(
        Client::new(ca.cert(), Some(&Credentials::new(cert, &key_pair))).expect("client"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_store_and_fetch_shards_through_a_shard_actor() {
    let dir = std::env::temp_dir().join(format!("hive-actors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let paths = [dir.join("store-a"), dir.join("store-b")];
    let options = FormatOptions {
        node_id: NODE,
        size: Some(64 << 20),
        segment_size: 1 << 20,
    };
    let mut actors = Vec::new();
    let mut threads = Vec::new();
    for path in &paths {
        Store::format(path, &options).expect("format");
        let (actor, thread) =
            ShardActor::start(path.clone(), NODE, None, scrub_args(), Default::default())
                .expect("actor starts");
        actors.push(actor);
        threads.push(thread);
    }
    let actor = Shards::new(actors.clone(), Default::default());

    let (ca, server) = serve(&actor);
    let client = client_as(&ca, Role::Client);
    let connection = client
        .connect(server.local_addr(), Some(Identity::node(NODE)))
        .await
        .expect("connect");

    // 16 chunks x 6 shards, all put concurrently.
    let chunks: Vec<_> = (0..16)
        .map(|n| shards(n, 50_000 + n as usize * 7_000))
        .collect();
    let mut puts = Vec::new();
    for (_, shards) in &chunks {
        for shard in shards {
            let connection = connection.clone();
            let body = Bytes::from(shard.clone());
            puts.push(tokio::spawn(async move {
                call(&connection, OP_PUT, Bytes::new(), body).await
            }));
        }
    }
    for put in puts {
        put.await.expect("task").expect("put acknowledged");
    }
    for (chunk, shards) in &chunks {
        for (i, shard) in shards.iter().enumerate() {
            let has = call(&connection, OP_HAS, key(*chunk, i), Bytes::new())
                .await
                .expect("has");
            let found: Found = message::decode("Found", &has.message).expect("Found");
            assert!(found.present);
            let got = call(&connection, OP_GET, key(*chunk, i), Bytes::new())
                .await
                .expect("get");
            assert_eq!(&got.body[..], &shard[..]);
        }
    }
    let stats = actor.stats().await.expect("stats");
    assert_eq!(stats.shards, 16 * 6);
    for (n, one) in actors.iter().enumerate() {
        let shards = one.stats().await.expect("stats").shards;
        assert!(
            shards > 0,
            "store {n} got no shards: the stores do not share the chunks"
        );
    }
    assert!(
        stats.commits < 16 * 6,
        "concurrent puts share group commits: {}",
        stats.commits
    );

    // Unknown shards are absent; garbage is refused and the service keeps serving.
    let missing = call(&connection, OP_GET, key(ChunkId([9; 32]), 0), Bytes::new())
        .await
        .expect("get");
    let found: Found = message::decode("Found", &missing.message).expect("Found");
    assert!(!found.present && missing.body.is_empty());
    match call(
        &connection,
        OP_PUT,
        Bytes::new(),
        Bytes::from_static(b"not a shard"),
    )
    .await
    {
        Err(RpcError::Remote(refusal)) => assert_eq!(refusal.code, code::BAD_REQUEST, "{refusal}"),
        other => panic!("garbage accepted: {:?}", other.map(|r| r.message)),
    }
    match call(
        &connection,
        OP_GET,
        Bytes::from_static(b"garbage key"),
        Bytes::new(),
    )
    .await
    {
        Err(RpcError::Remote(refusal)) => assert_eq!(refusal.code, code::BAD_REQUEST, "{refusal}"),
        other => panic!("garbage key accepted: {:?}", other.map(|r| r.message)),
    }
    call(&connection, OP_HAS, key(chunks[0].0, 0), Bytes::new())
        .await
        .expect("still serving");

    server.close();
    drop(connection);
    drop(client);
    drop(server);
    drop(actor);
    drop(actors);
    // Wait for the actors to close their stores, then check they reopen with
    // everything, even listed in the other order (each chunk is then looked for in
    // its new home first, then in the other store).
    tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| t.join()))
        .await
        .expect("actor threads");
    let mut reopened = Vec::new();
    for path in paths.iter().rev() {
        let path = path.clone();
        let (again, _thread) = tokio::task::spawn_blocking(move || {
            ShardActor::start(path, NODE, None, scrub_args(), Default::default())
        })
        .await
        .expect("task")
        .expect("reopen");
        reopened.push(again);
    }
    let again = Shards::new(reopened, Default::default());
    for (chunk, shards) in &chunks {
        for (i, shard) in shards.iter().enumerate() {
            let name = hive_wire::ShardName {
                chunk: *chunk,
                k: 4,
                m: 2,
                index: ShardIndex(i as u8),
            };
            let got = again.get(name).await.expect("get");
            assert_eq!(&got.expect("stored")[..], &shard[..]);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_delete_untouched_shards_and_reclaim_frees_their_space() {
    let dir = std::env::temp_dir().join(format!("hive-actors-delete-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("store");
    let options = FormatOptions {
        node_id: NODE,
        size: Some(64 << 20),
        segment_size: 1 << 20,
    };
    Store::format(&path, &options).expect("format");
    // Reclaim looks often and compacts any segment less than 90% live; touches are
    // remembered in windows of 50 ms.
    let grace = Duration::from_millis(50);
    let reclaim = SpaceArgs {
        threshold: 0.9,
        rate: 0,
        interval: Duration::from_millis(100),
        grace,
    };
    let (one, thread) =
        ShardActor::start(path.clone(), NODE, None, scrub_args(), reclaim).expect("actor starts");
    let actor = Shards::new(vec![one.clone()], Default::default());
    let (ca, server) = serve(&actor);
    let chunks: Vec<_> = (0..8).map(|n| shards(100 + n, 200_000)).collect();
    let mut names = Vec::new();
    for (chunk, shards) in &chunks {
        for (i, shard) in shards.iter().enumerate() {
            actor.put(Bytes::from(shard.clone())).await.expect("put");
            names.push(hive_wire::ShardName {
                chunk: *chunk,
                k: 4,
                m: 2,
                index: ShardIndex(i as u8),
            });
        }
    }
    let to = |role| ShardClient::new(client_as(&ca, role), server.local_addr(), NODE);

    // A node pages through every shard in name order, each with its record's size;
    // a client may not look.
    let scan_all = |client: ShardClient| async move {
        let mut all: Vec<(hive_wire::ShardName, u64)> = Vec::new();
        loop {
            let page = client
                .scan(all.last().map(|(n, _)| *n), 7)
                .await
                .expect("scan");
            assert!(page.len() <= 7);
            if page.is_empty() {
                return all;
            }
            all.extend(page);
        }
    };
    let scanned = scan_all(to(Role::Node)).await;
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert!(scanned.iter().map(|(n, _)| *n).eq(sorted.iter().copied()));
    assert!(
        scanned
            .iter()
            .all(|(_, bytes)| *bytes >= 50_000 && bytes % 16 == 0)
    );
    match to(Role::Client).scan(None, 7).await {
        Err(RpcError::Remote(refusal)) => assert_eq!(refusal.code, code::FORBIDDEN, "{refusal}"),
        other => panic!("a client scanned a node: {other:?}"),
    }

    // Neither a client nor an administrator deletes: a node (garbage collection) does.
    for role in [Role::Client, Role::Admin] {
        match to(role).delete(&names[..1], Duration::ZERO).await {
            Err(RpcError::Remote(refusal)) => {
                assert_eq!(refusal.code, code::FORBIDDEN, "{role}: {refusal}");
                assert!(
                    refusal.message.contains("may not delete shards"),
                    "{refusal}"
                );
            }
            other => panic!("{role} deleted a shard: {other:?}"),
        }
    }
    assert_eq!(
        actor.stats().await.expect("stats").shards,
        names.len() as u64
    );

    // Malformed and oversized requests are refused by name, and change nothing.
    let node = to(Role::Node);
    let connection = client_as(&ca, Role::Node)
        .connect(server.local_addr(), Some(Identity::node(NODE)))
        .await
        .expect("connect");
    match call(
        &connection,
        OP_DELETE,
        Bytes::from_static(b"junk"),
        Bytes::new(),
    )
    .await
    {
        Err(RpcError::Remote(refusal)) => assert_eq!(refusal.code, code::BAD_REQUEST, "{refusal}"),
        other => panic!("junk accepted: {:?}", other.map(|r| r.message)),
    }
    let too_many = vec![names[0]; MAX_DELETE_BATCH + 1];
    match node.delete(&too_many, Duration::ZERO).await {
        Err(RpcError::Remote(refusal)) => {
            assert_eq!(refusal.code, code::BAD_REQUEST, "{refusal}");
            assert!(refusal.message.contains("at most"), "{refusal}");
        }
        other => panic!("an oversized delete was accepted: {other:?}"),
    }
    assert_eq!(
        actor.stats().await.expect("stats").shards,
        names.len() as u64
    );

    // A node deletes all but the first chunk's shards, once they are untouched for
    // twice the grace; a repeat deletes nothing. Asked about an age longer than the
    // store has been open, it cannot vouch for any, and keeps them all. (Which touches
    // a store sees within an age is the store's tests' to check: here, under load,
    // 50 ms windows pass in no time.)
    let (kept, gone) = names.split_at(6);
    let age = 2 * grace;
    let filled = actor.stats().await.expect("stats");
    let unsure = node
        .delete(gone, Duration::from_secs(3600))
        .await
        .expect("delete");
    assert_eq!(
        (unsure.deleted, unsure.touched),
        (0, gone.len() as u32),
        "{unsure:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (mut deleted, mut bytes) = (0, 0);
    while deleted < gone.len() as u32 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {deleted} of {} deleted in 60 s",
            gone.len()
        );
        tokio::time::sleep(grace / 2).await;
        let done = node.delete(gone, age).await.expect("delete");
        deleted += done.deleted;
        bytes += done.bytes;
    }
    let listed: u64 = scanned
        .iter()
        .filter(|(n, _)| gone.contains(n))
        .map(|(_, b)| b)
        .sum();
    assert_eq!(bytes, listed, "the deletes free what the scan listed");
    let again = node.delete(gone, age).await.expect("delete again");
    assert_eq!((again.deleted, again.touched), (0, 0), "{again:?}");
    let left: Vec<_> = scan_all(to(Role::Node))
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut expected = kept.to_vec();
    expected.sort_unstable();
    assert_eq!(left, expected);
    for name in gone {
        assert!(
            actor.get(*name).await.expect("get").is_none(),
            "{name} still stored"
        );
    }
    // The background reclaim (which may have begun during the deletes) compacts the
    // emptied segments: the space they took is free again.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = actor.stats().await.expect("stats");
        if actor.reclaim_figures().0 > 0 && now.free > filled.free {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reclaim freed nothing in 60 s: {filled:?} -> {now:?}, figures {:?}",
            actor.reclaim_figures()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (name, shard) in kept.iter().zip(&chunks[0].1) {
        let got = actor.get(*name).await.expect("get").expect("kept");
        assert_eq!(&got[..], &shard[..]);
    }

    // And the deletes hold across a restart.
    server.close();
    drop((node, connection, server, actor, one));
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("actor thread");
    let (again, _thread) = tokio::task::spawn_blocking(move || {
        ShardActor::start(path, NODE, None, scrub_args(), Default::default())
    })
    .await
    .expect("task")
    .expect("reopen");
    let again = Shards::new(vec![again], Default::default());
    for name in gone {
        assert!(
            again.get(*name).await.expect("get").is_none(),
            "{name} came back"
        );
    }
    for (name, shard) in kept.iter().zip(&chunks[0].1) {
        let got = again.get(*name).await.expect("get").expect("kept");
        assert_eq!(&got[..], &shard[..]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
