//! The FUSE mount on a real local cluster: `hive cluster up` starts six `hive-node`
//! processes (4+2), `hive mount` mounts a volume through /dev/fuse, and everything
//! below goes through the kernel: the POSIX suites (pjdfstest, fsx with mmap), real
//! programs (cargo, git), two mounts of one volume, killed clients and a killed
//! metadata node, and misuse that must give the right errno.
//!
//! Needs root, /dev/fuse and the tools `scripts/install-test-tools` installs; without
//! them each test fails saying what is missing.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hive_wire::net::meta::{MetaCall, MetaReply};

mod support;
use support::mounted::{Mounted, require_fuse};
use support::{Cluster, RECOVER_WITHIN, SEED, hive, ok, text};

/// fsx runs in CI: seeds × operations each, two seeds at a time. With every metadata
/// change committed through a 3-replica group, each pair takes about four minutes of a
/// CI run that must stay under 45; the long runs are `scripts/fsx-long`'s.
const FSX_SEEDS: u64 = 2;
/// See [`FSX_SEEDS`].
const FSX_OPS: u64 = 20_000;
/// pjdfstest cases that pass on a local filesystem but skip on any FUSE mount, and why.
const FUSE_SKIPS: &[(&str, &str)] = &[(
    "link::link_count_max",
    "glibc's pathconf(_PC_LINK_MAX) knows no limit for FUSE filesystems, so the test cannot \
     learn how many links to make; the namespace's limit (MAX_LINKS) is model-tested",
)];
/// How long a call may hang on a stopped metadata node before the mount answers EIO:
/// the metadata deadline (15 s) with slack for a loaded machine.
const EIO_WITHIN: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the client crate")
        .to_path_buf()
}

/// A test tool that `scripts/install-test-tools` installs.
fn tool(name: &str) -> PathBuf {
    let path = repo().join("target/test-tools/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-tools (scripts/test does)",
        path.display()
    );
    path
}

fn sh(script: &str, dir: &Path) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("run sh")
}

fn mounted(dir: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
    let dir = dir.to_str().expect("utf-8");
    mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(dir))
        .map(str::to_string)
}

/// The names pjdfstest reports as passed in `log`.
fn passed(log: &str) -> std::collections::BTreeSet<String> {
    log.lines()
        .filter(|l| l.trim_end().ends_with(" ok"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn pjdfstest(dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("pjdfstest directory");
    let config = repo().join("client/tests/pjdfstest.toml");
    let out = Command::new(tool("pjdfstest"))
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run pjdfstest");
    text(&out)
}

#[test]
fn posix_suites_pass_on_a_mount() {
    require_fuse();
    // fsx rewrites its files over and over: 2 seeds x 20,000 operations store about
    // 1.5 GB of shards, a quarter of what six 1 GiB stores hold. Garbage collection, every
    // 20 s here, gives the space back as they go.
    let cluster = Cluster::with_args(
        "mount-posix",
        6,
        (4, 2),
        "1GiB",
        &[],
        &["--gc-interval", "20s"],
    );
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let line = mounted(&mnt.dir).expect("the mount is in /proc/mounts");
    assert!(
        line.starts_with(&format!("{}:default ", cluster.d())) && line.contains(" fuse.hive "),
        "/proc/mounts shows the source and type: {line}"
    );

    // pjdfstest: what passes on this machine's own filesystem passes on the mount.
    let local = pjdfstest(&cluster.path("pjd-local"));
    let on_mount = pjdfstest(&mnt.path("pjd"));
    let summary = |log: &str| {
        log.lines()
            .find(|l| l.starts_with("Summary:"))
            .unwrap_or("no summary")
            .to_string()
    };
    println!("pjdfstest on the local filesystem: {}", summary(&local));
    println!("pjdfstest on the mount: {}", summary(&on_mount));
    let missing: Vec<_> = passed(&local)
        .difference(&passed(&on_mount))
        .filter(|name| {
            let known = FUSE_SKIPS.iter().find(|(skip, _)| skip == name);
            if let Some((_, why)) = known {
                println!("{name}: skipped on the mount: {why}");
            }
            known.is_none()
        })
        .cloned()
        .collect();
    assert!(
        !passed(&local).is_empty(),
        "pjdfstest passed nothing locally: {local}"
    );
    assert!(
        missing.is_empty(),
        "pass locally but not on the mount: {missing:?}\n{on_mount}"
    );
    // Every skip carries its reason on the line after it.
    let lines: Vec<&str> = on_mount.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_end().ends_with("skipped") {
            let why = lines.get(i + 1).map_or("", |l| l.trim());
            println!(
                "{} skipped on the mount: {why}",
                line.split_whitespace().next().unwrap_or(line)
            );
        }
    }

    // fsx with mmap reads and writes, two seeds at a time.
    let config = repo().join("client/tests/fsx.toml");
    let fsx = tool("fsx");
    let started = Instant::now();
    for pair in (0..FSX_SEEDS).collect::<Vec<_>>().chunks(2) {
        let runs: Vec<_> = pair
            .iter()
            .map(|n| {
                let seed = SEED + n;
                let child = Command::new(&fsx)
                    .arg("-f")
                    .arg(&config)
                    .args(["-N", &FSX_OPS.to_string(), "-S", &seed.to_string()])
                    .arg("-P")
                    .arg(cluster.path("fsx-artifacts"))
                    .arg(mnt.path(&format!("fsx-{seed}.dat")))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("run fsx");
                (seed, child)
            })
            .collect();
        std::fs::create_dir_all(cluster.path("fsx-artifacts")).expect("artifacts");
        for (seed, child) in runs {
            let out = child.wait_with_output().expect("fsx");
            assert!(
                out.status.success(),
                "fsx seed {seed} failed: {}",
                text(&out)
            );
        }
    }
    println!(
        "fsx: {FSX_SEEDS} seeds x {FSX_OPS} operations clean in {:.0?}; the six 1 GiB stores use {} bytes",
        started.elapsed(),
        cluster.used()
    );
}

/// The source of a dependency-free crate from the local cargo registry.
fn registry_crate() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let cache = home.join("registry/cache");
    for index in std::fs::read_dir(&cache).expect("the cargo registry cache") {
        let index = index.expect("entry").path();
        let mut crates: Vec<PathBuf> = std::fs::read_dir(&index)
            .expect("registry index")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("itoa-1.") || n.starts_with("cfg-if-1."))
            })
            .collect();
        crates.sort();
        if let Some(found) = crates.pop() {
            return found;
        }
    }
    panic!(
        "no itoa or cfg-if crate in {}: build the workspace first",
        cache.display()
    )
}

#[test]
fn real_programs_work_in_a_mount() {
    require_fuse();
    let cluster = Cluster::up("mount-work");
    let mnt = Mounted::new(&cluster, "default", "mnt");

    // A crate's source, unpacked and built in the mount (target directory there too).
    let source = registry_crate();
    let untar = Command::new("tar")
        .arg("xzf")
        .arg(&source)
        .current_dir(&mnt.dir)
        .output()
        .expect("tar");
    ok(&untar, "unpacking a crate");
    let name = source
        .file_stem()
        .and_then(|n| n.to_str())
        .expect("crate file name")
        .to_string();
    // Its dev-dependencies (benchmark harnesses and the like) need not be here offline.
    let manifest = mnt.path(&format!("{name}/Cargo.toml"));
    let mut table: toml::Table = std::fs::read_to_string(&manifest)
        .expect("the crate's manifest")
        .parse()
        .expect("a valid manifest");
    table.remove("dev-dependencies");
    if let Some(toml::Value::Table(targets)) = table.get_mut("target") {
        for (_, target) in targets.iter_mut() {
            if let toml::Value::Table(target) = target {
                target.remove("dev-dependencies");
            }
        }
    }
    for target in ["bench", "test", "example"] {
        table.remove(target);
    }
    // Nor its optional dependencies, with the features that name them.
    if let Some(toml::Value::Table(deps)) = table.get_mut("dependencies") {
        deps.retain(|_, d| d.get("optional").and_then(toml::Value::as_bool) != Some(true));
    }
    table.remove("features");
    std::fs::write(&manifest, toml::to_string(&table).expect("manifest")).expect("write");
    let build = Command::new(env!("CARGO"))
        .args(["build", "--offline", "--quiet", "--lib"])
        .current_dir(mnt.path(&name))
        .env("CARGO_TARGET_DIR", mnt.path("cargo-target"))
        .output()
        .expect("cargo");
    ok(&build, &format!("cargo build of {name} in the mount"));
    let built = std::fs::read_dir(mnt.path("cargo-target/debug"))
        .expect("the build's output")
        .count();
    assert!(built > 0, "cargo left nothing in its target directory");

    // git: a repository made, committed to and checked in the mount.
    let git = sh(
        "set -e; git init -q repo; cd repo; \
         git config user.email t@hive; git config user.name hive; \
         for i in $(seq 50); do echo line $i > f$i; done; mkdir d; seq 10000 > d/big; \
         git add .; git commit -qm one; echo changed >> f7; git mv f8 d/f8; \
         git commit -qam two; git gc -q; git fsck --full --strict; git log --oneline | wc -l",
        &mnt.dir,
    );
    let out = ok(&git, "git in the mount");
    assert_eq!(out.trim(), "2", "two commits: {}", text(&git));
}

