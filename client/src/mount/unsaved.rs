//! Bytes a commit could not store: never dropped without a word.
//!
//! A commit that fails (the cluster short of nodes, the metadata service unreachable)
//! keeps its bytes in the file's buffer and answers EIO. While the file is open, its
//! next flush, fsync or close tries again. After its last close nothing would, so
//! [`Volume::start_retrying`] tries every such file again every [`RETRY_EVERY`]. At
//! unmount, [`Volume::save_all`] makes a last attempt for every file with buffered
//! bytes, within [`SAVE_GRACE`], and names what is still unsaved: its path, its bytes
//! and why, in the mount's log and in what `hive umount` prints.
//!
//! Paths: the namespace keeps no parent for a file, so the mount remembers the names
//! it has seen (lookups, creations, renames) in a bounded table, [`NAMES_KEPT`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::volume::Volume;

/// How often files whose commit failed after their last close are tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(5);
/// How long the last attempt at unmount may take, for all files together.
pub const SAVE_GRACE: Duration = Duration::from_secs(30);
/// Names remembered for naming unsaved files (about 100 bytes each); past it the table
/// starts again from empty, and a file not looked up since is named by its inode.
pub const NAMES_KEPT: usize = 65_536;

/// A name: the directory and the entry.
type Name = (u64, Vec<u8>);

/// The names this mount has seen, by inode.
#[derive(Default)]
pub(super) struct Names {
    names: Mutex<HashMap<u64, Name>>,
}

impl Names {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Name>> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `ino` is (now) called `name` in `parent`.
    pub(super) fn saw(&self, ino: u64, parent: u64, name: &[u8]) {
        let mut names = self.lock();
        if names.len() >= NAMES_KEPT && !names.contains_key(&ino) {
            names.clear();
        }
        names.insert(ino, (parent, name.to_vec()));
    }

    /// The entry `from_name` in `from` was renamed to `to_name` in `to` (with
    /// `exchange`, the two swapped names).
    pub(super) fn renamed(
        &self,
        (from, from_name): (u64, &[u8]),
        (to, to_name): (u64, &[u8]),
        exchange: bool,
    ) {
        let mut names = self.lock();
        let find = |names: &HashMap<u64, Name>, dir: u64, entry: &[u8]| {
            names
                .iter()
                .find(|(_, (p, n))| *p == dir && n == entry)
                .map(|(ino, _)| *ino)
        };
        let moved = find(&names, from, from_name);
        let replaced = find(&names, to, to_name);
        if let Some(ino) = moved {
            names.insert(ino, (to, to_name.to_vec()));
        }
        match (exchange, replaced) {
            (true, Some(ino)) => {
                names.insert(ino, (from, from_name.to_vec()));
            }
            (false, Some(ino)) if Some(ino) != moved => {
                names.remove(&ino);
            }
            _ => {}
        }
    }

    /// The path of `ino` from the volume's root, as far as known: unknown ancestors
    /// show as `<inode N>`.
    pub(super) fn path(&self, root: u64, ino: u64) -> String {
        let names = self.lock();
        let mut parts = Vec::new();
        let mut at = ino;
        // Bounded: a cycle (impossible in a namespace, but the table is only a cache)
        // cannot loop.
        for _ in 0..256 {
            if at == root {
                break;
            }
            match names.get(&at) {
                Some((parent, name)) => {
                    parts.push(String::from_utf8_lossy(name).into_owned());
                    at = *parent;
                }
                None => {
                    parts.push(format!("<inode {at}>"));
                    break;
                }
            }
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }
}

/// Bytes a last attempt could not store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsaved {
    /// The file's path from the volume's root, as far as the mount knows it.
    pub path: String,
    /// Its inode.
    pub ino: u64,
    /// Bytes written and not stored.
    pub bytes: u64,
    /// Why the last attempt failed.
    pub error: String,
}

impl std::fmt::Display for Unsaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LOST: {} bytes written to {} (inode {}) could not be stored: {}",
            self.bytes, self.path, self.ino, self.error
        )
    }
}

