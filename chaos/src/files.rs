//! The file workload: a writer that works through a real FUSE mount of the cluster's
//! default volume (a `hive mount` process, which the `kill-mount` fault kills with
//! SIGKILL and mounts again), and the checker of what it recorded.
//!
//! The writer keeps [`FILE_SLOTS`] files in its own directory and, op after op drawn
//! from the seed, creates, overwrites in part, appends to, truncates, rewrites,
//! renames and unlinks them, keeping each file's bytes in memory. A change of content
//! is followed by fsync; only when fsync returns is the change recorded in the ledger
//! (the file's path, length and BLAKE3). A rename or an unlink is recorded when it
//! returns. A failed op leaves the file *unsettled*: its content, or under a failed
//! rename its name, is no longer known, and the ledger says so; the next op on it
//! removes every name it may have and writes it whole again under a new one.
//!
//! What the checker proves, replaying the ledger: every file whose last recorded op
//! was an fsync (or a rename after one) reads back exactly, at its last name; every
//! name recorded as renamed away or unlinked is gone. Unsettled files are counted,
//! not judged.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hive_client::local_cluster;
use hive_testkit::{Rng, random_bytes, text_bytes};
use serde::{Deserialize, Serialize};

use crate::ledger::Line;

/// Files the writer keeps.
pub const FILE_SLOTS: usize = 12;
/// Largest file the writer makes (its bytes are kept in memory).
pub const MAX_FILE: usize = 512 << 10;
/// How long the writer waits after a failed op before the next (the mount may be
/// gone until it is mounted again).
pub const FAILED_OP_WAIT: Duration = Duration::from_millis(200);
/// How long a mount may take to appear, or to go.
pub const MOUNT_WAIT: Duration = Duration::from_secs(60);
/// How often a wait for the mount looks again.
const MOUNT_POLL: Duration = Duration::from_millis(50);
/// The mount point, in the cluster's directory.
pub const MOUNT_DIR: &str = "chaos-mount";
/// The writer's directory on the mount.
const WRITER_DIR: &str = "chaos-files";
/// What an op on a dead FUSE mount fails with.
const ENOTCONN: i32 = 107;

/// One file op the mount answered, as the ledger records it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FileOp {
    /// The op's number in the file workload.
    pub n: u64,
    /// The file's path on the mount.
    pub path: String,
    /// What happened (its fields are the line's own).
    #[serde(flatten)]
    pub change: FileChange,
    /// Milliseconds from the run's start to the answer.
    pub at_ms: u64,
}

/// What a file op did.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum FileChange {
    /// The content changed (how, in words) and fsync returned: the file holds `len`
    /// bytes hashing to `blake3`.
    Synced {
        /// Created, overwrote, appended, truncated, rewrote.
        how: String,
        /// Its length.
        len: u64,
        /// BLAKE3 of its bytes (hex).
        blake3: String,
    },
    /// Renamed to `to`; the old path is gone.
    Renamed {
        /// The new path.
        to: String,
    },
    /// Unlinked (or found absent when cleared): the path is gone.
    Unlinked,
    /// An op on it failed: its content, or whether it exists, is no longer known.
    Unsettled {
        /// The error.
        error: String,
    },
}

/// The `hive mount` process serving the cluster's default volume.
pub struct Mount {
    cluster: PathBuf,
    dir: PathBuf,
    pid: AtomicU32,
}

/// The `hive` executable: `HIVE_BIN`, or the one next to this program.
fn hive_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("HIVE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let beside = std::env::current_exe()
        .context("finding this executable")?
        .with_file_name("hive");
    if !beside.exists() {
        bail!(
            "hive not found next to hive-chaos ({}); build it (cargo build -p hive-client) or set HIVE_BIN",
            beside.display()
        );
    }
    Ok(beside)
}

/// Whether process `pid` runs (exists, and is not a zombie).
fn running(pid: u32) -> bool {
    pid != 0
        && crate::faults::state(Path::new(&format!("/proc/{pid}/stat")))
            .is_some_and(|state| state != "Z" && state != "X")
}

fn is_mounted(dir: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return false;
    };
    let dir = dir.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*dir))
}

