//! The named schedules, schedules written in a TOML file, and the plan of faults each
//! makes from a seed: the same seed gives the same faults on the same nodes with the
//! same hold times, step after step.
//!
//! A schedule file lists steps, run in order (and again from the first when
//! `repeat`, the default, is true):
//!
//! ```toml
//! repeat = true        # start over after the last step (default)
//! beyond_m = false     # allow steps on more than m nodes (default false)
//!
//! [[step]]
//! fault = "kill"       # kill, stop, bitrot, fill, flaky, partition, disk-error,
//!                      # kill-mount, meta-kill or map-loss (these three hit no
//!                      # drawn node: leave nodes out)
//! nodes = 2            # how many nodes, drawn by the seed
//! hold = "5s"          # how long before it is healed
//!
//! [[step]]
//! fault = "stop"
//! nodes = 1
//! hold = "10s"
//! ```

use std::time::Duration;

use std::path::Path;

use anyhow::{Context, Result, bail};
use hive_testkit::Rng;
use hive_wire::NodeId;
use serde::{Deserialize, Serialize};

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
    /// Fill the stores of m nodes with shards nothing refers to until they refuse
    /// more (StoreFull), hold, then wait until garbage collection and reclaim have
    /// freed them.
    FullDisk,
    /// Make the network of m nodes flaky (delay, jitter, loss, duplication and
    /// reordering of their packets, both ways, with everyone), hold, heal.
    FlakyNetwork,
    /// Partition m nodes: from everyone, from the clients only, or from the other
    /// nodes only (drawn each step), hold, heal.
    Partition,
    /// Make the next write or fdatasync of m nodes' stores fail (a hive-node built
    /// with fault hooks): each must stop itself (fail-stop); restart them.
    DiskError,
    /// SIGKILL the mount process while files are written through it, hold, mount
    /// again: everything fsynced before must read back.
    KillMount,
    /// SIGKILL the metadata group's leader (whichever replica leads when the step
    /// starts), hold, restart it and wait until it has caught up; then SIGKILL the
    /// map authority and delete or damage its map file, hold, restart it: it must
    /// take the group's copy of the map. The two in turn, again and again. Needs a
    /// group of three or more replicas.
    MetaCrash,
    /// Set the weight of m nodes to 0 (their placement slots move to the other nodes,
    /// whose census copies the shards while reads look where the earlier placement put
    /// them), hold, set it back to 1 (the slots return); again and again. Needs at
    /// least k + 2m nodes (`--nodes`), so k + m are left in placement.
    Rebalance,
    /// Re-encode the default volume (the one the mount writes) into one data shard
    /// fewer (`hive volume set --k`), hold, and back: its chunks are stored anew in
    /// each class while the workload reads and writes them; again and again.
    Reencode,
    /// Kills, stops, bitrot, flaky networks and partitions in a seeded mix, each on
    /// one to m of the same m victims, so no chunk ever has more than m bad shards
    /// whatever repair has done.
    Random,
}

impl Schedule {
    /// The name `--schedule` takes.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::None => "none",
            Schedule::KillM => "kill-m",
            Schedule::StopM => "stop-m",
            Schedule::Bitrot => "bitrot",
            Schedule::KillBeyondM => "kill-beyond-m",
            Schedule::FullDisk => "full-disk",
            Schedule::FlakyNetwork => "flaky-network",
            Schedule::Partition => "partition",
            Schedule::DiskError => "disk-error",
            Schedule::KillMount => "kill-mount",
            Schedule::MetaCrash => "meta-crash",
            Schedule::Rebalance => "rebalance",
            Schedule::Reencode => "reencode",
            Schedule::Random => "random",
        }
    }

    /// Whether it kills the mount.
    pub fn needs_mount(self) -> bool {
        matches!(self, Schedule::KillMount | Schedule::Random)
    }

    /// Whether its faults include network ones, made by the fault proxy.
    pub fn needs_proxy(self) -> bool {
        matches!(
            self,
            Schedule::FlakyNetwork | Schedule::Partition | Schedule::Random
        )
    }
}

