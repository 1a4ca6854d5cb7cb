//! What a run tells: the faults with their times, the writes acknowledged and refused,
//! what the checker read back, what was lost or returned wrong (both must be 0), and
//! the write throughput while faults were held against the throughput without them.

use std::fmt::Write as _;

use hive_client::local_cluster::bytes;
use serde::Serialize;

use crate::files::FileOutcome;
use crate::ledger::Entry;
use crate::proxy::Counts;
use crate::schedule::FaultKind;

/// One entry the run found wrong.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The write's number.
    pub op: u64,
    /// Its object id.
    pub object: String,
    /// What is wrong.
    pub reason: String,
}

/// One fault, from its injection to its healing.
#[derive(Serialize, Debug, Clone)]
pub struct FaultEvent {
    /// What it was.
    pub kind: FaultKind,
    /// The nodes it hit.
    pub nodes: Vec<u64>,
    /// Seconds from the run's start to the fault being in place.
    pub at_s: f64,
    /// Seconds from the run's start to its healing beginning.
    pub healing_s: f64,
    /// Seconds from the run's start to the nodes serving again.
    pub healed_s: f64,
    /// Seconds from the run's start to repair having caught up after it (full
    /// health), when the tool waited for that.
    pub repaired_s: Option<f64>,
    /// Shards rebuilt meanwhile.
    pub rebuilt: u64,
    /// What exactly was done.
    pub detail: String,
}

/// The report of one run.
#[derive(Serialize, Debug, Clone)]
pub struct Report {
    /// The schedule's name (or the file it was read from).
    pub schedule: String,
    /// Its seed: the same seed makes the same faults.
    pub seed: u64,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Data shards per chunk.
    pub k: u8,
    /// Parity shards per chunk.
    pub m: u8,
    /// Seconds the workload ran.
    pub duration_s: f64,
    /// The faults, in order.
    pub faults: Vec<FaultEvent>,
    /// Writes the cluster acknowledged.
    pub acked: u64,
    /// Their bytes.
    pub acked_bytes: u64,
    /// Writes the cluster refused.
    pub refused: u64,
    /// Objects deleted to keep within the budget (not checked afterwards).
    pub deleted: u64,
    /// Garbage collection rounds ordered during the run.
    pub gc_rounds: u64,
    /// Shards of acknowledged writes that did not reach their nodes (down, stopped,
    /// cut off or full) and were handed to repair as owed.
    pub shards_owed: u64,
    /// Writes acknowledged although more than m nodes were down from their start to
    /// their answer (`kill-beyond-m`): must be none.
    pub acked_beyond_m: Vec<Finding>,
    /// Reads made while the run went on.
    pub reads: u64,
    /// Of those, reads that failed (reported, not judged: with up to m nodes down every
    /// read should succeed, and the tests hold kill-m to it).
    pub read_errors: u64,
    /// Entries the checker read back exactly.
    pub verified: u64,
    /// Their bytes.
    pub verified_bytes: u64,
    /// Acknowledged entries that could not be read back: must be 0.
    pub lost: u64,
    /// Reads (during the run or by the checker) that returned other bytes than were
    /// written: must be 0.
    pub corrupt_returned: u64,
    /// The lost entries.
    pub lost_entries: Vec<Finding>,
    /// The entries read back wrong.
    pub corrupt_entries: Vec<Finding>,
    /// Nodes that died although no fault held them down.
    pub crashed_nodes: Vec<u64>,
    /// Seconds from every fault healed at the end to repair having caught up.
    pub full_health_s: f64,
    /// Chunks the census counts unreadable (fewer than k shards) once repair caught up
    /// at the end. Not a loss by itself: a refused write can leave chunks with fewer
    /// than k shards, which nothing references and garbage collection deletes; the
    /// checker's reads of every acknowledged write are what prove nothing was lost.
    pub unreadable_chunks: u64,
    /// Acknowledged bytes per second while no fault was held (MiB/s).
    pub throughput_fault_free: Option<f64>,
    /// Acknowledged bytes per second while faults were held (MiB/s).
    pub throughput_during_faults: Option<f64>,
    /// The second as a share of the first.
    pub throughput_share: Option<f64>,
    /// What the fault proxy did, when the cluster was behind it.
    pub network: Option<Counts>,
    /// The file workload through the mount, unless it was left out.
    pub files: Option<FilesReport>,
    /// Whether the metadata group's replicas ended with the same namespace.
    pub meta_replicas: MetaAgreement,
    /// The run was ended early by SIGINT or SIGTERM (what it did was still checked).
    pub interrupted: bool,
    /// Nothing lost, nothing wrong returned, nothing acknowledged beyond m, no node
    /// crashed by itself, the metadata replicas alike.
    pub passed: bool,
}

/// The metadata group's replicas at the end of a run, once the workload stopped.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaAgreement {
    /// Replicas asked.
    pub replicas: usize,
    /// Whether every one applied the same last index and has the same namespace
    /// digest.
    pub agree: bool,
    /// The index they applied (when they agree), or each replica's answer.
    pub detail: String,
}

/// The file workload's part of a report.
#[derive(Serialize, Debug, Clone)]
pub struct FilesReport {
    /// File ops the mount answered.
    pub ops: u64,
    /// File ops that failed (their files unsettled until written whole again).
    pub failed: u64,
    /// What the file checker found.
    pub outcome: FileOutcome,
}

