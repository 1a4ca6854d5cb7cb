//! Self-healing on real local clusters: the dedup question that cannot acknowledge a
//! chunk with fewer than k shards, shards lost with a killed writer found by the census
//! and rebuilt, a node marked out rebuilt elsewhere, damage on disk found by scrub and
//! repaired, and repair that goes riskiest first, keeps its rate and resumes when its
//! node dies. Everything through the `hive` CLI, real node processes and real signals.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{Cluster, SEED, hive, node_in, ok, text};

/// How long healing may take on a loaded machine: a few census rounds (5 s apart on a
/// local cluster) and the rebuilding itself.
const HEAL_WITHIN: Duration = Duration::from_secs(180);

/// The rate test measures how fast repair goes, so it runs alone; the others (each a
/// cluster of its own) run side by side.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn random(seed: u64, len: usize) -> Vec<u8> {
    hive_testkit::random_bytes(seed, len)
}

/// Kills `nodes` and waits until the map shows them down (a write then skips them
/// rather than waiting for them).
fn kill_and_wait_down(c: &Cluster, nodes: &[u64]) {
    c.signal("-KILL", nodes);
    c.wait_status("killed nodes marked down", HEAL_WITHIN, |s| {
        s["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter(|n| nodes.contains(&n["id"].as_u64().expect("id")))
            .all(|n| n["state"] == "down")
    });
}

/// Each class's chunk counts by intact shards, from the status.
fn by_healthy(status: &serde_json::Value) -> BTreeMap<String, BTreeMap<u64, u64>> {
    status["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .map(|c| {
            let name = format!("{}+{}", c["k"], c["m"]);
            let counts = c["by_healthy"]
                .as_object()
                .expect("by_healthy")
                .iter()
                .map(|(h, n)| (h.parse().expect("a count"), n.as_u64().expect("chunks")))
                .collect();
            (name, counts)
        })
        .collect()
}

