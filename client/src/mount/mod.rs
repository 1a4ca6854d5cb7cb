//! `hive mount`: a volume as a POSIX tree through FUSE.
//!
//! [`volume`] holds what the handlers do — namespace calls there, the write-back
//! buffer in [`writeback`], reads through the chunk cache in [`reads`], background
//! [`compaction`] of fragmented files — and [`fs`] the fuser handlers around it. [`mount`] runs the
//! mount in the foreground, or starts itself again in the background and returns once
//! that mount is ready. The mount helper (`mount -t fuse.hive SOURCE DIR`, fstab) comes
//! in through [`helper_args`].

mod cache;
mod classes;
mod compaction;
mod dirty;
mod fs;
mod reads;
mod session;
mod unsaved;
mod volume;
mod writeback;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use fuser::{Config, MountOption, SessionACL};
use hive_codec::{Chunker, ChunkerConfig};
use hive_wire::net::meta::{MetaCall, MetaReply};

pub use cache::CHUNK_CACHE_BYTES;
pub use compaction::{COMPACT_BELOW, COMPACT_MIN_EXTENTS, fragmented};
pub use fs::{ENTRY_TTL, HiveFs, MAX_READAHEAD, MAX_WRITE};
pub use session::DEFAULT_LEASE;
pub use volume::{Services, Volume};
pub use writeback::{FILE_BUFFER, TOTAL_BUFFER};

use crate::local_cluster;

/// FUSE worker threads: requests of several processes (or of one process's threads)
/// are served at once.
pub const MOUNT_THREADS: usize = 4;
/// How often a mount reports the shards it could not store after their chunks' ACKs.
pub const OWED_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a mount told to stop (SIGTERM, SIGINT) may take to finish the requests it
/// is serving before the process exits anyway.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(45);
/// The line a background mount prints once it is ready.
const READY: &str = "hive-mount-ready";

/// What to mount where.
#[derive(Clone, Debug)]
pub struct MountArgs {
    /// The cluster directory.
    pub cluster: PathBuf,
    /// The volume.
    pub volume: String,
    /// Where.
    pub mountpoint: PathBuf,
    /// Stay attached (for systemd and the like) instead of serving in the background.
    pub foreground: bool,
    /// Where a background mount writes its log.
    pub log: Option<PathBuf>,
    /// How long the cluster keeps this mount's open files after it last heard from it
    /// (a mount that dies loses its opens then).
    pub lease: std::time::Duration,
    /// The mount's flags (`ro`, `noexec`, ...), checked by [`mount_options`].
    pub options: Vec<String>,
    /// Say where it mounted (`hive mount`); a mount(8) helper is silent on success.
    pub announce: bool,
}

