//! Small files written durably: a new file that must not replace anything, and an
//! atomic replacement (temporary file, sync, rename, directory sync) that a crash leaves
//! either old or new, never half written. Used for keys, certificates, configurations,
//! the cluster map and the enrollment id counter.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `contents` to a new file at `path` (never over an existing one) with
/// permission bits `mode`, and syncs it.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Replaces the file at `path` with `contents`, atomically and durably.
pub fn replace(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}
