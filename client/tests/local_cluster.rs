//! The data path on a real local cluster: `hive cluster up` starts six `hive-node`
//! processes (4+2) on loopback, and everything below goes through the `hive` CLI and real
//! signals: large puts and dedup proved by the nodes' own figures, SIGKILLed nodes,
//! a third death that makes puts and reads fail clearly, restarts, a SIGSTOPped node,
//! a shard damaged on disk behind its node's back, and a dead map authority.

use std::time::{Duration, Instant};

use hive_wire::NodeId;

mod support;
use support::{Cluster, SEED, STATUS_WAIT, hive, node_in, ok, text};

/// How long a put may take to fail when too few nodes are alive: the connect deadline
/// plus generous slack for a loaded machine.
const FAIL_WITHIN: Duration = Duration::from_secs(60);
/// How much of each store image the damage step searches.
const SCAN: u64 = 512 << 20;

fn random(seed: u64, len: usize) -> Vec<u8> {
    hive_testkit::random_bytes(seed, len)
}

/// Overwrites, in some node's store file, the first place that holds `needle` (a piece
/// of an incompressible object, so it sits verbatim in a data shard); the node.
fn damage_on_disk(cluster: &Cluster, needle: &[u8]) -> u64 {
    for node in 1..=6 {
        let path = cluster.path(&format!("node-{node}/store.img"));
        // The shards of these tests sit in the first segments of each store.
        let mut image = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::fs::File::open(&path).expect("store image"), SCAN),
            &mut image,
        )
        .expect("read store image");
        if let Some(at) = image.windows(needle.len()).position(|w| w == needle) {
            use std::io::{Seek, SeekFrom, Write};
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open store image");
            file.seek(SeekFrom::Start(at as u64 + 100)).expect("seek");
            file.write_all(&[0xa5; 64]).expect("overwrite");
            file.sync_all().expect("sync");
            return node;
        }
    }
    panic!("no store holds the sample's bytes verbatim (seed {SEED:#x})");
}