impl Volume {
    /// Files with buffered bytes and no open handle: their commit failed at close.
    fn orphaned_buffers(&self) -> Vec<u64> {
        self.files_snapshot()
            .into_iter()
            .filter_map(|(ino, state)| {
                let file = state.try_lock().ok()?;
                (file.handles == 0 && !file.dirty.is_empty()).then_some(ino)
            })
            .collect()
    }

    /// Tries, every [`RETRY_EVERY`] while the volume lives, to store the files whose
    /// commit failed after their last close.
    pub fn start_retrying(self: &Arc<Self>) {
        let volume = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(RETRY_EVERY);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(volume) = volume.upgrade() else {
                    return;
                };
                for ino in volume.orphaned_buffers() {
                    // A failure leaves the bytes buffered for the next try (and for
                    // the last attempt at unmount, which names what it cannot store).
                    if let Ok(bytes) = volume.save(ino).await
                        && bytes > 0
                    {
                        eprintln!(
                            "hive mount: stored {bytes} bytes of {} after an earlier failure",
                            volume.path_of(ino)
                        );
                    }
                }
            }
        });
    }

    /// Commits everything buffered for `ino`; the bytes stored.
    async fn save(&self, ino: u64) -> Result<u64, String> {
        let Some(state) = self.state(ino) else {
            return Ok(0);
        };
        let mut file = state.lock().await;
        let bytes = file.dirty.bytes();
        if bytes == 0 {
            return Ok(0);
        }
        match self.commit(ino, &mut file, true).await {
            Ok(()) => {
                self.forget_if_idle(ino, &file);
                Ok(bytes)
            }
            Err(e) => Err(format!("{e:?}")),
        }
    }

    /// The last attempt, at unmount: commits every file with buffered bytes (within
    /// [`SAVE_GRACE`] for all) and names those still unsaved.
    pub async fn save_all(&self) -> Vec<Unsaved> {
        let deadline = tokio::time::Instant::now() + SAVE_GRACE;
        let mut lost = Vec::new();
        for (ino, state) in self.files_snapshot() {
            let bytes = state.lock().await.dirty.bytes();
            if bytes == 0 {
                continue;
            }
            let error = match tokio::time::timeout_at(deadline, self.save(ino)).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => e,
                Err(_) => format!("no time left within the {SAVE_GRACE:?} unmount grace"),
            };
            lost.push(Unsaved {
                path: self.path_of(ino),
                ino,
                bytes,
                error,
            });
        }
        lost
    }

    /// The path of `ino` from the volume's root, as far as this mount knows it.
    pub fn path_of(&self, ino: u64) -> String {
        self.names.path(self.root(), ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_from_the_names_seen_and_say_what_is_unknown() {
        let names = Names::default();
        names.saw(10, 1, b"photos");
        names.saw(11, 10, b"2024");
        names.saw(12, 11, b"a.jpg");
        assert_eq!(names.path(1, 12), "/photos/2024/a.jpg");
        names.saw(12, 10, b"b.jpg");
        assert_eq!(names.path(1, 12), "/photos/b.jpg", "a rename is followed");
        assert_eq!(names.path(1, 99), "/<inode 99>");
        names.saw(13, 77, b"x");
        assert_eq!(names.path(1, 13), "/<inode 77>/x");
        names.renamed((10, b"b.jpg"), (11, b"c.jpg"), false);
        assert_eq!(names.path(1, 12), "/photos/2024/c.jpg");
        names.saw(14, 10, b"d.jpg");
        names.renamed((10, b"d.jpg"), (11, b"c.jpg"), true);
        assert_eq!(names.path(1, 14), "/photos/2024/c.jpg");
        assert_eq!(names.path(1, 12), "/photos/d.jpg", "exchanged");
        names.saw(20, 21, b"loop");
        names.saw(21, 20, b"back");
        assert!(names.path(1, 20).len() < 4096, "a cycle ends");
    }
}
