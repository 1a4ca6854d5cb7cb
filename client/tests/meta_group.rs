//! The replicated metadata group, with real node processes on loopback and a real FUSE
//! mount: the leader killed under a workload, a follower killed and brought back, a
//! replica that lost its files rebuilt, a map authority that lost its map file
//! starting again from the group's copy, enrollment that outlives the endpoint's files,
//! and a group without a majority refusing
//! clearly and serving again once one replica returns.
//!
//! Needs root and /dev/fuse.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hive_testkit::Rng;

mod support;
use support::mounted::{Mounted, require_fuse};
use support::{Cluster, RECOVER_WITHIN, SEED, STATUS_POLL, hive, ok, text};

/// How long one operation may wait across the death of the metadata group's leader:
/// an election (a few seconds) and the client's move to the new leader, with room for
/// a loaded machine. An operation that takes longer failed the test.
const FAILOVER_WITHIN: Duration = Duration::from_secs(45);
/// Operations the workload makes between two faults.
const OPS_BETWEEN_FAULTS: u64 = 60;
/// Replicas killed one after another in the crash loop.
const CRASH_ROUNDS: usize = 4;

/// The group as `hive meta status --json` shows it.
fn group(c: &Cluster) -> serde_json::Value {
    let out = ok(
        &hive(&["meta", "status", "--cluster", c.d(), "--json"]),
        "meta status",
    );
    serde_json::from_str(&out).expect("meta status is JSON")
}

/// Waits until the group has a leader and every member holds its whole log; the
/// leader.
fn settled(c: &Cluster, members: usize) -> u64 {
    let since = Instant::now();
    loop {
        let g = group(c);
        let last = g["last_log"].as_u64();
        let all = g["members"].as_array().expect("members");
        if let Some(leader) = g["leader"].as_u64()
            && all.len() == members
            && all.iter().all(|m| m["matched"].as_u64() == last)
        {
            return leader;
        }
        assert!(
            since.elapsed() < RECOVER_WITHIN,
            "the metadata group did not settle within {RECOVER_WITHIN:?}: {g}"
        );
        std::thread::sleep(STATUS_POLL);
    }
}

/// A workload through the mount that keeps a ledger of what must exist: files created
/// exclusively (a create applied twice would fail with EEXIST), renamed (twice:
/// ENOENT), removed (twice: ENOENT), directories made; every operation must succeed.
struct Workload {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(BTreeMap<String, Vec<u8>>, Duration)>,
}

/// Of every 10 operations: how many create, how many rename (the rest unlink).
#[derive(Clone, Copy)]
struct Mix {
    creates: usize,
    renames: usize,
}

/// Mostly creates: the tree grows.
const GROWING: Mix = Mix {
    creates: 5,
    renames: 3,
};
/// Mostly renames.
const RENAMING: Mix = Mix {
    creates: 3,
    renames: 6,
};