/// Waits until `done` holds, or fails naming `what` after [`MOUNT_WAIT`].
fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + MOUNT_WAIT;
    while !done() {
        if Instant::now() > deadline {
            bail!("waited {MOUNT_WAIT:?} for {what}");
        }
        std::thread::sleep(MOUNT_POLL);
    }
    Ok(())
}

impl Mount {
    /// Mounts the default volume of the local cluster in `cluster` at [`MOUNT_DIR`]
    /// there.
    pub fn start(cluster: &Path) -> Result<Arc<Self>> {
        let mount = Arc::new(Self {
            cluster: cluster.to_path_buf(),
            dir: cluster.join(MOUNT_DIR),
            pid: AtomicU32::new(0),
        });
        mount.mount()?;
        Ok(mount)
    }

    /// The mount point.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn mount(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating the mount point {}", self.dir.display()))?;
        let out = Command::new(hive_binary()?)
            .arg("mount")
            .arg("--cluster")
            .arg(&self.cluster)
            .arg(&self.dir)
            .output()
            .context("running hive mount")?;
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!(
                "hive mount failed ({}): {}; the file workload needs FUSE (run with --no-mount to leave it out)",
                out.status,
                said.trim()
            );
        }
        // "mounted SOURCE on DIR (pid N, log FILE)"
        let pid: u32 = said
            .split("(pid ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|pid| pid.trim().parse().ok())
            .with_context(|| format!("hive mount did not name its process: {said}"))?;
        self.pid.store(pid, Ordering::SeqCst);
        wait_for(&format!("{} to be mounted", self.dir.display()), || {
            is_mounted(&self.dir)
        })
    }

    /// Kills the mount process with SIGKILL and waits until it is gone.
    pub fn kill(&self) -> Result<()> {
        let pid = self.pid.load(Ordering::SeqCst);
        local_cluster::signal("-KILL", pid)?;
        wait_for(&format!("the mount process {pid} to exit"), || {
            !running(pid)
        })
    }

    /// Clears a dead mount (lazily, as a dead FUSE mount must be) and mounts again.
    pub fn remount(&self) -> Result<()> {
        if is_mounted(&self.dir) {
            let status = Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status()
                .context("running umount -l")?;
            if !status.success() {
                bail!("umount -l {} failed ({status})", self.dir.display());
            }
        }
        self.mount()
    }

    /// Whether the mount process runs.
    pub fn alive(&self) -> bool {
        running(self.pid.load(Ordering::SeqCst))
    }

    /// Unmounts: the mount saves what it holds and exits.
    pub fn unmount(&self) -> Result<()> {
        let out = Command::new(hive_binary()?)
            .arg("umount")
            .arg(&self.dir)
            .output()
            .context("running hive umount")?;
        if !out.status.success() {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
            bail!(
                "hive umount {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// Where the writer's answers go: the ledger.
type Record<'a> = dyn Fn(Line) -> Result<()> + Sync + 'a;

/// One of the writer's files.
#[derive(Default)]
struct Slot {
    /// Its current name, if it exists.
    name: Option<String>,
    /// Its bytes, as last synced.
    content: Vec<u8>,
    /// Names it may have after a failed op; cleared before it is written again.
    unsettled: Vec<String>,
}

/// The file workload's shared state.
pub struct Files {
    seed: u64,
    dir: PathBuf,
    /// The device of the directory the mount point is in: a directory on it is not
    /// on the mount.
    outer: u64,
    /// The writer's directory, opened on the mount the writer works through now, and
    /// the path that reaches into it (`/proc/self/fd/N`). Every op goes through it, so
    /// once that mount dies every op fails (ENOTCONN); none ever reaches the bare
    /// directory a dead mount leaves until the next mount covers it.
    here: Mutex<Option<(std::fs::File, PathBuf)>>,
    started: Instant,
    stop: AtomicBool,
    ops: AtomicU64,
    failed: AtomicU64,
}

impl Files {
    /// The writer for the mount at `mount`, which is up (its files under
    /// [`WRITER_DIR`], made now), drawing from `seed`, its clock from `started`.
    pub fn new(seed: u64, mount: &Path, started: Instant) -> Result<Arc<Self>> {
        let parent = mount.parent().unwrap_or(Path::new("/"));
        let outer = std::fs::metadata(parent)
            .with_context(|| format!("looking at {}", parent.display()))?
            .dev();
        // On the mount, which is up (it may be there from an earlier run).
        let dir = mount.join(WRITER_DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Arc::new(Self {
            seed,
            dir,
            outer,
            here: Mutex::new(None),
            started,
            stop: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }))
    }

    /// Opens the writer's directory on the mount, unless it is open; whether it is.
    /// Not while no mount covers the mount point (it would be the bare directory).
    fn attach(&self) -> bool {
        let mut here = self.here.lock().unwrap_or_else(|e| e.into_inner());
        if here.is_some() {
            return true;
        }
        let opened = (|| {
            let dir = std::fs::File::open(&self.dir)?;
            Ok::<_, std::io::Error>((dir.metadata()?.dev() != self.outer).then_some(dir))
        })();
        if let Ok(Some(dir)) = opened {
            let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            *here = Some((dir, path));
            return true;
        }
        false
    }

    /// Forgets the directory of a mount that died, so the next op opens the next one.
    fn detach(&self) {
        *self.here.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Tells the writer to stop after its current op.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Ops the mount answered, and ops that failed.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.ops.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }

    /// Runs the writer on this thread until told to stop, each op's answer handed to
    /// `record`. At the end, every unsettled file is written whole again if the mount
    /// allows, so as much as possible is checked.
    pub fn run(&self, record: &Record<'_>) -> Result<()> {
        let mut rng = Rng::new(self.seed ^ 0x0066_696c_6573);
        let mut slots: Vec<Slot> = (0..FILE_SLOTS).map(|_| Slot::default()).collect();
        let mut n = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            if !self.attach() {
                std::thread::sleep(FAILED_OP_WAIT);
                continue;
            }
            let i = rng.below(FILE_SLOTS);
            n += 1;
            let ok = self.step(&mut slots[i], i, n, &mut rng, record)?;
            if !ok {
                std::thread::sleep(FAILED_OP_WAIT);
            }
        }
        for (i, slot) in slots.iter_mut().enumerate() {
            if !slot.unsettled.is_empty() && self.attach() {
                n += 1;
                self.rewrite(slot, i, n, &mut rng, record)?;
            }
        }
        Ok(())
    }

    fn at_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// `name` in the writer's directory on the mount it is attached to (on none: a
    /// path that fails).
    fn path(&self, name: &str) -> PathBuf {
        let here = self.here.lock().unwrap_or_else(|e| e.into_inner());
        match &*here {
            Some((_, dir)) => dir.join(name),
            None => PathBuf::from("/proc/self/fd/-1").join(name),
        }
    }

    /// One op on `slot`; whether it succeeded.
    fn step(
        &self,
        slot: &mut Slot,
        i: usize,
        n: u64,
        rng: &mut Rng,
        record: &Record<'_>,
    ) -> Result<bool> {
        if slot.name.is_none() || !slot.unsettled.is_empty() {
            return self.rewrite(slot, i, n, rng, record);
        }
        let name = slot
            .name
            .clone()
            .expect("invariant: a settled slot has a name");
        let len = slot.content.len();
        let (outcome, new_content, how) = match pick(rng.below(100), len) {
            Pick::Overwrite => {
                let at = rng.below(len);
                let count = rng.below(64 << 10) + 1;
                let bytes = data(rng, count);
                let mut content = slot.content.clone();
                let end = (at + bytes.len()).min(MAX_FILE);
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[at..end].copy_from_slice(&bytes[..end - at]);
                let done = self.change(&name, |f| f.write_all_at(&bytes[..end - at], at as u64));
                (done, content, "overwrote")
            }
            Pick::Append => {
                let count = rng.below(MAX_FILE - len).min(128 << 10) + 1;
                let bytes = data(rng, count);
                let mut content = slot.content.clone();
                content.extend_from_slice(&bytes);
                let done = self.change(&name, |f| {
                    f.seek(SeekFrom::End(0))?;
                    f.write_all(&bytes)
                });
                (done, content, "appended")
            }
            Pick::Truncate => {
                let to = rng.below(len + 1);
                let mut content = slot.content.clone();
                content.truncate(to);
                let done = self.change(&name, |f| f.set_len(to as u64));
                (done, content, "truncated")
            }
            Pick::Rename => {
                let to = format!("f{i}-{n}");
                let done = std::fs::rename(self.path(&name), self.path(&to));
                return self.answer(slot, n, &name, done, Some(to), record);
            }
            Pick::Unlink => {
                let done = std::fs::remove_file(self.path(&name));
                return self.answer(slot, n, &name, done, None, record);
            }
            Pick::Rewrite => return self.rewrite(slot, i, n, rng, record),
        };
        self.settle(slot, (n, &name, how), outcome, new_content, record)
    }

    /// Records a content change of `slot` (op `n` on `name`): fsynced, the file now
    /// `name` holding `content`; or failed, the file unsettled. Whether it was synced.
    fn settle(
        &self,
        slot: &mut Slot,
        (n, name, how): (u64, &str, &str),
        done: std::io::Result<()>,
        content: Vec<u8>,
        record: &Record<'_>,
    ) -> Result<bool> {
        match done {
            Ok(()) => {
                slot.name = Some(name.to_string());
                slot.content = content;
                self.synced(n, name, how, &slot.content, record)?;
                Ok(true)
            }
            Err(e) => {
                unsettle(slot, name);
                self.unsettled(n, name, &e, record)?;
                Ok(false)
            }
        }
    }

    /// Records a rename (`to`) or an unlink (`None`) of `name`.
    fn answer(
        &self,
        slot: &mut Slot,
        n: u64,
        name: &str,
        done: std::io::Result<()>,
        to: Option<String>,
        record: &Record<'_>,
    ) -> Result<bool> {
        match done {
            Ok(()) => {
                let change = match &to {
                    Some(to) => FileChange::Renamed { to: to.clone() },
                    None => FileChange::Unlinked,
                };
                self.ops.fetch_add(1, Ordering::SeqCst);
                record(Line::File(self.op(n, name, change)))?;
                slot.name = to;
                if slot.name.is_none() {
                    slot.content.clear();
                }
                Ok(true)
            }
            Err(e) => {
                unsettle(slot, name);
                if let Some(to) = &to {
                    unsettle(slot, to);
                }
                self.unsettled(n, name, &e, record)?;
                Ok(false)
            }
        }
    }

    /// Clears every name `slot` may have and writes it whole under a new name; whether
    /// that succeeded.
    fn rewrite(
        &self,
        slot: &mut Slot,
        i: usize,
        n: u64,
        rng: &mut Rng,
        record: &Record<'_>,
    ) -> Result<bool> {
        let mut names: Vec<String> = std::mem::take(&mut slot.unsettled);
        names.extend(slot.name.take());
        slot.content.clear();
        for (k, name) in names.iter().enumerate() {
            match std::fs::remove_file(self.path(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    slot.unsettled = names[k..].to_vec();
                    self.unsettled(n, name, &e, record)?;
                    return Ok(false);
                }
            }
            record(Line::File(self.op(n, name, FileChange::Unlinked)))?;
        }
        let name = format!("f{i}-{n}");
        let len = size(rng);
        let bytes = data(rng, len);
        let done = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.path(&name))?;
            f.write_all(&bytes)?;
            f.sync_all()
        })();
        self.settle(slot, (n, &name, "created"), done, bytes, record)
    }

    /// Opens `name` for writing, applies `change`, and fsyncs.
    fn change(
        &self,
        name: &str,
        change: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).open(self.path(name))?;
        change(&mut f)?;
        f.sync_all()
    }

    fn op(&self, n: u64, name: &str, change: FileChange) -> crate::files::FileOp {
        FileOp {
            n,
            path: format!("{WRITER_DIR}/{name}"),
            change,
            at_ms: self.at_ms(),
        }
    }

    fn synced(
        &self,
        n: u64,
        name: &str,
        how: &str,
        content: &[u8],
        record: &Record<'_>,
    ) -> Result<()> {
        self.ops.fetch_add(1, Ordering::SeqCst);
        let change = FileChange::Synced {
            how: how.to_string(),
            len: content.len() as u64,
            blake3: blake3::hash(content).to_hex().to_string(),
        };
        record(Line::File(self.op(n, name, change)))
    }

    fn unsettled(
        &self,
        n: u64,
        name: &str,
        error: &std::io::Error,
        record: &Record<'_>,
    ) -> Result<()> {
        self.failed.fetch_add(1, Ordering::SeqCst);
        if error.raw_os_error() == Some(ENOTCONN) {
            self.detach();
        }
        let change = FileChange::Unsettled {
            error: error.to_string(),
        };
        record(Line::File(self.op(n, name, change)))
    }
}

