//! A volume's storage classes as the mount knows them: the class it writes chunks in,
//! and while a re-encode (`hive volume set --k --m`) runs, the class older chunks may
//! still be stored in only.
//!
//! The metadata service refuses a commit whose chunks are in another class than the
//! volume's (ESTALE): the mount then learns the classes, stores the chunks again in
//! the new one and commits again. A read looks in the class written, then in the
//! class re-encoded from; one that finds the chunk in neither learns the classes once
//! and, if they changed, looks again.

use hive_wire::ChunkId;
use hive_wire::net::meta::{MetaCall, MetaReply};

use super::volume::{FsError, Result, SYSTEM, Volume, unexpected};
use crate::chunk_io::ChunkError;
use crate::volumes::Classes;

impl Volume {
    /// The classes in use.
    pub(super) fn classes(&self) -> Classes {
        *self.classes.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the metadata service for the volume's classes and uses them; whether they
    /// changed.
    pub(super) async fn learn_classes(&self) -> Result<bool> {
        let volume = match self.call(SYSTEM, MetaCall::Mount).await? {
            MetaReply::Mounted(volume) => volume,
            other => return Err(unexpected(&other)),
        };
        let now = Classes::of(&volume)
            .map_err(|e| FsError::Io(format!("volume {:?}'s classes: {e}", volume.name)))?;
        let mut classes = self.classes.write().unwrap_or_else(|e| e.into_inner());
        let changed = *classes != now;
        if changed {
            eprintln!(
                "hive mount: volume {:?} now writes class {}{}",
                volume.name,
                now.write,
                now.from
                    .map_or(String::new(), |f| format!(" (re-encoding from {f})"))
            );
        }
        *classes = now;
        Ok(changed)
    }
}

/// Reads chunk `id` from `chunks` in `classes`: the class written first, then the one
/// re-encoded from; the first class's error if neither has it.
pub(super) async fn read_in(
    chunks: &std::sync::Arc<crate::chunk_io::ChunkStore>,
    classes: Classes,
    id: ChunkId,
) -> std::result::Result<Vec<u8>, ChunkError> {
    let first = chunks.get_in(classes.write, id).await;
    match (first, classes.from) {
        (Err(e), Some(from)) => chunks.get_in(from, id).await.map_err(|_| e),
        (result, _) => result,
    }
}
