//! A volume mounted with `hive mount` for a test, unmounted when dropped.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Cluster, RECOVER_WITHIN, hive, ok};

/// Fails, saying what is missing, unless this process may mount: /dev/fuse, and root.
pub fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "these tests mount through FUSE and /dev/fuse is missing: load the fuse module"
    );
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid());
    assert_eq!(
        uid.ok(),
        Some(0),
        "these tests mount volumes and must run as root"
    );
}

/// A mounted volume, unmounted when dropped.
pub struct Mounted {
    pub dir: PathBuf,
    /// The process serving it.
    pub pid: String,
}

impl Mounted {
    pub fn new(cluster: &Cluster, volume: &str, name: &str) -> Self {
        Self::with(cluster, volume, name, &[])
    }

    /// A mount with `extra` arguments for `hive mount`.
    pub fn with(cluster: &Cluster, volume: &str, name: &str, extra: &[&str]) -> Self {
        let dir = cluster.path(name);
        std::fs::create_dir_all(&dir).expect("mount point");
        let mut args = vec!["mount", "--cluster", cluster.d(), "--volume", volume];
        args.extend_from_slice(extra);
        args.push(dir.to_str().expect("utf-8"));
        let out = hive(&args);
        let said = ok(&out, "hive mount");
        // "mounted SOURCE on DIR (pid N, log FILE)"
        let pid = said
            .split("(pid ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("hive mount names its process: {said}"))
            .to_string();
        Self { dir, pid }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// What the mount process has logged so far.
    pub fn log(&self, cluster: &Cluster) -> String {
        let name: String = (self.dir.to_str().expect("utf-8").chars())
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        std::fs::read_to_string(cluster.path(&format!("mounts/{name}.log")))
            .expect("the mount's log")
    }

    /// Waits until the mount has logged `text`; fails saying `what` after
    /// `RECOVER_WITHIN`.
    pub fn wait_for_log(&self, cluster: &Cluster, text: &str, what: &str) {
        let since = Instant::now();
        while !self.log(cluster).contains(text) {
            assert!(
                since.elapsed() < RECOVER_WITHIN,
                "{what}: {}",
                self.log(cluster)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let out = hive(&["umount", self.dir.to_str().expect("utf-8")]);
        if !out.status.success() {
            // A dead or busy mount: detach it so the test's cleanup can go on.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}
