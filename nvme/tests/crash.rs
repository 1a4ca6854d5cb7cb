//! Crash tests with real processes: a child appends shards and reports each
//! acknowledgement through a pipe; the parent kills it with SIGKILL at seeded moments and
//! checks that every acknowledged shard reads back byte for byte.
//!
//! The child is this same test binary, re-run with only `child_process_appending_shards`
//! selected and `CHILD_ENV` saying what to do.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;

use common::{Scratch, format, name, open, run, shard};
use hive_testkit::Rng;

const CHILD_ENV: &str = "HIVE_NVME_CRASH_CHILD";
/// Concurrent appends in the child, so kills land in the middle of group commits.
const CHILD_WRITERS: u64 = 8;

/// The shard the child writes as item `i` (the parent regenerates it to compare).
fn item(i: u64) -> (hive_wire::ChunkId, hive_wire::ShardIndex, Vec<u8>) {
    shard(0xc4a5_0000_0000 + i, 1000 + (i as usize * 7919) % 60_000)
}

/// Not a test of its own: the body of the child process. Without `CHILD_ENV` it returns
/// at once.
#[test]
fn child_process_appending_shards() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, first) = spec.split_once('|').expect("CHILD_ENV is path|first-item");
    let path = PathBuf::from(path);
    let first: u64 = first.parse().expect("first item is a number");
    run(move || async move {
        let store = Rc::new(open(&path).await);
        let writers: Vec<_> = (0..CHILD_WRITERS)
            .map(|w| {
                let store = store.clone();
                glommio::spawn_local(async move {
                    let mut i = first + w;
                    loop {
                        store.put(&item(i).2).await.expect("put");
                        println!("ACK {i}");
                        i += CHILD_WRITERS;
                    }
                })
            })
            .collect();
        // The writers append until the parent kills this process.
        std::future::pending::<()>().await;
        drop(writers);
    });
}

/// Runs `cycles` kill -9 cycles against the store at `path`.
fn kill_cycles(path: &Path, seed: u64, cycles: usize) {
    let mut rng = Rng::new(seed);
    let mut acked: Vec<u64> = Vec::new();
    let mut first = 0;
    for cycle in 0..cycles {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "child_process_appending_shards",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{}|{first}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the child");
        let stdout = child.stdout.take().expect("piped stdout");
        let kill_after = 1 + rng.below(80);
        let mut seen = 0;
        let mut highest = first;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(i) = line.strip_prefix("ACK ") {
                let i: u64 = i.parse().expect("ACK line");
                acked.push(i);
                highest = highest.max(i);
                seen += 1;
                if seen == kill_after {
                    child.kill().expect("SIGKILL the child");
                    break;
                }
            }
        }
        let status = child.wait().expect("reap the child");
        assert!(
            seen == kill_after,
            "seed {seed:#x} cycle {cycle}: child exited early ({status})"
        );
        let check: Vec<u64> = acked.clone();
        let in_flight: Vec<u64> = (highest + 1..highest + 1 + 2 * CHILD_WRITERS).collect();
        let path = path.to_path_buf();
        run(move || async move {
            let store = open(&path).await;
            for i in check {
                let (chunk, index, bytes) = item(i);
                let got = store.get(name(chunk, index)).await.expect("get");
                let got = got.unwrap_or_else(|| {
                    panic!("seed {seed:#x} cycle {cycle}: acknowledged item {i} lost")
                });
                assert!(
                    got[..] == bytes[..],
                    "seed {seed:#x} cycle {cycle}: item {i} changed"
                );
            }
            // Whatever was in flight is either absent or intact, never damaged.
            for i in in_flight {
                let (chunk, index, bytes) = item(i);
                if let Some(got) = store
                    .get(name(chunk, index))
                    .await
                    .expect("get unacknowledged")
                {
                    assert!(
                        got[..] == bytes[..],
                        "seed {seed:#x} cycle {cycle}: item {i} damaged"
                    );
                }
            }
            store.close().await.expect("close");
        });
        first = highest + 2 * CHILD_WRITERS + 1;
    }
}

#[test]
fn kill_9_on_a_file_loses_nothing_acknowledged() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = Scratch::new("crash-file");
    let path = dir.path("store");
    format(&path, 256 << 20, 1 << 20);
    kill_cycles(&path, 0x5eed_f11e, 20);
}

/// A loop device over a file, detached when dropped.
struct LoopDevice(PathBuf);

impl LoopDevice {
    fn attach(backing: &Path) -> Self {
        let out = Command::new("losetup")
            .args(["--find", "--show", "--direct-io=on"])
            .arg(backing)
            .output()
            .expect("losetup is installed (util-linux); this test needs root");
        assert!(
            out.status.success(),
            "losetup failed (this test needs root and loop devices): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn kill_9_on_a_block_device_loses_nothing_acknowledged() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = Scratch::new("crash-loop");
    let backing = dir.path("backing.img");
    std::fs::File::create(&backing)
        .and_then(|f| f.set_len(256 << 20))
        .expect("backing file");
    let device = LoopDevice::attach(&backing);
    let options = hive_nvme::FormatOptions {
        node_id: common::NODE,
        size: None,
        segment_size: 1 << 20,
    };
    let sb = hive_nvme::Store::format(&device.0, &options).expect("format the loop device");
    assert_eq!(sb.device_size, 256 << 20, "the whole device is used");
    kill_cycles(&device.0, 0x0b10_cde5, 20);
}
