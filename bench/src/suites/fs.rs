//! `hive-bench fs`: a mounted volume against a local directory, the same workloads on
//! both in the same run. Without `--dir` the suite starts a 6-node 4+2 cluster on
//! loopback and mounts its default volume; the baseline directory is on the local
//! file system (`--baseline-dir`).
//!
//! - `fs_seq_write`: a file written in 1 MiB writes, then fsynced (MB/s).
//! - `fs_seq_read`: the same file read back in 1 MiB reads (MB/s): on a fresh mount
//!   when the suite mounted the volume itself (so the mount's chunk cache is cold;
//!   given a mount, its cache may hold the file's last chunks), and with the
//!   baseline's pages dropped from the page cache first.
//! - `fs_rand_write_4k`: [`THREADS`] threads writing 4 KiB at random page offsets of a
//!   256 MiB file (written whole first) with O_DIRECT, then one fsync (IOPS, the fsync
//!   counted in).
//! - `fs_rand_read_4k`: as many threads reading 4 KiB at random page offsets of that
//!   file with O_DIRECT (IOPS), cold as above.
//! - `fs_fsync_p99`: 4 KiB appended and fsynced, one after another; the p99 latency
//!   (ratio = baseline / ours).
//! - `fs_create`, `fs_stat`, `fs_rename`, `fs_readdir`, `fs_unlink`: empty files
//!   created, stat'ed, renamed, listed (entries per second) and removed by [`THREADS`]
//!   threads, each in a directory of its own, as mdtest does (ops/s).
//! - `fs_append_small`: 4-byte writes to a file opened with O_APPEND, one after
//!   another, then one fsync (writes/s): a log written line by line.
//!
//! Not measured yet: `fs_small_files`, and
//! `fs_rand_read_4k_cached` (there is no local disk cache to warm).
//! `--rounds` and `--round-ms` do not apply: each figure is one run. `--quick` runs
//! short versions that check the harness, not the numbers.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hive_testkit::{Rng, random_bytes};

use crate::report::{Better, Line, Report};
use crate::suites::cluster::local::{LocalCluster, Mount};
use crate::suites::cluster::quantile;
use crate::suites::load::on_threads;

const SUITE: &str = "fs";
/// Threads of the random I/O and metadata workloads.
const THREADS: usize = 4;
/// A page: the unit of the random I/O and of O_DIRECT's alignment.
const PAGE: usize = 4096;
/// The size of one sequential read or write.
const BLOCK: usize = 1 << 20;
/// The percentile of `fs_fsync_p99`.
const PERCENTILE: f64 = 0.99;
/// Seed of every byte written.
const SEED: u64 = 0x5eed_f5f5;

/// How much each workload does.
#[derive(Clone, Copy)]
struct Sizes {
    /// Bytes of the sequential file.
    sequential: usize,
    /// The file of the random I/O, written whole before them.
    random_file: usize,
    /// Random writes and reads per thread.
    random_ops: usize,
    /// fsyncs timed.
    fsyncs: usize,
    /// Files per thread for create, stat and unlink.
    files: usize,
    /// Small appends.
    appends: usize,
}

const FULL: Sizes = Sizes {
    sequential: 1 << 30,
    random_file: 256 << 20,
    random_ops: 5_000,
    fsyncs: 200,
    files: 1_000,
    appends: 50_000,
};

const QUICK: Sizes = Sizes {
    sequential: 32 << 20,
    random_file: 16 << 20,
    random_ops: 200,
    fsyncs: 20,
    files: 50,
    appends: 1_000,
};

/// What `hive-bench fs` is told.
pub struct Options {
    /// A mounted volume to measure; `None`: start a cluster and mount it.
    pub mount: Option<PathBuf>,
    /// Where the baseline's files go (a local file system).
    pub baseline_dir: PathBuf,
    /// Where to start the cluster when the suite starts one.
    pub cluster_dir: PathBuf,
    /// Short runs.
    pub quick: bool,
}

