//! POSIX details a wider filesystem suite found on a mount of a local cluster, each
//! through the kernel on a real mount: reads racing commits, the attributes of an open
//! file or directory whose name is gone, and a mapping written page by page.
//!
//! Needs root and /dev/fuse; without them each test fails saying what is missing.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::mounted::{Mounted, require_fuse};
use support::{Cluster, SEED, text};

/// A page: the unit of the O_DIRECT and mapped I/O below.
const PAGE: usize = 4096;

/// A page-aligned buffer, as O_DIRECT wants.
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

#[test]
fn a_read_after_a_completed_direct_write_returns_its_bytes() {
    // How many write-then-read rounds, and how long they may take at most (each round
    // is a write and two reads; a commit runs beside them all the time).
    const ROUNDS: usize = 1500;
    const ROUNDS_WITHIN: Duration = Duration::from_secs(120);
    require_fuse();
    let cluster = Cluster::up("posix-stale");
    let a = Mounted::new(&cluster, "default", "a");
    let b = Mounted::new(&cluster, "default", "b");
    // Written through the other mount, so this one's chunk cache starts cold and every
    // read fetches chunks (the time a commit can slip in).
    let len = 192usize << 20;
    let data = hive_testkit::random_bytes(SEED + 180, len);
    std::fs::write(b.path("racy"), &data).expect("write the file in b");
    drop(b);

    let path = a.path("racy");
    let direct = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(&path)
        .expect("open O_DIRECT");
    let buffered = File::open(&path).expect("open buffered");
    let syncer = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open for fsync");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Commits whatever is buffered, over and over, while the rounds run.
        let syncing = s.spawn(|| {
            let mut syncs = 0u64;
            while !stop.load(Ordering::Relaxed) {
                syncer.sync_all().expect("fsync");
                syncs += 1;
            }
            syncs
        });
        let mut rng = hive_testkit::Rng::new(SEED + 181);
        let started = Instant::now();
        let mut rounds = 0;
        let mut page = Box::new(Page([0; PAGE]));
        let mut back = Box::new(Page([0; PAGE]));
        let result = (|| {
            while rounds < ROUNDS && started.elapsed() < ROUNDS_WITHIN {
                let offset = (rng.below(len / PAGE) * PAGE) as u64;
                for b in page.0.iter_mut() {
                    *b = rng.next_u64() as u8;
                }
                direct
                    .write_all_at(&page.0, offset)
                    .expect("O_DIRECT write");
                direct
                    .read_exact_at(&mut back.0, offset)
                    .expect("O_DIRECT read");
                if back.0 != page.0 {
                    return Err(format!("O_DIRECT read at {offset} (round {rounds})"));
                }
                let mut seen = vec![0u8; PAGE];
                buffered
                    .read_exact_at(&mut seen, offset)
                    .expect("buffered read");
                if seen != page.0 {
                    return Err(format!("buffered read at {offset} (round {rounds})"));
                }
                rounds += 1;
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        let syncs = syncing.join().expect("the fsync thread");
        if let Err(which) = result {
            panic!(
                "the {which} returned older bytes than the write before it (seed {:#x}, {syncs} fsyncs ran)",
                SEED + 181
            );
        }
        println!("{rounds} rounds of write and read-back, {syncs} fsyncs beside them");
        assert!(rounds > 0 && syncs > 0, "the race was not run");
    });
}

#[test]
fn fstat_works_on_an_open_file_or_directory_whose_name_is_gone() {
    require_fuse();
    let cluster = Cluster::up("posix-orphans");
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let p = |name: &str| mnt.path(name);

    // A file replaced by rename(2): the open one is an orphan with no links.
    std::fs::write(p("f1"), b"one").expect("f1");
    std::fs::write(p("f2"), b"two").expect("f2");
    let open = File::open(p("f2")).expect("open f2");
    std::fs::rename(p("f1"), p("f2")).expect("rename f1 over f2");
    let meta = open.metadata().expect("fstat of the replaced file");
    assert_eq!(meta.nlink(), 0, "the replaced file's links");
    let mut back = vec![0u8; 3];
    open.read_exact_at(&mut back, 0).expect("read the orphan");
    assert_eq!(&back, b"two");

    // A directory replaced by rename(2), and one removed by rmdir(2), both open.
    for dir in ["d1", "d2", "d3"] {
        std::fs::create_dir(p(dir)).expect("mkdir");
    }
    let replaced = File::open(p("d2")).expect("open d2");
    let removed = File::open(p("d3")).expect("open d3");
    std::fs::rename(p("d1"), p("d2")).expect("rename d1 over d2");
    std::fs::remove_dir(p("d3")).expect("rmdir d3");
    for (what, dir) in [("replaced", &replaced), ("removed", &removed)] {
        let meta = dir
            .metadata()
            .unwrap_or_else(|e| panic!("fstat of the {what} directory: {e}"));
        assert!(meta.is_dir(), "the {what} directory is still a directory");
        assert_eq!(meta.nlink(), 0, "the {what} directory's links");
    }
    // The name that stays is the directory moved there, and the mount goes on.
    assert!(p("d2").is_dir() && !p("d1").exists() && !p("d3").exists());
    drop((open, replaced, removed));
    std::fs::write(p("after"), b"still works").expect("a write after");
    assert_eq!(
        std::fs::read(p("after")).expect("read after"),
        b"still works"
    );
}

/// Creates a sparse file (`MARK HOW FILE LENGTH`) and has two threads write each
/// page's index (8 bytes, little-endian) at its start, every other page each, from
/// the end back; then fsync. `mmap`: through a shared mapping, synced (msync) at the
/// end. `pwrite`: each page written whole by pwrite(2), so 65,536 separate page
/// writes reach the mount's buffer in reverse order. Python does it (its mmap module
/// maps without unsafe code, which the workspace forbids).
const MARK: &str = r#"
import mmap, os, sys, threading
how, path, length = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
os.ftruncate(fd, length)
m = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) if how == "mmap" else None
def mark(half):
    for page in range(length // 4096 - 1 - half, -1, -2):
        marker = page.to_bytes(8, "little")
        if m is None:
            os.pwrite(fd, marker + bytes(4096 - 8), page * 4096)
        else:
            m[page * 4096:page * 4096 + 8] = marker
threads = [threading.Thread(target=mark, args=(h,)) for h in (0, 1)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if m is not None:
    m.flush()
    m.close()
os.fsync(fd)
os.close(fd)
"#;

#[test]
fn pages_marked_by_two_threads_out_of_order_are_stored_whole() {
    // A sparse 256 MiB file, every page of it marked: 65,536 page-sized ranges.
    const LEN: usize = 256 << 20;
    require_fuse();
    let cluster = Cluster::up("posix-pages");
    let a = Mounted::new(&cluster, "default", "a");
    for how in ["mmap", "pwrite"] {
        let started = Instant::now();
        let path = a.path(how);
        let args = [how, path.to_str().expect("utf-8"), &LEN.to_string()];
        python(MARK, &args, "marking the pages");
        println!(
            "every page marked by {how} and synced in {:?}",
            started.elapsed()
        );
    }
    drop(a);

    // Every page, read on a fresh mount: its marker, then zeros.
    let b = Mounted::new(&cluster, "default", "b");
    for how in ["mmap", "pwrite"] {
        let back = std::fs::read(b.path(how)).expect("read on a fresh mount");
        assert_eq!(back.len(), LEN, "{how}");
        for (page, bytes) in back.chunks(PAGE).enumerate() {
            assert_eq!(
                bytes[..8],
                (page as u64).to_le_bytes(),
                "{how}: page {page}'s marker"
            );
            assert!(
                bytes[8..].iter().all(|&b| b == 0),
                "{how}: page {page}'s zeros"
            );
        }
    }
}

#[test]
fn the_first_read_after_a_change_records_the_access_time() {
    // How long the record, sent in the background, may take to show.
    const RECORDED_WITHIN: Duration = Duration::from_secs(60);
    require_fuse();
    let cluster = Cluster::up("posix-atime");
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let path = mnt.path("read-me");
    let nanos = |t: i64, ns: i64| i128::from(t) * 1_000_000_000 + i128::from(ns);
    let atime = |m: &std::fs::Metadata| nanos(m.atime(), m.atime_nsec());
    let mtime = |m: &std::fs::Metadata| nanos(m.mtime(), m.mtime_nsec());
    let ctime = |m: &std::fs::Metadata| nanos(m.ctime(), m.ctime_nsec());
    let read_until_recorded = |what: &str| {
        let before = std::fs::metadata(&path).expect("stat");
        std::fs::read(&path).expect("read");
        let since = Instant::now();
        loop {
            let now = std::fs::metadata(&path).expect("stat");
            if atime(&now) > atime(&before) && atime(&now) >= mtime(&now) {
                assert_eq!(
                    ctime(&now),
                    ctime(&before),
                    "{what}: a read moved the ctime"
                );
                return;
            }
            assert!(
                since.elapsed() < RECORDED_WITHIN,
                "{what}: the access time stayed {} (mtime {})",
                atime(&now),
                mtime(&now)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    std::fs::write(&path, b"first").expect("write");
    read_until_recorded("the first read after the create");
    // A later change makes the next read record again.
    std::fs::write(&path, vec![7u8; 3 << 20]).expect("rewrite");
    read_until_recorded("the first read after a rewrite");
}

#[test]
fn a_setgid_directory_hands_down_its_group() {
    use std::os::unix::fs::PermissionsExt;
    const GROUP: u32 = 4321;
    require_fuse();
    let cluster = Cluster::up("posix-setgid");
    let mnt = Mounted::new(&cluster, "default", "mnt");
    let p = |name: &str| mnt.path(name);
    std::fs::create_dir(p("shared")).expect("mkdir");
    std::os::unix::fs::chown(p("shared"), None, Some(GROUP)).expect("chgrp");
    std::fs::set_permissions(p("shared"), std::fs::Permissions::from_mode(0o2775))
        .expect("chmod g+s");
    // Made by root (group 0) inside it: the directory's group, and a directory its bit.
    std::fs::write(p("shared/file"), b"x").expect("create a file");
    std::fs::create_dir(p("shared/sub")).expect("mkdir inside");
    std::fs::create_dir(p("plain")).expect("mkdir outside");
    let file = std::fs::metadata(p("shared/file")).expect("stat file");
    let sub = std::fs::metadata(p("shared/sub")).expect("stat sub");
    let plain = std::fs::metadata(p("plain")).expect("stat plain");
    assert_eq!(file.gid(), GROUP, "the file's group");
    assert_eq!(
        file.mode() & 0o2000,
        0,
        "a file takes the group, not the bit"
    );
    assert_eq!(sub.gid(), GROUP, "the subdirectory's group");
    assert_eq!(
        sub.mode() & 0o2000,
        0o2000,
        "the subdirectory's set-group-ID bit"
    );
    assert_eq!(
        (plain.gid(), plain.mode() & 0o2000),
        (0, 0),
        "outside: the caller's"
    );
    // And further down, from the subdirectory.
    std::fs::create_dir(p("shared/sub/deeper")).expect("mkdir deeper");
    let deeper = std::fs::metadata(p("shared/sub/deeper")).expect("stat deeper");
    assert_eq!((deeper.gid(), deeper.mode() & 0o2000), (GROUP, 0o2000));
}

#[test]
fn punched_and_zeroed_ranges_read_as_zeros_and_keep_the_rest() {
    use rustix::fs::{FallocateFlags as F, fallocate};
    require_fuse();
    let cluster = Cluster::up("posix-punch");
    let a = Mounted::new(&cluster, "default", "a");
    let len = 3usize << 20;
    let data = hive_testkit::random_bytes(SEED + 190, len);
    std::fs::write(a.path("big"), &data).expect("write big");
    std::fs::write(a.path("small"), &data[..100]).expect("write small");
    let mut want = data.clone();
    let mut small = data[..100].to_vec();

    let big = OpenOptions::new()
        .write(true)
        .open(a.path("big"))
        .expect("open big");
    // A hole across a chunk's middle and the next chunk's start.
    let (at, n) = ((1usize << 20) + 100, 1usize << 20);
    fallocate(&big, F::PUNCH_HOLE | F::KEEP_SIZE, at as u64, n as u64).expect("punch");
    want[at..at + n].fill(0);
    // Zeroed past the end without keep size: the file grows, and the tail is zeros.
    let (at, n) = (len - 100, 1000usize);
    fallocate(&big, F::ZERO_RANGE, at as u64, n as u64).expect("zero range");
    want.truncate(at);
    want.resize(at + n, 0);
    // Zeroed inside with keep size.
    fallocate(&big, F::ZERO_RANGE | F::KEEP_SIZE, 10, 20).expect("zero range inside");
    want[10..30].fill(0);
    // Room past the end with the size kept is not offered, and says so.
    let refused = fallocate(&big, F::KEEP_SIZE, 0, 1 << 30);
    assert_eq!(
        refused,
        Err(rustix::io::Errno::OPNOTSUPP),
        "keep size alone"
    );
    drop(big);
    let inline = OpenOptions::new()
        .write(true)
        .open(a.path("small"))
        .expect("open small");
    fallocate(&inline, F::PUNCH_HOLE | F::KEEP_SIZE, 10, 20).expect("punch inline");
    small[10..30].fill(0);
    drop(inline);

    for (what, mnt) in [
        ("the same mount", &a),
        ("a fresh mount", &Mounted::new(&cluster, "default", "b")),
    ] {
        let back = std::fs::read(mnt.path("big")).expect("read big");
        assert_eq!(back.len(), want.len(), "{what}: the size");
        if let Some(i) = (0..want.len()).find(|&i| back[i] != want[i]) {
            panic!("{what}: byte {i} differs (seed {:#x})", SEED + 190);
        }
        assert_eq!(
            std::fs::read(mnt.path("small")).expect("read small"),
            small,
            "{what}"
        );
    }
}

/// Saves (`save MOUNT FILE NAME...`) the file handles of names in a mount, or opens
/// (`open MOUNT FILE`) the saved handles and prints what each names: a file's bytes,
/// or `directory`. Python's ctypes reach name_to_handle_at and open_by_handle_at,
/// which the standard library does not wrap.
const HANDLES: &str = r#"
import ctypes, os, stat, sys
libc = ctypes.CDLL(None, use_errno=True)
class Handle(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint), ("type", ctypes.c_int), ("data", ctypes.c_ubyte * 128)]
verb, mount, saved = sys.argv[1:4]
if verb == "save":
    with open(saved, "w") as out:
        for name in sys.argv[4:]:
            h, mount_id = Handle(bytes=128), ctypes.c_int()
            if libc.name_to_handle_at(-100, os.path.join(mount, name).encode(), ctypes.byref(h), ctypes.byref(mount_id), 0) != 0:
                sys.exit(f"name_to_handle_at {name}: {os.strerror(ctypes.get_errno())}")
            out.write(f"{name} {h.type} {bytes(h.data[:h.bytes]).hex()}\n")
else:
    at = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
    for line in open(saved):
        name, kind, data = line.split()
        raw = bytes.fromhex(data)
        h = Handle(bytes=len(raw), type=int(kind))
        ctypes.memmove(h.data, raw, len(raw))
        fd = libc.open_by_handle_at(at, ctypes.byref(h), os.O_RDONLY)
        if fd < 0:
            sys.exit(f"open_by_handle_at {name}: {os.strerror(ctypes.get_errno())}")
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            print(name, "directory")
        else:
            print(name, os.read(fd, 100).decode())
        os.close(fd)
"#;

fn handles(args: &[&str]) -> String {
    python(HANDLES, args, "file handles")
}

/// Runs Python `script` with `args`; what it printed. Fails saying `what` failed, with
/// its output, if it does.
fn python(script: &str, args: &[&str], what: &str) -> String {
    let started = Instant::now();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{what}: python3 does not run: {e}"));
    assert!(
        out.status.success(),
        "{what} {args:?} failed after {:?}: {}",
        started.elapsed(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn file_handles_open_the_same_files_after_a_remount() {
    require_fuse();
    let cluster = Cluster::up("posix-handles");
    let a = Mounted::new(&cluster, "default", "a");
    std::fs::create_dir_all(a.path("dir/sub")).expect("mkdir");
    std::fs::write(a.path("dir/file"), b"handled").expect("write");
    let saved = cluster.path("handles.txt");
    let (mount, saved) = (
        a.dir.to_str().expect("utf-8").to_string(),
        saved.to_str().expect("utf-8").to_string(),
    );
    handles(&["save", &mount, &saved, "dir/file", "dir/sub", "dir"]);
    // In the mount that made them, and in a new one, whose kernel has no inode cached.
    let here = handles(&["open", &mount, &saved]);
    drop(a);
    let a = Mounted::new(&cluster, "default", "a");
    let fresh = handles(&["open", &mount, &saved]);
    for said in [here, fresh] {
        assert_eq!(
            said.lines().collect::<Vec<_>>(),
            ["dir/file handled", "dir/sub directory", "dir directory"]
        );
    }
    drop(a);
}
