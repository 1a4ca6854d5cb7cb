//! The checker: once the faults are healed, every acknowledged write in the ledger that
//! was not deleted is read back whole and compared with what was written, by length and
//! BLAKE3.
//!
//! An entry that cannot be read within [`CHECK_ATTEMPTS`] tries is **lost**; one that
//! reads back as other bytes is **corrupt** (the cluster handed wrong bytes to a
//! reader, which its own checks exist to prevent). Either fails the run, and each is
//! named by its write number and object id.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use hive_client::chunk_io::ChunkStore;
use hive_client::object::get_object;
use hive_wire::ChunkId;

use serde::Serialize;

use crate::ledger::{self, Entry, Line};
use crate::report::{Finding, render_findings};

/// Tries at reading an entry before it counts as lost.
pub const CHECK_ATTEMPTS: usize = 5;
/// Time between tries: nodes just restarted may still be finding their feet.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Entries read at once.
pub const CHECK_PARALLELISM: usize = 4;

/// What the checker found.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    /// Entries read back exactly.
    pub verified: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Entries that could not be read.
    pub lost: Vec<Finding>,
    /// Entries that read back as other bytes.
    pub corrupt: Vec<Finding>,
}

impl Outcome {
    /// The findings as text.
    pub fn render(&self) -> String {
        let mut out = format!(
            "checked: {} acknowledged writes read back exactly ({})\n",
            self.verified,
            hive_client::local_cluster::bytes(self.bytes)
        );
        render_findings(&mut out, "lost", &self.lost);
        render_findings(&mut out, "corrupt_returned", &self.corrupt);
        out
    }
}

enum Verdict {
    Exact(u64),
    Lost(String),
    Corrupt(String),
}

/// Reads back every acknowledged write of `lines` that no delete touched, through
/// `store`.
pub async fn check(store: &Arc<ChunkStore>, lines: &[Line]) -> Result<Outcome> {
    let acked = ledger::live(lines)?;
    let mut outcome = Outcome::default();
    let mut running = tokio::task::JoinSet::new();
    let mut queue = acked.into_iter();
    loop {
        while running.len() < CHECK_PARALLELISM {
            let Some((entry, id)) = queue.next() else {
                break;
            };
            let store = store.clone();
            running.spawn(async move {
                let verdict = verify(&store, &entry, id).await;
                (entry, id, verdict)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (entry, id, verdict) = done?;
        let finding = |reason| Finding {
            op: entry.op,
            object: id.to_string(),
            reason,
        };
        match verdict {
            Verdict::Exact(len) => {
                outcome.verified += 1;
                outcome.bytes += len;
            }
            Verdict::Lost(why) => outcome.lost.push(finding(why)),
            Verdict::Corrupt(why) => outcome.corrupt.push(finding(why)),
        }
    }
    outcome.lost.sort_by_key(|f| f.op);
    outcome.corrupt.sort_by_key(|f| f.op);
    Ok(outcome)
}

async fn verify(store: &Arc<ChunkStore>, entry: &Entry, id: ChunkId) -> Verdict {
    let mut last = String::new();
    for attempt in 0..CHECK_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(RETRY_AFTER).await;
        }
        match get_object(store, id).await {
            Ok(bytes) => {
                let hash = blake3::hash(&bytes).to_hex();
                return if bytes.len() as u64 == entry.len && hash.as_str() == entry.blake3 {
                    Verdict::Exact(entry.len)
                } else {
                    Verdict::Corrupt(format!(
                        "read back {} bytes hashing to {hash}; {} bytes hashing to {} were written",
                        bytes.len(),
                        entry.len,
                        entry.blake3
                    ))
                };
            }
            Err(e) => last = format!("{e:#}"),
        }
    }
    Verdict::Lost(format!("unreadable after {CHECK_ATTEMPTS} tries: {last}"))
}