#[test]
fn mounts_share_closed_files_and_misuse_gets_its_errno() {
    require_fuse();
    let cluster = Cluster::up("mount-share");
    ok(
        &hive(&["volume", "create", "--cluster", cluster.d(), "photos"]),
        "volume create",
    );
    let listed = ok(&hive(&["volume", "list", "--cluster", cluster.d()]), "list");
    assert!(
        listed.contains("photos") && listed.contains("default"),
        "{listed}"
    );
    let a = Mounted::new(&cluster, "photos", "a");
    let b = Mounted::new(&cluster, "photos", "b");

    // Close-to-open: written and closed in one mount, complete when opened in the other.
    let data = hive_testkit::random_bytes(SEED, 9 << 20);
    std::fs::write(a.path("shared.bin"), &data).expect("write in a");
    assert!(
        std::fs::read(b.path("shared.bin")).expect("read in b") == data,
        "mount b read other bytes than mount a wrote (seed {SEED:#x})"
    );
    // A rewrite in b is seen by the next open in a.
    std::fs::write(b.path("shared.bin"), b"short now").expect("rewrite in b");
    assert_eq!(
        std::fs::read(a.path("shared.bin")).expect("read in a"),
        b"short now"
    );

    // Misuse, each with its errno.
    let errno = |r: std::io::Result<()>| r.err().and_then(|e| e.raw_os_error());
    std::fs::create_dir(a.path("full")).expect("mkdir");
    std::fs::write(a.path("full/x"), b"x").expect("file");
    assert_eq!(
        errno(std::fs::remove_dir(a.path("full"))),
        Some(39),
        "ENOTEMPTY"
    );
    std::fs::create_dir(a.path("full/child")).expect("mkdir child");
    assert_eq!(
        errno(std::fs::rename(a.path("full"), a.path("full/child/inside"))),
        Some(22),
        "EINVAL: a directory into its own child"
    );
    let long = "n".repeat(256);
    assert_eq!(
        errno(std::fs::write(a.path(&long), b"x")),
        Some(36),
        "ENAMETOOLONG"
    );
    // Past the largest file: EFBIG, and the file stays as it was.
    let big = std::fs::File::create(a.path("big")).expect("create big");
    let past = hive_wire::limits::MAX_FILE_SIZE;
    assert_eq!(
        errno(std::os::unix::fs::FileExt::write_at(&big, b"x", past).map(|_| ())),
        Some(27),
        "EFBIG: a write past the largest file"
    );
    assert_eq!(
        errno(big.set_len(past + 1)),
        Some(27),
        "EFBIG: a truncate past it"
    );
    big.set_len(past).expect("a size at the largest file");
    assert_eq!(big.metadata().expect("stat big").len(), past);
    drop(big);
    let default = Mounted::new(&cluster, "default", "c");
    assert_eq!(
        errno(std::fs::hard_link(a.path("full/x"), default.path("x"))),
        Some(18),
        "EXDEV: a link across volumes"
    );

    // renameat2: RENAME_NOREPLACE refuses an existing target, RENAME_EXCHANGE swaps two
    // names (a file and a directory too), and the other mount sees the swap.
    use rustix::fs::{CWD, RenameFlags};
    let rename2 = |from: &str, to: &str, flags: RenameFlags| -> Option<i32> {
        rustix::fs::renameat_with(CWD, a.path(from), CWD, a.path(to), flags)
            .err()
            .map(|e| e.raw_os_error())
    };
    std::fs::write(a.path("one"), b"1").expect("one");
    std::fs::write(a.path("two"), b"2").expect("two");
    assert_eq!(
        rename2("one", "two", RenameFlags::NOREPLACE),
        Some(17),
        "RENAME_NOREPLACE over an existing name"
    );
    assert_eq!(rename2("one", "three", RenameFlags::NOREPLACE), None);
    assert_eq!(
        rename2("three", "none", RenameFlags::EXCHANGE),
        Some(2),
        "RENAME_EXCHANGE with a missing name"
    );
    assert_eq!(rename2("three", "two", RenameFlags::EXCHANGE), None);
    assert_eq!(std::fs::read(a.path("three")).expect("three"), b"2");
    assert_eq!(std::fs::read(b.path("two")).expect("two in b"), b"1");
    assert_eq!(rename2("full", "two", RenameFlags::EXCHANGE), None);
    assert_eq!(std::fs::read(a.path("two/x")).expect("the directory"), b"x");
    assert_eq!(std::fs::read(b.path("full")).expect("the file in b"), b"1");

    let deleted = hive(&["volume", "delete", "--cluster", cluster.d(), "photos"]);
    assert!(
        !deleted.status.success() && text(&deleted).contains("not empty"),
        "a non-empty volume is not deleted: {}",
        text(&deleted)
    );

    // Storage classes: a 2+1 volume beside the 4+2 ones. The same bytes in both are two
    // sets of shards (one chunk, two schemes): each reads back whole on a fresh mount.
    create_narrow(&cluster);
    let listed = ok(&hive(&["volume", "list", "--cluster", cluster.d()]), "list");
    assert!(listed.contains("2+1"), "{listed}");
    let too_wide = hive(&[
        "volume",
        "create",
        "--cluster",
        cluster.d(),
        "--k",
        "5",
        "--m",
        "2",
        "wide",
    ]);
    assert!(
        !too_wide.status.success() && text(&too_wide).contains("this cluster has 6"),
        "5+2 on six nodes is refused: {}",
        text(&too_wide)
    );
    {
        let narrow = Mounted::new(&cluster, "narrow", "n1");
        std::fs::write(narrow.path("same.bin"), &data).expect("write in the 2+1 volume");
        std::fs::write(default.path("same.bin"), &data).expect("write in the 4+2 volume");
    }
    // Fresh mounts: nothing comes from a mount's cache.
    let narrow = Mounted::new(&cluster, "narrow", "n2");
    let wide = Mounted::new(&cluster, "default", "d2");
    assert!(
        std::fs::read(narrow.path("same.bin")).expect("read 2+1") == data,
        "the 2+1 volume read other bytes (seed {SEED:#x})"
    );
    assert!(
        std::fs::read(wide.path("same.bin")).expect("read 4+2") == data,
        "the 4+2 volume read other bytes (seed {SEED:#x})"
    );
    drop((narrow, wide));

    // The mount helper, through mount(8) and an fstab line.
    let helper = Path::new("/sbin/mount.fuse.hive");
    if std::fs::read_link(helper).ok().as_deref() != Some(Path::new(env!("CARGO_BIN_EXE_hive"))) {
        let _ = std::fs::remove_file(helper);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_hive"), helper).expect("install helper");
    }
    let d = cluster.path("d");
    std::fs::create_dir_all(&d).expect("mount point");
    let fstab = cluster.path("fstab");
    std::fs::write(
        &fstab,
        format!(
            "{}:photos {} fuse.hive defaults,_netdev,ro,noexec 0 0\n",
            cluster.d(),
            d.display()
        ),
    )
    .expect("fstab");
    let out = Command::new("mount")
        .arg("-T")
        .arg(&fstab)
        .arg(&d)
        .output()
        .expect("mount(8)");
    let said = ok(&out, "mount -T fstab");
    assert_eq!(said, "", "a mount helper is silent on success");
    let line = mounted(&d).expect("the helper's mount is in /proc/mounts");
    assert!(line.contains(" fuse.hive "), "{line}");
    let flags = line.split(' ').nth(3).unwrap_or_default().to_string();
    assert!(
        flags.split(',').any(|f| f == "ro") && flags.split(',').any(|f| f == "noexec"),
        "fstab's ro and noexec are the mount's: {line}"
    );
    assert_eq!(
        std::fs::read(d.join("shared.bin")).expect("read through the helper's mount"),
        b"short now"
    );
    assert_eq!(
        errno(std::fs::write(d.join("shared.bin"), b"changed")),
        Some(30),
        "EROFS: an fstab ro mount refuses changes"
    );
    assert_eq!(
        errno(std::fs::remove_file(d.join("shared.bin"))),
        Some(30),
        "EROFS"
    );
    ok(&hive(&["umount", d.to_str().expect("utf-8")]), "umount");
    assert!(mounted(&d).is_none(), "unmounted");
    let refused = Command::new("mount")
        .args(["-t", "fuse.hive", "-o", "compress=9"])
        .arg(format!("{}:photos", cluster.d()))
        .arg(&d)
        .output()
        .expect("mount(8)");
    assert!(
        !refused.status.success() && text(&refused).contains("unsupported mount option"),
        "an option the mount does not support is refused: {}",
        text(&refused)
    );
    assert!(mounted(&d).is_none(), "nothing mounted");

    // A majority of the metadata replicas stopped (nodes 1 and 2 of 1, 2, 3): a call
    // answers EIO within the deadline, and the mount works again once they are back.
    cluster.signal("-STOP", &[1, 2]);
    let asked = Instant::now();
    let stat = std::fs::metadata(a.path("not-there-yet"));
    let waited = asked.elapsed();
    cluster.signal("-CONT", &[1, 2]);
    assert_eq!(
        stat.err().and_then(|e| e.raw_os_error()),
        Some(5),
        "EIO while a majority of the metadata replicas is stopped"
    );
    assert!(waited < EIO_WITHIN, "EIO took {waited:?}");
    let back = Instant::now();
    loop {
        match std::fs::write(a.path("after"), b"back") {
            Ok(()) => break,
            Err(e) => assert!(
                back.elapsed() < RECOVER_WITHIN,
                "the mount did not recover: {e}"
            ),
        }
    }
    assert_eq!(std::fs::read(b.path("after")).expect("read"), b"back");
}

