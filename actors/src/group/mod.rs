//! The metadata group: the namespace replicated by Raft (openraft) across the nodes
//! that host it (one, or three by default, up to five).
//!
//! Every change goes through the group's log: the leader stamps it with its clock and
//! the caller, appends it, replicates it, and once a majority has it on stable storage
//! applies it to the namespace on every replica and answers the caller with what it
//! did. Reads are answered by the leader after a read-index round (openraft's
//! `ensure_linearizable`: a heartbeat a majority acknowledges, then the state machine
//! caught up to the commit index seen), so a read never misses a change that was
//! answered. Followers answer `NotLeader` with the leader they know; clients follow it.

pub mod network;
pub mod store;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hive_meta::Namespace;
use hive_wire::net::Client;
use hive_wire::net::message;
use hive_wire::net::meta::{GroupMessage, LoggedChange, MemberMessage};
use hive_wire::net::rpc::Handler;
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::constants::{
    GROUP_COMMIT_DEADLINE, GROUP_ELECTION_MAX, GROUP_ELECTION_MIN, GROUP_HEARTBEAT,
    GROUP_JOIN_DEADLINE, GROUP_KEEP_LOGS, GROUP_LEASE, GROUP_MESSAGE_MAX, GROUP_PROBE_PAUSE,
    GROUP_READ_DEADLINE, GROUP_SNAPSHOT_CHUNK, GROUP_SNAPSHOT_EVERY,
};
use network::Peers;
use store::{LogStore, Machine};

/// How long a probe of another replica waits.
pub(crate) const GROUP_PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// A logged change as the Raft log carries it: the encoded [`LoggedChange`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EntryBytes(pub Vec<u8>);

/// What applying an entry answered: an encoded `MetaReply`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReplyBytes(pub Vec<u8>);

openraft::declare_raft_types!(
    /// The metadata group's Raft types.
    pub GroupTypes:
        D = EntryBytes,
        R = ReplyBytes,
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The encoding of the group's messages, log entries and records: bincode, bounded so
/// that a malformed length cannot make a decoder allocate without limit.
pub(crate) fn codec() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new().with_limit(GROUP_MESSAGE_MAX)
}

/// Why the group did not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupError {
    /// This replica does not lead; the leader it knows, and its address.
    NotLeader(Option<u64>, Option<String>),
    /// It leads but could not do it (no majority reachable in time, a failed store).
    Failed(String),
    /// The request cannot be done (a member that is not one, the last voter).
    Refused(String),
}

impl From<ForwardToLeader<u64, BasicNode>> for GroupError {
    fn from(f: ForwardToLeader<u64, BasicNode>) -> Self {
        Self::NotLeader(f.leader_id, f.leader_node.map(|n| n.addr))
    }
}

/// A membership change's outcome as a [`GroupError`].
fn membership_result<T>(
    result: Result<T, RaftError<u64, ClientWriteError<u64, BasicNode>>>,
) -> Result<(), GroupError> {
    match result {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(f.into()),
        Err(e) => Err(GroupError::Failed(format!("the metadata group: {e}"))),
    }
}

/// One replica of the metadata group.
pub struct Group {
    id: u64,
    raft: Raft<GroupTypes>,
    log: LogStore,
    peers: Peers,
}