/// The two sides of a run: the volume (and how to remount it, when the suite mounted
/// it) and the baseline directory.
struct Sides {
    ours: PathBuf,
    baseline: PathBuf,
    /// The suite's mount and cluster, when it started them (in this order, so the
    /// mount goes first).
    owned: Option<(Mount, LocalCluster)>,
}

impl Sides {
    /// Unmounts and mounts the volume again (its caches cold), when the suite owns it.
    fn remount(&mut self) -> Result<()> {
        if let Some((mount, cluster)) = self.owned.take() {
            let at = mount.dir.clone();
            drop(mount);
            let mount = Mount::new(cluster.dir(), &at)?;
            self.owned = Some((mount, cluster));
        }
        Ok(())
    }
}

/// Runs the suite.
pub fn run(report: &mut Report, options: &Options) -> Result<()> {
    let sizes = if options.quick { QUICK } else { FULL };
    let tag = format!("hive-bench-fs-{}", std::process::id());
    let owned = match &options.mount {
        Some(_) => None,
        None => {
            let dir = options.cluster_dir.join(&tag);
            let cluster = LocalCluster::up(&dir)?;
            let mount = Mount::new(&dir, &dir.join("mnt"))?;
            Some((mount, cluster))
        }
    };
    let root = match (&options.mount, &owned) {
        (Some(dir), _) => dir.clone(),
        (None, Some((mount, _))) => mount.dir.clone(),
        (None, None) => unreachable!("a mount is given or started"),
    };
    let mut sides = Sides {
        ours: root.join(&tag),
        baseline: options.baseline_dir.join(format!("{tag}-local")),
        owned,
    };
    for dir in [&sides.ours, &sides.baseline] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let result = workloads(report, &mut sides, sizes);
    for dir in [&sides.ours, &sides.baseline] {
        if let Err(err) = std::fs::remove_dir_all(dir) {
            eprintln!("hive-bench: removing {}: {err}", dir.display());
        }
    }
    result
}

fn workloads(report: &mut Report, sides: &mut Sides, sizes: Sizes) -> Result<()> {
    let data = random_bytes(SEED, sizes.sequential);
    let figures = both(sides, |dir| seq_write(&dir.join("seq"), &data))?;
    add(
        report,
        "fs_seq_write",
        "MB/s",
        figures,
        "the same writes to a local directory",
    );
    sides.remount()?;
    let figures = both(sides, |dir| seq_read(&dir.join("seq"), data.len()))?;
    add(
        report,
        "fs_seq_read",
        "MB/s",
        figures,
        "the same reads from a local directory",
    );
    both(sides, |dir| {
        Ok(std::fs::remove_file(dir.join("seq")).map(|()| 0.0)?)
    })?;
    let whole = &data[..sizes.random_file.min(data.len())];
    both(sides, |dir| seq_write(&dir.join("random"), whole))?;
    let figures = both(sides, |dir| {
        rand_write(&dir.join("random"), whole.len(), sizes.random_ops)
    })?;
    add(
        report,
        "fs_rand_write_4k",
        "IOPS",
        figures,
        "local O_DIRECT writes",
    );
    sides.remount()?;
    let figures = both(sides, |dir| {
        rand_read(&dir.join("random"), whole.len(), sizes.random_ops)
    })?;
    add(
        report,
        "fs_rand_read_4k",
        "IOPS",
        figures,
        "local O_DIRECT reads",
    );
    let (hive, baseline) = both(sides, |dir| fsync_p99(&dir.join("fsync"), sizes.fsyncs))?;
    report.add(Line {
        suite: SUITE,
        name: "fs_fsync_p99",
        unit: "ms",
        hive,
        baseline,
        better: Better::Lower,
        against: "4 KiB write + fsync on a local directory",
    });
    let (ours, baseline) = (
        metadata_rates(&sides.ours.join("md"), sizes.files)?,
        metadata_rates(&sides.baseline.join("md"), sizes.files)?,
    );
    let against = "the same on a local directory (4 threads)";
    let names = [
        "fs_create",
        "fs_stat",
        "fs_rename",
        "fs_readdir",
        "fs_unlink",
    ];
    for (i, name) in names.into_iter().enumerate() {
        add(report, name, "ops/s", (ours[i], baseline[i]), against);
    }
    let figures = both(sides, |dir| append_small(&dir.join("log"), sizes.appends))?;
    add(
        report,
        "fs_append_small",
        "writes/s",
        figures,
        "4-byte O_APPEND writes locally",
    );
    Ok(())
}