#[test]
fn crashes_lose_nothing_fsynced_and_renames_stay_whole() {
    require_fuse();
    let cluster = Cluster::up("mount-crash");
    let source = cluster.path("source.bin");
    let data = hive_testkit::random_bytes(SEED + 1, 3 << 20);
    std::fs::write(&source, &data).expect("source");

    // kill -9 the client while it writes: every file it fsynced is intact afterwards,
    // and a file it held open after its last name went is removed when its lease ends.
    let mnt = Mounted::with(&cluster, "default", "mnt", &["--lease-seconds", "3"]);
    std::fs::write(mnt.path("orphan"), b"held open").expect("orphan");
    let held = std::fs::File::open(mnt.path("orphan")).expect("open");
    let orphan = held.metadata().expect("stat").ino();
    std::fs::remove_file(mnt.path("orphan")).expect("unlink while open");
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "i=0; while true; do i=$((i+1)); dd if={} of=f$i bs=1M conv=fsync status=none || exit 1; echo $i; done",
            source.display()
        ))
        .current_dir(&mnt.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("writer");
    let mut lines = BufReader::new(writer.stdout.take().expect("pipe")).lines();
    let mut synced = Vec::new();
    while synced.len() < 6 {
        let line = lines
            .next()
            .expect("the writer stopped early")
            .expect("line");
        synced.push(line);
    }
    let pid = mnt.pid.clone();
    let killed = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(killed.success(), "kill -9 the mount process {pid}");
    // The writer's next call fails (the mount is gone); whatever it says meanwhile is
    // an fsync that completed before the kill.
    for line in lines.map_while(Result::ok) {
        synced.push(line);
    }
    let _ = writer.wait();
    drop(held);
    drop(mnt);
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let _entered = runtime.enter();
    let meta = hive_client::local_cluster::meta_client(&cluster.dir, false).expect("meta");
    let since = Instant::now();
    let mut seen = false;
    loop {
        let asked = runtime.block_on(meta.call("default", 0, 0, MetaCall::GetAttr { ino: orphan }));
        match asked {
            Ok(MetaReply::Errno(2)) => break,
            Ok(MetaReply::Attr(a)) => {
                assert_eq!(a.nlink, 0, "the orphan has no name");
                seen = true;
            }
            other => panic!("asking for the orphan: {other:?}"),
        }
        assert!(
            since.elapsed() < RECOVER_WITHIN,
            "the dead mount's orphan outlived its lease"
        );
    }
    assert!(seen, "the orphan outlived the mount until its lease ended");
    let mnt = Mounted::new(&cluster, "default", "mnt");
    for n in &synced {
        let back = std::fs::read(mnt.path(&format!("f{n}")))
            .unwrap_or_else(|e| panic!("fsynced file f{n} lost: {e}"));
        assert!(back == data, "fsynced file f{n} differs (seed {SEED:#x})");
    }

    // kill -9 the metadata node during a loop of renames: each happened whole or not at
    // all, so every file is in exactly one place with its content.
    let files = 8;
    std::fs::create_dir(mnt.path("x")).expect("x");
    std::fs::create_dir(mnt.path("y")).expect("y");
    for i in 0..files {
        std::fs::write(mnt.path(&format!("x/f{i}")), format!("file {i}")).expect("file");
    }
    let mut renamer = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while true; do for i in $(seq 0 {}); do \
             if [ -e x/f$i ]; then mv x/f$i y/f$i; else mv y/f$i x/f$i; fi; echo $i; done; done",
            files - 1
        ))
        .current_dir(&mnt.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("renamer");
    let mut progress = BufReader::new(renamer.stdout.take().expect("pipe")).lines();
    for _ in 0..40 {
        progress.next().expect("renames run").expect("line");
    }
    cluster.signal("-KILL", &[1]);
    let _ = renamer.kill();
    let _ = renamer.wait();
    ok(
        &hive(&["cluster", "start", "--dir", cluster.d(), "--node", "1"]),
        "restart node 1",
    );
    let since = Instant::now();
    for i in 0..files {
        let (x, y) = loop {
            let x = std::fs::read(mnt.path(&format!("x/f{i}")));
            let y = std::fs::read(mnt.path(&format!("y/f{i}")));
            let eio = |r: &std::io::Result<Vec<u8>>| {
                r.as_ref().err().and_then(|e| e.raw_os_error()) == Some(5)
            };
            if !(eio(&x) || eio(&y)) {
                break (x, y);
            }
            assert!(
                since.elapsed() < RECOVER_WITHIN,
                "the metadata service did not come back"
            );
        };
        let expected = format!("file {i}").into_bytes();
        match (x, y) {
            (Ok(content), Err(_)) | (Err(_), Ok(content)) => {
                assert_eq!(content, expected, "f{i} has its content")
            }
            (x, y) => panic!("f{i} is not in exactly one place: x {x:?}, y {y:?}"),
        }
    }
}

/// Whether inode `ino` of the default volume still exists, asked of the metadata
/// service directly (not through a mount's cache); waits while the service is away.
fn inode_exists(cluster: &Cluster, ino: u64) -> bool {
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let _entered = runtime.enter();
    let meta = hive_client::local_cluster::meta_client(&cluster.dir, false).expect("meta");
    let since = Instant::now();
    loop {
        match runtime.block_on(meta.call("default", 0, 0, MetaCall::GetAttr { ino })) {
            Ok(MetaReply::Errno(2)) => return false,
            Ok(MetaReply::Attr(_)) => return true,
            other => assert!(
                since.elapsed() < RECOVER_WITHIN,
                "the metadata service did not answer: {other:?}"
            ),
        }
    }
}