#[test]
fn the_data_path_survives_kills_stops_restarts_and_damage() {
    let c = Cluster::up("data-path");

    // 256 MiB of random data, then a file half made of repeated content.
    let big = random(SEED, 256 << 20);
    let before = c.stored();
    let big_id = c.put("big.bin", &big);
    let after_big = c.stored();
    let unique = random(SEED + 1, 16 << 20);
    let block = random(SEED + 2, 4 << 20);
    let mut halved = unique.clone();
    for _ in 0..4 {
        halved.extend_from_slice(&block);
    }
    let halved_id = c.put("halved.bin", &halved);
    let after_halved = c.stored();
    c.check(&big_id, &big);
    c.check(&halved_id, &halved);
    // The random object costs its bytes times (k + m) / k; the half-repeated one, about
    // its 20 MiB of distinct content times 1.5, far from its 32 MiB times 1.5.
    let big_cost = after_big - before;
    assert!(
        ((256 << 20) * 3 / 2..(256 << 20) * 3 / 2 + (16 << 20)).contains(&big_cost),
        "256 MiB random stored as {big_cost} bytes"
    );
    let halved_cost = after_halved - after_big;
    let full = (32u64 << 20) * 3 / 2;
    let distinct = (20u64 << 20) * 3 / 2;
    assert!(
        halved_cost < full * 85 / 100 && halved_cost >= distinct * 95 / 100,
        "a 32 MiB file with 12 MiB of repeats stored as {halved_cost} bytes \
         (all of it would be {full}, its distinct content {distinct})"
    );
    // Writing the same file again stores nothing.
    assert_eq!(c.put("again.bin", &halved), halved_id);
    assert_eq!(c.stored(), after_halved, "a repeated put stored bytes");

    // Two nodes killed: a client following the map sees them marked down; everything
    // reads, new puts succeed on the four left.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let (follower, _) = runtime
        .block_on(hive_client::local_cluster::connect(&c.dir))
        .expect("connect");
    c.signal("-KILL", &[5, 6]);
    runtime.block_on(async {
        let down = |v: &hive_codec::ClusterView| !v.is_up(NodeId(5)) && !v.is_up(NodeId(6));
        tokio::time::timeout(STATUS_WAIT, follower.view_where(down))
            .await
            .expect("the client's map never showed nodes 5 and 6 down");
    });
    drop(follower);
    c.check(&big_id, &big);
    c.check(&halved_id, &halved);
    let small = random(SEED + 3, 8 << 20);
    let small_id = c.put("small.bin", &small);
    c.check(&small_id, &small);

    // A third: puts fail in time with the counts, reads say which chunk lacks shards.
    c.signal("-KILL", &[4]);
    let started = Instant::now();
    let file = c.path("late.bin");
    std::fs::write(&file, random(SEED + 4, 1 << 20)).expect("sample");
    let out = hive(&["put", "--cluster", c.d(), file.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "a put with 3 of 6 nodes succeeded");
    assert!(
        started.elapsed() < FAIL_WITHIN,
        "the put took {:?} to fail",
        started.elapsed()
    );
    let err = text(&out);
    assert!(
        err.contains("not stored") && err.contains("only 3 of 6 nodes could take one"),
        "{err}"
    );
    let out = c.get(&big_id);
    assert!(!out.status.success(), "a read with 3 of 6 nodes succeeded");
    let err = text(&out);
    assert!(
        err.contains("unreadable: 3 intact shards of 4 needed") && err.contains("chunk "),
        "{err}"
    );

    // Restarted, every object reads back.
    ok(
        &hive(&["cluster", "start", "--dir", c.d()]),
        "cluster start",
    );
    c.check(&big_id, &big);
    c.check(&halved_id, &halved);
    c.check(&small_id, &small);

    // One node stopped: puts complete at k, gets hedge around it; its shards are owed.
    let owed_before = c.owed();
    c.signal("-STOP", &[3]);
    let paused = random(SEED + 5, 24 << 20);
    let paused_id = c.put("paused.bin", &paused);
    c.check(&paused_id, &paused);
    // (Not the small object: written while two nodes were dead, it has four shards
    // until repair, and one of them is on the stopped node.)
    c.check(&halved_id, &halved);
    c.signal("-CONT", &[3]);
    let owed_after = c.owed();
    assert!(
        owed_after > owed_before,
        "no shards owed after a put with a stopped node ({owed_before} before, {owed_after} after)"
    );

    // A shard damaged on disk: the read is still right and names the bad shard.
    let node = damage_on_disk(&c, &big[3 << 20..(3 << 20) + 4096]);
    let out = c.check(&big_id, &big);
    let said = text(&out);
    assert!(
        said.contains("damaged shard") && said.contains(&format!("node {:016x}", node)),
        "the damaged shard on node {node} was not reported: {said}"
    );
}

#[test]
fn reads_go_on_without_the_map_authority() {
    let c = Cluster::up("no-authority");
    // Another node joins with a token; the token cannot be used twice.
    let token = ok(
        &hive(&["token", "create", "--dir", c.d(), "--role", "node"]),
        "token create",
    );
    for (n, expect_ok) in [(7, true), (8, false)] {
        let out = c.join(n, token.trim());
        if expect_ok {
            assert_eq!(ok(&out, "join").trim(), "node/0000000000000007");
            // The enrollment endpoint restarts: the token stays used.
            ok(&hive(&["cluster", "down", "--dir", c.d()]), "cluster down");
            ok(
                &hive(&["cluster", "start", "--dir", c.d()]),
                "cluster start",
            );
        } else {
            assert!(!out.status.success(), "a join token worked twice");
            assert!(text(&out).contains("already used"), "{}", text(&out));
        }
    }

    // Weight and failure domain are the administrator's to set, and the map shows them.
    let set = hive(&[
        "node",
        "set",
        "--cluster",
        c.d(),
        "--weight",
        "2",
        "--domain",
        "rack=r2,host=h6",
        "6",
    ]);
    assert!(
        ok(&set, "node set").contains("set in map epoch"),
        "{}",
        text(&set)
    );
    let status = c.status();
    let six = node_in(&status, 6);
    assert_eq!(
        (&six["weight"], &six["domain"]),
        (&2.into(), &"rack=r2,host=h6".into())
    );
    let bad = hive(&["node", "set", "--cluster", c.d(), "--domain", "rack", "6"]);
    assert!(
        !bad.status.success() && text(&bad).contains("key=value"),
        "{}",
        text(&bad)
    );
    let bad = hive(&["node", "set", "--cluster", c.d(), "--weight", "0", "5"]);
    assert!(
        !bad.status.success() && text(&bad).contains("would leave 5 nodes"),
        "{}",
        text(&bad)
    );

    let data: Vec<u8> = random(SEED + 10, 5 << 20)
        .into_iter()
        .chain(std::iter::repeat_n(b'x', 1 << 20))
        .collect();
    let id = c.put("sample.bin", &data);
    let empty = c.put("empty.bin", &[]);
    c.check(&empty, &[]);
    // A reader that stops early (`| head`; here one that reads nothing and is gone
    // before the status is asked) ends the report quietly: exit 0, no panic about a
    // broken pipe.
    let piped = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{}' status --cluster '{}' | true",
            env!("CARGO_BIN_EXE_hive"),
            c.d()
        ))
        .output()
        .expect("bash");
    assert!(
        piped.status.success() && piped.stderr.is_empty(),
        "hive status | head: {}",
        text(&piped)
    );
    // Node 1 is the map authority.
    c.signal("-KILL", &[1, 2]);
    let out = c.check(&id, &data);
    assert!(
        text(&out).contains("using map epoch"),
        "the map did not come from another node: {}",
        text(&out)
    );
    let bad = hive(&["get", "--cluster", c.d(), "not-an-id", "-o", "/dev/null"]);
    assert!(text(&bad).contains("not an object id"));
    let status = hive(&["status", "--cluster", c.d()]);
    assert!(!status.status.success());
    assert!(text(&status).contains("map authority"), "{}", text(&status));
    // With no node left to give a map, nothing is written under one made up from
    // cluster.toml: the put fails and says why.
    c.signal("-KILL", &[3, 4, 5, 6]);
    let file = c.path("late.bin");
    std::fs::write(&file, b"written under no map").expect("sample");
    let put = hive(&["put", "--cluster", c.d(), file.to_str().expect("utf-8")]);
    assert!(
        !put.status.success(),
        "a put with every node dead succeeded"
    );
    assert!(
        text(&put).contains("no node of the cluster answered with a map"),
        "{}",
        text(&put)
    );
}