/// Adds `name` to the names `slot` may have, once.
fn unsettle(slot: &mut Slot, name: &str) {
    if !slot.unsettled.iter().any(|n| n == name) {
        slot.unsettled.push(name.to_string());
    }
}

/// An op on an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pick {
    Overwrite,
    Append,
    Truncate,
    Rename,
    Unlink,
    Rewrite,
}

/// The op for a roll in 0..100 on a file of `len` bytes: 30 % overwrite part of it
/// (an empty file is appended to instead), 15 % append (a full one is truncated
/// instead), 10 % truncate, 20 % rename, 10 % unlink, 15 % rewrite whole.
fn pick(roll: usize, len: usize) -> Pick {
    let append = if len < MAX_FILE {
        Pick::Append
    } else {
        Pick::Truncate
    };
    match roll {
        0..30 if len > 0 => Pick::Overwrite,
        0..45 => append,
        45..55 => Pick::Truncate,
        55..75 => Pick::Rename,
        75..85 => Pick::Unlink,
        _ => Pick::Rewrite,
    }
}

/// A file size: evenly on a log scale up to [`MAX_FILE`], some empty.
fn size(rng: &mut Rng) -> usize {
    if rng.below(16) == 0 {
        return 0;
    }
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    ((MAX_FILE as f64).powf(unit) as usize).min(MAX_FILE)
}