/// The lease of the session test's mount, and how long the metadata node's outage
/// lasts: longer (the fault's length, not a wait for an event).
const LEASE_SECONDS: u64 = 3;
const OUTAGE: Duration = Duration::from_secs(2 * LEASE_SECONDS);

#[test]
fn sessions_outlive_a_metadata_outage_and_an_expired_one_is_told() {
    require_fuse();
    let cluster = Cluster::up("mount-session");
    let lease = LEASE_SECONDS.to_string();
    let mnt = Mounted::with(&cluster, "default", "mnt", &["--lease-seconds", &lease]);
    std::fs::write(mnt.path("orphan"), b"held open").expect("orphan");
    let held = std::fs::File::open(mnt.path("orphan")).expect("open");
    let orphan = held.metadata().expect("stat").ino();
    std::fs::remove_file(mnt.path("orphan")).expect("unlink while open");

    // The whole metadata group (nodes 1, 2 and 3) is away for longer than the lease,
    // so the mount cannot renew: when it is back, its new leader gives every session
    // its lease again, and the mount's renewals keep the orphan it holds.
    cluster.signal("-KILL", &[1, 2, 3]);
    std::thread::sleep(OUTAGE);
    ok(
        &hive(&["cluster", "start", "--dir", cluster.d()]),
        "restart the metadata group",
    );
    assert!(
        inode_exists(&cluster, orphan),
        "the orphan went at the restart"
    );
    mnt.wait_for_log(
        &cluster,
        "the session is renewed again",
        "the mount did not renew its session after the restart",
    );
    assert!(
        inode_exists(&cluster, orphan),
        "the orphan went though the mount renews its session"
    );

    // The mount itself goes silent for longer than its lease: its session really
    // expires and the orphan goes. Woken, the mount is told, says so, starts its
    // session again, and works on.
    // Signalled from here, not by a `kill` process: its exec would close this
    // process's descriptors of the mount, which waits on the stopped mount.
    let pid = rustix::process::Pid::from_raw(mnt.pid.parse().expect("a pid")).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP the mount");
    let since = Instant::now();
    while inode_exists(&cluster, orphan) {
        assert!(
            since.elapsed() < RECOVER_WITHIN,
            "the silent mount's session did not expire"
        );
    }
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("SIGCONT the mount");
    mnt.wait_for_log(
        &cluster,
        "session started again",
        "the mount did not say its session ended",
    );
    let log = mnt.log(&cluster);
    assert!(
        log.contains("the cluster ended this mount's session"),
        "{log}"
    );
    drop(held);
    std::fs::write(mnt.path("after"), b"still works").expect("write after");
    assert_eq!(
        std::fs::read(mnt.path("after")).expect("read after"),
        b"still works"
    );
}

#[test]
fn fragmented_files_are_compacted_after_close() {
    require_fuse();
    let cluster = Cluster::up("mount-compact");
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let size = 2usize << 20;
    let mut expected = hive_testkit::random_bytes(SEED + 2, size);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::File::create(mnt.path("patchy")).expect("create");
        file.write_all(&expected).expect("write");
        file.sync_all().expect("fsync");
        // 64 small writes, each fsynced: each becomes an extent of its own.
        let mut rng = hive_testkit::Rng::new(SEED + 3);
        for _ in 0..64 {
            let at = rng.below(size - 4096);
            let patch = hive_testkit::random_bytes(rng.next_u64(), 4096);
            expected[at..at + 4096].copy_from_slice(&patch);
            file.seek(SeekFrom::Start(at as u64)).expect("seek");
            file.write_all(&patch).expect("patch");
            file.sync_all().expect("fsync");
        }
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let _entered = runtime.enter();
    let meta = hive_client::local_cluster::meta_client(&cluster.dir, false).expect("meta");
    let extents = || {
        let call = MetaCall::Lookup {
            parent: 1,
            name: b"patchy".to_vec(),
        };
        let Ok(MetaReply::Attr(attr)) = runtime.block_on(meta.call("default", 0, 0, call)) else {
            panic!("lookup failed");
        };
        let call = MetaCall::Content { ino: attr.ino };
        match runtime.block_on(meta.call("default", 0, 0, call)) {
            Ok(MetaReply::Content { extents, .. }) => extents.len(),
            other => panic!("content: {other:?}"),
        }
    };
    let before = extents();
    assert!(
        before >= 64,
        "the patches are extents of their own: {before}"
    );
    // The last close starts the compaction in the background; wait for its commit.
    let since = Instant::now();
    let after = loop {
        let now = extents();
        if now < 16 {
            break now;
        }
        assert!(
            since.elapsed() < RECOVER_WITHIN,
            "still {now} extents after {RECOVER_WITHIN:?}"
        );
    };
    println!("compaction: {before} extents became {after}");
    drop(mnt);
    // A fresh mount (no cached chunks) reads the same bytes.
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let back = std::fs::read(mnt.path("patchy")).expect("read");
    assert!(
        back == expected,
        "compaction changed the bytes (seed {SEED:#x})"
    );
}

/// Runs `program` with `args` (as user `user` when given) in `dir`.
fn run_as(user: Option<&str>, dir: &Path, program: &str, args: &[&str]) -> std::process::Output {
    let mut command = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", program]);
            c
        }
        None => Command::new(program),
    };
    command
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} could not run ({e}); scripts/setup-host installs acl and util-linux")
        })
}

#[test]
fn posix_acls_are_enforced_and_inherited() {
    require_fuse();
    let cluster = Cluster::up("mount-acl");
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let dir = &mnt.dir;
    std::fs::create_dir(mnt.path("shared")).expect("mkdir");
    std::fs::write(mnt.path("shared/f"), b"secret\n").expect("write");
    ok(&run_as(None, dir, "chmod", &["600", "shared/f"]), "chmod");
    let read = |user| run_as(Some(user), dir, "cat", &["shared/f"]);
    assert!(
        !read("nobody").status.success(),
        "mode 600 keeps nobody out"
    );

    // An access ACL lets one user in, and the mode's group bits show its mask.
    ok(
        &run_as(None, dir, "setfacl", &["-m", "u:nobody:r", "shared/f"]),
        "setfacl",
    );
    assert_eq!(
        ok(&read("nobody"), "nobody reads through the ACL"),
        "secret\n"
    );
    assert!(!read("daemon").status.success(), "daemon has no entry");
    let mode = |path: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(mnt.path(path))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("shared/f"), 0o640, "group bits = the ACL's mask (r)");
    // chmod moves the mask: nobody's entry is limited by it.
    ok(&run_as(None, dir, "chmod", &["600", "shared/f"]), "chmod");
    assert!(
        !read("nobody").status.success(),
        "a mask of --- limits the named entry"
    );
    let listed = ok(
        &run_as(None, dir, "getfacl", &["-c", "shared/f"]),
        "getfacl",
    );
    assert!(
        listed.contains("user:nobody:r--") && listed.contains("mask::---"),
        "{listed}"
    );

    // A default ACL is inherited by new files (limited by their mode, not the umask)
    // and by new directories (which keep it as their own default).
    ok(
        &run_as(
            None,
            dir,
            "setfacl",
            &["-d", "-m", "u:daemon:rwx", "shared"],
        ),
        "setfacl -d",
    );
    std::fs::write(mnt.path("shared/new"), b"x").expect("create");
    std::fs::create_dir(mnt.path("shared/sub")).expect("mkdir");
    let new = ok(
        &run_as(None, dir, "getfacl", &["-c", "shared/new"]),
        "getfacl",
    );
    assert!(new.contains("user:daemon:rwx"), "{new}");
    let sub = ok(
        &run_as(None, dir, "getfacl", &["-c", "shared/sub"]),
        "getfacl",
    );
    assert!(
        sub.contains("user:daemon:rwx") && sub.contains("default:user:daemon:rwx"),
        "{sub}"
    );
    ok(
        &run_as(Some("daemon"), dir, "touch", &["shared/sub/by-daemon"]),
        "daemon writes where the inherited ACL lets it",
    );
    assert!(
        !run_as(Some("nobody"), dir, "touch", &["shared/sub/by-nobody"])
            .status
            .success(),
        "nobody may not"
    );
}