/// What a mount option does: set one of the kernel's mount flags (named by what it
/// decides: a later option on the same question wins, as with mount(8)), or nothing
/// here (one of mount(8)'s own, which it may pass on to a helper).
enum Flag {
    Kernel(&'static str, MountOption),
    MountsOwn,
}

/// The mount options a mount takes, as `mount -o` spells them: the kernel's mount
/// flags, which the kernel then enforces (a read-only mount refuses every change with
/// EROFS before it reaches the mount), and mount(8)'s own options, taken and ignored.
fn flag(option: &str) -> Option<Flag> {
    use Flag::{Kernel, MountsOwn};
    Some(match option {
        "ro" => Kernel("write", MountOption::RO),
        "rw" => Kernel("write", MountOption::RW),
        "noexec" => Kernel("exec", MountOption::NoExec),
        "exec" => Kernel("exec", MountOption::Exec),
        "nosuid" => Kernel("suid", MountOption::NoSuid),
        "suid" => Kernel("suid", MountOption::Suid),
        "nodev" => Kernel("dev", MountOption::NoDev),
        "dev" => Kernel("dev", MountOption::Dev),
        "noatime" => Kernel("atime", MountOption::NoAtime),
        "atime" => Kernel("atime", MountOption::Atime),
        "sync" => Kernel("sync", MountOption::Sync),
        "async" => Kernel("sync", MountOption::Async),
        "dirsync" => Kernel("dirsync", MountOption::DirSync),
        // The kernel's default access-time rule.
        "relatime" => MountsOwn,
        "defaults" | "auto" | "noauto" | "user" | "users" | "nouser" | "owner" | "group"
        | "_netdev" | "nofail" => MountsOwn,
        other if other.starts_with("x-") || other.starts_with("comment=") => MountsOwn,
        _ => return None,
    })
}

/// The kernel mount flags `options` name, over the mount's own defaults (read-write,
/// asynchronous); of two on the same question the later wins. An option this mount
/// does not support is an error naming it.
pub fn mount_options(options: &[String]) -> Result<Vec<MountOption>> {
    let mut flags = vec![("write", MountOption::RW), ("sync", MountOption::Async)];
    for option in options {
        match flag(option) {
            Some(Flag::Kernel(question, f)) => {
                flags.retain(|(q, _)| *q != question);
                flags.push((question, f));
            }
            Some(Flag::MountsOwn) => {}
            None => bail!(
                "unsupported mount option {option:?}: a hive mount takes ro, rw, noexec, exec, nosuid, suid, nodev, dev, noatime, atime, relatime, sync, async, dirsync and foreground"
            ),
        }
    }
    Ok(flags.into_iter().map(|(_, f)| f).collect())
}

/// Whether a mount with kernel flags `flags` records access times on reads (relatime,
/// the Linux default): not when mounted noatime or read-only.
pub fn access_times(flags: &[MountOption]) -> bool {
    !flags.contains(&MountOption::NoAtime) && !flags.contains(&MountOption::RO)
}

impl MountArgs {
    /// What /proc/mounts and findmnt show as the mount's source: `CLUSTER:VOLUME`.
    pub fn source(&self) -> String {
        format!("{}:{}", self.cluster.display(), self.volume)
    }
}

/// Parses a mount source, `CLUSTER_DIR[:VOLUME]` (the default volume without one).
pub fn parse_source(source: &str) -> (PathBuf, String) {
    match source.rsplit_once(':') {
        Some((dir, volume)) if !volume.is_empty() && !volume.contains('/') => {
            (PathBuf::from(dir), volume.to_string())
        }
        _ => (PathBuf::from(source), "default".to_string()),
    }
}

/// The arguments `mount -t fuse.hive SOURCE DIR -o OPTIONS` gives the helper
/// (`mount.fuse.hive SOURCE DIR [-o OPTIONS] [-n] [-v] ...`): the mount, in the
/// background. The kernel's flags (`ro`, `noexec`, ...) apply to the mount, options
/// mount(8) itself handles (`defaults`, `_netdev`, ...) are accepted and ignored,
/// `foreground` keeps the helper attached, and any other option is refused.
pub fn helper_args(args: &[String]) -> Result<MountArgs> {
    let mut positional = Vec::new();
    let mut foreground = false;
    let mut options = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-o" => {
                let list = it.next().context("-o needs a list of options")?;
                for option in list.split(',').filter(|o| !o.is_empty()) {
                    match option {
                        "foreground" => foreground = true,
                        option => options.push(option.to_string()),
                    }
                }
            }
            "-n" | "-v" | "-f" | "-s" => {}
            flag if flag.starts_with('-') => bail!("unknown option {flag}"),
            _ => positional.push(arg.clone()),
        }
    }
    let [source, mountpoint] = positional.as_slice() else {
        bail!("usage: mount.fuse.hive CLUSTER_DIR[:VOLUME] MOUNTPOINT [-o OPTIONS]");
    };
    let (cluster, volume) = parse_source(source);
    Ok(MountArgs {
        cluster,
        volume,
        mountpoint: PathBuf::from(mountpoint),
        foreground,
        log: None,
        lease: session::DEFAULT_LEASE,
        options,
        announce: false,
    })
}