/// `f` on the volume's directory, then on the baseline's: (ours, baseline).
fn both(sides: &Sides, f: impl Fn(&Path) -> Result<f64>) -> Result<(f64, f64)> {
    Ok((f(&sides.ours)?, f(&sides.baseline)?))
}

/// Adds a rate line (higher is better).
fn add(
    report: &mut Report,
    name: &'static str,
    unit: &'static str,
    (hive, baseline): (f64, f64),
    against: &'static str,
) {
    report.add(Line {
        suite: SUITE,
        name,
        unit,
        hive,
        baseline,
        better: Better::Higher,
        against,
    });
}

/// Writes `data` to a new file at `path` in [`BLOCK`] writes and fsyncs it; MB/s.
fn seq_write(path: &Path, data: &[u8]) -> Result<f64> {
    let started = Instant::now();
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    for block in data.chunks(BLOCK) {
        file.write_all(block).context("a sequential write")?;
    }
    file.sync_all().context("the sequential file's fsync")?;
    drop(file);
    Ok(mb_per_s(data.len(), started.elapsed()))
}

/// Reads `len` bytes of `path` in [`BLOCK`] reads, after dropping its cached pages;
/// MB/s.
fn seq_read(path: &Path, len: usize) -> Result<f64> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)
        .context("dropping the file's cached pages")?;
    let started = Instant::now();
    let mut buf = vec![0u8; BLOCK];
    let mut read = 0;
    loop {
        let n = file.read(&mut buf).context("a sequential read")?;
        if n == 0 {
            break;
        }
        read += n;
    }
    ensure!(read == len, "{} read {read} bytes of {len}", path.display());
    Ok(mb_per_s(len, started.elapsed()))
}

fn mb_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

/// A page-aligned page inside `buf` (which must hold two pages), for O_DIRECT.
fn aligned(buf: &mut [u8]) -> &mut [u8] {
    let at = buf.as_ptr().align_offset(PAGE);
    &mut buf[at..at + PAGE]
}

fn open_direct(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path)
        .with_context(|| format!("opening {} with O_DIRECT", path.display()))
}

/// The seeds of the [`THREADS`] workers.
fn workers(first: u64) -> Vec<u64> {
    (0..THREADS as u64).map(|t| SEED ^ (first + t)).collect()
}

/// `ops` random page writes per thread into the `len` bytes of `path`, then an
/// fsync; IOPS.
fn rand_write(path: &Path, len: usize, ops: usize) -> Result<f64> {
    let file = open_direct(path)?;
    let started = Instant::now();
    on_threads(&workers(0), |seed| {
        let mut rng = Rng::new(*seed);
        let mut buf = vec![0u8; 2 * PAGE];
        for _ in 0..ops {
            let page = aligned(&mut buf);
            page.fill(rng.next_u64() as u8);
            let at = (rng.below(len / PAGE) * PAGE) as u64;
            file.write_all_at(page, at).context("a random write")?;
        }
        Ok(())
    })?;
    file.sync_all().context("the random file's fsync")?;
    Ok((ops * THREADS) as f64 / started.elapsed().as_secs_f64())
}