/// Writes `data` to `path` and fsyncs it; the fsync's result (the write only fills the
/// mount's buffer).
fn write_and_fsync(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(data)?;
    file.sync_all()
}

#[test]
fn a_failed_write_leaves_nothing_unreadable_and_unsaved_bytes_are_named() {
    require_fuse();
    // The metadata on node 1 alone: the test kills nodes 2 and 3 below, which would
    // take a majority of a 3-replica group with them.
    let cluster = Cluster::with_args(
        "mount-rewrite",
        6,
        (4, 2),
        "1GiB",
        &[],
        &["--meta-replicas", "1"],
    );
    let data = hive_testkit::random_bytes(SEED + 70, 6 << 20);
    let mnt = Mounted::new(&cluster, "default", "mnt");

    // Three of six nodes dead: the fsync fails, as it must. Its shard sends land on the
    // three nodes alive, and its bytes stay in the mount's buffer.
    cluster.signal("-KILL", &[4, 5, 6]);
    let failed = write_and_fsync(&mnt.path("first"), &data);
    assert!(failed.is_err(), "an fsync with 3 of 6 nodes succeeded");
    // Back up, the same bytes in another file: the fsync must not count one holder's
    // shard as the chunk being stored.
    ok(
        &hive(&["cluster", "start", "--dir", cluster.d()]),
        "cluster start",
    );
    write_and_fsync(&mnt.path("second"), &data).expect("fsync with every node up");
    // The first file's buffer, left after its last close, is stored by the retry loop;
    // then every byte reads back on a fresh mount, two nodes dead (so the chunks really
    // have more than the three shards the failed write left; node 1, the metadata
    // node, stays).
    let started = Instant::now();
    drop(mnt);
    let mnt = Mounted::new(&cluster, "default", "mnt");
    cluster.signal("-KILL", &[2, 3]);
    for name in ["second", "first"] {
        let back = std::fs::read(mnt.path(name));
        assert!(
            back.as_ref().is_ok_and(|b| *b == data),
            "{name} does not read back after {:?}: {:?}",
            started.elapsed(),
            back.map(|b| b.len())
        );
    }
    drop(mnt);
}

#[test]
fn an_unmount_names_the_files_whose_bytes_it_could_not_store() {
    require_fuse();
    let cluster = Cluster::up("mount-unsaved");
    let mnt = Mounted::new(&cluster, "default", "mnt");
    std::fs::create_dir(mnt.path("reports")).expect("mkdir");
    cluster.signal("-KILL", &[4, 5, 6]);
    let data = hive_testkit::random_bytes(SEED + 71, 1 << 20);
    // close(2) reports the failed commit; the bytes stay buffered, retried in vain.
    let _ = std::fs::write(mnt.path("reports/q3.bin"), &data);
    let out = hive(&["umount", mnt.dir.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "the unmount hid lost bytes");
    let said = text(&out);
    assert!(
        said.contains("LOST: 1048576 bytes written to /reports/q3.bin"),
        "{said}"
    );
    let log = mnt.log(&cluster);
    assert!(log.contains("/reports/q3.bin"), "{log}");
}

/// Bytes the space test writes and deletes through the mount.
const SPACE_FILES: usize = 8;
/// See [`SPACE_FILES`]: 8 × 256 MiB = 2 GiB.
const SPACE_FILE: usize = 256 << 20;
/// How long garbage collection and reclaim may take to give the space back.
const SPACE_BACK_WITHIN: Duration = Duration::from_secs(600);

/// Writes `len` bytes of seeded random content to `path`, 16 MiB at a time, and
/// fsyncs it.
fn write_random(path: &Path, seed: u64, len: usize) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create");
    let block = 16 << 20;
    for (n, at) in (0..len).step_by(block).enumerate() {
        let piece = hive_testkit::random_bytes(seed + n as u64, block.min(len - at));
        file.write_all(&piece).expect("write");
    }
    file.sync_all().expect("fsync");
}

/// Runs garbage collection rounds until the nodes' `figure` ("used" or "stored") is at
/// most `target` bytes, or fails after [`SPACE_BACK_WITHIN`]; the figure at the end.
fn collect_until(cluster: &Cluster, figure: &str, target: u64, what: &str) -> u64 {
    let started = Instant::now();
    loop {
        ok(
            &hive(&["gc", "--cluster", cluster.d(), "--wait"]),
            "hive gc --wait",
        );
        let now = cluster.node_sum(figure);
        if now <= target {
            return now;
        }
        assert!(
            started.elapsed() < SPACE_BACK_WITHIN,
            "{what}: {figure} is still {now} bytes after {SPACE_BACK_WITHIN:?} of \
             garbage collection, more than {target} (seed {SEED:#x})"
        );
    }
}

#[test]
fn deleted_files_come_back_as_free_space_and_live_data_stays() {
    require_fuse();
    let cluster = Cluster::with_args(
        "mount-space",
        6,
        (4, 2),
        "1GiB",
        &[],
        &["--gc-grace", "10s"],
    );
    // Live data that must survive every round: an object, and a file.
    let object = hive_testkit::random_bytes(SEED + 90, 8 << 20);
    let id = cluster.put("object", &object);
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let kept = hive_testkit::random_bytes(SEED + 91, 64 << 20);
    std::fs::write(mnt.path("kept"), &kept).expect("write kept");
    let before = cluster.used();
    for n in 0..SPACE_FILES {
        let seed = SEED + 1000 * (n as u64 + 1);
        write_random(&mnt.path(&format!("big-{n}")), seed, SPACE_FILE);
    }
    let peak = cluster.used();
    let written = peak.saturating_sub(before);
    assert!(
        written >= (SPACE_FILES * SPACE_FILE) as u64,
        "2 GiB of shards and parity were stored: {before} -> {peak}"
    );
    for n in 0..SPACE_FILES {
        std::fs::remove_file(mnt.path(&format!("big-{n}"))).expect("unlink");
    }
    // Back to within 5% of what the deleted files added.
    let target = before + written / 20;
    let started = Instant::now();
    let after = collect_until(&cluster, "used", target, "2 GiB deleted");
    println!(
        "space: stores used {before} bytes, {peak} with 2 GiB more written, {after} after the \
         files were deleted and collected ({:.1}s of garbage collection and reclaim)",
        started.elapsed().as_secs_f64()
    );
    // What is live reads back whole, through the mount and as an object.
    let back = std::fs::read(mnt.path("kept")).expect("read kept");
    assert!(back == kept, "a live file changed (seed {SEED:#x})");
    cluster.check(&id, &object);
    // A deleted object's shards go too (its segments stay mostly live, so the figure
    // is the live shards, not the space used).
    ok(
        &hive(&["delete", "--cluster", cluster.d(), &id]),
        "hive delete",
    );
    let live = cluster.stored();
    collect_until(
        &cluster,
        "stored",
        live - object.len() as u64,
        "a deleted object",
    );
    assert!(!cluster.get(&id).status.success(), "the object is gone");
    // A new mount (nothing cached) reads the live file whole.
    drop(mnt);
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let back = std::fs::read(mnt.path("kept")).expect("read kept");
    assert!(back == kept, "a live file changed (seed {SEED:#x})");
}

/// Contents the race's writers write, again and again: more than the files kept live,
/// so a content often loses its last file (its chunks become garbage) and is written
/// again while garbage collection takes it (deduplicated against, or stored anew).
const RACE_CONTENTS: usize = 12;
/// Bytes of each.
const RACE_CONTENT: usize = 2 << 20;
/// Files the deleter leaves live.
const RACE_LIVE: usize = 4;
/// Garbage collection rounds the race runs through before, while and after a node is
/// dead...
const RACE_ROUNDS: u64 = 3;
/// ...and files its writers write in each of those phases.
const RACE_WRITES: u64 = 40;

