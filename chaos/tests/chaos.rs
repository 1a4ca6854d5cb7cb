//! Short seeded chaos runs against real local clusters (six `hive-node` processes,
//! 4+2, on loopback), and the checker proved against losses planted on purpose.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use hive_wire::ChunkId;

/// The seed of every run here; printed in failures.
const SEED: u64 = 0x5eed_c4a0;
/// How long each fault run's workload goes on: a warm-up of a quarter of it, then room
/// for one fault (a hold is 3 to 8 s; a step starts only if its hold ends in time), in
/// a suite of a dozen runs that must fit a CI run of under 45 minutes; longer runs
/// are `hive-chaos run --duration`'s.
const DURATION: &str = "15s";

/// One cluster at a time: the machine has two cores. (scripts/test runs each test in
/// a process of its own through nextest, whose `chaos-cluster` group does the same.)
static MACHINE: Mutex<()> = Mutex::new(());

fn machine() -> std::sync::MutexGuard<'static, ()> {
    MACHINE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hive-chaos-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn chaos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hive-chaos"))
        .args(args)
        .output()
        .expect("run hive-chaos")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `schedule` (a name, or a schedule file's path ending in `.toml`) on a cluster
/// of its own; the JSON report and the output.
fn run(name: &str, schedule: &str, extra: &[&str]) -> (serde_json::Value, String) {
    let dir = dir(name);
    let json = dir.with_extension("json");
    let seed = SEED.to_string();
    let out = chaos(
        &[
            "run",
            "--cluster",
            dir.to_str().expect("utf-8"),
            if schedule.ends_with(".toml") {
                "--schedule-file"
            } else {
                "--schedule"
            },
            schedule,
            "--seed",
            &seed,
            "--json",
            json.to_str().expect("utf-8"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect::<Vec<_>>(),
    );
    let output = text(&out);
    let report = std::fs::read(&json)
        .unwrap_or_else(|e| panic!("no report from {schedule} (seed {SEED:#x}): {e}\n{output}"));
    let report: serde_json::Value = serde_json::from_slice(&report).expect("the report is JSON");
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{schedule} (seed {SEED:#x}) failed to run: {output}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&json);
    (report, output)
}

/// Runs `schedule` for [`DURATION`] on a cluster of its own and checks nothing was
/// lost and a fault was made; the report, the output and the faults.
fn run_faults(
    name: &str,
    schedule: &str,
    extra: &[&str],
) -> (serde_json::Value, String, Vec<serde_json::Value>) {
    let args: Vec<&str> = ["--duration", DURATION]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let (report, output) = run(name, schedule, &args);
    assert_nothing_lost(schedule, &report, &output);
    let faults = report["faults"].as_array().expect("faults").clone();
    assert!(!faults.is_empty(), "a fault was injected: {output}");
    (report, output, faults)
}

fn assert_nothing_lost(schedule: &str, report: &serde_json::Value, output: &str) {
    assert_eq!(report["lost"], 0, "{schedule} (seed {SEED:#x}): {output}");
    assert_eq!(report["corrupt_returned"], 0, "{schedule}: {output}");
    if report["refused"] == 0 && report["deleted"] == 0 && schedule != "full-disk" {
        // With nothing refused, collected or filled in, no chunk may be left without
        // k shards (a refused write's chunks may be, chunks a collection round is
        // sweeping, and a fill's one-shard chunks until they are collected).
        assert_eq!(report["unreadable_chunks"], 0, "{schedule}: {output}");
    }
    assert_eq!(report["passed"], true, "{schedule}: {output}");
    let (acked, deleted, verified) = (
        report["acked"].as_u64().expect("acked"),
        report["deleted"].as_u64().expect("deleted"),
        report["verified"].as_u64().expect("verified"),
    );
    assert!(
        verified + deleted == acked && acked > 10,
        "{schedule}: every acknowledged write not deleted is read back: {output}"
    );
}

#[test]
fn kill_m_loses_nothing_and_heals() {
    let _machine = machine();
    // Few objects kept: most are deleted again, and garbage collection rounds run while
    // nodes die.
    let (report, output, faults) = run_faults("kill-m", "kill-m", &["--live-bytes", "32MiB"]);
    assert!(
        report["deleted"].as_u64() > Some(10) && report["gc_rounds"].as_u64() > Some(0),
        "objects were deleted and collected during the faults: {output}"
    );
    for fault in &faults {
        assert_eq!(fault["nodes"].as_array().map(Vec::len), Some(2), "{fault}");
        assert!(fault["repaired_s"].as_f64().is_some(), "{fault}");
    }
    assert_eq!(
        report["read_errors"], 0,
        "with m down every read succeeds: {output}"
    );
}

#[test]
fn stop_m_loses_nothing() {
    let _machine = machine();
    run_faults("stop-m", "stop-m", &[]);
}

#[test]
fn bitrot_on_m_nodes_is_never_returned() {
    let _machine = machine();
    let (_, output, faults) = run_faults("bitrot", "bitrot", &[]);
    let damaged = faults
        .iter()
        .map(|f| f["detail"].as_str().expect("detail").matches(':').count())
        .sum::<usize>();
    assert!(damaged >= 8, "shards were damaged: {output}");
}

#[test]
fn full_disks_refuse_and_come_back_through_garbage_collection() {
    let _machine = machine();
    let (_, output, faults) = run_faults("full-disk", "full-disk", &[]);
    for fault in faults {
        assert!(
            fault["detail"]
                .as_str()
                .is_some_and(|d| d.matches("until full").count() == 2),
            "two stores filled: {output}"
        );
        assert!(fault["repaired_s"].as_f64().is_some(), "{fault}");
    }
}

#[test]
fn a_flaky_network_loses_nothing() {
    let _machine = machine();
    let (report, output, faults) = run_faults("flaky", "flaky-network", &[]);
    for fault in faults {
        assert_eq!(fault["nodes"].as_array().map(Vec::len), Some(2), "{fault}");
        assert!(fault["repaired_s"].as_f64().is_some(), "{fault}");
    }
    let network = &report["network"];
    assert!(
        network["delayed"].as_u64() > Some(0) && network["dropped"].as_u64() > Some(0),
        "the proxy delayed and dropped packets: {output}"
    );
}

#[test]
fn a_partition_of_m_nodes_loses_nothing() {
    let _machine = machine();
    let (report, output, faults) = run_faults("partition", "partition", &[]);
    for fault in faults {
        assert!(
            fault["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("cut off from")),
            "{fault}"
        );
        assert!(fault["repaired_s"].as_f64().is_some(), "{fault}");
    }
    assert!(
        report["network"]["dropped"].as_u64() > Some(0),
        "the partition dropped packets: {output}"
    );
}

#[test]
fn failed_syncs_and_writes_stop_their_nodes_and_lose_nothing() {
    let _machine = machine();
    let (_, output, faults) = run_faults("disk-error", "disk-error", &[]);
    for fault in &faults {
        assert!(
            fault["detail"]
                .as_str()
                .is_some_and(|d| d.ends_with("stopped itself")),
            "each node stopped itself (fail-stop): {output}"
        );
        assert!(fault["repaired_s"].as_f64().is_some(), "{fault}");
    }
}

#[test]
fn a_killed_mount_loses_nothing_fsynced() {
    let _machine = machine();
    let (report, output, _) = run_faults("kill-mount", "kill-mount", &[]);
    let files = &report["files"];
    assert!(
        files["failed"].as_u64() > Some(0),
        "file ops failed while the mount was dead: {output}"
    );
    let checked = &files["outcome"];
    assert!(
        checked["verified"].as_u64() > Some(0) && checked["gone"].as_u64() > Some(0),
        "files were read back and names found gone: {output}"
    );
}

#[test]
fn killing_the_metadata_leader_loses_nothing_and_the_replicas_end_alike() {
    let _machine = machine();
    let (report, output, faults) = run_faults("meta-crash", "meta-crash", &[]);
    for (n, fault) in faults.iter().enumerate() {
        let kind = if n.is_multiple_of(2) {
            "meta-kill"
        } else {
            "map-loss"
        };
        assert_eq!(fault["kind"], kind, "{fault}");
        assert_eq!(fault["nodes"].as_array().map(Vec::len), Some(1), "{fault}");
    }
    assert_eq!(report["meta_replicas"]["agree"], true, "{output}");
    assert_eq!(report["meta_replicas"]["replicas"], 3, "{output}");
    let files = &report["files"];
    assert_eq!(
        files["failed"], 0,
        "the mount rides out each failover: {output}"
    );
}

#[test]
fn a_map_authority_that_lost_its_map_file_comes_back_at_its_epoch_and_loses_nothing() {
    let _machine = machine();
    let schedule = dir("map-loss-schedule").with_extension("toml");
    std::fs::write(
        &schedule,
        "repeat = false\n[[step]]\nfault = \"map-loss\"\nhold = \"3s\"\n",
    )
    .expect("write the schedule");
    let (report, output, faults) = run_faults("map-loss", schedule.to_str().expect("utf-8"), &[]);
    let _ = std::fs::remove_file(&schedule);
    assert_eq!(faults.len(), 1, "{output}");
    assert_eq!(faults[0]["kind"], "map-loss", "{output}");
    // The heal fails the run unless the map came back at its epoch with every node.
    let detail = faults[0]["detail"].as_str().expect("detail");
    assert!(
        detail.contains("deleted") || detail.contains("random bytes"),
        "{detail}"
    );
    assert_eq!(report["meta_replicas"]["agree"], true, "{output}");
}

#[test]
fn a_random_mix_loses_nothing() {
    let _machine = machine();
    let (_, output, faults) = run_faults("random", "random", &[]);
    let victims: std::collections::BTreeSet<u64> = faults
        .iter()
        .flat_map(|f| f["nodes"].as_array().expect("nodes").iter())
        .map(|n| n.as_u64().expect("a node id"))
        .collect();
    assert!(victims.len() <= 2, "at most m victims: {output}");
}

#[test]
fn kill_beyond_m_refuses_writes_and_loses_nothing_acknowledged() {
    let _machine = machine();
    let (report, output) = run("beyond", "kill-beyond-m", &["--duration", "30s"]);
    assert_nothing_lost("kill-beyond-m", &report, &output);
    assert!(
        report["refused"].as_u64() > Some(0),
        "writes are refused while m + 1 nodes are down: {output}"
    );
    assert_eq!(
        report["acked_beyond_m"].as_array().map(Vec::len),
        Some(0),
        "{output}"
    );
}

#[test]
fn an_interrupt_heals_checks_reports_and_stops_the_cluster() {
    use std::io::{BufRead, BufReader};
    let _machine = machine();
    let dir = dir("interrupt");
    let json = dir.with_extension("json");
    let seed = SEED.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hive-chaos"))
        .args([
            "run",
            "--cluster",
            dir.to_str().expect("utf-8"),
            "--schedule",
            "kill-m",
            "--seed",
            &seed,
            "--duration",
            "10m",
            "--json",
            json.to_str().expect("utf-8"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run hive-chaos");
    let mut said = Vec::new();
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    // Interrupted while its first fault is held.
    for line in lines.by_ref() {
        let line = line.expect("a line");
        let fault = line.contains(" kill nodes ");
        said.push(line);
        if fault {
            break;
        }
    }
    assert!(
        said.last().is_some_and(|l| l.contains(" kill nodes ")),
        "a fault was injected: {said:?}"
    );
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    // Healing, the checker and stopping the cluster take a while; not for ever.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let _ = tx.send((rest, child.wait().expect("wait")));
    });
    let (rest, status) = rx
        .recv_timeout(std::time::Duration::from_secs(600))
        .unwrap_or_else(|_| panic!("hive-chaos did not end within 600 s of SIGINT: {said:?}"));
    said.extend(rest);
    let said = said.join("\n");
    assert_eq!(status.code(), Some(0), "{said}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the report")).expect("JSON");
    assert_eq!(report["interrupted"], true, "{said}");
    assert_nothing_lost("kill-m", &report, &said);
    assert!(
        report["duration_s"].as_f64() < Some(300.0),
        "the run ended early: {said}"
    );
    let nodes = hive_client::local_cluster::nodes(&dir).expect("the cluster's nodes");
    assert!(
        nodes
            .iter()
            .all(|(_, pid)| !hive_client::local_cluster::alive(*pid)),
        "the cluster the run started is stopped: {said}"
    );
    let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
    assert!(
        !mounts.contains(dir.to_str().expect("utf-8")),
        "the mount is gone: {said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&json);
}

/// Destroys every shard of `chunk` in the stores of `nodes` of the cluster in `dir`,
/// behind their backs; how many.
fn destroy(dir: &Path, nodes: &[u64], chunk: ChunkId) -> usize {
    use std::os::unix::fs::FileExt;
    let mut destroyed = 0;
    for node in nodes {
        let store = dir.join(format!("node-{node}/store.img"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&store)
            .expect("the store file");
        for shard in hive_nvme::layout::shards(&store).expect("the store's layout") {
            if shard.name.chunk == chunk {
                let len = shard.shard + shard.len - shard.record;
                file.write_all_at(&vec![0u8; len as usize], shard.record)
                    .expect("zero the record");
                destroyed += 1;
            }
        }
        file.sync_all().expect("sync");
    }
    destroyed
}

#[test]
fn the_checker_names_a_planted_loss_and_a_wrong_read() {
    let _machine = machine();
    let dir = dir("checker");
    let d = dir.to_str().expect("utf-8");
    let seed = SEED.to_string();
    let out = chaos(&[
        "run",
        "--cluster",
        d,
        "--schedule",
        "none",
        "--seed",
        &seed,
        "--duration",
        "20s",
        "--ops",
        "12",
        "--keep",
    ]);
    let stopper = Stopper(dir.clone());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Network faults need the fault proxy, which only a cluster the run starts has.
    let refused = chaos(&["run", "--cluster", d, "--schedule", "partition"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("network faults need the fault proxy"),
        "{}",
        text(&refused)
    );
    let elsewhere = dir.with_extension("kept");
    let kept = chaos(&[
        "run",
        "--cluster",
        elsewhere.to_str().expect("utf-8"),
        "--schedule",
        "flaky-network",
        "--keep",
    ]);
    assert_eq!(kept.status.code(), Some(2), "{}", text(&kept));
    assert!(text(&kept).contains("cannot be kept"), "{}", text(&kept));
    assert!(!elsewhere.exists(), "nothing was started");
    let ledger = dir.join("chaos-ledger.jsonl");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&ledger)
        .expect("the ledger")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a ledger line"))
        .collect();
    assert!(
        lines.iter().any(|l| l["line"] == "file"),
        "the file workload wrote through the mount"
    );
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .filter(|l| l["line"] == "write")
        .cloned()
        .collect();
    assert_eq!(entries.len(), 12, "{entries:?}");
    let clean = chaos(&["check", "--cluster", d]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));

    // A loss: one entry's object manifest destroyed on m + 1 = 3 of its holders.
    let victim = &entries[5];
    let id: ChunkId = victim["object"]
        .as_str()
        .expect("acknowledged")
        .parse()
        .expect("an id");
    assert!(destroy(&dir, &[2, 3, 4], id) >= 3, "three shards destroyed");
    let lost = chaos(&["check", "--cluster", d]);
    let said = text(&lost);
    assert_eq!(
        lost.status.code(),
        Some(1),
        "the checker fails loudly: {said}"
    );
    assert!(said.contains("lost: 1"), "{said}");
    assert!(
        said.contains(&format!("write {} (object {id})", victim["op"])),
        "the loss is named: {said}"
    );

    // A wrong read: the ledger says another entry was other bytes than the cluster
    // returns.
    let mut forged = entries.clone();
    forged[8]["blake3"] = serde_json::Value::String("00".repeat(32));
    let forged_path = dir.join("forged.jsonl");
    std::fs::write(
        &forged_path,
        forged.iter().map(|e| format!("{e}\n")).collect::<String>(),
    )
    .expect("write the forged ledger");
    let wrong = chaos(&[
        "check",
        "--cluster",
        d,
        "--ledger",
        forged_path.to_str().expect("utf-8"),
    ]);
    let said = text(&wrong);
    assert_eq!(wrong.status.code(), Some(1), "{said}");
    assert!(said.contains("corrupt_returned: 1"), "{said}");
    assert!(
        said.contains(&format!(
            "write {} (object {})",
            forged[8]["op"],
            forged[8]["object"].as_str().expect("id")
        )),
        "the wrong read is named: {said}"
    );

    // Files: one whose last line says it was fsynced with other bytes than it holds,
    // and one fsynced that is not there at all.
    let last_synced = {
        let mut last = std::collections::BTreeMap::new();
        for l in lines.iter().filter(|l| l["line"] == "file") {
            last.insert(l["path"].as_str().expect("path"), l.clone());
        }
        last.into_values()
            .find(|l| l["change"] == "synced")
            .expect("a file the run left fsynced")
    };
    let mut wrong_file = last_synced.clone();
    wrong_file["n"] = 900_001.into();
    wrong_file["blake3"] = "00".repeat(32).into();
    let mut missing = last_synced.clone();
    missing["n"] = 900_002.into();
    missing["path"] = "chaos-files/nowhere".into();
    let forged_files = dir.join("forged-files.jsonl");
    std::fs::write(
        &forged_files,
        lines
            .iter()
            .chain([&wrong_file, &missing])
            .map(|e| format!("{e}\n"))
            .collect::<String>(),
    )
    .expect("write the forged ledger");
    let files = chaos(&[
        "check",
        "--cluster",
        d,
        "--ledger",
        forged_files.to_str().expect("utf-8"),
    ]);
    let said = text(&files);
    assert_eq!(files.status.code(), Some(1), "{said}");
    assert!(said.contains("lost (files): 1"), "{said}");
    assert!(
        said.contains("chaos-files/nowhere (file op 900002)"),
        "{said}"
    );
    assert!(said.contains("corrupt_returned (files): 1"), "{said}");
    assert!(
        said.contains(&format!(
            "{} (file op 900001)",
            last_synced["path"].as_str().expect("path")
        )),
        "the wrong file is named: {said}"
    );
    drop(stopper);
}

/// Stops the local cluster in a directory when dropped, and removes it unless the test
/// failed.
struct Stopper(PathBuf);

impl Drop for Stopper {
    fn drop(&mut self) {
        let down = hive_client::local_cluster::down(&self.0);
        if !std::thread::panicking() {
            down.expect("cluster down");
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn rebalance_under_load_loses_nothing_and_every_read_succeeds() {
    let _machine = machine();
    // Eight nodes, 4+2: with two at weight 0, six are left in placement, and each
    // change moves slots of most groups away and back again.
    let (report, output, faults) = run_faults("rebalance", "rebalance", &["--nodes", "8"]);
    for fault in &faults {
        assert_eq!(fault["kind"], "reweigh", "{fault}");
        assert_eq!(fault["nodes"].as_array().map(Vec::len), Some(2), "{fault}");
    }
    assert_eq!(
        report["read_errors"], 0,
        "reads look where the earlier placements put the shards: {output}"
    );
}

#[test]
fn reencode_under_load_loses_nothing_and_every_read_succeeds() {
    let _machine = machine();
    // The default volume goes from 4+2 to 3+2 and back while the mount writes it.
    let (report, output, faults) = run_faults("reencode", "reencode", &[]);
    for fault in &faults {
        assert_eq!(fault["kind"], "reencode", "{fault}");
    }
    assert_eq!(
        report["read_errors"], 0,
        "reads look in both classes: {output}"
    );
}