/// Mounts: in the foreground (serving until unmounted), or in a background process of
/// its own, returning once the mount is ready.
pub fn mount(args: &MountArgs) -> Result<()> {
    // Refused here, before a background mount is started, rather than in its log.
    mount_options(&args.options)?;
    let meta = std::fs::metadata(&args.mountpoint)
        .with_context(|| format!("mount point {}", args.mountpoint.display()))?;
    if !meta.is_dir() {
        bail!(
            "mount point {} is not a directory",
            args.mountpoint.display()
        );
    }
    if !Path::new("/dev/fuse").exists() {
        bail!("/dev/fuse is missing: load the fuse module (modprobe fuse) or install fuse3");
    }
    if args.foreground {
        serve(args)
    } else {
        background(args)
    }
}

/// Starts `hive mount --foreground` as a process of its own (its own session, output to
/// a log file) and waits for it to say it is ready, or for it to fail.
fn background(args: &MountArgs) -> Result<()> {
    let me = std::env::current_exe().context("finding the hive executable")?;
    let log_path = match &args.log {
        Some(path) => path.clone(),
        None => mount_file(&args.cluster, &args.mountpoint, "log")?,
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening the mount log {}", log_path.display()))?;
    let mut child = Command::new(me);
    child
        .arg("mount")
        .arg("--cluster")
        .arg(&args.cluster)
        .arg("--volume")
        .arg(&args.volume)
        .arg("--foreground")
        .arg("--lease-seconds")
        .arg(args.lease.as_secs().to_string());
    if !args.options.is_empty() {
        child.arg("-o").arg(args.options.join(","));
    }
    child
        .arg(&args.mountpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut child, 0);
    let mut child = child.spawn().context("starting the mount process")?;
    let out = child
        .stdout
        .take()
        .context("the mount process has no output pipe")?;
    let mut line = String::new();
    // The child writes one line once mounted, or exits (closing the pipe) on failure.
    BufReader::new(out)
        .read_line(&mut line)
        .context("waiting for the mount process")?;
    if line.trim() == READY {
        if args.announce {
            crate::outln!(
                "mounted {} on {} (pid {}, log {})",
                args.source(),
                args.mountpoint.display(),
                child.id(),
                log_path.display()
            );
        }
        return Ok(());
    }
    let status = child.wait().context("waiting for the mount process")?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let last: Vec<&str> = log.lines().rev().take(5).collect();
    bail!(
        "the mount process failed ({status}): {}",
        last.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

/// The mount of `mountpoint` keeps its files in the cluster directory's `mounts/`,
/// named after the mount point: its log (`log`), its process id while it serves
/// (`pid`), and the files it could not store at its unmount (`lost`).
fn mount_file(cluster: &Path, mountpoint: &Path, what: &str) -> Result<PathBuf> {
    let dir = cluster.join("mounts");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let absolute = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    let name: String = absolute
        .display()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Ok(dir.join(format!("{name}.{what}")))
}

/// Mounts and serves until unmounted (or SIGTERM/SIGINT, which unmount).
fn serve(args: &MountArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting tokio")?;
    // The QUIC endpoint is made on the runtime.
    let _entered = runtime.enter();
    let (meta, connector) = local_cluster::connect_mount(&args.cluster)?;
    let meta = Arc::new(meta);
    let mounted = runtime
        .block_on(meta.call(&args.volume, 0, 0, MetaCall::Mount))
        .with_context(|| format!("asking the metadata service for volume {:?}", args.volume))?;
    let volume = match mounted {
        MetaReply::Mounted(v) => v,
        MetaReply::Errno(crate::errno::ENOENT) => bail!(
            "no volume named {:?}; create it with 'hive volume create --cluster {} {}'",
            args.volume,
            args.cluster.display(),
            args.volume
        ),
        MetaReply::Errno(e) => bail!("mounting volume {:?}: errno {e}", args.volume),
        other => bail!(
            "mounting volume {:?}: unexpected answer {other:?}",
            args.volume
        ),
    };
    // The volume's storage class names every shard its chunks are stored as.
    let classes = crate::volumes::Classes::of(&volume)
        .with_context(|| format!("volume {:?}'s storage class", args.volume))?;
    let (chunks, control) = runtime
        .block_on(connector.chunk_store(classes.write))
        .with_context(|| format!("volume {:?}", args.volume))?;
    let chunker = Chunker::new(ChunkerConfig::default())?;
    let flags = mount_options(&args.options)?;
    let session = session::new_session_id().context("drawing a session id")?;
    let services = Services {
        meta,
        chunks: chunks.clone(),
        control: control.clone(),
    };
    let volume = Arc::new(
        Volume::new(
            args.volume.clone(),
            volume.root,
            services,
            chunker,
            session,
            args.lease,
        )
        .with_access_times(access_times(&flags))
        .reencoding_from(classes.from),
    );
    // Shards that fail after their chunk's ACK are reported as they happen, not only
    // at unmount.
    let (reported, authority) = (chunks.clone(), control.clone());
    runtime.spawn(async move {
        let mut ticker = tokio::time::interval(OWED_REPORT_EVERY);
        loop {
            ticker.tick().await;
            let owed = reported.take_owed();
            if !owed.is_empty() {
                local_cluster::send_owed(&authority, &owed).await;
                reported.hint_owed(&owed).await;
            }
        }
    });
    runtime
        .block_on(volume.start_session())
        .map_err(|e| anyhow::anyhow!("starting a session with the metadata service: {e:?}"))?;
    {
        let _in_runtime = runtime.enter();
        volume.start_retrying();
    }
    let fs = HiveFs::new(volume.clone(), runtime.handle().clone());
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(args.source()),
        // The kernel's own option (fuser passes Subtype only to fusermount): the mount
        // shows as type fuse.hive.
        MountOption::CUSTOM("subtype=hive".to_string()),
        MountOption::DefaultPermissions,
    ];
    config.mount_options.extend(flags);
    // Every user of the host may use the mount; the kernel checks their permissions.
    config.acl = SessionACL::All;
    config.n_threads = Some(MOUNT_THREADS);
    let mut session = fuser::Session::new(fs, &args.mountpoint, &config)
        .with_context(|| format!("mounting on {}", args.mountpoint.display()))?;
    let mut unmounter = session.unmount_callable();
    // Fired when the session ends, however it ends.
    let (stopped, on_stop) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    eprintln!("hive mount: cannot watch for SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("hive mount: signal received; unmounting");
        if let Err(e) = unmounter.unmount() {
            eprintln!("hive mount: unmount failed: {e}");
        }
        // Requests stuck on an unreachable cluster must not keep a stopped mount
        // alive: past the grace, the process goes (a mount left behind reads as
        // "transport endpoint is not connected" until unmounted).
        if tokio::time::timeout(STOP_GRACE, on_stop).await.is_err() {
            eprintln!("hive mount: still serving {STOP_GRACE:?} after the signal; exiting");
            std::process::exit(1);
        }
    });
    eprintln!(
        "hive mount: {} mounted on {}",
        args.source(),
        args.mountpoint.display()
    );
    let mut stdout = std::io::stdout();
    // The background parent waits for this line; nothing else goes to stdout.
    let _ = writeln!(stdout, "{READY}");
    let _ = stdout.flush();
    let pid_file = mount_file(&args.cluster, &args.mountpoint, "pid")?;
    let lost_file = mount_file(&args.cluster, &args.mountpoint, "lost")?;
    let _ = std::fs::remove_file(&lost_file);
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", pid_file.display()))?;
    let served = session.run().context("serving the mount");
    let _ = stopped.send(());
    // The last attempt for every buffer a commit could not store; what is still
    // unsaved is named, here and (through the lost file) by 'hive umount'.
    let lost = runtime.block_on(volume.save_all());
    // Whatever is still open here is released at once, not at the lease's end.
    if let Err(e) = runtime.block_on(volume.end_session()) {
        eprintln!("hive mount: ending the session failed (its lease ends it): {e:?}");
    }
    // Shards still being written after their chunks' ACKs: waited for a moment, and
    // those that did not make it reported to the map authority as owed to repair.
    local_cluster::say_owed(runtime.block_on(local_cluster::report_owed(&chunks, &control)));
    let report: String = lost.iter().map(|l| format!("{l}\n")).collect();
    if !lost.is_empty() {
        eprint!(
            "{}",
            report
                .lines()
                .map(|l| format!("hive mount: {l}\n"))
                .collect::<String>()
        );
        if let Err(e) = hive_wire::files::replace(&lost_file, report.as_bytes()) {
            eprintln!("hive mount: writing {}: {e}", lost_file.display());
        }
    }
    let _ = std::fs::remove_file(&pid_file);
    served?;
    eprintln!("hive mount: unmounted {}", args.mountpoint.display());
    if !lost.is_empty() {
        bail!(
            "{} files' written bytes could not be stored (named above)",
            lost.len()
        );
    }
    Ok(())
}

/// The cluster directory of the HiveFS mount on `mountpoint`, from /proc/mounts.
fn mounted_cluster(mountpoint: &Path) -> Option<PathBuf> {
    let absolute = std::fs::canonicalize(mountpoint).ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let (source, point, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "fuse.hive" && Path::new(point) == absolute).then(|| parse_source(source).0)
    })
}