/// `len` bytes, text or random.
fn data(rng: &mut Rng, len: usize) -> Vec<u8> {
    if rng.below(2) == 0 {
        text_bytes(rng.next_u64(), len)
    } else {
        random_bytes(rng.next_u64(), len)
    }
}

/// What a path should hold at the end, by the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// These bytes (length, BLAKE3 hex), as of op `n`.
    Holds {
        /// The op that last made it so.
        n: u64,
        /// Length.
        len: u64,
        /// BLAKE3 (hex).
        blake3: String,
    },
    /// Nothing: renamed away or unlinked at op `n`.
    Gone {
        /// The op.
        n: u64,
    },
    /// Not known: an op on it failed.
    Unknown,
}

/// Replays the file ops of `lines`: what each path should hold.
pub fn expected(lines: &[Line]) -> BTreeMap<String, Expected> {
    let mut paths = BTreeMap::new();
    for line in lines {
        let Line::File(op) = line else { continue };
        match &op.change {
            FileChange::Synced { len, blake3, .. } => {
                paths.insert(
                    op.path.clone(),
                    Expected::Holds {
                        n: op.n,
                        len: *len,
                        blake3: blake3.clone(),
                    },
                );
            }
            FileChange::Renamed { to } => {
                let before = paths.insert(op.path.clone(), Expected::Gone { n: op.n });
                let to = format!("{WRITER_DIR}/{to}");
                paths.insert(to, before.unwrap_or(Expected::Unknown));
            }
            FileChange::Unlinked => {
                paths.insert(op.path.clone(), Expected::Gone { n: op.n });
            }
            FileChange::Unsettled { .. } => {
                paths.insert(op.path.clone(), Expected::Unknown);
            }
        }
    }
    paths
}

