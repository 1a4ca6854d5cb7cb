//! The README's demo as a test: `hive cluster up` starts six real `hive-node` processes,
//! `hive put` stores a file, two nodes are killed with SIGKILL, `hive get` still reads it
//! back byte for byte, `hive cluster down` stops the rest.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hive(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hive"))
        .args(args)
        .output()
        .expect("run hive")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The pids of nodes `ids` from cluster.toml.
fn pids(dir: &Path, ids: &[u64]) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("cluster.toml")).expect("cluster.toml");
    let mut out = Vec::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(id) = line.strip_prefix("id = ") {
            current = id.trim().parse::<u64>().ok();
        }
        if let Some(pid) = line.strip_prefix("pid = ")
            && current.is_some_and(|c| ids.contains(&c))
        {
            out.push(pid.trim().to_string());
        }
    }
    out
}

#[test]
fn a_local_cluster_keeps_a_file_through_two_dead_nodes() {
    let dir: PathBuf = std::env::temp_dir().join(format!("hive-local-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().expect("utf-8");
    let up = hive(&[
        "cluster", "up", "--dir", d, "--nodes", "6", "--k", "4", "--m", "2",
    ]);
    let result = std::panic::catch_unwind(|| {
        ok(&up, "cluster up");
        let sample = dir.join("sample.bin");
        let data: Vec<u8> = hive_testkit::random_bytes(7, 5 << 20)
            .into_iter()
            .chain(std::iter::repeat_n(b'x', 1 << 20))
            .collect();
        std::fs::write(&sample, &data).expect("sample");
        let id = ok(
            &hive(&["put", "--cluster", d, sample.to_str().expect("utf-8")]),
            "put",
        );
        let id = id.trim();
        assert_eq!(id.len(), 64, "{id}");
        let killed = pids(&dir, &[1, 2]);
        assert_eq!(killed.len(), 2);
        for pid in &killed {
            assert!(
                Command::new("kill")
                    .args(["-KILL", pid])
                    .status()
                    .expect("kill")
                    .success()
            );
        }
        let back = dir.join("back.bin");
        ok(
            &hive(&[
                "get",
                "--cluster",
                d,
                id,
                "-o",
                back.to_str().expect("utf-8"),
            ]),
            "get",
        );
        assert!(
            std::fs::read(&back).expect("back") == data,
            "read back differs"
        );
        let bad = hive(&["get", "--cluster", d, "not-an-id", "-o", "/dev/null"]);
        assert!(String::from_utf8_lossy(&bad.stderr).contains("not an object id"));
    });
    let down = hive(&["cluster", "down", "--dir", d]);
    if result.is_ok() {
        ok(&down, "cluster down");
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