/// A count other threads wait on: each step wakes them.
#[derive(Default)]
struct Counter {
    count: std::sync::Mutex<u64>,
    stepped: std::sync::Condvar,
}

impl Counter {
    fn step(&self) {
        *self.count.lock().expect("count") += 1;
        self.stepped.notify_all();
    }

    fn get(&self) -> u64 {
        *self.count.lock().expect("count")
    }

    /// Waits until the count reaches `until`, or fails naming `what` after
    /// [`SPACE_BACK_WITHIN`].
    fn wait_for(&self, until: u64, what: &str) {
        let count = self.count.lock().expect("count");
        let (count, timeout) = self
            .stepped
            .wait_timeout_while(count, SPACE_BACK_WITHIN, |n| *n < until)
            .expect("count");
        assert!(
            !timeout.timed_out(),
            "{what}: {} of {until} within {SPACE_BACK_WITHIN:?}",
            *count
        );
    }
}

/// Garbage collection rounds run one after another (`hive gc --wait`) until stopped.
#[derive(Default)]
struct Rounds {
    stop: std::sync::atomic::AtomicBool,
    done: Counter,
}

impl Rounds {
    /// Runs rounds until stopped.
    fn run(&self, cluster: &Cluster) {
        while !self.stopped() {
            ok(
                &hive(&["gc", "--cluster", cluster.d(), "--wait"]),
                "hive gc --wait",
            );
            self.done.step();
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `n` more rounds have finished.
    fn wait(&self, n: u64, what: &str) {
        let until = self.done.get() + n;
        self.done
            .wait_for(until, &format!("{what}: garbage collection rounds"));
    }
}

/// Raises a stop flag when dropped: a failing step ends every thread that watches it
/// (garbage collection rounds, a workload).
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The race's shared state: which file holds which content.
#[derive(Default)]
struct Race {
    live: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
    written: std::sync::Condvar,
    writes: Counter,
    gc: Rounds,
}

impl Race {
    /// Waits for [`RACE_ROUNDS`] more rounds and [`RACE_WRITES`] more files written.
    fn phase(&self, what: &str) {
        let until = self.writes.get() + RACE_WRITES;
        self.gc.wait(RACE_ROUNDS, what);
        self.writes
            .wait_for(until, &format!("{what}: files written"));
    }
}

/// The chunk ids a whole file of `data` is cut into.
fn chunk_ids(data: &[u8]) -> Vec<String> {
    let chunker = hive_codec::Chunker::new(hive_codec::ChunkerConfig::default()).expect("chunker");
    chunker
        .split(data)
        .map(|piece| hive_codec::chunk_id(piece).to_string())
        .collect()
}

#[test]
fn gc_racing_writers_deleters_and_a_killed_node_takes_only_garbage() {
    require_fuse();
    let cluster = Cluster::with_args(
        "mount-gc-race",
        6,
        (4, 2),
        "1GiB",
        &[],
        &["--gc-grace", "5s"],
    );
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let contents: Vec<Vec<u8>> = (0..RACE_CONTENTS)
        .map(|c| hive_testkit::random_bytes(SEED + 200 + c as u64, RACE_CONTENT))
        .collect();
    let race = Race::default();
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&race.gc.stop);
        s.spawn(|| race.gc.run(&cluster));
        // Writers: the same few contents, deduplicated, each file fsynced.
        for w in 0..2u64 {
            let (race, mnt, contents) = (&race, &mnt, &contents);
            s.spawn(move || {
                let mut rng = hive_testkit::Rng::new(SEED + 300 + w);
                let mut n = 0;
                while !race.gc.stopped() {
                    let c = rng.below(RACE_CONTENTS);
                    let name = format!("w{w}-{n}");
                    write_and_fsync(&mnt.path(&name), &contents[c]).expect("write");
                    race.live.lock().expect("live").insert(name, c);
                    race.writes.step();
                    race.written.notify_one();
                    n += 1;
                }
            });
        }
        // A deleter: takes files away as they come, keeping a few of each writer.
        s.spawn(|| {
            let mut rng = hive_testkit::Rng::new(SEED + 400);
            let mut live = race.live.lock().expect("live");
            while !race.gc.stopped() {
                if live.len() <= RACE_LIVE {
                    live = race
                        .written
                        .wait_timeout(live, Duration::from_secs(1))
                        .expect("live")
                        .0;
                    continue;
                }
                let names: Vec<String> = live.keys().cloned().collect();
                let name = names[rng.below(names.len())].clone();
                live.remove(&name);
                drop(live);
                std::fs::remove_file(mnt.path(&name)).expect("unlink");
                live = race.live.lock().expect("live");
            }
        });
        race.phase("before the kill");
        cluster.signal("-KILL", &[3]);
        race.phase("with node 3 dead");
        cluster.start(&[]);
        race.phase("after the restart");
    });
    drop(mnt);
    ok(
        &hive(&["repair", "--cluster", cluster.d(), "--wait"]),
        "hive repair --wait",
    );
    // Every live file reads back whole, through a new mount (nothing cached).
    let live = race.live.into_inner().expect("live");
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let check = |live: &std::collections::BTreeMap<String, usize>| {
        for (name, c) in live {
            let back = std::fs::read(mnt.path(name)).expect("read a live file");
            assert!(
                back == contents[*c],
                "{name} (content {c}) changed under garbage collection (seed {SEED:#x})"
            );
        }
    };
    check(&live);
    // Content 0, deleted everywhere, goes from every node.
    let mut kept = live.clone();
    kept.retain(|_, c| *c != 0);
    for name in live.keys().filter(|n| !kept.contains_key(*n)) {
        std::fs::remove_file(mnt.path(name)).expect("unlink");
    }
    let gone = chunk_ids(&contents[0]);
    let started = Instant::now();
    loop {
        ok(
            &hive(&["gc", "--cluster", cluster.d(), "--wait"]),
            "hive gc --wait",
        );
        // A chunk is gone once no holder has an intact shard of it.
        let left: Vec<&String> = gone
            .iter()
            .filter(|id| {
                let out = hive(&["inspect", "chunk", "--cluster", cluster.d(), id]);
                text(&out).contains("intact (encoding")
            })
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < SPACE_BACK_WITHIN,
            "chunks of deleted content still stored after {SPACE_BACK_WITHIN:?}: {left:?}"
        );
    }
    check(&kept);
    println!(
        "gc race: {} files written, {} live at the end, {} garbage collection rounds, content 0's {} chunks gone {:.1}s after its last file",
        race.writes.get(),
        live.len(),
        race.gc.done.get(),
        gone.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Overwrites of the overwrite test.
const OVERWRITES: u64 = 20;
/// The size of the file it overwrites.
const OVERWRITTEN: usize = 256 << 20;

#[test]
fn a_file_overwritten_20_times_takes_less_than_two_copies_after_gc() {
    require_fuse();
    let cluster = Cluster::with_args(
        "mount-overwrite",
        6,
        (4, 2),
        "1GiB",
        &[],
        &["--gc-grace", "5s"],
    );
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let before = cluster.used();
    let seed = |n: u64| SEED + 5000 + 100 * n;
    let gc = Rounds::default();
    let mut peak = 0;
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&gc.stop);
        s.spawn(|| gc.run(&cluster));
        for n in 0..OVERWRITES {
            write_random(&mnt.path("big"), seed(n), OVERWRITTEN);
            peak = peak.max(cluster.used());
        }
    });
    // One copy with its parity: 256 MiB x (4 + 2) / 4.
    let copy = OVERWRITTEN as u64 * 6 / 4;
    let after = collect_until(&cluster, "used", before + 2 * copy, "20 overwrites");
    println!(
        "overwrite: {OVERWRITES} x {OVERWRITTEN} bytes; stores used {before} bytes before, at \
         most {peak} while overwriting, {after} after garbage collection (one copy is {copy})"
    );
    drop(mnt);
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let back = std::fs::read(mnt.path("big")).expect("read back");
    let last = seed(OVERWRITES - 1);
    let expected: Vec<u8> = (0..OVERWRITTEN)
        .step_by(16 << 20)
        .enumerate()
        .flat_map(|(n, _)| hive_testkit::random_bytes(last + n as u64, 16 << 20))
        .collect();
    assert!(
        back == expected,
        "the last version reads back whole (seed {SEED:#x})"
    );
}

