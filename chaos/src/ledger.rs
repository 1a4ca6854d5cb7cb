//! The ledger: one JSON line for every write the workload finished, acknowledged or
//! refused, for every delete of an object written, and for every file op the mount
//! answered, appended as the answer arrives.
//! The checker reads it back; a run that dies half-way still leaves what it had been
//! told.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hive_wire::ChunkId;
use serde::{Deserialize, Serialize};

/// One line of the ledger.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "line", rename_all = "kebab-case")]
pub enum Line {
    /// A write.
    Write(Entry),
    /// A delete of an object an earlier line wrote.
    Delete(Deletion),
    /// A file op through the mount (see [`crate::files`]).
    File(crate::files::FileOp),
}

/// One finished delete: from its start on, the object need not read back (a delete
/// that failed may still have been applied).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The write whose object was deleted.
    pub op: u64,
    /// The object's id (hex).
    pub object: String,
    /// Milliseconds from the run's start to the delete's start.
    pub started_ms: u64,
    /// Why it failed; absent when the metadata service applied it.
    pub refused: Option<String>,
}

/// One finished write.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The write's number in its run: its content is made from the run's seed and this.
    pub op: u64,
    /// The object's id (hex), when the cluster acknowledged the write.
    pub object: Option<String>,
    /// Bytes written.
    pub len: u64,
    /// BLAKE3 of the bytes written (hex).
    pub blake3: String,
    /// Milliseconds from the run's start to the write's start.
    pub started_ms: u64,
    /// Milliseconds from the run's start to its answer.
    pub answered_ms: u64,
    /// Why the cluster refused it; absent when it acknowledged it.
    pub refused: Option<String>,
}

impl Entry {
    /// The acknowledged object's id, if this entry is an acknowledged write.
    pub fn acked(&self) -> Result<Option<ChunkId>> {
        match (&self.object, &self.refused) {
            (Some(id), None) => {
                Ok(Some(id.parse().with_context(|| {
                    format!("ledger entry {}: object id {id:?}", self.op)
                })?))
            }
            (None, Some(_)) => Ok(None),
            _ => bail!(
                "ledger entry {} is neither acknowledged (an object id) nor refused (a reason)",
                self.op
            ),
        }
    }
}

/// An open ledger, appended to.
pub struct Ledger {
    file: File,
    path: PathBuf,
}

impl Ledger {
    /// Creates the ledger at `path`, replacing one left by an earlier run.
    pub fn create(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .with_context(|| format!("creating the ledger {}", path.display()))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends one line, in one write.
    pub fn append(&mut self, line: &Line) -> Result<()> {
        let mut line = serde_json::to_vec(line)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .with_context(|| format!("appending to the ledger {}", self.path.display()))
    }

    /// Makes everything appended durable.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .with_context(|| format!("syncing the ledger {}", self.path.display()))
    }
}

/// Every line of the ledger at `path`, in the order written.
pub fn read(path: &Path) -> Result<Vec<Line>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the ledger {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not a ledger line", path.display(), n + 1))
        })
        .collect()
}

/// The acknowledged writes of `lines` that no delete touched: what must read back.
pub fn live(lines: &[Line]) -> Result<Vec<(Entry, ChunkId)>> {
    let deleted: std::collections::HashSet<u64> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Delete(d) => Some(d.op),
            _ => None,
        })
        .collect();
    let mut live = Vec::new();
    for line in lines {
        if let Line::Write(entry) = line
            && !deleted.contains(&entry.op)
            && let Some(id) = entry.acked()?
        {
            live.push((entry.clone(), id));
        }
    }
    Ok(live)
}
