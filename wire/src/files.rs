//! Small files written durably: a new file that must not replace anything, and an
//! atomic replacement, both through a temporary file (unique, created exclusively,
//! synced) that is then linked or renamed into place, and a sync of the directory.
//! A crash leaves the old state or the new, never a half-written file under the
//! name. Used for keys, certificates, configurations, the cluster map and the
//! enrollment id counter.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Tries at a temporary name before giving up (another process's leftover
/// temporaries can hold the first ones).
const TEMPORARY_TRIES: u64 = 64;

/// Writes `contents` to a new file at `path` (never over an existing one: an
/// existing `path` is `AlreadyExists`) with permission bits `mode`; the file and its
/// directory are synced before it returns. A failure leaves no file at `path`.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let (temporary, file) = temporary_beside(path, mode)?;
    let placed = fill(file, contents).and_then(|()| std::fs::hard_link(&temporary, path));
    let removed = std::fs::remove_file(&temporary);
    placed?;
    removed?;
    sync_dir(path)
}

/// Replaces the file at `path` with `contents`, atomically and durably: the new
/// file and the directory are synced before it returns.
pub fn replace(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let (temporary, file) = temporary_beside(path, 0o644)?;
    let placed = fill(file, contents).and_then(|()| std::fs::rename(&temporary, path));
    if placed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    placed?;
    sync_dir(path)
}

/// Writes and syncs `contents` into `file`.
fn fill(mut file: File, contents: &[u8]) -> std::io::Result<()> {
    file.write_all(contents)?;
    file.sync_all()
}

/// A new file beside `path`, named for it, this process and a counter, created
/// exclusively (`O_EXCL`: never a file someone else has open) with `mode`.
fn temporary_beside(path: &Path, mode: u32) -> std::io::Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    for _ in 0..TEMPORARY_TRIES {
        let mut temporary = std::ffi::OsString::from(".");
        temporary.push(name);
        temporary.push(format!(
            ".tmp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let temporary = path.with_file_name(temporary);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)
        {
            Ok(file) => return Ok((temporary, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("no free temporary name beside {}", path.display()),
    ))
}

/// Syncs the directory holding `path`, so a new name in it survives a crash.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hive-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_file_never_replaces_one_and_leaves_no_temporary() {
        let dir = scratch("new");
        let key = dir.join("node.key");
        write_new(&key, b"first", 0o600).expect("new");
        let refused = write_new(&key, b"second", 0o600).expect_err("exists");
        assert_eq!(refused.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&key).expect("read"), b"first");
        let mode = std::fs::metadata(&key).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(names(&dir), ["node.key"]);
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    #[test]
    fn replacements_from_many_threads_each_leave_a_whole_file_and_no_temporary() {
        let dir = scratch("replace");
        let map = dir.join("map.toml");
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let map = &map;
                s.spawn(move || {
                    for _ in 0..20 {
                        replace(map, &[t; 4096]).expect("replace");
                    }
                });
            }
        });
        let last = std::fs::read(&map).expect("read");
        assert_eq!(last.len(), 4096);
        assert!(
            last.iter().all(|b| *b == last[0]),
            "one writer's whole file"
        );
        assert_eq!(names(&dir), ["map.toml"]);
        std::fs::remove_dir_all(&dir).expect("clean");
    }
}