#[test]
fn a_chunk_dropped_from_one_class_is_collected_there_and_stays_in_the_other() {
    require_fuse();
    let cluster = Cluster::with_args(
        "mount-classes",
        6,
        (4, 2),
        "1GiB",
        &[],
        &["--gc-grace", "5s"],
    );
    create_narrow(&cluster);
    // The same bytes in a 4+2 volume and a 2+1 one: the same chunks, stored once in
    // each class.
    let wide = Mounted::new(&cluster, "default", "wide");
    write_random(&wide.path("f"), SEED + 95, 16 << 20);
    let one = cluster.stored();
    let narrow = Mounted::new(&cluster, "narrow", "narrow");
    write_random(&narrow.path("f"), SEED + 95, 16 << 20);
    let both = cluster.stored();
    assert!(
        both >= one + (20 << 20),
        "the 2+1 copy (24 MiB of shards) is not stored: {one} then {both} bytes"
    );
    // Unlinked from the 2+1 volume, the chunks are referenced in 4+2 only: collection
    // takes their 2+1 shards and leaves the 4+2 ones.
    std::fs::remove_file(narrow.path("f")).expect("unlink");
    let after = collect_until(&cluster, "stored", one + (4 << 20), "the 2+1 copy");
    println!("classes: {one} bytes stored in 4+2, {both} with the 2+1 copy, {after} after");
    drop(wide);
    let wide = Mounted::new(&cluster, "default", "wide");
    let back = std::fs::read(wide.path("f")).expect("read back");
    assert!(
        back == hive_testkit::random_bytes(SEED + 95, 16 << 20),
        "the 4+2 file reads back whole (seed {SEED:#x})"
    );
}

#[test]
fn a_volume_re_encoded_from_1_2_to_4_2_under_a_mount_loses_no_read_and_half_its_bytes() {
    require_fuse();
    let cluster = Cluster::with_args(
        "mount-reencode",
        6,
        (4, 2),
        "1GiB",
        &[],
        &["--gc-grace", "5s"],
    );
    let create = [
        "volume",
        "create",
        "--cluster",
        cluster.d(),
        "--k",
        "1",
        "--m",
        "2",
    ];
    ok(
        &hive(&[&create[..], &["rep"]].concat()),
        "volume create --k 1 --m 2",
    );
    let mnt = Mounted::new(&cluster, "rep", "mnt");
    // Three copies of 32 MiB: 96 MiB of shards.
    const FILES: u64 = 8;
    const FILE: usize = 4 << 20;
    let seed = |n: u64| SEED + 7000 + n;
    for n in 0..FILES {
        write_random(&mnt.path(&format!("old-{n}")), seed(n), FILE);
    }
    let before = cluster.stored();
    assert!(before >= 96 << 20, "1+2 keeps three copies: {before} bytes");
    // A reader and a writer work through the mount while the class changes.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (reads, written) = std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let reader = scope.spawn(|| {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let n = reads % FILES;
                let back = std::fs::read(mnt.path(&format!("old-{n}")))
                    .unwrap_or_else(|e| panic!("read {reads} of old-{n} failed: {e}"));
                assert!(
                    back == hive_testkit::random_bytes(seed(n), FILE),
                    "old-{n} differs on read {reads} (seed {SEED:#x})"
                );
                reads += 1;
            }
            reads
        });
        let writer = scope.spawn(|| {
            let mut written = 0u64;
            // At most 64 MiB, whatever happens.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && written < 64 {
                write_random(
                    &mnt.path(&format!("new-{written}")),
                    seed(100 + written),
                    1 << 20,
                );
                written += 1;
            }
            written
        });
        let set = [
            "volume",
            "set",
            "--cluster",
            cluster.d(),
            "--k",
            "4",
            "--m",
            "2",
        ];
        let done = ok(
            &hive(&[&set[..], &["rep"]].concat()),
            "volume set --k 4 --m 2",
        );
        assert!(done.contains("re-encoded from 1+2 into 4+2"), "{done}");
        // A write after it ended: the mount stores in 1+2 until its commit is refused
        // as stale, then learns the class and stores it again in 4+2.
        write_random(&mnt.path("after"), seed(99), 1 << 20);
        mnt.wait_for_log(
            &cluster,
            "now writes class 4+2",
            "the mount learning the class",
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (
            reader.join().expect("the reader"),
            writer.join().expect("the writer"),
        )
    });
    assert!(
        reads >= FILES && written >= 2,
        "{reads} reads, {written} writes"
    );
    let listed = ok(
        &hive(&["volume", "list", "--cluster", cluster.d()]),
        "volume list",
    );
    let line = listed
        .lines()
        .find(|l| l.starts_with("rep "))
        .expect("rep listed");
    assert!(line.contains("4+2") && !line.contains('>'), "{listed}");
    // Once the old class's shards are collected, 4+2 keeps 1.5 copies: half of three.
    let logical = FILES * FILE as u64 + (written + 1) * (1 << 20);
    let target = logical * 3 / 2 + (4 << 20);
    let after = collect_until(&cluster, "stored", target, "the 1+2 shards");
    println!(
        "re-encode: {before} bytes stored in 1+2, {after} in 4+2 after collection; {reads} \
         reads and {written} 1 MiB writes through the mount meanwhile"
    );
    // Everything reads back on a fresh mount, from the new class only.
    drop(mnt);
    let mnt = Mounted::new(&cluster, "rep", "mnt");
    for n in 0..FILES {
        let back = std::fs::read(mnt.path(&format!("old-{n}"))).expect("read old");
        assert!(back == hive_testkit::random_bytes(seed(n), FILE), "old-{n}");
    }
    let back = std::fs::read(mnt.path("after")).expect("read after");
    assert!(
        back == hive_testkit::random_bytes(seed(99), 1 << 20),
        "after"
    );
    for n in 0..written {
        let back = std::fs::read(mnt.path(&format!("new-{n}"))).expect("read new");
        assert!(
            back == hive_testkit::random_bytes(seed(100 + n), 1 << 20),
            "new-{n}"
        );
    }
}

/// Creates volume "narrow", of class 2+1.
fn create_narrow(cluster: &Cluster) {
    let args = [
        "volume",
        "create",
        "--cluster",
        cluster.d(),
        "--k",
        "2",
        "--m",
        "1",
    ];
    ok(
        &hive(&[&args[..], &["narrow"]].concat()),
        "volume create --k 2 --m 1",
    );
}

/// EDQUOT on Linux.
const EDQUOT: i32 = 122;

/// What df shows for the mount at `dir`: bytes in all, bytes free, inodes in all,
/// inodes free.
fn df(dir: &Path) -> (u64, u64, u64, u64) {
    let fs = rustix::fs::statvfs(dir).expect("statvfs");
    (
        fs.f_blocks * fs.f_frsize,
        fs.f_bavail * fs.f_frsize,
        fs.f_files,
        fs.f_ffree,
    )
}

