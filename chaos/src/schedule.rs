//! The named schedules, and the plan of faults each makes from a seed: the same seed
//! gives the same faults on the same nodes with the same hold times, step after step.

use std::time::Duration;

use hive_testkit::Rng;
use hive_wire::NodeId;
use serde::Serialize;

/// Shortest time a fault is held before it is healed.
pub const HOLD_MIN: Duration = Duration::from_secs(3);
/// Longest time a fault is held before it is healed.
pub const HOLD_MAX: Duration = Duration::from_secs(8);
/// How long `kill-beyond-m` keeps more than m nodes down: long enough for writes to
/// be tried and refused.
pub const BEYOND_HOLD: Duration = Duration::from_secs(12);
/// Shards damaged on each bitrot victim at each step.
pub const BITROT_SHARDS: usize = 8;

/// A named schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// No faults: the workload and the checker alone (a baseline, or a ledger to test
    /// the checker with).
    None,
    /// SIGKILL m nodes, hold, restart them; again and again.
    KillM,
    /// SIGSTOP m nodes (a hung node: its connections stay open, nothing answers),
    /// hold, SIGCONT them; again and again.
    StopM,
    /// Damage shards in the store files of m nodes (bit flips, zeroed payloads,
    /// destroyed record headers), found through the store's own format reader.
    Bitrot,
    /// SIGKILL m + 1 nodes once: writes must be refused, not acknowledged, and
    /// everything acknowledged before must read back once they return.
    KillBeyondM,
}

/// What one step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL, then restart.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Stop,
    /// Damage shards on disk (not healed by the tool: the cluster must cope).
    Bitrot,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The fault.
    pub kind: FaultKind,
    /// The nodes it hits.
    pub nodes: Vec<NodeId>,
    /// How long it is held before healing.
    pub hold: Duration,
}

/// The steps a schedule makes, one after another, from its seed.
pub struct Plan {
    schedule: Schedule,
    rng: Rng,
    candidates: Vec<NodeId>,
    m: usize,
    steps: usize,
}

impl Plan {
    /// The plan of `schedule` over `candidates` (the nodes faults may hit) for a class
    /// with `m` parity shards.
    pub fn new(schedule: Schedule, seed: u64, candidates: &[NodeId], m: u8) -> Self {
        let mut rng = Rng::new(seed);
        let mut candidates = candidates.to_vec();
        if schedule == Schedule::Bitrot {
            // The same m victims all run long: at most m holders of any chunk are damaged.
            rng.shuffle(&mut candidates);
            candidates.truncate(usize::from(m));
        }
        Self {
            schedule,
            rng,
            candidates,
            m: usize::from(m),
            steps: 0,
        }
    }

    /// `n` of the candidates, drawn without repeats.
    fn draw(&mut self, n: usize) -> Vec<NodeId> {
        let mut nodes = self.candidates.clone();
        self.rng.shuffle(&mut nodes);
        nodes.truncate(n);
        nodes.sort();
        nodes
    }

    fn hold(&mut self) -> Duration {
        let spread = (HOLD_MAX - HOLD_MIN).as_millis() as usize;
        HOLD_MIN + Duration::from_millis(self.rng.below(spread + 1) as u64)
    }
}

impl Iterator for Plan {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        let step = match self.schedule {
            Schedule::None => return None,
            Schedule::KillBeyondM if self.steps > 0 => return None,
            Schedule::KillBeyondM => Step {
                kind: FaultKind::Kill,
                nodes: self.draw(self.m + 1),
                hold: BEYOND_HOLD,
            },
            Schedule::KillM => Step {
                kind: FaultKind::Kill,
                nodes: self.draw(self.m),
                hold: self.hold(),
            },
            Schedule::StopM => Step {
                kind: FaultKind::Stop,
                nodes: self.draw(self.m),
                hold: self.hold(),
            },
            Schedule::Bitrot => Step {
                kind: FaultKind::Bitrot,
                nodes: self.candidates.clone(),
                hold: self.hold(),
            },
        };
        self.steps += 1;
        Some(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<NodeId> {
        (2..=6).map(NodeId).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        for schedule in [Schedule::KillM, Schedule::StopM, Schedule::Bitrot] {
            let a: Vec<Step> = Plan::new(schedule, 7, &nodes(), 2).take(20).collect();
            let b: Vec<Step> = Plan::new(schedule, 7, &nodes(), 2).take(20).collect();
            assert_eq!(a, b, "{schedule:?}");
            let c: Vec<Step> = Plan::new(schedule, 8, &nodes(), 2).take(20).collect();
            assert_ne!(a, c, "{schedule:?}: another seed, another plan");
        }
    }

    #[test]
    fn at_most_m_nodes_are_hit_at_once_unless_the_schedule_says_otherwise() {
        for schedule in [Schedule::KillM, Schedule::StopM, Schedule::Bitrot] {
            for step in Plan::new(schedule, 3, &nodes(), 2).take(50) {
                assert_eq!(step.nodes.len(), 2, "{schedule:?}: {step:?}");
                assert!((HOLD_MIN..=HOLD_MAX).contains(&step.hold), "{step:?}");
            }
        }
        let bitrot: Vec<Step> = Plan::new(Schedule::Bitrot, 3, &nodes(), 2)
            .take(5)
            .collect();
        assert!(
            bitrot.windows(2).all(|w| w[0].nodes == w[1].nodes),
            "bitrot keeps to the same m victims: {bitrot:?}"
        );
        let beyond: Vec<Step> = Plan::new(Schedule::KillBeyondM, 3, &nodes(), 2).collect();
        assert_eq!(beyond.len(), 1);
        assert_eq!(beyond[0].nodes.len(), 3, "m + 1 nodes");
        assert_eq!(Plan::new(Schedule::None, 3, &nodes(), 2).count(), 0);
    }
}
