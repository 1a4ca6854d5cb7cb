//! `hive-bench meta`: the replicated metadata group through a real FUSE mount, on two
//! local clusters started here one after the other (4 nodes, 2+1).
//!
//! - `meta_create_replicated`: empty files created per second through a mount when
//!   the metadata group has 3 replicas (each create committed on two of them), against
//!   the same creates with a group of 1 replica, in the same run.
//! - `meta_failover_s`: seconds from killing the group's leader (kill -9) until the
//!   first create through the mount succeeds again, against a 5 s target.
//!
//! `--rounds` and `--round-ms` do not apply: each figure is one run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::report::{Better, Line, Report};
use crate::suites::cluster::local::{self, LocalCluster, hive_binary, run_hive};

const SUITE: &str = "meta";
/// Nodes: the 3 replicas and one more.
const NODES: u64 = 4;
/// The class (files here are empty: no chunk is written).
const CLASS: (u8, u8) = (2, 1);
/// Each node's store (sparse).
const STORE_SIZE: &str = "256MiB";
/// Files created for the rate.
const CREATES: usize = 2_000;
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
        hive: replicated,
        baseline: alone,
        better: Better::Higher,
        against: "the same creates with 1 metadata replica",
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

/// A volume mounted for the suite, unmounted when dropped.
struct Mount {
    dir: std::path::PathBuf,
}

impl Mount {
    fn new(cluster: &Path, at: &Path) -> Result<Self> {
        std::fs::create_dir_all(at).with_context(|| format!("creating {}", at.display()))?;
        run_hive(
            &hive_binary()?,
            &[
                "mount".as_ref(),
                "--cluster".as_ref(),
                cluster.as_os_str(),
                at.as_os_str(),
            ],
        )?;
        Ok(Self {
            dir: at.to_path_buf(),
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let unmounted = hive_binary()
            .and_then(|hive| run_hive(&hive, &["umount".as_ref(), self.dir.as_os_str()]));
        if let Err(err) = unmounted {
            eprintln!("hive-bench: unmounting {}: {err:#}", self.dir.display());
        }
    }
}

/// Starts a cluster whose metadata group has `replicas` replicas, times
/// [`CREATES`] creates through a mount, then runs `after` on it; the creates per
/// second.
fn creates_per_second(
    parent: &Path,
    replicas: u64,
    after: impl FnOnce(&Path, &Path) -> Result<()>,
) -> Result<f64> {
    let dir = parent.join(format!("hive-bench-meta-{replicas}-{}", std::process::id()));
    let replicas_arg = replicas.to_string();
    let mut extra: Vec<&str> = local::NO_GC.to_vec();
    extra.extend(["--meta-replicas", &replicas_arg]);
    let _cluster = LocalCluster::up_with(&dir, NODES, CLASS, STORE_SIZE, &extra)?;
    let mount = Mount::new(&dir, &dir.join("mnt"))?;
    let tree = mount.dir.join("creates");
    std::fs::create_dir(&tree).context("mkdir through the mount")?;
    let started = Instant::now();
    for n in 0..CREATES {
        std::fs::File::create(tree.join(format!("f{n}")))
            .with_context(|| format!("create {n} through the mount"))?;
    }
    let rate = CREATES as f64 / started.elapsed().as_secs_f64();
    after(&dir, &mount.dir)?;
    Ok(rate)
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