/// A file the checker found wrong.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FileFinding {
    /// The path on the mount.
    pub path: String,
    /// The op that last recorded it.
    pub n: u64,
    /// What is wrong.
    pub reason: String,
}

/// What the file checker found.
#[derive(Serialize, Debug, Default, Clone)]
pub struct FileOutcome {
    /// Files read back exactly.
    pub verified: u64,
    /// Names gone as they should be.
    pub gone: u64,
    /// Paths left unknown by a failed op (not judged).
    pub unknown: u64,
    /// Files missing or unreadable.
    pub lost: Vec<FileFinding>,
    /// Files that read back wrong, or names that came back.
    pub corrupt: Vec<FileFinding>,
}

impl FileOutcome {
    /// The findings as text.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "checked files: {} read back exactly, {} names gone as they should be, {} left unknown by a failed op\n",
            self.verified, self.gone, self.unknown
        );
        for (label, findings) in [("lost", &self.lost), ("corrupt_returned", &self.corrupt)] {
            let _ = writeln!(out, "{label} (files): {}", findings.len());
            for f in findings {
                let _ = writeln!(out, "  {} (file op {}): {}", f.path, f.n, f.reason);
            }
        }
        out
    }
}

/// Checks every path of `lines` through the mount at `mount`.
pub fn check(mount: &Path, lines: &[Line]) -> FileOutcome {
    let mut outcome = FileOutcome::default();
    for (path, expected) in expected(lines) {
        let at = mount.join(&path);
        match expected {
            Expected::Unknown => outcome.unknown += 1,
            Expected::Gone { n } => match std::fs::symlink_metadata(&at) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => outcome.gone += 1,
                Ok(_) => outcome.corrupt.push(FileFinding {
                    path,
                    n,
                    reason: "renamed away or unlinked, yet it is there".to_string(),
                }),
                Err(e) => outcome.lost.push(FileFinding {
                    path,
                    n,
                    reason: format!("cannot look it up: {e}"),
                }),
            },
            Expected::Holds { n, len, blake3 } => match std::fs::read(&at) {
                Ok(bytes) => {
                    let hash = blake3::hash(&bytes).to_hex();
                    if bytes.len() as u64 == len && hash.as_str() == blake3 {
                        outcome.verified += 1;
                    } else {
                        outcome.corrupt.push(FileFinding {
                            path,
                            n,
                            reason: format!(
                                "read back {} bytes hashing to {hash}; {len} bytes hashing to {blake3} were fsynced",
                                bytes.len()
                            ),
                        });
                    }
                }
                Err(e) => outcome.lost.push(FileFinding {
                    path,
                    n,
                    reason: format!("fsynced, then unreadable: {e}"),
                }),
            },
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(n: u64, path: &str, change: FileChange) -> Line {
        Line::File(FileOp {
            n,
            path: format!("{WRITER_DIR}/{path}"),
            change,
            at_ms: n,
        })
    }

    fn synced(len: u64, blake3: &str) -> FileChange {
        FileChange::Synced {
            how: "created".into(),
            len,
            blake3: blake3.into(),
        }
    }

    #[test]
    fn the_writer_never_works_in_a_bare_mount_point() {
        // No mount covers this directory: it is the bare directory a dead mount leaves
        // until the next one is made, and an unlink there would find nothing.
        let dir = std::env::temp_dir().join(format!("hive-chaos-bare-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let files = Files::new(1, &dir, Instant::now()).expect("files");
        assert!(!files.attach(), "a directory not on a mount is never used");
        assert!(
            files.path("x").starts_with("/proc/self/fd/-1"),
            "unattached, every path fails"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_line_reads_back_as_written() {
        let line = op(4, "f1-4", synced(10, "ab"));
        let text = serde_json::to_string(&line).expect("json");
        assert!(text.contains(r#""change":"synced""#), "{text}");
        let back: Line = serde_json::from_str(&text).expect("a ledger line");
        assert_eq!(back, line);
    }

    #[test]
    fn the_replay_follows_renames_unlinks_and_failures() {
        let lines = vec![
            op(1, "a", synced(3, "aa")),
            op(2, "b", synced(4, "bb")),
            op(3, "a", FileChange::Renamed { to: "c".into() }),
            op(4, "b", synced(5, "b2")),
            op(5, "b", FileChange::Unlinked),
            op(6, "d", synced(1, "dd")),
            op(
                7,
                "d",
                FileChange::Unsettled {
                    error: "EIO".into(),
                },
            ),
        ];
        let paths = expected(&lines);
        let at = |p: &str| paths[&format!("{WRITER_DIR}/{p}")].clone();
        assert_eq!(at("a"), Expected::Gone { n: 3 });
        assert_eq!(
            at("c"),
            Expected::Holds {
                n: 1,
                len: 3,
                blake3: "aa".into()
            },
            "a rename carries the content"
        );
        assert_eq!(at("b"), Expected::Gone { n: 5 });
        assert_eq!(at("d"), Expected::Unknown);
    }
}
