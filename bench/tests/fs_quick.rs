//! `hive-bench fs --quick --json` on a cluster and mount it starts itself: the suite
//! runs to the end and reports every figure it names, each a positive number (the
//! figures themselves are the full run's business, not CI's).
//!
//! Needs root, /dev/fuse, and the workspace's `hive` and `hive-node` binaries beside
//! `hive-bench` (a workspace build puts them there).

use std::process::Command;

/// The figures `hive-bench fs` reports.
const NAMES: [&str; 11] = [
    "fs_seq_write",
    "fs_seq_read",
    "fs_rand_write_4k",
    "fs_rand_read_4k",
    "fs_fsync_p99",
    "fs_create",
    "fs_stat",
    "fs_rename",
    "fs_readdir",
    "fs_unlink",
    "fs_append_small",
];

#[test]
fn the_fs_suite_runs_and_reports_every_figure() {
    assert!(
        std::path::Path::new("/dev/fuse").exists(),
        "the fs suite mounts a volume and /dev/fuse is missing: load the fuse module"
    );
    let work = std::env::temp_dir().join(format!("hive-bench-fs-test-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("a work directory");
    let out = Command::new(env!("CARGO_BIN_EXE_hive-bench"))
        .args(["fs", "--quick", "--json", "--cluster-dir"])
        .arg(&work)
        .arg("--baseline-dir")
        .arg(&work)
        .output()
        .expect("run hive-bench");
    let _ = std::fs::remove_dir_all(&work);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "hive-bench fs --quick failed: {said}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    let names: Vec<&str> = lines.iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(names, NAMES, "{said}");
    for line in &lines {
        for figure in ["hive", "baseline", "ratio"] {
            let value = line[figure].as_f64();
            assert!(value.is_some_and(|v| v > 0.0), "{figure} of {line}");
        }
    }
}
