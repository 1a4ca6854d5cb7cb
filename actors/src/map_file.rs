//! The map authority's file: the current cluster map in TOML, replaced atomically (write
//! a temporary file, sync it, rename it over the old one, sync the directory) so a crash
//! leaves either the old epoch or the new one, never a mix.
//!
//! ```toml
//! epoch = 7
//! pg_bits = 8
//!
//! classes = [[4, 2]]      # storage classes shards are stored in: [k, m]
//! repair_rate = 67108864  # bytes per second each node's repair may write (0: no limit)
//!
//! [[nodes]]
//! id = 1
//! domain = 1
//! weight = 1
//! state = "up"        # up, down or out
//! joined = 1
//! addr = "127.0.0.1:7401"
//! ```

use std::path::Path;

use hive_codec::ClusterView;
use hive_wire::net::control::{Class, MapMessage, MapNode, state};
use serde::{Deserialize, Serialize};

/// Why the map file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MapFileError {
    /// I/O.
    #[error("map file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The contents are not a valid map.
    #[error("map file {path} is invalid: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    epoch: u64,
    pg_bits: u8,
    #[serde(default)]
    classes: Vec<[u8; 2]>,
    #[serde(default = "default_repair_rate")]
    repair_rate: u64,
    #[serde(default)]
    nodes: Vec<Node>,
}

fn default_repair_rate() -> u64 {
    hive_codec::DEFAULT_REPAIR_RATE
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Node {
    id: u64,
    domain: u32,
    weight: u32,
    state: String,
    joined: u64,
    addr: String,
}

const STATES: [(u8, &str); 3] = [
    (state::UP, "up"),
    (state::DOWN, "down"),
    (state::OUT, "out"),
];

/// Reads the map at `path`; `None` if there is no file yet.
pub fn read(path: &Path) -> Result<Option<ClusterView>, MapFileError> {
    let invalid = |reason: String| MapFileError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(MapFileError::Io {
                path: path.display().to_string(),
                source,
            });
        }
    };
    let file: File = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let mut nodes = Vec::with_capacity(file.nodes.len());
    for n in file.nodes {
        let state = STATES
            .iter()
            .find(|(_, name)| *name == n.state)
            .map(|(code, _)| *code)
            .ok_or_else(|| invalid(format!("node {}: unknown state {:?}", n.id, n.state)))?;
        nodes.push(MapNode {
            id: n.id,
            domain: n.domain,
            weight: n.weight,
            state,
            joined: n.joined,
            addr: n.addr,
        });
    }
    let message = MapMessage {
        epoch: file.epoch,
        pg_bits: file.pg_bits,
        nodes,
        classes: file
            .classes
            .iter()
            .map(|[k, m]| Class { k: *k, m: *m })
            .collect(),
        repair_rate: file.repair_rate,
    };
    ClusterView::from_message(&message)
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

/// Replaces the map at `path` with `view`, durably.
pub fn write(path: &Path, view: &ClusterView) -> Result<(), MapFileError> {
    let message = view.to_message();
    let file = File {
        epoch: message.epoch,
        pg_bits: message.pg_bits,
        classes: message.classes.iter().map(|c| [c.k, c.m]).collect(),
        repair_rate: message.repair_rate,
        nodes: message
            .nodes
            .into_iter()
            .map(|n| Node {
                id: n.id,
                domain: n.domain,
                weight: n.weight,
                state: STATES
                    .iter()
                    .find(|(code, _)| *code == n.state)
                    .map_or("?", |(_, name)| name)
                    .to_string(),
                joined: n.joined,
                addr: n.addr,
            })
            .collect(),
    };
    let text = toml::to_string(&file).expect("invariant: a map always serialises");
    hive_wire::files::replace(path, text.as_bytes()).map_err(|source| MapFileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_codec::{ClusterMap, NodeInfo, NodeState};
    use hive_wire::{Epoch, FailureDomain, NodeId};

    #[test]
    fn a_written_map_reads_back_and_garbage_is_refused() {
        let dir = std::env::temp_dir().join(format!("hive-map-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("map.toml");
        let _ = std::fs::remove_file(&path);
        assert!(read(&path).expect("no file is fine").is_none());
        let nodes = vec![NodeInfo {
            id: NodeId(3),
            domain: FailureDomain(9),
            weight: 2,
            state: NodeState::Down,
            joined: Epoch(4),
        }];
        let mut view = ClusterView::new(
            ClusterMap::new(Epoch(5), 8, nodes).expect("map"),
            [(NodeId(3), "127.0.0.1:7403".parse().expect("addr"))].into(),
        );
        view.classes = vec![hive_codec::ErasureScheme::new(4, 2).expect("4+2")];
        view.repair_rate = 12345;
        write(&path, &view).expect("write");
        assert_eq!(read(&path).expect("read"), Some(view));
        std::fs::write(&path, "epoch = \"soon\"").expect("write garbage");
        let err = read(&path).expect_err("garbage").to_string();
        assert!(err.contains("invalid"), "{err}");
    }
}