#[test]
fn quotas_refuse_what_would_pass_them_and_df_shows_them() {
    use std::os::fd::AsFd;
    require_fuse();
    let cluster = Cluster::up("mount-quota");
    ok(
        &hive(&["volume", "create", "--cluster", cluster.d(), "q"]),
        "volume create",
    );
    let set = |args: &[&str]| {
        let mut all = vec!["volume", "set", "--cluster", cluster.d()];
        all.extend_from_slice(args);
        all.push("q");
        ok(&hive(&all), "volume set")
    };
    set(&["--max-bytes", "8MiB", "--max-files", "10"]);
    let mnt = Mounted::new(&cluster, "q", "mnt");
    // df and df -i show the quota and the use (the root is one inode).
    assert_eq!(df(&mnt.dir), (8 << 20, 8 << 20, 10, 9));

    // Bytes: 6 MiB fit; 4 MiB more do not, and fail at fsync with EDQUOT.
    let kept = hive_testkit::random_bytes(SEED + 700, 6 << 20);
    write_and_fsync(&mnt.path("kept"), &kept).expect("6 MiB fit");
    let more = hive_testkit::random_bytes(SEED + 701, 4 << 20);
    let refused = write_and_fsync(&mnt.path("more"), &more).expect_err("past the quota");
    assert_eq!(refused.raw_os_error(), Some(EDQUOT), "{refused}");
    assert_eq!(
        df(&mnt.dir),
        (8 << 20, 2 << 20, 10, 7),
        "root, kept and more"
    );
    assert!(std::fs::read(mnt.path("kept")).expect("read") == kept);
    // fallocate past the quota is refused, and past the cluster's space too.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(mnt.path("kept"))
        .expect("open");
    let flags = rustix::fs::FallocateFlags::empty();
    let past = rustix::fs::fallocate(file.as_fd(), flags, 0, 9 << 20).expect_err("past quota");
    assert_eq!(past.raw_os_error(), EDQUOT, "{past}");
    set(&["--max-bytes", "none"]);
    let huge = rustix::fs::fallocate(file.as_fd(), flags, 0, 1 << 40).expect_err("1 TiB");
    assert_eq!(huge.raw_os_error(), 28, "ENOSPC: {huge}");
    drop(file);
    // With room made, the refused bytes, kept in the mount's buffer, are stored (by
    // the retry, or at the latest by the unmount).
    drop(mnt);
    let mnt = Mounted::new(&cluster, "q", "mnt");
    assert!(std::fs::read(mnt.path("more")).expect("read") == more);
    assert!(std::fs::read(mnt.path("kept")).expect("read") == kept);

    // Files: 10 inodes in all.
    for n in 0..7 {
        std::fs::write(mnt.path(&format!("f{n}")), b"x").expect("within the quota");
    }
    let refused = std::fs::write(mnt.path("f7"), b"x").expect_err("the 11th inode");
    assert_eq!(refused.raw_os_error(), Some(EDQUOT), "{refused}");
    let (_, _, files, free) = df(&mnt.dir);
    assert_eq!((files, free), (10, 0), "10 inodes, none free");
    std::fs::remove_file(mnt.path("f0")).expect("unlink");
    std::fs::write(mnt.path("f7"), b"x").expect("room again");
}

/// ENOSPC on Linux.
const ENOSPC: i32 = 28;

#[test]
fn fallocate_holds_its_room_against_other_writers() {
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileExt;
    require_fuse();
    let cluster = Cluster::with("mount-reserve", 6, (4, 2), "256MiB", &[]);
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let (_, free, _, _) = df(&mnt.dir);
    // Two fifths of what df says is free, reserved.
    let held_len = free * 2 / 5 / (1 << 20) * (1 << 20);
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(mnt.path("held"))
        .expect("create held");
    let flags = rustix::fs::FallocateFlags::empty();
    rustix::fs::fallocate(held.as_fd(), flags, 0, held_len).expect("fallocate");
    assert_eq!(held.metadata().expect("stat").len(), held_len);
    // df no longer counts the reserved room as free.
    let (_, left, _, _) = df(&mnt.dir);
    assert!(
        left.abs_diff(free - held_len) <= 1 << 20,
        "df shows {left} free after reserving {held_len} of {free}"
    );
    // What is left is less than what was reserved: a second reservation that large
    // is refused.
    let other = std::fs::File::create(mnt.path("other")).expect("create other");
    let refused = rustix::fs::fallocate(other.as_fd(), flags, 0, free - held_len / 2)
        .expect_err("past what is left");
    assert_eq!(refused.raw_os_error(), ENOSPC, "{refused}");
    drop(other);

    // Another writer fills the cluster: it gets ENOSPC (not EIO) before it reaches
    // the reserved room, and keeps what it had fsynced.
    const PIECE: usize = 8 << 20;
    let mut filler = std::fs::File::create(mnt.path("filler")).expect("create filler");
    let mut stored = 0u64;
    let refused = loop {
        assert!(
            stored <= free,
            "the filler wrote {stored} of {free} bytes free"
        );
        let piece = hive_testkit::random_bytes(SEED + 800 + stored / PIECE as u64, PIECE);
        match filler.write_all(&piece).and_then(|()| filler.sync_all()) {
            Ok(()) => stored += PIECE as u64,
            Err(e) => break e,
        }
    };
    assert_eq!(refused.raw_os_error(), Some(ENOSPC), "{refused}");
    assert!(
        stored >= free / 2 - held_len,
        "the filler stored {stored} bytes beside {held_len} reserved of {free} free"
    );
    // Its refused bytes are dropped (they would be tried again otherwise).
    filler.set_len(stored).expect("cut the refused piece");
    drop(filler);

    // The reserved range takes every byte it was promised.
    for (n, at) in (0..held_len).step_by(PIECE).enumerate() {
        let len = PIECE.min((held_len - at) as usize);
        let piece = hive_testkit::random_bytes(SEED + 900 + n as u64, len);
        held.write_all_at(&piece, at)
            .expect("write into the reserved range");
    }
    held.sync_all().expect("the reserved range is stored");
    drop(held);

    let back = std::fs::read(mnt.path("held")).expect("read held");
    assert_eq!(back.len() as u64, held_len);
    for (n, at) in (0..held_len).step_by(PIECE).enumerate() {
        let len = PIECE.min((held_len - at) as usize);
        let expected = hive_testkit::random_bytes(SEED + 900 + n as u64, len);
        assert!(
            back[at as usize..at as usize + len] == expected[..],
            "held piece {n} reads back (seed {SEED:#x})"
        );
    }
    let back = std::fs::read(mnt.path("filler")).expect("read filler");
    assert_eq!(back.len() as u64, stored);
    for (n, piece) in back.chunks(PIECE).enumerate() {
        let expected = hive_testkit::random_bytes(SEED + 800 + n as u64, PIECE);
        assert!(
            piece == expected,
            "filler piece {n} reads back (seed {SEED:#x})"
        );
    }
}

#[test]
fn status_tells_dedup_savings_from_compression_savings() {
    require_fuse();
    let cluster = Cluster::up("mount-saved");
    let mnt = Mounted::new(&cluster, "default", "mnt");
    // Three files of one compressible content, one of random bytes.
    let text = hive_testkit::text_bytes(SEED + 800, 8 << 20);
    for name in ["a", "b", "c"] {
        write_and_fsync(&mnt.path(name), &text).expect("write text");
    }
    let random = hive_testkit::random_bytes(SEED + 801, 8 << 20);
    write_and_fsync(&mnt.path("r"), &random).expect("write random");
    ok(
        &hive(&["gc", "--cluster", cluster.d(), "--wait"]),
        "hive gc --wait",
    );
    // Store figures as of after the round (heartbeats carry them).
    cluster.node_sum("stream");
    let status = cluster.status();
    let saved = &status["saved"];
    let figure = |name: &str| {
        saved[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no {name} in {saved}"))
    };
    const MIB: u64 = 1 << 20;
    assert_eq!(figure("referenced"), 32 * MIB, "four files of 8 MiB");
    // Two contents of 8 MiB (a false positive of the mark may leave a chunk out).
    let distinct = figure("distinct");
    assert!(
        (12 * MIB..=16 * MIB).contains(&distinct),
        "distinct {distinct} (seed {SEED:#x})"
    );
    assert_eq!(figure("dedup"), 32 * MIB - distinct);
    // The text shrinks to about a third; the random bytes are stored as they are.
    let stored = figure("stored");
    assert!(
        (8 * MIB..13 * MIB).contains(&stored),
        "stored {stored} (seed {SEED:#x})"
    );
    assert_eq!(figure("compression"), distinct.saturating_sub(stored));
    println!(
        "saved: {} referenced, {distinct} distinct, {stored} stored before parity",
        figure("referenced")
    );
    let text_status = ok(&hive(&["status", "--cluster", cluster.d()]), "status");
    assert!(
        text_status.contains("saved:  dedup"),
        "the status names the savings:\n{text_status}"
    );
}