impl Group {
    /// Starts replica `id` with its log and snapshot in `dir` and its state machine
    /// `namespace`. `replicas` (id → address) name the members of a group not formed
    /// yet: the one with the lowest id forms it once every other answers and holds no
    /// replicated state (a replica that lost its disk rejoins the group it was in; it
    /// never starts a new one).
    pub async fn start(
        id: u64,
        dir: &Path,
        namespace: Arc<Namespace>,
        replicas: BTreeMap<u64, String>,
    ) -> Result<Arc<Self>, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("creating the group's directory {}: {e}", dir.display()))?;
        let log = LogStore::open(&dir.join("log"))
            .map_err(|e| format!("opening the group's log in {}: {e}", dir.display()))?;
        let machine = Machine::new(namespace, dir.join("snapshot"));
        let config = Config {
            cluster_name: "hive-meta".into(),
            heartbeat_interval: GROUP_HEARTBEAT.as_millis() as u64,
            election_timeout_min: GROUP_ELECTION_MIN.as_millis() as u64,
            election_timeout_max: GROUP_ELECTION_MAX.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(GROUP_SNAPSHOT_EVERY),
            max_in_snapshot_log_to_keep: GROUP_KEEP_LOGS,
            snapshot_max_chunk_size: GROUP_SNAPSHOT_CHUNK,
            ..Default::default()
        }
        .validate()
        .map_err(|e| format!("the group's configuration: {e}"))?;
        let peers = Peers::default();
        let raft = Raft::new(id, Arc::new(config), peers.clone(), log.clone(), machine)
            .await
            .map_err(|e| format!("starting the metadata group's replica: {e}"))?;
        let group = Arc::new(Self {
            id,
            raft,
            log,
            peers,
        });
        if replicas.keys().next() == Some(&id) {
            tokio::spawn(group.clone().form(replicas));
        }
        Ok(group)
    }

    /// The service other replicas send the group's messages to.
    pub fn service(&self) -> Handler {
        network::group_service(self.raft.clone(), self.log.clone())
    }

    /// Sends the group's messages through `client` (this node's endpoint) from now on.
    pub fn connect_through(&self, client: Arc<Client>) {
        self.peers.connect_through(client);
    }

    /// Whether this replica holds no replicated state: it was never part of a formed
    /// group (or lost its files and was not brought up to date yet).
    pub async fn is_blank(&self) -> Result<bool, String> {
        let log = self.log.clone();
        match tokio::task::spawn_blocking(move || log.is_blank()).await {
            Ok(Ok(blank)) => Ok(blank),
            Ok(Err(e)) => Err(format!("reading the metadata group's log: {e}")),
            Err(e) => Err(format!("reading the metadata group's log: {e}")),
        }
    }

    /// Forms the group of `replicas`, if it was never formed (see [`Group::start`]).
    async fn form(self: Arc<Self>, replicas: BTreeMap<u64, String>) {
        match self.is_blank().await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => return tracing::error!("metadata group: {e}"),
        }
        let mut told = false;
        loop {
            match self.others_blank(&replicas).await {
                Ok(true) => break,
                Ok(false) => {
                    tracing::info!(
                        "metadata group: another replica already holds the group's state; this one waits to be brought up to date"
                    );
                    return;
                }
                Err(e) => {
                    if !told {
                        tracing::info!("metadata group: waiting for every replica to answer ({e})");
                        told = true;
                    }
                    tokio::time::sleep(GROUP_PROBE_PAUSE).await;
                }
            }
        }
        let members: BTreeMap<u64, BasicNode> = replicas
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        if let Err(e) = self.raft.initialize(members).await {
            return tracing::error!("metadata group: forming it failed: {e}");
        }
        tracing::info!(
            "metadata group formed with replicas {:?}",
            replicas.keys().collect::<Vec<_>>()
        );
        self.seal_origin().await;
    }

    /// Whether every other replica of `replicas` holds no replicated state.
    async fn others_blank(&self, replicas: &BTreeMap<u64, String>) -> Result<bool, String> {
        for (id, addr) in replicas {
            if *id == self.id {
                continue;
            }
            let link = self.peers.link(*id, addr)?;
            if !network::probe(&link)
                .await
                .map_err(|e| format!("replica {id}: {e}"))?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Makes a snapshot of the namespace as the group found it and drops the log
    /// before it: the namespace may hold what no log entry made (a namespace from
    /// before replication), so a replica that joins starts from the snapshot, never
    /// from an empty namespace and the log.
    async fn seal_origin(&self) {
        let applied = self
            .raft
            .wait(Some(GROUP_COMMIT_DEADLINE))
            .metrics(
                |m| m.state == ServerState::Leader && m.last_applied.is_some(),
                "the first entry applied",
            )
            .await;
        let index = match applied {
            Ok(m) => m.last_applied.map_or(0, |l| l.index),
            Err(e) => return tracing::warn!("metadata group: no first snapshot: {e}"),
        };
        if let Err(e) = self.raft.trigger().snapshot().await {
            return tracing::warn!("metadata group: no first snapshot: {e}");
        }
        let made = self
            .raft
            .wait(Some(GROUP_COMMIT_DEADLINE))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= index),
                "the first snapshot",
            )
            .await;
        match made {
            Ok(_) => {
                if let Err(e) = self.raft.trigger().purge_log(index).await {
                    tracing::warn!("metadata group: purging the log: {e}");
                }
            }
            Err(e) => tracing::warn!("metadata group: no first snapshot: {e}"),
        }
    }

    /// Appends `change`, waits until it is committed and applied here, and returns
    /// the answer it was applied with (an encoded `MetaReply`).
    pub async fn write(&self, change: &LoggedChange) -> Result<Vec<u8>, GroupError> {
        let entry = EntryBytes(message::encode(change).to_vec());
        let written = tokio::time::timeout(GROUP_COMMIT_DEADLINE, self.raft.client_write(entry))
            .await
            .map_err(|_| {
                GroupError::Failed(format!(
                    "the metadata group did not commit the change within {GROUP_COMMIT_DEADLINE:?}: a majority of its replicas is unreachable (the change is applied if they return)"
                ))
            })?;
        match written {
            Ok(response) => Ok(response.data.0),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(f.into()),
            Err(e) => Err(GroupError::Failed(format!("the metadata group: {e}"))),
        }
    }

    /// Returns once this replica may answer a read linearizably: it leads, a majority
    /// still follows it, and it has applied every change committed before the call.
    /// Within its lease that is known without a message (see [`Group::leased`]);
    /// otherwise a read-index round confirms it (heartbeats a majority answers).
    pub async fn read_barrier(&self) -> Result<(), GroupError> {
        if self.leased() {
            return Ok(());
        }
        let checked = tokio::time::timeout(GROUP_READ_DEADLINE, self.raft.ensure_linearizable())
            .await
            .map_err(|_| {
                GroupError::Failed(format!(
                    "the metadata group's leader could not confirm it leads within {GROUP_READ_DEADLINE:?}: a majority of its replicas is unreachable"
                ))
            })?;
        match checked {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(f.into()),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                Err(GroupError::Failed(format!(
                    "the metadata group's leader could not confirm it leads: a majority of its replicas is unreachable ({e})"
                )))
            }
            Err(e) => Err(GroupError::Failed(format!("the metadata group: {e}"))),
        }
    }

    /// Resolves once this replica has stopped for good (its log or state machine
    /// failed, or the Raft core did), saying why: the node then stops too
    /// (fail-stop), rather than serve without its replica.
    pub fn stopped(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut metrics = self.raft.metrics();
        async move {
            loop {
                if let Err(fatal) = &metrics.borrow_and_update().running_state {
                    return format!("the metadata replica stopped: {fatal}");
                }
                if metrics.changed().await.is_err() {
                    return "the metadata replica stopped".to_string();
                }
            }
        }
    }

    /// Whether this replica holds the leader's lease now: it leads; it has applied an
    /// entry of its own term (so every change committed before it took over is
    /// applied here, and every change it answered is); and a majority of the voters
    /// (itself among them) accepted its leadership in appends sent less than
    /// [`GROUP_LEASE`] ago. Each of those followers refuses to vote for [`GROUP_ELECTION_MAX`]
    /// after it received the append, so no other leader can exist until then: a read
    /// answered from this replica's state misses no committed change. Joint
    /// memberships (a change under way) take the read-index round instead.
    fn leased(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader
            || m.last_applied
                .is_none_or(|l| l.leader_id.term != m.current_term)
        {
            return false;
        }
        let membership = m.membership_config.membership();
        if membership.get_joint_config().len() != 1 {
            return false;
        }
        let now = std::time::Instant::now();
        let voters = membership.voter_ids().count();
        // A voter that never accepted an append of this term (a dead one) is left
        // out: the lease needs a majority, not every voter.
        let mut accepted: Vec<std::time::Instant> = membership
            .voter_ids()
            .filter_map(|id| {
                if id == self.id {
                    Some(now)
                } else {
                    self.peers.acks().accepted(id, &m.vote)
                }
            })
            .collect();
        let quorum = voters / 2 + 1;
        if voters == 0 || accepted.len() < quorum {
            return false;
        }
        accepted.sort_unstable_by(|a, b| b.cmp(a));
        now.duration_since(accepted[quorum - 1]) < GROUP_LEASE
    }

    /// Whether this replica leads now, and in which term.
    pub fn leading(&self) -> Option<u64> {
        let m = self.raft.metrics().borrow().clone();
        (m.state == ServerState::Leader).then_some(m.current_term)
    }

    /// Adds node `id` at `addr`: first as a learner, returning once it has caught up
    /// (a snapshot, then the log), then as a voter.
    pub async fn add_member(&self, id: u64, addr: String) -> Result<(), GroupError> {
        let learner = tokio::time::timeout(
            GROUP_JOIN_DEADLINE,
            self.raft.add_learner(id, BasicNode { addr }, true),
        )
        .await
        .map_err(|_| {
            GroupError::Failed(format!(
                "node {id} did not catch up with the metadata group within {GROUP_JOIN_DEADLINE:?}; it stays a learner until it has (run the command again to wait for it)"
            ))
        })?;
        membership_result(learner)?;
        let voters = openraft::ChangeMembers::AddVoterIds([id].into());
        self.change_membership(voters).await
    }

    /// Removes node `id` from the group (it stops voting and receiving the log).
    pub async fn remove_member(&self, id: u64) -> Result<(), GroupError> {
        let state = self.state();
        if !state.members.iter().any(|m| m.node == id) {
            return Err(GroupError::Refused(format!(
                "node {id} is not a member of the metadata group"
            )));
        }
        if state
            .members
            .iter()
            .filter(|m| m.voter && m.node != id)
            .count()
            == 0
        {
            return Err(GroupError::Refused(format!(
                "node {id} is the metadata group's last voting member; add another first"
            )));
        }
        let change = if state.members.iter().any(|m| m.node == id && m.voter) {
            openraft::ChangeMembers::RemoveVoters([id].into())
        } else {
            openraft::ChangeMembers::RemoveNodes([id].into())
        };
        self.change_membership(change).await
    }

    async fn change_membership(
        &self,
        change: openraft::ChangeMembers<u64, BasicNode>,
    ) -> Result<(), GroupError> {
        let changed = tokio::time::timeout(
            GROUP_COMMIT_DEADLINE,
            self.raft.change_membership(change, false),
        )
        .await
        .map_err(|_| {
            GroupError::Failed(format!(
                "the metadata group did not commit the membership change within {GROUP_COMMIT_DEADLINE:?}"
            ))
        })?;
        membership_result(changed)
    }

    /// Where to go instead of this replica: the leader it knows, and its address.
    pub fn redirect(&self) -> GroupError {
        let m = self.raft.metrics().borrow().clone();
        let addr = m.current_leader.and_then(|id| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        });
        GroupError::NotLeader(m.current_leader, addr)
    }

    /// The group as this replica sees it.
    pub fn state(&self) -> GroupMessage {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| MemberMessage {
                node: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
                matched: m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|l| l.index)
                    .or_else(|| (*id == self.id).then_some(m.last_log_index).flatten()),
            })
            .collect();
        GroupMessage {
            replica: self.id,
            leader: m.current_leader,
            term: m.current_term,
            last_log: m.last_log_index,
            applied: m.last_applied.map(|l| l.index),
            members,
        }
    }
}
