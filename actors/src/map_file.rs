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
//! state = "up"        # up, down, out, lost (out and silent) or removed
//! joined = 1
//! addr = "127.0.0.1:7401"
//! labels = "host=127.0.0.1"   # failure-domain labels; domain is the hash of the first
//!
//! [[history]]         # past placements rebalance may not have moved yet, newest first
//! epoch = 5
//! pg_bits = 8
//! nodes = [{ id = 1, domain = 1, weight = 1, state = "up", joined = 1 }]
//! ```

use std::path::Path;

use hive_codec::ClusterView;
use hive_wire::net::control::{Class, MapMessage, MapNode, PastMap, state};
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
    #[serde(default)]
    history: Vec<Past>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Past {
    epoch: u64,
    pg_bits: u8,
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
    #[serde(default, skip_serializing_if = "String::is_empty")]
    addr: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    labels: String,
}

const STATES: [(u8, &str); 5] = [
    (state::UP, "up"),
    (state::DOWN, "down"),
    (state::OUT, "out"),
    (state::REMOVED, "removed"),
    (state::LOST, "lost"),
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
    let nodes = |nodes: Vec<Node>| -> Result<Vec<MapNode>, MapFileError> {
        nodes
            .into_iter()
            .map(|n| {
                let state = STATES
                    .iter()
                    .find(|(_, name)| *name == n.state)
                    .map(|(code, _)| *code)
                    .ok_or_else(|| {
                        invalid(format!("node {}: unknown state {:?}", n.id, n.state))
                    })?;
                Ok(MapNode {
                    id: n.id,
                    domain: n.domain,
                    weight: n.weight,
                    state,
                    joined: n.joined,
                    addr: n.addr,
                    labels: n.labels,
                })
            })
            .collect()
    };
    let mut history = Vec::with_capacity(file.history.len());
    for past in file.history {
        history.push(PastMap {
            epoch: past.epoch,
            pg_bits: past.pg_bits,
            nodes: nodes(past.nodes)?,
        });
    }
    let message = MapMessage {
        epoch: file.epoch,
        pg_bits: file.pg_bits,
        nodes: nodes(file.nodes)?,
        classes: file
            .classes
            .iter()
            .map(|[k, m]| Class { k: *k, m: *m })
            .collect(),
        repair_rate: file.repair_rate,
        history,
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
        nodes: message.nodes.into_iter().map(file_node).collect(),
        history: message
            .history
            .into_iter()
            .map(|past| Past {
                epoch: past.epoch,
                pg_bits: past.pg_bits,
                nodes: past.nodes.into_iter().map(file_node).collect(),
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

fn file_node(n: MapNode) -> Node {
    Node {
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
        labels: n.labels,
    }
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
        view.labels.insert(NodeId(3), "rack=r1,host=h3".to_string());
        let mut past = view.map.nodes().to_vec();
        past[0].state = NodeState::Up;
        past[0].weight = 1;
        view.history = vec![ClusterMap::new(Epoch(2), 8, past).expect("past map")];
        write(&path, &view).expect("write");
        assert_eq!(read(&path).expect("read"), Some(view));
        std::fs::write(&path, "epoch = \"soon\"").expect("write garbage");
        let err = read(&path).expect_err("garbage").to_string();
        assert!(err.contains("invalid"), "{err}");
    }
}
