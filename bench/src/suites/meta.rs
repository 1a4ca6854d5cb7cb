//! `hive-bench meta`: the replicated metadata group through a real FUSE mount, on two
//! local clusters started here one after the other (4 nodes, 2+1).
//!
//! - `meta_create_replicated`: empty files created per second through a mount when
//!   the metadata group has 3 replicas (each create committed on two of them), against
//!   the same creates with a group of 1 replica, in the same run: [`CREATORS`]
//!   threads, each in a directory of its own (mdtest's way: many creators, as a build
//!   or an unpack makes files).
//! - `meta_create_replicated_serial`: the same with one thread, each create waiting
//!   for the one before: the latency of a commit, where the group's leader syncs its
//!   log before it replicates (see ARCHITECTURE.md, *Benchmarks*).
//! - `meta_failover_s`: seconds from killing the group's leader (kill -9) until the
//!   first create through the mount succeeds again, against a 5 s target.
//!
//! `--rounds` and `--round-ms` do not apply: each figure is one run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::report::{Better, Line, Report};
use crate::suites::cluster::local::{self, LocalCluster, Mount};
use crate::suites::load;

const SUITE: &str = "meta";
/// Nodes: the 3 replicas and one more.
const NODES: u64 = 4;
/// The class (files here are empty: no chunk is written).
const CLASS: (u8, u8) = (2, 1);
/// Each node's store (sparse).
const STORE_SIZE: &str = "256MiB";
/// Files created for each rate.
const CREATES: usize = 2_000;
/// Threads that create files at once for `meta_create_replicated`: the mount's FUSE
/// worker threads.
const CREATORS: usize = hive_client::mount::MOUNT_THREADS;
/// The failover time the group is held to.
const FAILOVER_TARGET_S: f64 = 5.0;
/// How long a failover may take before the suite gives up.
const FAILOVER_GIVE_UP: Duration = Duration::from_secs(120);

/// Runs the suite on clusters it starts under `dir`.
pub fn run(report: &mut Report, dir: &Path) -> Result<()> {
    let alone = creates_per_second(dir, 1, |_, _| Ok(()))?;
    let mut failover = None;
    let replicated = creates_per_second(dir, 3, |cluster, mount| {
        failover = Some(failover_seconds(cluster, mount)?);
        Ok(())
    })?;
    report.add(Line {
        suite: SUITE,
        name: "meta_create_replicated",
        unit: "files/s",
        hive: replicated.parallel,
        baseline: alone.parallel,
        better: Better::Higher,
        against: "the same creates with 1 metadata replica (4 threads)",
    });
    report.add(Line {
        suite: SUITE,
        name: "meta_create_replicated_serial",
        unit: "files/s",
        hive: replicated.serial,
        baseline: alone.serial,
        better: Better::Higher,
        against: "the same creates with 1 metadata replica (1 thread)",
    });
    let failover = failover.context("no failover was measured")?;
    report.add(Line {
        suite: SUITE,
        name: "meta_failover_s",
        unit: "s",
        hive: failover,
        baseline: FAILOVER_TARGET_S,
        better: Better::Lower,
        against: "a 5 s target",
    });
    Ok(())
}

/// Creates per second, one creator after another and [`CREATORS`] at once.
struct Rates {
    serial: f64,
    parallel: f64,
}

/// Starts a cluster whose metadata group has `replicas` replicas, times
/// [`CREATES`] creates through a mount from one thread, then as many from
/// [`CREATORS`] threads, then runs `after` on it; the creates per second.
fn creates_per_second(
    parent: &Path,
    replicas: u64,
    after: impl FnOnce(&Path, &Path) -> Result<()>,
) -> Result<Rates> {
    let dir = parent.join(format!("hive-bench-meta-{replicas}-{}", std::process::id()));
    let replicas_arg = replicas.to_string();
    let mut extra: Vec<&str> = local::NO_GC.to_vec();
    extra.extend(["--meta-replicas", &replicas_arg]);
    let _cluster = LocalCluster::up_with(&dir, NODES, CLASS, STORE_SIZE, &extra)?;
    let mount = Mount::new(&dir, &dir.join("mnt"))?;
    let serial = timed_creates(&mount.dir.join("serial"), 1)?;
    let parallel = timed_creates(&mount.dir.join("parallel"), CREATORS)?;
    after(&dir, &mount.dir)?;
    Ok(Rates { serial, parallel })
}

/// Creates [`CREATES`] empty files under `tree` from `threads` threads, each in a
/// directory of its own made first; the files created per second.
fn timed_creates(tree: &Path, threads: usize) -> Result<f64> {
    let dirs: Vec<_> = (0..threads).map(|t| tree.join(format!("t{t}"))).collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("mkdir {} through the mount", dir.display()))?;
    }
    let each = CREATES / threads;
    let started = Instant::now();
    load::on_threads(&dirs, |dir| {
        for n in 0..each {
            std::fs::File::create(dir.join(format!("f{n}")))
                .with_context(|| format!("create {n} in {} through the mount", dir.display()))?;
        }
        Ok(())
    })?;
    Ok((each * threads) as f64 / started.elapsed().as_secs_f64())
}

/// Kills the metadata group's first leader (the node that formed it, node 1) and
/// times until a create through `mount` succeeds again.
fn failover_seconds(cluster: &Path, mount: &Path) -> Result<f64> {
    // Connections to the leader are warm: the time is the failover's, not a connect's.
    std::fs::File::create(mount.join("before")).context("create before the kill")?;
    local::kill(cluster, hive_wire::NodeId(1))?;
    let killed = Instant::now();
    for n in 0.. {
        if std::fs::File::create(mount.join(format!("after-{n}"))).is_ok() {
            return Ok(killed.elapsed().as_secs_f64());
        }
        if killed.elapsed() > FAILOVER_GIVE_UP {
            break;
        }
    }
    bail!("no create succeeded within {FAILOVER_GIVE_UP:?} of the leader's death")
}
