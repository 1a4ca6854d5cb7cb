//! `hive meta status|add|remove`: the metadata group, the Raft group that replicates
//! the namespace, as the cluster directory's admin identity sees it and changes it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hive_wire::NodeId;
use hive_wire::net::meta::{GroupMessage, MetaCall, MetaReply};

use crate::local_cluster;

/// How long `hive status` waits for the group's state.
const STATUS_DEADLINE: Duration = Duration::from_secs(3);
/// How long a membership change may take: a new replica catches up first (the
/// group gives it two minutes).
const CHANGE_DEADLINE: Duration = Duration::from_secs(150);

fn call(dir: &Path, call: MetaCall, deadline: Duration) -> Result<GroupMessage> {
    let runtime = local_cluster::runtime()?;
    let _entered = runtime.enter();
    let meta = local_cluster::meta_client(dir, true)?;
    match runtime
        .block_on(meta.call_within("", (0, 0, 0), call, deadline))
        .context("the metadata group")?
    {
        MetaReply::Group(group) => Ok(group),
        other => bail!("the metadata group answered with {other:?}"),
    }
}

/// The group as its leader (or, without one, the replica asked) sees it.
pub fn status(dir: &Path) -> Result<GroupMessage> {
    call(dir, MetaCall::Group, STATUS_DEADLINE)
}

/// Adds node `node` to the group: the node is given a replica (restarted with one if
/// it had none), catches up, then votes.
pub fn add(dir: &Path, node: u64) -> Result<GroupMessage> {
    let before = status(dir)?;
    if before.members.iter().any(|m| m.node == node && m.voter) {
        bail!(
            "node {} is a member of the metadata group already",
            NodeId(node)
        );
    }
    let addr = local_cluster::prepare_meta_replica(dir, node)?;
    let group = call(
        dir,
        MetaCall::AddMember {
            node,
            addr: addr.to_string(),
        },
        CHANGE_DEADLINE,
    )?;
    local_cluster::set_meta_replicas(dir, &voters(&group))?;
    Ok(group)
}

/// Removes node `node` from the group. Its replica's files stay on the node.
pub fn remove(dir: &Path, node: u64) -> Result<GroupMessage> {
    let group = call(dir, MetaCall::RemoveMember { node }, CHANGE_DEADLINE)?;
    local_cluster::set_meta_replicas(dir, &voters(&group))?;
    Ok(group)
}

fn voters(group: &GroupMessage) -> Vec<u64> {
    group
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node)
        .collect()
}

/// The group in a few lines: leader, term, and each member with how far behind the
/// leader's log it is.
pub fn render(group: &GroupMessage) -> String {
    let leader = match group.leader {
        Some(id) => format!("node {}", NodeId(id)),
        None => "none (an election, or no majority up)".to_string(),
    };
    let mut out = format!(
        "meta:   {} replicas, leader {leader}, term {}, log index {}\n",
        group.members.iter().filter(|m| m.voter).count(),
        group.term,
        group.last_log.map_or("-".to_string(), |i| i.to_string())
    );
    let head = group.last_log.unwrap_or(0);
    for m in &group.members {
        let role = match (Some(m.node) == group.leader, m.voter) {
            (true, _) => "leader",
            (false, true) => "follower",
            (false, false) => "learner",
        };
        let place = match m.matched {
            Some(i) => format!("index {i}, lag {}", head.saturating_sub(i)),
            None if group.leader == Some(group.replica) => "not reached".to_string(),
            None => "unknown here".to_string(),
        };
        out += &format!(
            "        {} {role:<8} {:<22} {place}\n",
            NodeId(m.node),
            m.addr
        );
    }
    out
}

/// The group as JSON.
pub fn to_json(group: &GroupMessage) -> serde_json::Value {
    let head = group.last_log.unwrap_or(0);
    serde_json::json!({
        "replica": group.replica,
        "leader": group.leader,
        "term": group.term,
        "last_log": group.last_log,
        "applied": group.applied,
        "members": group.members.iter().map(|m| serde_json::json!({
            "id": m.node,
            "addr": m.addr,
            "voter": m.voter,
            "matched": m.matched,
            "lag": m.matched.map(|i| head.saturating_sub(i)),
        })).collect::<Vec<_>>(),
    })
}

/// One replica's answer to a digest request.
pub struct ReplicaDigest {
    /// The replica.
    pub node: u64,
    /// The last log index it applied, and the digest of its namespace; or why it did
    /// not answer.
    pub state: Result<(Option<u64>, [u8; 32]), String>,
}

/// Asks each replica of the group for the digest of its namespace.
pub fn digests(dir: &Path) -> Result<Vec<ReplicaDigest>> {
    let runtime = local_cluster::runtime()?;
    let _entered = runtime.enter();
    let mut out = Vec::new();
    for (node, meta) in local_cluster::meta_replicas(dir)? {
        let answer =
            runtime.block_on(meta.call_within("", (0, 0, 0), MetaCall::Digest, STATUS_DEADLINE));
        let state = match answer {
            Ok(MetaReply::Digest {
                applied, digest, ..
            }) => Ok((applied, digest)),
            Ok(other) => Err(format!("answered {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        out.push(ReplicaDigest {
            node: node.0,
            state,
        });
    }
    Ok(out)
}

/// Whether replicas that applied the same index have the same namespace; the pairs
/// that differ otherwise.
pub fn disagreements(digests: &[ReplicaDigest]) -> Vec<(u64, u64)> {
    let mut differ = Vec::new();
    for (i, a) in digests.iter().enumerate() {
        for b in &digests[i + 1..] {
            if let (Ok((ia, da)), Ok((ib, db))) = (&a.state, &b.state)
                && ia == ib
                && da != db
            {
                differ.push((a.node, b.node));
            }
        }
    }
    differ
}

/// The digests as text: one line a replica.
pub fn render_digests(digests: &[ReplicaDigest]) -> String {
    let mut out = String::new();
    for d in digests {
        out += &match &d.state {
            Ok((applied, digest)) => format!(
                "{} applied {} digest {}\n",
                NodeId(d.node),
                applied.map_or("-".to_string(), |i| i.to_string()),
                hive_wire::ChunkId(*digest)
            ),
            Err(e) => format!("{} did not answer: {e}\n", NodeId(d.node)),
        };
    }
    out
}

/// The digests as JSON.
pub fn digests_json(digests: &[ReplicaDigest]) -> serde_json::Value {
    serde_json::json!(digests.iter().map(|d| match &d.state {
        Ok((applied, digest)) => serde_json::json!({
            "id": d.node, "applied": applied, "digest": hive_wire::ChunkId(*digest).to_string(),
        }),
        Err(e) => serde_json::json!({ "id": d.node, "error": e }),
    }).collect::<Vec<_>>())
}
