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
//! at 2 (`hive init` made admin 1). Where the metadata group gives the ids, the file
//! records the last of them too, and its values are the group's floor.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use hive_actors::MetaStore;
use hive_wire::net::Role;
use hive_wire::net::enroll::{Admit, IdAllocator};
use hive_wire::net::meta::{EnrollMessage, MetaCall, MetaClient, MetaReply};
use hive_wire::net::rpc::{Refusal, code};
use hive_wire::net::token::{JoinToken, TokenError};
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

/// The ids an enrollment endpoint gave, recorded in a file.
pub struct Ids {
    path: PathBuf,
    given: Mutex<Given>,
}

impl Ids {
    /// The ids recorded in `path`, for an endpoint on node `me`.
    pub fn open(path: PathBuf, me: u64) -> Result<Arc<Self>> {
        let given = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("enroll.ids: {} is invalid", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Given {
                node: me,
                client: 0,
                admin: 1,
            },
            Err(e) => {
                return Err(e).with_context(|| format!("enroll.ids: reading {}", path.display()));
            }
        };
        Ok(Arc::new(Self {
            path,
            given: Mutex::new(given),
        }))
    }

    fn given(&self) -> std::sync::MutexGuard<'_, Given> {
        self.given.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last id given to `role`.
    pub fn last(&self, role: Role) -> u64 {
        let given = *self.given();
        *given.slot(role)
    }

    /// Records that `role` was given `id` (by the metadata group), if it is past the
    /// last one recorded: the file stays a floor for any later allocator.
    pub fn record(&self, role: Role, id: u64) -> Result<(), String> {
        self.update(role, |last| (id > last).then_some(id))
    }

    /// Gives `role` its next id, recorded before it is handed out.
    pub fn next(&self, role: Role) -> Result<u64, String> {
        let mut id = None;
        self.update(role, |last| {
            id = last.checked_add(1);
            id
        })?;
        id.ok_or_else(|| format!("every {role} id was given"))
    }

    /// Sets `role`'s last id to what `change` makes of it (nothing if `None`), saved
    /// before the change is kept.
    fn update(&self, role: Role, change: impl FnOnce(u64) -> Option<u64>) -> Result<(), String> {
        let mut given = self.given();
        let mut next = *given;
        let slot = next.slot_mut(role);
        let Some(id) = change(*slot) else {
            return Ok(());
        };
        *slot = id;
        save(&self.path, &next)
            .map_err(|e| format!("recording it in {}: {e}", self.path.display()))?;
        *given = next;
        Ok(())
    }
}

impl Given {
    fn slot(&self, role: Role) -> &u64 {
        match role {
            Role::Node => &self.node,
            Role::Client => &self.client,
            Role::Admin => &self.admin,
        }
    }

    fn slot_mut(&mut self, role: Role) -> &mut u64 {
        match role {
            Role::Node => &mut self.node,
            Role::Client => &mut self.client,
            Role::Admin => &mut self.admin,
        }
    }
}

/// Enrollment through the metadata group: it admits each token once and gives the
/// ids (past those `ids` recorded), which `ids` then records too. Until this replica
/// holds the group's state (the group is not formed yet: `hive cluster up` enrolls the
/// nodes that will form it) the endpoint's own files do it, and the group's first
/// enrollment starts past the ids they gave. Once it does, an unreachable group makes
/// enrollment wait and then fail, never fall back.
pub fn group_admit(group: Arc<MetaClient>, store: Arc<MetaStore>, ids: Arc<Ids>) -> Admit {
    Arc::new(move |token: &JoinToken| {
        let (group, store, ids) = (group.clone(), store.clone(), ids.clone());
        let role = token.role;
        let call = MetaCall::Enroll(EnrollMessage {
            token: token.id,
            expires: token.expires,
            role: role.number(),
            floor: ids.last(role),
        });
        Box::pin(async move {
            let blank = store
                .group()
                .is_blank()
                .await
                .map_err(|e| Refusal::new(code::INTERNAL, e))?;
            if blank {
                tracing::info!(
                    "enrollment: the metadata group is not formed yet; this endpoint's own files admit the token and give the id"
                );
                return Ok(None);
            }
            let answer = group.call("", 0, 0, call).await.map_err(|e| {
                Refusal::new(
                    code::UNAVAILABLE,
                    format!("the metadata group, which records enrollments, did not answer: {e}; try again"),
                )
            })?;
            match answer {
                MetaReply::Enrolled { id } => {
                    ids.record(role, id)
                        .map_err(|e| Refusal::new(code::INTERNAL, e))?;
                    Ok(Some(id))
                }
                MetaReply::Errno(errno) if errno == hive_meta::Errno::Exist.code() => Err(
                    Refusal::new(code::FORBIDDEN, TokenError::Reused.to_string()),
                ),
                other => Err(Refusal::new(
                    code::INTERNAL,
                    format!("the metadata group answered {other:?} to an enrollment"),
                )),
            }
        })
    })
}

/// The allocator of an endpoint without a metadata group: `ids`, one after another.
pub fn allocator(ids: Arc<Ids>) -> IdAllocator {
    Arc::new(move |role: Role| ids.next(role))
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
        let ids = allocator(Ids::open(path.clone(), 1).expect("ids"));
        assert_eq!(ids(Role::Node), Ok(2));
        assert_eq!(ids(Role::Node), Ok(3));
        assert_eq!(ids(Role::Client), Ok(1));
        assert_eq!(ids(Role::Admin), Ok(2));
        let recorded = Ids::open(path.clone(), 1).expect("ids");
        assert_eq!(recorded.last(Role::Node), 3);
        recorded.record(Role::Node, 9).expect("record");
        recorded
            .record(Role::Node, 5)
            .expect("an older id changes nothing");
        let again = allocator(Ids::open(path, 1).expect("ids"));
        assert_eq!(again(Role::Node), Ok(10));
        assert_eq!(again(Role::Client), Ok(2));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
