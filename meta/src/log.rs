//! A replicated log's durable half: entries by index and a few state records, in their
//! own fjall database beside the namespace. It knows bytes only; what an entry holds
//! (the Raft log id, an operation, a membership) is the replication layer's business.
//!
//! Every change is synced before it returns: an append is on stable storage before the
//! replication layer reports it flushed, and a truncation or purge never reappears after
//! a crash.

use std::path::Path;

use fjall::{
    KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace,
};

use crate::MetaError;

/// The log's database.
pub struct Log {
    db: SingleWriterTxDatabase,
    /// Entries: index (u64 BE) → the entry's bytes.
    entries: SingleWriterTxKeyspace,
    /// State records by name (the vote, the committed and purged log ids).
    state: SingleWriterTxKeyspace,
}

impl Log {
    /// Opens (or creates) the log in `path`.
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        let db = SingleWriterTxDatabase::builder(path).open()?;
        Ok(Self {
            entries: db.keyspace("entries", KeyspaceCreateOptions::default)?,
            state: db.keyspace("state", KeyspaceCreateOptions::default)?,
            db,
        })
    }

    /// Stores `entries` (index, bytes), synced, in one transaction.
    pub fn append(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), MetaError> {
        let mut tx = self.db.write_tx();
        for (index, bytes) in entries {
            tx.insert(&self.entries, index.to_be_bytes(), bytes.as_slice());
        }
        tx.durability(Some(PersistMode::SyncAll)).commit()?;
        Ok(())
    }

    /// The entries with indexes in `[from, to)`, in order; a gap ends the answer.
    pub fn range(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>, MetaError> {
        let snapshot = self.db.read_tx();
        let mut found = Vec::new();
        for item in snapshot.range(&self.entries, from.to_be_bytes()..to.to_be_bytes()) {
            let (key, value) = item.into_inner()?;
            let index = index_of(&key)?;
            if index != from + found.len() as u64 {
                break;
            }
            found.push((index, value.to_vec()));
        }
        Ok(found)
    }

    /// The last entry, if the log holds any.
    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>, MetaError> {
        let snapshot = self.db.read_tx();
        match snapshot.iter(&self.entries).next_back() {
            None => Ok(None),
            Some(item) => {
                let (key, value) = item.into_inner()?;
                Ok(Some((index_of(&key)?, value.to_vec())))
            }
        }
    }

    /// Removes every entry from `index` on (entries that conflict with a leader's),
    /// synced.
    pub fn truncate_from(&self, index: u64) -> Result<(), MetaError> {
        self.remove(index.to_be_bytes().., None)
    }

    /// Removes the entries from `from` up to `index`, inclusive, and records `purged`
    /// under `state_key`, in one synced transaction. `from` is where the last purge
    /// ended: the range scan then never walks what earlier purges removed (their
    /// tombstones), which would make each purge slower than the last.
    pub fn purge_through(
        &self,
        (from, index): (u64, u64),
        state_key: &str,
        purged: &[u8],
    ) -> Result<(), MetaError> {
        self.remove(
            from.to_be_bytes()..=index.to_be_bytes(),
            Some((state_key, purged)),
        )
    }

    fn remove(
        &self,
        range: impl std::ops::RangeBounds<[u8; 8]>,
        record: Option<(&str, &[u8])>,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.write_tx();
        let mut keys = Vec::new();
        for item in tx.range(&self.entries, range) {
            keys.push(item.key()?);
        }
        for key in keys {
            tx.remove(&self.entries, key);
        }
        if let Some((key, value)) = record {
            tx.insert(&self.state, key.as_bytes(), value);
        }
        tx.durability(Some(PersistMode::SyncAll)).commit()?;
        Ok(())
    }

    /// The state record `key`.
    pub fn state(&self, key: &str) -> Result<Option<Vec<u8>>, MetaError> {
        Ok(self.state.get(key.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Sets the state record `key`, synced.
    pub fn set_state(&self, key: &str, value: &[u8]) -> Result<(), MetaError> {
        let mut tx = self.db.write_tx();
        tx.insert(&self.state, key.as_bytes(), value);
        tx.durability(Some(PersistMode::SyncAll)).commit()?;
        Ok(())
    }
}

fn index_of(key: &[u8]) -> Result<u64, MetaError> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| MetaError::Corrupt("a log entry's key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("hive-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn appends_truncates_purges_and_reopens() {
        let dir = temp("basic");
        {
            let log = Log::open(&dir).expect("open");
            assert_eq!(log.last().expect("last"), None);
            let entries: Vec<_> = (1..=10u64).map(|i| (i, vec![i as u8; 3])).collect();
            log.append(&entries).expect("append");
            assert_eq!(log.range(3, 6).expect("range").len(), 3);
            log.truncate_from(8).expect("truncate");
            assert_eq!(log.last().expect("last").map(|e| e.0), Some(7));
            log.purge_through((0, 2), "purged", b"2").expect("purge");
            assert_eq!(log.range(0, 100).expect("range"), vec![]);
            assert_eq!(log.range(3, 100).expect("range").len(), 5);
            log.set_state("vote", b"v").expect("vote");
        }
        let log = Log::open(&dir).expect("reopen");
        assert_eq!(log.last().expect("last"), Some((7, vec![7; 3])));
        assert_eq!(log.state("vote").expect("vote"), Some(b"v".to_vec()));
        assert_eq!(log.state("purged").expect("purged"), Some(b"2".to_vec()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