/// What one step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL, then restart.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Stop,
    /// Damage shards on disk (not healed by the tool: the cluster must cope).
    Bitrot,
    /// Fill the store with unreferenced shards until it is full; healed by garbage
    /// collection and reclaim.
    Fill,
    /// Delay, jitter, drop, duplicate and reorder the nodes' packets (the fault
    /// proxy), then let them pass again.
    Flaky,
    /// Block the nodes' packets to and from everyone, the clients or the other nodes
    /// (the fault proxy), then let them pass again.
    Partition,
    /// Make the next write or fdatasync of the nodes' stores fail (fault hooks): each
    /// node must stop itself; then restart.
    DiskError,
    /// SIGKILL the mount process (no node), then mount again.
    KillMount,
    /// SIGKILL the metadata group's leader (the node found when the step starts),
    /// then restart it and wait until the group has a leader and it has caught up.
    MetaKill,
    /// SIGKILL the map authority and delete or damage its map file (drawn), then
    /// restart it: its map must come back at the epoch it had, with every node, from
    /// the metadata group's copy.
    MapLoss,
    /// Set the nodes' placement weight to 0 (`hive node set`), then back to 1: their
    /// slots move away and back, and rebalance moves the shards each time.
    Reweigh,
    /// Re-encode the default volume into another class (no node), then back.
    Reencode,
}

impl FaultKind {
    /// Its name, as schedule files and reports write it.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Stop => "stop",
            FaultKind::Bitrot => "bitrot",
            FaultKind::Fill => "fill",
            FaultKind::Flaky => "flaky",
            FaultKind::Partition => "partition",
            FaultKind::DiskError => "disk-error",
            FaultKind::KillMount => "kill-mount",
            FaultKind::MetaKill => "meta-kill",
            FaultKind::MapLoss => "map-loss",
            FaultKind::Reweigh => "reweigh",
            FaultKind::Reencode => "reencode",
        }
    }

    /// Whether its node is found when the step starts rather than drawn by the plan.
    pub fn finds_its_node(self) -> bool {
        matches!(
            self,
            FaultKind::KillMount | FaultKind::MetaKill | FaultKind::MapLoss | FaultKind::Reencode
        )
    }

    /// Whether the fault proxy makes it.
    pub fn is_network(self) -> bool {
        matches!(self, FaultKind::Flaky | FaultKind::Partition)
    }
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

/// A schedule file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default = "yes")]
    repeat: bool,
    #[serde(default)]
    beyond_m: bool,
    step: Vec<FileStep>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStep {
    fault: FaultKind,
    #[serde(default)]
    nodes: usize,
    hold: String,
}

/// The steps of a schedule file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleFile {
    /// Start over after the last step.
    pub repeat: bool,
    /// Steps may hit more than m nodes.
    pub beyond_m: bool,
    /// Each step: the fault, how many nodes, the hold.
    pub steps: Vec<(FaultKind, usize, Duration)>,
}

impl ScheduleFile {
    /// Reads and checks the schedule file at `path` for `candidates` fault targets and
    /// a class with `m` parity shards.
    pub fn load(path: &Path, candidates: usize, m: u8) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the schedule {}", path.display()))?;
        Self::parse(&text, candidates, m)
            .with_context(|| format!("in the schedule {}", path.display()))
    }

    /// Checks a schedule file's text (see the module's documentation).
    pub fn parse(text: &str, candidates: usize, m: u8) -> Result<Self> {
        let spec: FileSpec = toml::from_str(text)?;
        if spec.step.is_empty() {
            bail!("no [[step]]: a schedule needs at least one");
        }
        let mut steps = Vec::with_capacity(spec.step.len());
        for (n, step) in spec.step.iter().enumerate() {
            let at = format!("step {}", n + 1);
            let hold = hive_wire::units::parse_duration(&step.hold)
                .with_context(|| format!("{at}: hold {:?}", step.hold))?;
            if hold.is_zero() {
                bail!("{at}: hold must be longer than 0");
            }
            if step.fault.finds_its_node() {
                if step.nodes != 0 {
                    bail!(
                        "{at}: {} hits {}, not a drawn node: nodes = 0, or leave it out",
                        step.fault.name(),
                        match step.fault {
                            FaultKind::KillMount => "the mount",
                            FaultKind::MapLoss => "the map authority",
                            _ => "the metadata group's leader",
                        }
                    );
                }
            } else if step.nodes == 0 || step.nodes > candidates {
                bail!(
                    "{at}: nodes must be 1 to {candidates} (the nodes other than the control plane's)"
                );
            }
            if step.nodes > usize::from(m) && !spec.beyond_m {
                bail!(
                    "{at}: {} nodes is more than m = {m}; set beyond_m = true to mean it",
                    step.nodes
                );
            }
            steps.push((step.fault, step.nodes, hold));
        }
        Ok(Self {
            repeat: spec.repeat,
            beyond_m: spec.beyond_m,
            steps,
        })
    }

    /// Whether a step is a network fault, made by the fault proxy.
    pub fn needs_proxy(&self) -> bool {
        self.steps.iter().any(|s| s.0.is_network())
    }

    /// Whether a step kills the mount.
    pub fn needs_mount(&self) -> bool {
        self.steps.iter().any(|s| s.0 == FaultKind::KillMount)
    }

    /// Whether a step needs a hive-node built with fault hooks.
    pub fn needs_fault_hooks(&self) -> bool {
        self.steps.iter().any(|s| s.0 == FaultKind::DiskError)
    }

    /// Whether a step kills the metadata group's leader or needs the group's copy of
    /// the map.
    pub fn needs_meta_group(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.0, FaultKind::MetaKill | FaultKind::MapLoss))
    }
}