impl Workload {
    fn start(root: &Path, seed: u64, mix: Mix) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s, root) = (done.clone(), stop.clone(), root.to_path_buf());
        let thread = std::thread::spawn(move || run_workload(&root, (seed, mix), &d, &s));
        Self { done, stop, thread }
    }

    /// Waits until `n` more operations have completed.
    fn wait_more(&self, n: u64, what: &str) {
        let target = self.done.load(Ordering::SeqCst) + n;
        let since = Instant::now();
        while self.done.load(Ordering::SeqCst) < target {
            assert!(
                !self.thread.is_finished(),
                "the workload stopped early {what} (seed {SEED:#x})"
            );
            assert!(
                since.elapsed() < RECOVER_WITHIN,
                "the workload made no progress {what} within {RECOVER_WITHIN:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn finish(self) -> (BTreeMap<String, Vec<u8>>, Duration) {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

fn run_workload(
    root: &Path,
    (seed, mix): (u64, Mix),
    done: &AtomicU64,
    stop: &AtomicBool,
) -> (BTreeMap<String, Vec<u8>>, Duration) {
    use std::io::Write;
    let mut rng = Rng::new(seed);
    let mut ledger: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let started = Instant::now();
        let names: Vec<String> = ledger.keys().cloned().collect();
        let pick = rng.below(10);
        let what = if names.is_empty() || pick < mix.creates {
            let name = format!("f{n}");
            let content = hive_testkit::text_bytes(seed ^ n, 1 + rng.below(2000));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(root.join(&name))
                .unwrap_or_else(|e| panic!("op {n}: create {name}: {e} (seed {seed:#x})"));
            file.write_all(&content)
                .and_then(|()| file.sync_all())
                .unwrap_or_else(|e| panic!("op {n}: write {name}: {e} (seed {seed:#x})"));
            ledger.insert(name.clone(), content);
            format!("create {name}")
        } else if pick < mix.creates + mix.renames {
            let from = &names[rng.below(names.len())];
            let to = format!("r{n}");
            std::fs::rename(root.join(from), root.join(&to))
                .unwrap_or_else(|e| panic!("op {n}: rename {from} {to}: {e} (seed {seed:#x})"));
            let content = ledger.remove(from).expect("in the ledger");
            ledger.insert(to.clone(), content);
            format!("rename {from}")
        } else {
            let name = &names[rng.below(names.len())];
            std::fs::remove_file(root.join(name))
                .unwrap_or_else(|e| panic!("op {n}: unlink {name}: {e} (seed {seed:#x})"));
            ledger.remove(name);
            format!("unlink {name}")
        };
        let took = started.elapsed();
        assert!(
            took < FAILOVER_WITHIN,
            "op {n} ({what}) took {took:?} (seed {seed:#x})"
        );
        slowest = slowest.max(took);
        done.fetch_add(1, Ordering::SeqCst);
    }
    (ledger, slowest)
}

/// Checks that the tree under `root` is exactly `ledger`.
fn check_tree(root: &Path, ledger: &BTreeMap<String, Vec<u8>>) {
    let mut found: Vec<String> = std::fs::read_dir(root)
        .expect("list the mount")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let expected: Vec<String> = ledger.keys().cloned().collect();
    assert_eq!(
        found, expected,
        "the tree differs from the ledger (seed {SEED:#x})"
    );
    for (name, content) in ledger {
        let read = std::fs::read(root.join(name)).expect("read back");
        assert!(read == *content, "{name} differs (seed {SEED:#x})");
    }
}

#[test]
fn the_mount_rides_out_the_metadata_leaders_death_and_no_change_is_lost_or_doubled() {
    require_fuse();
    let c = Cluster::with("meta-failover", 4, (2, 1), "256MiB", &[]);
    let leader = settled(&c, 3);
    let mount = Mounted::new(&c, "default", "mnt");
    let work = Workload::start(&mount.dir, SEED, GROWING);
    work.wait_more(OPS_BETWEEN_FAULTS, "before any fault");
    // The first leader (the node that formed the group), then the one that took over.
    let mut leader = leader;
    for round in 0..2 {
        c.signal("-KILL", &[leader]);
        work.wait_more(
            OPS_BETWEEN_FAULTS,
            &format!("after the leader (node {leader}) was killed, round {round}"),
        );
        ok(
            &hive(&["cluster", "start", "--dir", c.d()]),
            "start the killed node",
        );
        leader = settled(&c, 3);
        work.wait_more(OPS_BETWEEN_FAULTS, "after the node returned");
    }
    let (ledger, slowest) = work.finish();
    eprintln!("slowest operation across two failovers: {slowest:?}");
    check_tree(&mount.dir, &ledger);
    // The tree stays whole for a mount started afresh.
    drop(mount);
    let again = Mounted::new(&c, "default", "again");
    check_tree(&again.dir, &ledger);
}

#[test]
fn a_crash_loop_of_random_replicas_under_renames_keeps_every_change_once() {
    require_fuse();
    let c = Cluster::with("meta-crash-loop", 4, (2, 1), "256MiB", &[]);
    settled(&c, 3);
    let mount = Mounted::new(&c, "default", "mnt");
    let seed = SEED ^ 0xc4a5;
    let work = Workload::start(&mount.dir, seed, RENAMING);
    let mut rng = Rng::new(seed);
    for round in 0..CRASH_ROUNDS {
        work.wait_more(OPS_BETWEEN_FAULTS / 2, &format!("before crash {round}"));
        let victim = 1 + rng.below(3) as u64;
        c.signal("-KILL", &[victim]);
        work.wait_more(
            OPS_BETWEEN_FAULTS / 2,
            &format!("after crash {round} (node {victim}, seed {seed:#x})"),
        );
        ok(
            &hive(&["cluster", "start", "--dir", c.d()]),
            "start the killed replica",
        );
        settled(&c, 3);
    }
    let (ledger, _) = work.finish();
    check_tree(&mount.dir, &ledger);
    replicas_agree(&c);
}

/// A replica that follows `leader` and is not the map authority (node 1).
fn follower_of(leader: u64) -> u64 {
    [2, 3]
        .into_iter()
        .find(|n| *n != leader)
        .expect("a follower")
}

/// Garbage collection runs on the leader: `follower` refuses an order for a round,
/// naming the leader.
fn follower_refuses_gc(c: &Cluster, follower: u64, leader: u64) {
    let g = group(c);
    let addr: std::net::SocketAddr = g["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["id"] == follower)
        .and_then(|m| m["addr"].as_str())
        .expect("the follower's address")
        .parse()
        .expect("an address");
    let runtime = hive_client::local_cluster::runtime().expect("runtime");
    let _entered = runtime.enter();
    let admin = hive_client::cluster_dir::ClusterDir::open(&c.dir)
        .and_then(|d| d.admin_client())
        .expect("the admin identity");
    let gc = hive_wire::net::gc::GcClient::new(Arc::new(admin), addr, hive_wire::NodeId(follower));
    let refused = runtime
        .block_on(gc.start(false))
        .expect_err("a follower refuses a collection round");
    assert!(
        refused.to_string().contains(&format!("node {leader} does")),
        "the refusal names the leader: {refused}"
    );
}

/// Waits until every replica has applied the same entries and has the same namespace
/// (`hive meta check`).
fn replicas_agree(c: &Cluster) {
    let since = Instant::now();
    loop {
        let out = hive(&["meta", "check", "--cluster", c.d(), "--json"]);
        assert!(out.status.success(), "replicas differ: {}", text(&out));
        let replicas: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("meta check is JSON");
        let all = replicas.as_array().expect("replicas");
        let first = &all[0];
        if all.len() == 3
            && first["error"].is_null()
            && all
                .iter()
                .all(|r| r["applied"] == first["applied"] && r["digest"] == first["digest"])
        {
            return;
        }
        assert!(
            since.elapsed() < RECOVER_WITHIN,
            "the replicas did not agree within {RECOVER_WITHIN:?}: {replicas}"
        );
        std::thread::sleep(STATUS_POLL);
    }
}

#[test]
fn a_follower_catches_up_and_a_replica_that_lost_its_files_is_rebuilt_identical() {
    require_fuse();
    let c = Cluster::with("meta-rebuild", 4, (2, 1), "256MiB", &[]);
    let leader = settled(&c, 3);
    let follower = follower_of(leader);
    follower_refuses_gc(&c, follower, leader);
    let mount = Mounted::new(&c, "default", "mnt");
    let write = |from: u64, to: u64| {
        for i in from..to {
            std::fs::write(mount.path(&format!("f{i}")), format!("file {i}")).expect("write");
        }
    };
    write(0, 50);
    c.signal("-KILL", &[follower]);
    write(50, 100);
    ok(
        &hive(&["cluster", "start", "--dir", c.d()]),
        "start the follower",
    );
    settled(&c, 3);
    // Its whole metadata directory lost: it comes back empty and is rebuilt from the
    // others (a snapshot, then the log), never started afresh.
    c.stop(follower);
    let meta = c.path(&format!("node-{follower}/meta"));
    std::fs::remove_dir_all(&meta).expect("delete the replica's metadata directory");
    write(100, 120);
    ok(
        &hive(&["cluster", "start", "--dir", c.d()]),
        "start the emptied follower",
    );
    settled(&c, 3);
    write(120, 140);
    settled(&c, 3);
    for i in 0..140 {
        assert_eq!(
            std::fs::read_to_string(mount.path(&format!("f{i}"))).expect("read"),
            format!("file {i}")
        );
    }
    settled(&c, 3);
    replicas_agree(&c);
}

/// The map epoch `hive status` shows.
fn epoch(c: &Cluster) -> u64 {
    c.status()["epoch"].as_u64().expect("the map's epoch")
}

/// Waits until node 1's log says the metadata group keeps map epoch `epoch`.
fn wait_kept(c: &Cluster, epoch: u64) {
    let log = c.path("node-1/node.log");
    let kept = format!("map: epoch {epoch} kept in the metadata group");
    let since = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(&kept)
    {
        assert!(
            since.elapsed() < RECOVER_WITHIN,
            "the group did not keep epoch {epoch} within {RECOVER_WITHIN:?}"
        );
        std::thread::sleep(STATUS_POLL);
    }
}

/// Restarts node 1 (the map authority), whose map file `damage` changed while it was
/// stopped: it starts again from the group's copy, with every node, and says so.
fn restart_authority(c: &Cluster, damage: impl FnOnce(&Path), said: &str) {
    let before = epoch(c);
    wait_kept(c, before);
    c.stop(1);
    let map = c.path("node-1/map.toml");
    damage(&map);
    ok(
        &hive(&["cluster", "start", "--dir", c.d()]),
        "start the map authority",
    );
    let status = c.wait_status(
        "every node up in a map past the lost one",
        RECOVER_WITHIN,
        |s| {
            let up = s["nodes"]
                .as_array()
                .map_or(0, |n| n.iter().filter(|n| n["state"] == "up").count());
            s["epoch"].as_u64() >= Some(before) && up == 4
        },
    );
    let log = std::fs::read_to_string(c.path("node-1/node.log")).expect("node 1's log");
    assert!(
        log.contains(&format!("map: took epoch {before} with 4 nodes from the metadata group's copy (this authority had {said})")),
        "node 1 says where its map came from: {status}"
    );
    let file = std::fs::read_to_string(&map).expect("the map file is written again");
    assert!(file.contains("[[nodes]]"), "{file}");
}

#[test]
fn a_map_authority_that_lost_its_map_file_starts_again_from_the_groups_copy() {
    let c = Cluster::with("map-rebuild", 4, (2, 1), "256MiB", &[]);
    settled(&c, 3);
    let data = b"kept through the map's loss".repeat(1000);
    let id = c.put("sample", &data);
    restart_authority(
        &c,
        |map| std::fs::remove_file(map).expect("delete the map file"),
        "no map file",
    );
    c.check(&id, &data);
    restart_authority(
        &c,
        |map| std::fs::write(map, "epoch = \"seven\"\n").expect("damage the map file"),
        "a damaged map file",
    );
    let aside = std::fs::read_dir(c.path("node-1"))
        .expect("node 1's directory")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("map.toml.damaged-")
        });
    assert!(aside, "the damaged map file is kept aside");
    c.check(&id, &data);
    // A file older than the group's copy (an old backup put back): the newer copy wins.
    let old = std::fs::read(c.path("node-1/map.toml")).expect("the map file");
    c.stop(2);
    c.wait_status("node 2 marked down", RECOVER_WITHIN, |s| {
        s["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["id"] == 2 && n["state"] != "up"))
    });
    restart_authority(
        &c,
        |map| std::fs::write(map, &old).expect("put the old map file back"),
        &format!("epoch {}", {
            let text = String::from_utf8_lossy(&old).to_string();
            let table: toml::Table = text.parse().expect("the old map parses");
            table["epoch"].as_integer().expect("epoch")
        }),
    );
    c.check(&id, &data);
}

#[test]
fn enrollment_in_the_group_outlives_the_endpoints_files() {
    let c = Cluster::with("enroll-group", 4, (2, 1), "256MiB", &[]);
    settled(&c, 3);
    let token = |c: &Cluster| {
        ok(
            &hive(&["token", "create", "--dir", c.d(), "--role", "node"]),
            "token create",
        )
        .trim()
        .to_string()
    };
    let first = token(&c);
    assert_eq!(
        ok(&c.join(5, &first), "join").trim(),
        "node/0000000000000005"
    );
    // The enrollment endpoint loses its id file and its ledger of used tokens.
    c.stop(1);
    for file in ["node-1/ids.toml", "node-1/used-tokens"] {
        std::fs::remove_file(c.path(file)).expect("delete the endpoint's file");
    }
    ok(
        &hive(&["cluster", "start", "--dir", c.d()]),
        "start the enrollment endpoint",
    );
    settled(&c, 3);
    // The group remembers the token and the ids it gave.
    let again = c.join(6, &first);
    assert!(!again.status.success(), "a join token worked twice");
    assert!(text(&again).contains("already used"), "{}", text(&again));
    let second = token(&c);
    assert_eq!(
        ok(&c.join(6, &second), "join").trim(),
        "node/0000000000000006",
        "an id is never given twice"
    );
    let log = std::fs::read_to_string(c.path("node-1/node.log")).expect("node 1's log");
    assert!(
        log.contains("enrollment: the metadata group admits tokens and gives ids"),
        "{log}"
    );
}

#[test]
fn without_a_majority_changes_fail_clearly_and_service_resumes_when_one_replica_returns() {
    require_fuse();
    let c = Cluster::with("meta-majority", 4, (2, 1), "256MiB", &[]);
    let leader = settled(&c, 3);
    let mount = Mounted::new(&c, "default", "mnt");
    std::fs::create_dir(mount.path("before")).expect("mkdir before");
    let others: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    c.signal("-KILL", &others);
    let refused = std::fs::create_dir(mount.path("during"));
    let err = refused.expect_err("a change without a majority is refused");
    assert_eq!(err.raw_os_error(), Some(5), "EIO: {err}");
    let log = mount.log(&c);
    assert!(
        log.contains("a majority of its replicas is unreachable"),
        "the mount's log says why: {log}"
    );
    // One replica back: a majority again.
    ok(
        &hive(&[
            "cluster",
            "start",
            "--dir",
            c.d(),
            "--node",
            &others[0].to_string(),
        ]),
        "start one replica",
    );
    std::fs::create_dir(mount.path("after")).expect("mkdir after one replica returned");
    assert!(mount.path("before").is_dir());
    assert!(mount.path("after").is_dir());
    let out = hive(&["meta", "status", "--cluster", c.d()]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn members_are_removed_and_added_while_the_mount_writes_and_nothing_is_lost() {
    require_fuse();
    let c = Cluster::with("meta-members", 4, (2, 1), "256MiB", &[]);
    let leader = settled(&c, 3);
    let mount = Mounted::new(&c, "default", "mnt");
    let seed = SEED ^ 0x3e3b;
    let work = Workload::start(&mount.dir, seed, GROWING);
    work.wait_more(OPS_BETWEEN_FAULTS / 2, "before any change");
    // A follower leaves the group...
    let gone = follower_of(leader);
    ok(
        &hive(&["meta", "remove", &gone.to_string(), "--cluster", c.d()]),
        "remove a member",
    );
    settled(&c, 2);
    work.wait_more(
        OPS_BETWEEN_FAULTS / 2,
        &format!("after node {gone} left the group"),
    );
    // ...and node 4, which had no replica, joins: it is given one, catches up, votes.
    ok(
        &hive(&["meta", "add", "4", "--cluster", c.d()]),
        "add a member",
    );
    settled(&c, 3);
    work.wait_more(OPS_BETWEEN_FAULTS / 2, "after node 4 joined the group");
    let members: Vec<u64> = group(&c)["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["id"].as_u64().expect("id"))
        .collect();
    assert!(
        members.contains(&4) && !members.contains(&gone),
        "node 4 in, node {gone} out: {members:?}"
    );
    let (ledger, slowest) = work.finish();
    eprintln!("slowest operation across the membership changes: {slowest:?}");
    check_tree(&mount.dir, &ledger);
    replicas_agree(&c);
}
