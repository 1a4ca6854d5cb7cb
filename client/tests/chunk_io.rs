//! Chunks across six nodes (4+2): every chunk reads back, duplicates are not stored
//! twice, two nodes down still read and write (with shards owed), three down is a clear
//! error. Nodes are real shard actors behind real mutual-TLS QUIC servers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hive_actors::{ScrubArgs, ShardActor, Shards, shard_service};
use hive_client::chunk_io::{ChunkError, ChunkStore};
use hive_codec::{ClusterMap, ClusterView, CompressionConfig, ErasureScheme, NodeInfo, NodeState};
use hive_nvme::{FormatOptions, Store};
use hive_testkit::{Rng, random_bytes};
use hive_wire::net::tls::Revocations;
use hive_wire::net::{Client, ClusterCa, Credentials, Identity, Role, Server, Validity};
use hive_wire::{Epoch, FailureDomain, NodeId};

const NODES: u64 = 6;

struct Node {
    server: Server,
    actor: ShardActor,
}

fn start_nodes(dir: &std::path::Path, ca: &ClusterCa) -> Vec<Node> {
    let validity = Validity::starting_now(Duration::from_secs(3600));
    (1..=NODES)
        .map(|n| {
            let id = NodeId(n);
            let path = dir.join(format!("store-{n}"));
            let options = FormatOptions {
                node_id: id,
                size: Some(96 << 20),
                segment_size: 4 << 20,
            };
            Store::format(&path, &options).expect("format");
            let (actor, _thread) = ShardActor::start(
                path,
                id,
                None,
                ScrubArgs::new(hive_actors::constants::DEFAULT_SCRUB_PERIOD).0,
                Default::default(),
            )
            .expect("actor");
            let (cert, key) = ca
                .issue_with_key(Identity::node(id), validity)
                .expect("cert");
            let server = Server::bind(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                ca.cert(),
                &Credentials::new(cert, &key),
                Revocations::default(),
                shard_service(
                    Shards::new(vec![actor.clone()], Default::default()),
                    Default::default(),
                ),
            )
            .expect("server");
            Node { server, actor }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_survive_two_nodes_down_and_fail_clearly_with_three() {
    let seed = 0xc4_0c;
    let dir = std::env::temp_dir().join(format!("hive-chunk-io-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let ca = ClusterCa::create("test").expect("ca");
    let nodes = tokio::task::spawn_blocking({
        let (dir, ca) = (
            dir.clone(),
            ClusterCa::from_pem(ca.cert_pem(), &ca.key_pem()).expect("ca"),
        );
        move || start_nodes(&dir, &ca)
    })
    .await
    .expect("nodes");
    let infos: Vec<NodeInfo> = (1..=NODES)
        .map(|n| NodeInfo {
            id: NodeId(n),
            domain: FailureDomain(n as u32),
            weight: 1,
            state: NodeState::Up,
            joined: Epoch(1),
        })
        .collect();
    let map = ClusterMap::new(Epoch(1), 8, infos).expect("map");
    let addresses: HashMap<NodeId, SocketAddr> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (NodeId(i as u64 + 1), n.server.local_addr()))
        .collect();
    let who = Identity {
        role: Role::Client,
        id: 1,
    };
    let (cert, key) = ca
        .issue_with_key(who, Validity::starting_now(Duration::from_secs(3600)))
        .expect("client cert");
    let client = Client::new(ca.cert(), Some(&Credentials::new(cert, &key))).expect("client");
    let scheme = ErasureScheme::new(4, 2).expect("4+2");
    let store = Arc::new(ChunkStore::new(
        ClusterView::new(map, addresses),
        client,
        scheme,
        CompressionConfig::default(),
    ));

    let mut rng = Rng::new(seed);
    let mut chunks = Vec::new();
    for n in 0..24 {
        let data = random_bytes(seed + n, 1000 + rng.below(600_000));
        let id = store.put(&data).await.expect("put");
        chunks.push((id, data));
    }
    for (id, data) in &chunks {
        assert_eq!(
            &store.get(*id).await.expect("get")[..],
            &data[..],
            "seed {seed:#x}"
        );
    }

    // An object: 3 MiB with a repeated half, cut by content-defined chunking (small
    // bounds so it spans several chunks); the repeat is stored once.
    let chunker = hive_codec::Chunker::new(hive_codec::ChunkerConfig {
        min: 64 << 10,
        avg: 256 << 10,
        max: 1 << 20,
    })
    .expect("chunker");
    let half = random_bytes(seed ^ 7, 3 << 19);
    let object = [half.clone(), half].concat();
    let shards_before = stats(&nodes).await;
    let object_id = hive_client::object::put_object(&store, &chunker, &object)
        .await
        .expect("put object");
    let added = stats(&nodes).await - shards_before;
    let back = hive_client::object::get_object(&store, object_id)
        .await
        .expect("get object");
    assert!(back == object, "object read back differs");
    let manifest_chunks = chunker.split(&object).count() as u64 + 1;
    assert!(
        added < manifest_chunks * 6,
        "the repeated half was stored again ({added} shards)"
    );

    // Writing the same bytes again stores nothing new.
    let before: u64 = stats(&nodes).await;
    store.put(&chunks[0].1).await.expect("put again");
    assert_eq!(
        stats(&nodes).await,
        before,
        "a duplicate chunk was stored again"
    );

    // Two nodes down: everything still reads; a new chunk is acknowledged with shards owed.
    nodes[0].server.close();
    nodes[1].server.close();
    for (id, data) in &chunks {
        assert_eq!(
            &store.get(*id).await.expect("get with two down")[..],
            &data[..]
        );
    }
    let fresh = random_bytes(seed ^ 1, 300_000);
    let fresh_id = store.put(&fresh).await.expect("put with two down");
    assert_eq!(&store.get(fresh_id).await.expect("get")[..], &fresh[..]);
    tokio::time::timeout(Duration::from_secs(30), store.owed_at_least(2))
        .await
        .expect("the two shards for the down nodes are owed within 30 s");
    assert_eq!(store.shards_owed(), 2);

    // Three down: writes and reads fail and say how short they fall.
    nodes[2].server.close();
    match store.put(&random_bytes(seed ^ 2, 50_000)).await {
        Err(ChunkError::NotEnoughNodes {
            needed: 4,
            available: 3,
            ..
        }) => {}
        other => panic!("expected NotEnoughNodes, got {other:?}"),
    }
    match store.get(chunks[0].0).await {
        Err(err @ ChunkError::Unreadable { needed: 4, .. }) => {
            assert!(
                err.to_string().contains("intact shards of 4 needed"),
                "{err}"
            );
        }
        other => panic!("expected Unreadable, got {:?}", other.map(|d| d.len())),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

async fn stats(nodes: &[Node]) -> u64 {
    let mut total = 0;
    for node in nodes {
        total += node.actor.stats().await.expect("stats").shards;
    }
    total
}