impl Report {
    /// Whether the run showed nothing wrong.
    pub fn judge(&mut self) {
        let (files_lost, files_corrupt) = self
            .files
            .as_ref()
            .map_or((0, 0), |f| (f.outcome.lost.len(), f.outcome.corrupt.len()));
        self.lost = (self.lost_entries.len() + files_lost) as u64;
        self.corrupt_returned = (self.corrupt_entries.len() + files_corrupt) as u64;
        self.passed = self.lost == 0
            && self.corrupt_returned == 0
            && self.acked_beyond_m.is_empty()
            && self.crashed_nodes.is_empty()
            && self.meta_replicas.agree;
    }

    /// The report as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "hive-chaos: schedule {}, seed {}, {} nodes {}+{}, {:.1} s{}",
            self.schedule,
            self.seed,
            self.nodes,
            self.k,
            self.m,
            self.duration_s,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "faults: {}", self.faults.len());
        for f in &self.faults {
            let repaired = f.repaired_s.map_or(String::new(), |r| {
                format!(
                    "; full health {:.1}s later ({} shards rebuilt)",
                    r - f.healed_s,
                    f.rebuilt
                )
            });
            let _ = writeln!(
                out,
                "  {:>6.1}s to {:>6.1}s  {:<10} nodes {:?}  {}{repaired}",
                f.at_s,
                f.healed_s,
                f.kind.name(),
                f.nodes,
                f.detail
            );
        }
        let _ = writeln!(
            out,
            "writes: {} acknowledged ({}), {} refused; {} shards owed to repair; {} deleted, {} garbage collection rounds",
            self.acked,
            bytes(self.acked_bytes),
            self.refused,
            self.shards_owed,
            self.deleted,
            self.gc_rounds
        );
        let _ = writeln!(
            out,
            "reads during the run: {} ({} failed)",
            self.reads, self.read_errors
        );
        let _ = writeln!(
            out,
            "checked: {} acknowledged writes not deleted read back exactly ({})",
            self.verified,
            bytes(self.verified_bytes)
        );
        render_findings(&mut out, "lost", &self.lost_entries);
        render_findings(&mut out, "corrupt_returned", &self.corrupt_entries);
        if let Some(files) = &self.files {
            let _ = writeln!(
                out,
                "files through the mount: {} ops answered, {} failed",
                files.ops, files.failed
            );
            out.push_str(&files.outcome.render());
        }
        if !self.acked_beyond_m.is_empty() {
            render_findings(
                &mut out,
                "acknowledged while more than m nodes were down",
                &self.acked_beyond_m,
            );
        }
        let _ = writeln!(
            out,
            "full health {:.1}s after the last fault was healed; the census counts {} chunks with fewer than k shards (garbage of deleted and refused writes included)",
            self.full_health_s, self.unreadable_chunks
        );
        let _ = writeln!(
            out,
            "metadata replicas: {} {}: {}",
            self.meta_replicas.replicas,
            if self.meta_replicas.agree {
                "alike"
            } else {
                "NOT alike"
            },
            self.meta_replicas.detail
        );
        if !self.crashed_nodes.is_empty() {
            let _ = writeln!(
                out,
                "nodes that died by themselves: {:?}",
                self.crashed_nodes
            );
        }
        if let Some(n) = &self.network {
            let _ = writeln!(
                out,
                "fault proxy: {} packets relayed, {} dropped by faults, {} duplicated, {} held back, {} lost to full queues",
                n.sent, n.dropped, n.duplicated, n.delayed, n.overflowed
            );
        }
        let mib = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} MiB/s"));
        let _ = writeln!(
            out,
            "throughput: {} without faults, {} while they were held{}",
            mib(self.throughput_fault_free),
            mib(self.throughput_during_faults),
            self.throughput_share
                .map_or(String::new(), |s| format!(" ({s:.2})"))
        );
        let _ = writeln!(out, "{}", if self.passed { "PASSED" } else { "FAILED" });
        out
    }
}

/// Appends `label: count` and a line per finding to `out`.
pub fn render_findings(out: &mut String, label: &str, findings: &[Finding]) {
    let _ = writeln!(out, "{label}: {}", findings.len());
    for f in findings {
        let _ = writeln!(out, "  write {} (object {}): {}", f.op, f.object, f.reason);
    }
}

/// Acknowledged MiB/s outside the windows `held` (ms from the start) and inside them,
/// over a run of `end_ms`: each write counts where it was answered, and writes answered
/// after the end (while the workload was stopping) not at all.
pub fn throughput(
    entries: &[Entry],
    held: &[(u64, u64)],
    end_ms: u64,
) -> (Option<f64>, Option<f64>) {
    let inside = |ms: u64| held.iter().any(|(a, b)| (*a..*b).contains(&ms));
    let held_ms: u64 = held.iter().map(|(a, b)| b.saturating_sub(*a)).sum();
    let free_ms = end_ms.saturating_sub(held_ms);
    let (mut during, mut outside) = (0u64, 0u64);
    for e in entries
        .iter()
        .filter(|e| e.refused.is_none() && e.answered_ms <= end_ms)
    {
        if inside(e.answered_ms) {
            during += e.len;
        } else {
            outside += e.len;
        }
    }
    let rate = |bytes: u64, ms: u64| {
        (ms > 0).then(|| bytes as f64 / (1 << 20) as f64 / (ms as f64 / 1000.0))
    };
    (rate(outside, free_ms), rate(during, held_ms))
}