/// Waits until every node that is up has finished two census rounds from now on (the
/// first may have begun before), none has anything queued, and every chunk counted has
/// all k + m of its shards intact; the status then.
fn wait_healed(c: &Cluster, width: u64) -> serde_json::Value {
    let start = c.status();
    let rounds = |s: &serde_json::Value, id: &serde_json::Value| {
        s["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["id"] == *id)
            .map_or(0, |n| n["repair"]["rounds"].as_u64().expect("rounds"))
    };
    c.wait_status("every chunk whole again", HEAL_WITHIN, |s| {
        let nodes = s["nodes"].as_array().expect("nodes");
        let settled = nodes.iter().filter(|n| n["state"] == "up").all(|n| {
            n["repair"]["rounds"].as_u64().expect("rounds") >= rounds(&start, &n["id"]) + 2
                && n["repair"]["queued"] == 0
        });
        let whole = by_healthy(s)
            .values()
            .all(|counts| counts.keys().all(|h| *h == width));
        settled && whole
    })
}

fn chunks_counted(status: &serde_json::Value) -> u64 {
    by_healthy(status).values().flat_map(|c| c.values()).sum()
}

#[test]
fn a_rewrite_after_a_failed_write_stores_the_chunk_whole() {
    let _machine = shared();
    // The case through the library: a put fails with three of six nodes dead,
    // but its shard sends land on the three alive; once the nodes are back, a put of the
    // same bytes must not take one holder's "yes" as the chunk being stored.
    let c = Cluster::up("rewrite");
    let data = random(SEED + 20, 6 << 20);
    c.signal("-KILL", &[4, 5, 6]);
    let file = c.path("first.bin");
    std::fs::write(&file, &data).expect("sample");
    let out = hive(&["put", "--cluster", c.d(), file.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "a put with 3 of 6 nodes succeeded");
    c.start(&[]);
    let id = c.put("second.bin", &data);
    // Read at once, before repair could add anything: the put itself made the chunks
    // readable, with two holders more than the three that had shards.
    c.signal("-KILL", &[1, 2]);
    c.check(&id, &data);
}

#[test]
fn shards_lost_with_a_killed_writer_are_found_by_the_census_and_rebuilt() {
    let _machine = shared();
    let c = Cluster::up("census");
    kill_and_wait_down(&c, &[5, 6]);
    // A writer killed mid-put: its chunks are acknowledged at k on nodes 1..4, and the
    // shards it owes nodes 5 and 6 are never reported. It reads from a FIFO that the
    // test fills part way and holds open, so it is surely killed mid-object.
    let fifo = c.path("input.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success(), "mkfifo failed");
    let before = c.stored();
    let owed = c.owed();
    let mut writer = Command::new(env!("CARGO_BIN_EXE_hive"))
        .args(["put", "--cluster", c.d(), fifo.to_str().expect("utf-8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the writer");
    let mut input = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open the FIFO (the writer opens its end)");
    std::io::Write::write_all(&mut input, &random(SEED + 30, 40 << 20)).expect("feed");
    let started = Instant::now();
    while c.stored() < before + (16 << 20) {
        assert!(
            started.elapsed() < HEAL_WITHIN,
            "the writer stored nothing (seed {SEED:#x})"
        );
    }
    writer.kill().expect("kill -9 the writer");
    let _ = writer.wait();
    drop(input);
    assert_eq!(
        c.owed(),
        owed,
        "the killed writer reported what it owed, so this would prove nothing"
    );
    // A complete object too, written while the two nodes are down.
    let small = random(SEED + 31, 8 << 20);
    let small_id = c.put("small.bin", &small);
    c.start(&[]);
    let healed = wait_healed(&c, 6);
    assert!(
        chunks_counted(&healed) >= 16,
        "the census counted too few chunks: {healed}"
    );
    // The small object's shards on nodes 5 and 6 are real now: it reads with 1 and 2
    // dead.
    c.signal("-KILL", &[1, 2]);
    c.check(&small_id, &small);
}

#[test]
fn a_node_marked_out_is_rebuilt_elsewhere_and_another_loss_loses_nothing() {
    let _machine = shared();
    // 3+2 on six nodes: with one node out, five are left for five shards.
    let c = Cluster::with("out", 6, (3, 2), "1GiB", &[]);
    let data = random(SEED + 40, 48 << 20);
    let id = c.put("data.bin", &data);
    c.signal("-KILL", &[6]);
    let out = hive(&["node", "out", "--cluster", c.d(), "6"]);
    assert!(text(&out).contains("is out in map epoch"), "{}", text(&out));
    // A second one is refused: four nodes cannot hold five shards.
    let refused = hive(&["node", "out", "--cluster", c.d(), "5"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("would leave 4 nodes"),
        "{}",
        text(&refused)
    );
    ok(
        &hive(&["repair", "--cluster", c.d(), "--wait"]),
        "repair --wait",
    );
    let healed = wait_healed(&c, 5);
    assert!(chunks_counted(&healed) >= 20, "{healed}");
    c.signal("-KILL", &[5]);
    c.check(&id, &data);
}

/// Waits until the map has forgotten every past placement (every node found its groups
/// in place); the status then.
fn wait_rebalanced(c: &Cluster) -> serde_json::Value {
    c.wait_status("rebalance settled", HEAL_WITHIN, |s| {
        s["rebalance"]["past_placements"] == 0
    })
}

#[test]
fn nodes_added_and_marked_out_at_once_lose_no_read_and_rebalance_moves_the_shards() {
    let _machine = shared();
    // 4+2 on six nodes: every group holds a shard on every node.
    let c = Cluster::up("grow");
    let data = random(SEED + 45, 24 << 20);
    let id = c.put("data.bin", &data);
    // A 7th node takes one slot of 6 groups in 7: a seventh of the shards move to it,
    // copied, nothing rebuilt.
    let added = ok(
        &hive(&["cluster", "add", "--dir", c.d(), "--nodes", "1"]),
        "cluster add",
    );
    assert_eq!(added.matches(" added").count(), 1, "{added}");
    c.check(&id, &data);
    let done = ok(
        &hive(&["rebalance", "--cluster", c.d(), "--wait"]),
        "rebalance --wait",
    );
    assert!(done.contains("rebalance done"), "{done}");
    let settled = c.status();
    assert_eq!(settled["rebalance"]["past_placements"], 0, "{settled}");
    assert_eq!(settled["rebalance"]["moves_left"], 0, "{settled}");
    let shards = 6 * chunks_counted(&settled);
    let moved = settled["rebalance"]["shards_moved"]
        .as_u64()
        .expect("moved");
    let rebuilt = settled["repair"]["shards_rebuilt"]
        .as_u64()
        .expect("rebuilt");
    assert!(
        moved > 0 && (moved + rebuilt) * 7 <= shards * 5 / 4,
        "{moved} moved and {rebuilt} rebuilt of {shards} shards: more than 1.25 x a seventh"
    );
    // Then another joins and two old ones go out without waiting between: most
    // groups then have more than m = 2 of their slots on nodes that hold nothing of
    // theirs yet.
    ok(
        &hive(&["cluster", "add", "--dir", c.d(), "--nodes", "1"]),
        "cluster add",
    );
    for node in ["5", "6"] {
        ok(
            &hive(&["node", "out", "--cluster", c.d(), node]),
            "node out",
        );
    }
    let status = c.status();
    assert!(
        status["rebalance"]["past_placements"].as_u64() >= Some(2),
        "{status}"
    );
    // With two of the remaining old nodes dead too, the holders the map names have
    // fewer than k shards of most chunks: the reads find the others where the earlier
    // placements put them, on the nodes marked out.
    kill_and_wait_down(&c, &[3, 4]);
    c.check(&id, &data);
    // Inspection looks where reads look: the object's manifest is readable, not
    // reported lost for want of shards its current holders have not received yet.
    let shown = ok(
        &hive(&["inspect", "chunk", "--cluster", c.d(), &id]),
        "inspect chunk",
    );
    assert!(!shown.contains("UNREADABLE"), "{shown}");
    c.start(&[]);
    // The census moves every shard to its holder and drops the old copies; once every
    // node says so, the map forgets the earlier placements.
    let settled = wait_rebalanced(&c);
    let moved_now = settled["rebalance"]["shards_moved"]
        .as_u64()
        .expect("moved");
    let dropped = settled["rebalance"]["copies_dropped"]
        .as_u64()
        .expect("dropped");
    assert!(moved_now > moved && dropped > 0, "{settled}");
    let stored_on = |s: &serde_json::Value, ids: &[u64]| -> u64 {
        s["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter(|n| ids.contains(&n["id"].as_u64().expect("id")))
            .map(|n| n["shards"].as_u64().expect("shards"))
            .sum()
    };
    assert_eq!(
        stored_on(&settled, &[5, 6]),
        0,
        "old copies left: {settled}"
    );
    // Drained, node 5 can go for good; node 4, in placement, cannot.
    let refused = hive(&["node", "remove", "--cluster", c.d(), "4"]);
    assert!(
        !refused.status.success() && text(&refused).contains("drain it first"),
        "{}",
        text(&refused)
    );
    let removed = ok(
        &hive(&["node", "remove", "--cluster", c.d(), "5"]),
        "node remove",
    );
    assert!(removed.contains("removed in map epoch"), "{removed}");
    let status = c.status();
    // It stays in the map as a tombstone.
    assert_eq!(node_in(&status, 5)["state"], "removed", "{status}");
    // Every group now lives on nodes 1-4, 7 and 8; two of them dead loses nothing.
    c.signal("-KILL", &[7, 8]);
    c.check(&id, &data);
    let shown = ok(&hive(&["status", "--cluster", c.d()]), "status");
    assert!(shown.contains("rebalance: done"), "{shown}");
}

#[test]
fn a_node_that_joins_is_out_until_an_administrator_puts_it_in() {
    let _machine = shared();
    let c = Cluster::up("join-in");
    let data = random(SEED + 48, 16 << 20);
    let id = c.put("data.bin", &data);
    // It joins with a token, as on another host, and stays out of placement.
    let added = ok(
        &hive(&["cluster", "add", "--dir", c.d(), "--nodes", "1", "--out"]),
        "cluster add --out",
    );
    assert!(
        added.contains("out of placement until 'hive node in 7'"),
        "{added}"
    );
    let status = c.status();
    assert_eq!(node_in(&status, 7)["state"], "out", "{status}");
    assert_eq!(
        status["rebalance"]["past_placements"], 0,
        "nothing moved: {status}"
    );
    let put_in = ok(&hive(&["node", "in", "--cluster", c.d(), "7"]), "node in");
    assert!(put_in.contains("is in placement in map epoch"), "{put_in}");
    let settled = wait_rebalanced(&c);
    assert_eq!(node_in(&settled, 7)["state"], "up", "{settled}");
    assert!(
        settled["rebalance"]["shards_moved"].as_u64() > Some(0),
        "nothing moved to it: {settled}"
    );
    c.wait_status("node 7 holding shards", HEAL_WITHIN, |s| {
        node_in(s, 7)["shards"].as_u64() > Some(0)
    });
    // In already: nothing changes. Removed: never in again.
    ok(
        &hive(&["node", "in", "--cluster", c.d(), "7"]),
        "node in again",
    );
    c.check(&id, &data);
}

#[test]
fn a_node_drained_under_reads_ends_empty_and_only_then_is_removed() {
    let _machine = shared();
    // 3+2 on six nodes: with one drained, five are left for five shards.
    let c = Cluster::with("drain", 6, (3, 2), "1GiB", &[]);
    let data = random(SEED + 47, 32 << 20);
    let id = c.put("data.bin", &data);
    let refused = hive(&["node", "remove", "--cluster", c.d(), "6"]);
    assert!(
        !refused.status.success() && text(&refused).contains("drain it first"),
        "{}",
        text(&refused)
    );
    // A reader reads the object back, whole, over and over while the node drains.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let reads = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let out = c.path("drain-read");
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let got = hive(&[
                    "get",
                    "--cluster",
                    c.d(),
                    &id,
                    "-o",
                    out.to_str().expect("utf-8"),
                ]);
                assert!(
                    got.status.success(),
                    "read {reads} failed while draining: {}",
                    text(&got)
                );
                let back = std::fs::read(&out).expect("read back");
                assert!(
                    back == data,
                    "read {reads} differs while draining (seed {SEED:#x})"
                );
                reads += 1;
            }
            reads
        });
        ok(
            &hive(&["node", "drain", "--cluster", c.d(), "6"]),
            "node drain",
        );
        let settled = wait_rebalanced(&c);
        assert!(
            settled["rebalance"]["shards_moved"].as_u64() > Some(0),
            "nothing copied off: {settled}"
        );
        c.wait_status("node 6 empty", HEAL_WITHIN, |s| {
            node_in(s, 6)["shards"] == 0
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().expect("the reader")
    });
    assert!(reads >= 2, "only {reads} reads while draining");
    let removed = ok(
        &hive(&["node", "remove", "--cluster", c.d(), "6"]),
        "node remove",
    );
    assert!(removed.contains("removed in map epoch"), "{removed}");
    // Its shards live on the other five now: one of them dead too loses nothing.
    c.signal("-KILL", &[1]);
    c.check(&id, &data);
}

#[test]
fn scrub_finds_every_damaged_shard_and_repair_replaces_it() {
    let _machine = shared();
    let c = Cluster::up("scrub");
    let data = random(SEED + 50, 128 << 20);
    let id = c.put("data.bin", &data);
    // Damage 1% of node 3's shards (at least two) behind its back: flip a bit in half
    // of them, zero a whole 4 KiB block in the others.
    let store = c.path("node-3/store.img");
    let shards = hive_nvme::layout::shards(&store).expect("the store's layout");
    let count = (shards.len() / 100).max(2);
    let mut rng = hive_testkit::Rng::new(SEED);
    let mut victims = shards.clone();
    rng.shuffle(&mut victims);
    victims.truncate(count);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .expect("open the store file");
    for (n, shard) in victims.iter().enumerate() {
        let at = shard.shard + 200 + rng.below((shard.len - 4400) as usize) as u64;
        if n % 2 == 0 {
            let mut byte = [0u8; 1];
            std::fs::File::open(&store)
                .expect("store")
                .read_exact_at(&mut byte, at)
                .expect("read");
            file.write_all_at(&[byte[0] ^ 0x10], at).expect("flip");
        } else {
            file.write_all_at(&[0u8; 4096], at).expect("zero a block");
        }
    }
    file.sync_all().expect("sync");
    // Reads never return the wrong bytes: they verify every shard and every chunk.
    c.check(&id, &data);
    let out = ok(
        &hive(&["scrub", "--cluster", c.d(), "--node", "3", "--wait"]),
        "scrub --wait",
    );
    assert!(out.contains("scrub done on 1 nodes"), "{out}");
    let status = c.status();
    let node3 = node_in(&status, 3);
    let log = std::fs::read_to_string(c.path("node-3/node.log")).expect("node 3's log");
    let named: Vec<&str> = log.lines().filter(|l| l.contains("is damaged")).collect();
    assert_eq!(
        node3["scrub"]["damaged"].as_u64(),
        Some(count as u64),
        "scrub found another number of damaged shards than were made ({:?} damaged; the log names {named:#?}): {node3}",
        victims
            .iter()
            .map(|v| (v.name.to_string(), v.record))
            .collect::<Vec<_>>()
    );
    wait_healed(&c, 6);
    for victim in &victims {
        let chunk = victim.name.chunk.to_string();
        let shown = ok(
            &hive(&["inspect", "chunk", "--cluster", c.d(), &chunk]),
            "inspect",
        );
        assert!(shown.contains("(4+2): whole"), "{shown}");
    }
    c.signal("-KILL", &[1, 2]);
    c.check(&id, &data);
}

/// Per node, the intact-shard counts of the chunks it rebuilt, round by round, from its
/// log (`repair: chunk .. N intact` lines, at debug level).
fn rebuild_order(c: &Cluster, node: u64) -> Vec<Vec<u64>> {
    let log = std::fs::read_to_string(c.path(&format!("node-{node}/node.log"))).expect("log");
    let mut rounds: Vec<Vec<u64>> = Vec::new();
    for line in log.lines() {
        if line.contains("chunks to rebuild") {
            rounds.push(Vec::new());
        } else if line.contains(" intact: rebuilding shards ")
            && let Some(rest) = line.split("repair: chunk ").nth(1)
            && let Some(healthy) = rest.split(", ").nth(1)
        {
            let n = healthy
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("an intact count");
            rounds.last_mut().expect("a round began").push(n);
        }
    }
    rounds
}

fn repair_figures(status: &serde_json::Value) -> BTreeMap<u64, (u64, u64)> {
    status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["id"].as_u64().expect("id"),
                (
                    n["repair"]["bytes_rebuilt"].as_u64().expect("bytes"),
                    n["repair"]["queued"].as_u64().expect("queued"),
                ),
            )
        })
        .collect()
}

#[test]
fn repair_goes_riskiest_first_keeps_its_rate_and_resumes_when_its_node_dies() {
    let _machine = alone();
    const RATE: u64 = 512 << 10;
    const WINDOW: Duration = Duration::from_secs(16);
    let debug = [("HIVE_LOG", "debug")];
    let c = Cluster::with("risk", 6, (3, 2), "1GiB", &debug);
    // With nodes 5 and 6 dead, a group holds five of the six nodes: its chunks lack one
    // shard (5 or 6 is not among its holders) or two.
    kill_and_wait_down(&c, &[5, 6]);
    let data = random(SEED + 60, 128 << 20);
    let id = c.put("data.bin", &data);
    ok(
        &hive(&["repair", "--cluster", c.d(), "--rate", "512KiB"]),
        "repair --rate",
    );
    c.start(&debug);
    // Every node primary of groups with work: each rebuilds at the rate, no faster.
    let first = c.wait_status("repair under way", HEAL_WITHIN, |s| {
        repair_figures(s).values().filter(|(_, q)| *q > 0).count() >= 4
    });
    let window = Instant::now();
    while window.elapsed() < WINDOW {
        std::thread::sleep(Duration::from_millis(200));
    }
    let second = c.status();
    let (a, b) = (repair_figures(&first), repair_figures(&second));
    let limit = RATE as f64 * WINDOW.as_secs_f64();
    let mut measured = 0;
    for (node, (before, queued)) in &a {
        let (after, still) = b[node];
        if *queued == 0 || still == 0 {
            continue;
        }
        // The rate is a cap: a node may not exceed it by more than 20% over the window
        // (a second's burst and heartbeat timing are inside that). Below it, a node
        // pauses between rounds (its census), so half the cap shows it kept working.
        let wrote = (after - before) as f64;
        assert!(
            (0.5 * limit..=1.2 * limit).contains(&wrote),
            "node {node} rebuilt {wrote} bytes in {WINDOW:?} at a limit of {RATE} bytes/s"
        );
        measured += 1;
    }
    assert!(measured >= 2, "too few nodes stayed busy: {first} {second}");
    // The busiest repairer dies mid-way; once the map shows it down, the next holder of
    // each of its groups is that group's primary and carries on. It is one of the nodes
    // that never died (1 to 4): every shard it has queued belongs on another node, so
    // none of its work waits for it to come back, and whatever it left is taken over.
    let (&busiest, &(_, left)) = b
        .iter()
        .filter(|(node, _)| **node <= 4)
        .max_by_key(|(_, (_, q))| *q)
        .expect("nodes");
    assert!(left > 0, "no repairer had work left to hand over: {second}");
    c.signal("-KILL", &[busiest]);
    let dead = c.wait_status("the killed repairer marked down", HEAL_WITHIN, |s| {
        s["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .any(|n| n["id"] == busiest && n["state"] == "down")
    });
    let rebuilt = |s: &serde_json::Value| -> u64 {
        repair_figures(s)
            .iter()
            .filter(|(n, _)| **n != busiest)
            .map(|(_, (bytes, _))| bytes)
            .sum()
    };
    let before = rebuilt(&dead);
    c.wait_status("repair carried on without it", HEAL_WITHIN, |s| {
        rebuilt(s) > before
    });
    ok(
        &hive(&["repair", "--cluster", c.d(), "--rate", "unlimited"]),
        "repair --rate unlimited",
    );
    c.start(&debug);
    let healed = wait_healed(&c, 5);
    // Nothing written twice: every node holds exactly its share, 5 shards a chunk. A
    // node's shard count comes with its heartbeat, so the sum may trail the last
    // rebuilds by a beat: wait for it to settle there, never past it.
    let chunks = chunks_counted(&healed);
    let shards = |s: &serde_json::Value| -> u64 {
        s["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["shards"].as_u64().expect("shards"))
            .sum()
    };
    c.wait_status(
        "every node holding its share, 5 shards a chunk",
        HEAL_WITHIN,
        |s| {
            assert!(shards(s) <= chunks * 5, "more shards than 5 a chunk: {s}");
            shards(s) == chunks * 5
        },
    );
    c.check(&id, &data);
    // Riskiest first: within every round of every node, chunks with fewer intact shards
    // come before chunks with more.
    let mut saw_both = false;
    for node in 1..=6 {
        for round in rebuild_order(&c, node) {
            assert!(
                round.windows(2).all(|w| w[0] <= w[1]),
                "node {node} rebuilt out of risk order: {round:?}"
            );
            saw_both |= round.first() < round.last();
        }
    }
    assert!(saw_both, "no round had chunks of two risk levels to order");
}
