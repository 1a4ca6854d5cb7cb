//! The enrollment endpoint's id allocator: the last id given to each role, in a small
//! TOML file replaced atomically and synced before the id is handed out, so no id is
//! ever given twice, across crashes and restarts.
//!
//! ```toml
//! node = 6
//! client = 2
//! admin = 1
//! ```
//!
//! Without a file, node ids start after this node's own, client ids at 1 and admin ids
//! at 2 (`hive init` made admin 1).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use hive_wire::net::Role;
use hive_wire::net::enroll::IdAllocator;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct Given {
    node: u64,
    client: u64,
    admin: u64,
}

fn save(path: &Path, given: &Given) -> std::io::Result<()> {
    let text = toml::to_string(given).map_err(std::io::Error::other)?;
    hive_wire::files::replace(path, text.as_bytes())
}

/// An allocator recording in `path`, for an endpoint on node `me`.
pub fn allocator(path: PathBuf, me: u64) -> Result<IdAllocator> {
    let given = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("enroll.ids: {} is invalid", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Given {
            node: me,
            client: 0,
            admin: 1,
        },
        Err(e) => return Err(e).with_context(|| format!("enroll.ids: reading {}", path.display())),
    };
    let state = Arc::new(Mutex::new(given));
    Ok(Arc::new(move |role: Role| {
        let mut given = state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = *given;
        let slot = match role {
            Role::Node => &mut next.node,
            Role::Client => &mut next.client,
            Role::Admin => &mut next.admin,
        };
        *slot += 1;
        let id = *slot;
        save(&path, &next).map_err(|e| format!("recording it in {}: {e}", path.display()))?;
        *given = next;
        Ok(id)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_given_twice_across_restarts() {
        let dir = std::env::temp_dir().join(format!("hive-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("ids.toml");
        let _ = std::fs::remove_file(&path);
        let ids = allocator(path.clone(), 1).expect("allocator");
        assert_eq!(ids(Role::Node), Ok(2));
        assert_eq!(ids(Role::Node), Ok(3));
        assert_eq!(ids(Role::Client), Ok(1));
        assert_eq!(ids(Role::Admin), Ok(2));
        let again = allocator(path, 1).expect("allocator");
        assert_eq!(again(Role::Node), Ok(4));
        assert_eq!(again(Role::Client), Ok(2));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