/// The steps a schedule makes, one after another, from its seed.
pub struct Plan {
    schedule: Schedule,
    file: Option<ScheduleFile>,
    rng: Rng,
    candidates: Vec<NodeId>,
    m: usize,
    steps: usize,
}

impl Plan {
    /// The plan of `schedule` over `candidates` (the nodes faults may hit) for a class
    /// with `m` parity shards.
    pub fn new(schedule: Schedule, seed: u64, candidates: &[NodeId], m: u8) -> Self {
        let fixed = matches!(schedule, Schedule::Bitrot | Schedule::Random);
        Self::with(schedule, None, seed, candidates, m, fixed)
    }

    /// The plan of a schedule file's steps over `candidates`. A file with bitrot keeps
    /// to m victims for the run, as `random` does, unless it says `beyond_m`.
    pub fn from_file(file: ScheduleFile, seed: u64, candidates: &[NodeId], m: u8) -> Self {
        let fixed = !file.beyond_m && file.steps.iter().any(|s| s.0 == FaultKind::Bitrot);
        Self::with(Schedule::None, Some(file), seed, candidates, m, fixed)
    }

    fn with(
        schedule: Schedule,
        file: Option<ScheduleFile>,
        seed: u64,
        candidates: &[NodeId],
        m: u8,
        fixed_victims: bool,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let mut candidates = candidates.to_vec();
        if fixed_victims {
            // The same m victims all run long: damage stays until repair finds it, so
            // at most m holders of any chunk are ever hit.
            rng.shuffle(&mut candidates);
            candidates.truncate(usize::from(m));
        }
        Self {
            schedule,
            file,
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
        if let Some(file) = &self.file {
            let len = file.steps.len();
            if self.steps >= len && !file.repeat {
                return None;
            }
            let (kind, n, hold) = file.steps[self.steps % len];
            self.steps += 1;
            let nodes = if kind.finds_its_node() {
                Vec::new()
            } else {
                self.draw(n)
            };
            return Some(Step { kind, nodes, hold });
        }
        let step = match self.schedule {
            Schedule::None => return None,
            Schedule::KillBeyondM if self.steps > 0 => return None,
            Schedule::KillBeyondM => Step {
                kind: FaultKind::Kill,
                nodes: self.draw(self.m + 1),
                hold: BEYOND_HOLD,
            },
            Schedule::KillM
            | Schedule::StopM
            | Schedule::FullDisk
            | Schedule::FlakyNetwork
            | Schedule::Partition
            | Schedule::DiskError
            | Schedule::Rebalance => Step {
                kind: match self.schedule {
                    Schedule::KillM => FaultKind::Kill,
                    Schedule::StopM => FaultKind::Stop,
                    Schedule::FullDisk => FaultKind::Fill,
                    Schedule::FlakyNetwork => FaultKind::Flaky,
                    Schedule::Partition => FaultKind::Partition,
                    Schedule::Rebalance => FaultKind::Reweigh,
                    _ => FaultKind::DiskError,
                },
                nodes: self.draw(self.m),
                hold: self.hold(),
            },
            Schedule::Bitrot => Step {
                kind: FaultKind::Bitrot,
                nodes: self.candidates.clone(),
                hold: self.hold(),
            },
            Schedule::KillMount | Schedule::Reencode => Step {
                kind: if self.schedule == Schedule::KillMount {
                    FaultKind::KillMount
                } else {
                    FaultKind::Reencode
                },
                nodes: Vec::new(),
                hold: self.hold(),
            },
            Schedule::MetaCrash => Step {
                kind: if self.steps.is_multiple_of(2) {
                    FaultKind::MetaKill
                } else {
                    FaultKind::MapLoss
                },
                nodes: Vec::new(),
                hold: self.hold(),
            },
            Schedule::Random => {
                let kinds = [
                    FaultKind::Kill,
                    FaultKind::Stop,
                    FaultKind::Bitrot,
                    FaultKind::Flaky,
                    FaultKind::Partition,
                    FaultKind::KillMount,
                ];
                let kind = kinds[self.rng.below(kinds.len())];
                let n = 1 + self.rng.below(self.candidates.len().max(1));
                let nodes = self.draw(n);
                Step {
                    kind,
                    nodes: if kind == FaultKind::KillMount {
                        Vec::new()
                    } else {
                        nodes
                    },
                    hold: self.hold(),
                }
            }
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
        for schedule in [
            Schedule::KillM,
            Schedule::StopM,
            Schedule::Bitrot,
            Schedule::FlakyNetwork,
            Schedule::Partition,
            Schedule::DiskError,
            Schedule::KillMount,
            Schedule::MetaCrash,
            Schedule::Rebalance,
            Schedule::Random,
        ] {
            let a: Vec<Step> = Plan::new(schedule, 7, &nodes(), 2).take(20).collect();
            let b: Vec<Step> = Plan::new(schedule, 7, &nodes(), 2).take(20).collect();
            assert_eq!(a, b, "{schedule:?}");
            let c: Vec<Step> = Plan::new(schedule, 8, &nodes(), 2).take(20).collect();
            assert_ne!(a, c, "{schedule:?}: another seed, another plan");
        }
    }

    #[test]
    fn schedule_files_are_checked_and_followed() {
        let text = "repeat = false\n[[step]]\nfault = \"kill\"\nnodes = 2\nhold = \"5s\"\n[[step]]\nfault = \"bitrot\"\nnodes = 1\nhold = \"1s\"\n";
        let file = ScheduleFile::parse(text, 5, 2).expect("a valid schedule");
        let steps: Vec<Step> = Plan::from_file(file, 9, &nodes(), 2).collect();
        assert_eq!(steps.len(), 2, "no repeat: {steps:?}");
        assert_eq!(steps[0].kind, FaultKind::Kill);
        assert_eq!(steps[0].nodes.len(), 2);
        assert_eq!(steps[0].hold, Duration::from_secs(5));
        assert_eq!(steps[1].kind, FaultKind::Bitrot);
        let repeating = ScheduleFile::parse(&text.replace("false", "true"), 5, 2).expect("valid");
        let steps: Vec<Step> = Plan::from_file(repeating, 9, &nodes(), 2)
            .take(40)
            .collect();
        assert_eq!(steps.len(), 40);
        let victims: std::collections::BTreeSet<NodeId> =
            steps.iter().flat_map(|s| s.nodes.clone()).collect();
        assert_eq!(victims.len(), 2, "with bitrot, m victims: {steps:?}");
        for (bad, why) in [
            (
                "[[step]]\nfault = \"kill\"\nnodes = 3\nhold = \"5s\"\n",
                "more than m",
            ),
            (
                "[[step]]\nfault = \"kill\"\nnodes = 0\nhold = \"5s\"\n",
                "nodes must be",
            ),
            (
                "[[step]]\nfault = \"kill\"\nnodes = 1\nhold = \"0s\"\n",
                "longer than 0",
            ),
            (
                "[[step]]\nfault = \"melt\"\nnodes = 1\nhold = \"1s\"\n",
                "unknown variant",
            ),
            ("repeat = true\n", "step"),
            (
                "[[step]]\nfault = \"kill\"\nnodes = 1\nhold = \"1s\"\nspeed = 2\n",
                "unknown field",
            ),
        ] {
            let err = ScheduleFile::parse(bad, 5, 2).expect_err(bad);
            assert!(format!("{err:#}").contains(why), "{bad}: {err:#}");
        }
        let beyond = "beyond_m = true\n[[step]]\nfault = \"kill\"\nnodes = 3\nhold = \"5s\"\n";
        assert!(
            !ScheduleFile::parse(beyond, 5, 2)
                .expect("valid")
                .needs_proxy()
        );
        for fault in ["flaky", "partition"] {
            let net = format!("[[step]]\nfault = \"{fault}\"\nnodes = 2\nhold = \"5s\"\n");
            let net = ScheduleFile::parse(&net, 5, 2).expect(fault);
            assert!(net.needs_proxy(), "{fault} is made by the proxy");
            assert!(!net.needs_fault_hooks());
        }
        let disk = "[[step]]\nfault = \"disk-error\"\nnodes = 1\nhold = \"5s\"\n";
        let disk = ScheduleFile::parse(disk, 5, 2).expect("disk-error");
        assert!(disk.needs_fault_hooks() && !disk.needs_proxy() && !disk.needs_mount());
        let mount = "[[step]]\nfault = \"kill-mount\"\nhold = \"5s\"\n";
        let mount = ScheduleFile::parse(mount, 5, 2).expect("kill-mount");
        assert!(mount.needs_mount());
        let steps: Vec<Step> = Plan::from_file(mount, 1, &nodes(), 2).take(3).collect();
        assert!(steps.iter().all(|s| s.nodes.is_empty()), "{steps:?}");
        let bad = "[[step]]\nfault = \"kill-mount\"\nnodes = 1\nhold = \"5s\"\n";
        let err = ScheduleFile::parse(bad, 5, 2).expect_err("kill-mount with nodes");
        assert!(format!("{err:#}").contains("the mount"), "{err:#}");
        let meta = "[[step]]\nfault = \"meta-kill\"\nhold = \"5s\"\n[[step]]\nfault = \"kill\"\nnodes = 1\nhold = \"5s\"\n";
        let meta = ScheduleFile::parse(meta, 5, 2).expect("meta-kill");
        assert!(meta.needs_meta_group() && !meta.needs_mount());
        let steps: Vec<Step> = Plan::from_file(meta, 1, &nodes(), 2).take(4).collect();
        assert!(
            steps[0].nodes.is_empty(),
            "found when the step starts: {steps:?}"
        );
        assert_eq!(steps[1].nodes.len(), 1, "{steps:?}");
        let bad = "[[step]]\nfault = \"meta-kill\"\nnodes = 1\nhold = \"5s\"\n";
        let err = ScheduleFile::parse(bad, 5, 2).expect_err("meta-kill with nodes");
        assert!(format!("{err:#}").contains("leader"), "{err:#}");
        let map = "[[step]]\nfault = \"map-loss\"\nhold = \"5s\"\n";
        let map = ScheduleFile::parse(map, 5, 2).expect("map-loss");
        assert!(
            map.needs_meta_group(),
            "the map comes back from the group's copy"
        );
        let bad = "[[step]]\nfault = \"map-loss\"\nnodes = 2\nhold = \"5s\"\n";
        let err = ScheduleFile::parse(bad, 5, 2).expect_err("map-loss with nodes");
        assert!(format!("{err:#}").contains("map authority"), "{err:#}");
    }

    #[test]
    fn meta_crash_kills_the_leader_and_loses_the_map_in_turn() {
        let kinds: Vec<FaultKind> = Plan::new(Schedule::MetaCrash, 5, &nodes(), 2)
            .take(4)
            .map(|step| {
                assert!(step.nodes.is_empty(), "found when it starts: {step:?}");
                step.kind
            })
            .collect();
        assert_eq!(
            kinds,
            [
                FaultKind::MetaKill,
                FaultKind::MapLoss,
                FaultKind::MetaKill,
                FaultKind::MapLoss
            ]
        );
    }

    #[test]
    fn at_most_m_nodes_are_hit_at_once_unless_the_schedule_says_otherwise() {
        for schedule in [
            Schedule::KillM,
            Schedule::StopM,
            Schedule::Bitrot,
            Schedule::FullDisk,
            Schedule::FlakyNetwork,
            Schedule::Partition,
            Schedule::DiskError,
            Schedule::Rebalance,
        ] {
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
        let random: Vec<Step> = Plan::new(Schedule::Random, 3, &nodes(), 2)
            .take(60)
            .collect();
        let victims: std::collections::BTreeSet<NodeId> =
            random.iter().flat_map(|s| s.nodes.clone()).collect();
        assert_eq!(victims.len(), 2, "random keeps to m victims: {random:?}");
        for kind in [
            FaultKind::Kill,
            FaultKind::Stop,
            FaultKind::Bitrot,
            FaultKind::Flaky,
            FaultKind::Partition,
            FaultKind::KillMount,
        ] {
            assert!(
                random.iter().any(|s| s.kind == kind),
                "{kind:?} in {random:?}"
            );
        }
        let beyond: Vec<Step> = Plan::new(Schedule::KillBeyondM, 3, &nodes(), 2).collect();
        assert_eq!(beyond.len(), 1);
        assert_eq!(beyond[0].nodes.len(), 3, "m + 1 nodes");
        assert_eq!(Plan::new(Schedule::None, 3, &nodes(), 2).count(), 0);
    }
}