/// `ops` random page reads per thread of the `len` bytes of `path`; IOPS.
fn rand_read(path: &Path, len: usize, ops: usize) -> Result<f64> {
    let file = open_direct(path)?;
    let started = Instant::now();
    on_threads(&workers(100), |seed| {
        let mut rng = Rng::new(*seed);
        let mut buf = vec![0u8; 2 * PAGE];
        for _ in 0..ops {
            let at = (rng.below(len / PAGE) * PAGE) as u64;
            file.read_exact_at(aligned(&mut buf), at)
                .context("a random read")?;
        }
        Ok(())
    })?;
    Ok((ops * THREADS) as f64 / started.elapsed().as_secs_f64())
}

/// `fsyncs` times: 4 KiB appended, then fsync; the p99 of their latencies in ms.
fn fsync_p99(path: &Path, fsyncs: usize) -> Result<f64> {
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let page = random_bytes(SEED + 1, PAGE);
    let mut times = Vec::with_capacity(fsyncs);
    for _ in 0..fsyncs {
        let started = Instant::now();
        file.write_all(&page).context("a write before fsync")?;
        file.sync_data().context("an fsync")?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(quantile(&times, PERCENTILE))
}

/// Creates, stats, renames and removes `files` empty files per thread, each thread in
/// a directory of its own under `tree`, and lists those directories (an entry listed
/// is an op); the five rates in ops/s: create, stat, rename, readdir, unlink.
fn metadata_rates(tree: &Path, files: usize) -> Result<[f64; 5]> {
    let dirs: Vec<PathBuf> = (0..THREADS).map(|t| tree.join(format!("t{t}"))).collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    }
    let phase = |op: &(dyn Fn(&Path) -> std::io::Result<()> + Sync), what: &str| -> Result<f64> {
        let started = Instant::now();
        on_threads(&dirs, |dir| {
            for n in 0..files {
                let path = dir.join(format!("f{n}"));
                op(&path).with_context(|| format!("{what} {}", path.display()))?;
            }
            Ok(())
        })?;
        Ok((files * THREADS) as f64 / started.elapsed().as_secs_f64())
    };
    let renamed = |p: &Path| p.with_extension("renamed");
    let create = phase(&|p| File::create(p).map(drop), "create")?;
    let stat = phase(&|p| std::fs::metadata(p).map(drop), "stat")?;
    let rename = phase(&|p| std::fs::rename(p, renamed(p)), "rename")?;
    let started = Instant::now();
    on_threads(&dirs, |dir| {
        let listed = std::fs::read_dir(dir)
            .and_then(|entries| {
                entries
                    .map(|e| e.map(drop))
                    .collect::<std::io::Result<Vec<()>>>()
            })
            .with_context(|| format!("listing {}", dir.display()))?;
        ensure!(
            listed.len() == files,
            "{} lists {} of {files}",
            dir.display(),
            listed.len()
        );
        Ok(())
    })?;
    let readdir = (files * THREADS) as f64 / started.elapsed().as_secs_f64();
    let unlink = phase(&|p| std::fs::remove_file(renamed(p)), "unlink")?;
    std::fs::remove_dir_all(tree).with_context(|| format!("removing {}", tree.display()))?;
    Ok([create, stat, rename, readdir, unlink])
}

/// `appends` 4-byte writes to `path` opened with O_APPEND, then an fsync; writes/s.
fn append_small(path: &Path, appends: usize) -> Result<f64> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {} to append", path.display()))?;
    let started = Instant::now();
    for n in 0..appends {
        file.write_all(&(n as u32).to_le_bytes())
            .context("a small append")?;
    }
    file.sync_all().context("the log's fsync")?;
    let rate = appends as f64 / started.elapsed().as_secs_f64();
    let len = file.metadata().context("the log's size")?.len();
    ensure!(
        len == (appends * 4) as u64,
        "{} holds {len} bytes after {appends} appends",
        path.display()
    );
    Ok(rate)
}