/// Whether process `pid` runs (a zombie, exited but not yet reaped, does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the parenthesised command name.
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// How long `hive umount` waits for the mount process to finish its last commits.
const UMOUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(90);

/// Unmounts `mountpoint`, waits for the mount process to make its last attempt to store
/// what it still buffers, and fails naming every file whose written bytes it could not
/// store.
pub fn umount(mountpoint: &Path) -> Result<()> {
    let files = mounted_cluster(mountpoint).and_then(|cluster| {
        let pid = mount_file(&cluster, mountpoint, "pid").ok()?;
        let lost = mount_file(&cluster, mountpoint, "lost").ok()?;
        Some((pid, lost))
    });
    let pid = files
        .as_ref()
        .and_then(|(pid, _)| std::fs::read_to_string(pid).ok())
        .and_then(|text| text.trim().parse::<u32>().ok());
    let status = Command::new("umount")
        .arg(mountpoint)
        .status()
        .context("running umount")?;
    if !status.success() {
        bail!(
            "umount {} failed ({status}); if files are still open there, close them first",
            mountpoint.display()
        );
    }
    let Some((_, lost_file)) = files else {
        return Ok(());
    };
    if let Some(pid) = pid {
        let deadline = std::time::Instant::now() + UMOUNT_WAIT;
        while running(pid) {
            if std::time::Instant::now() > deadline {
                bail!(
                    "unmounted, but the mount process (pid {pid}) is still storing what it buffered after {UMOUNT_WAIT:?}; see its log"
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    match std::fs::read_to_string(&lost_file) {
        Ok(report) if !report.trim().is_empty() => {
            eprint!("{report}");
            bail!(
                "unmounted, but {} files' written bytes could not be stored (named above)",
                report.lines().count()
            )
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(options: &[&str]) -> bool {
        let options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        access_times(&mount_options(&options).expect("valid options"))
    }

    #[test]
    fn access_times_follow_the_mount_options() {
        assert!(times(&[]), "relatime by default");
        assert!(times(&["relatime"]));
        assert!(!times(&["noatime"]));
        assert!(times(&["noatime", "atime"]), "the later wins");
        assert!(!times(&["ro"]), "a read-only mount records nothing");
        assert!(times(&["ro", "rw"]));
    }
}
