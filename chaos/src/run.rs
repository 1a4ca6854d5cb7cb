//! One chaos run: the cluster (started here unless one is given), the workload on its
//! runtime, the schedule's faults injected and healed one after another on this
//! thread, then every fault healed, the checker, and the report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hive_client::local_cluster::{self, GcTimes, Shape};
use hive_codec::{Chunker, ChunkerConfig};
use hive_testkit::Rng;
use hive_wire::NodeId;

use crate::checker;
use crate::faults::Target;
use crate::files::{Files, Mount};
use crate::ledger::{Entry, Ledger, Line};
use crate::proxy::Proxy;
use crate::report::{FaultEvent, FilesReport, Finding, Report, throughput};
use crate::schedule::{FaultKind, Plan, Schedule, ScheduleFile};
use crate::workload::{Clients, Workload};

/// The ledger's file in the cluster's directory, unless another is named.
pub const LEDGER_FILE: &str = "chaos-ledger.jsonl";
/// Fault-free time at the start of a run (at most a quarter of it): the throughput
/// the faults are compared with.
pub const WARMUP: Duration = Duration::from_secs(10);
/// Fault-free time after each fault is healed.
pub const GAP: Duration = Duration::from_secs(3);
/// How long the workload may take to finish its last writes and reads once told to.
pub const STOP_WAIT: Duration = Duration::from_secs(120);
/// Garbage collection of a cluster started here: as `hive cluster up` by default.
const GC: GcTimes = GcTimes {
    grace: Duration::from_secs(30),
    interval: Duration::from_secs(600),
};
/// The objects a run keeps take at most this share of the cluster's space (after the
/// class's overhead): room for the garbage between collection rounds, and for repair.
const LIVE_SHARE: u64 = 5;
/// The smallest metadata group that outlives its leader: a majority is left.
const MIN_META_REPLICAS: usize = 3;
/// How often a wait looks whether the workload is done.
const IDLE_STEP: Duration = Duration::from_millis(100);

/// What to run (the options of `hive-chaos run`).
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// The local cluster's directory; a cluster is started there (and stopped at the
    /// end, unless --keep) if it holds none.
    #[arg(long)]
    pub cluster: PathBuf,
    /// The faults.
    #[arg(long, value_enum, default_value_t = Schedule::KillM)]
    pub schedule: Schedule,
    /// A TOML file of steps to use instead of a named schedule (see below).
    #[arg(long, conflicts_with = "schedule")]
    pub schedule_file: Option<PathBuf>,
    /// Seeds the faults and the data (default: from the clock; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// How long the workload runs, like 60s or 30m (it ends sooner once --ops writes
    /// are made: a long run at 40 MiB/s wants --ops 200000 or more).
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub duration: Duration,
    /// Most writes the workload makes (at most 1,000,000).
    #[arg(long, default_value_t = 100_000)]
    pub ops: u64,
    /// Bytes of objects the workload keeps, like 512MiB: past it the oldest are
    /// deleted [default: a fifth of the cluster's space after its class's overhead].
    #[arg(long, value_parser = bytes)]
    pub live_bytes: Option<u64>,
    /// Where the ledger goes [default: chaos-ledger.jsonl in the cluster's directory].
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Leave a cluster this run started running at the end (not one behind the fault
    /// proxy, which ends with the run).
    #[arg(long)]
    pub keep: bool,
    /// Leave out the file workload (and its FUSE mount): objects only.
    #[arg(long)]
    pub no_mount: bool,
    /// The shape of a cluster started here.
    #[command(flatten)]
    pub shape: Shape,
}

fn positive_duration(text: &str) -> Result<Duration> {
    let d = hive_wire::units::parse_duration(text)?;
    if d.is_zero() {
        bail!("must be longer than 0");
    }
    Ok(d)
}

fn bytes(text: &str) -> Result<u64> {
    Ok(hive_wire::units::parse_bytes(text)?)
}

impl Options {
    /// The seed: the one given, or one from the clock.
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
    }

    /// Whether the schedule has network faults, which need the fault proxy; a
    /// schedule file is read for it (and checked in full once the cluster is known).
    fn needs_proxy(&self) -> Result<bool> {
        Ok(match &self.schedule_file {
            Some(path) => ScheduleFile::load(
                path,
                self.shape.nodes.saturating_sub(1) as usize,
                self.shape.m,
            )?
            .needs_proxy(),
            None => self.schedule.needs_proxy(),
        })
    }
}

/// Runs `options` with `seed`: the report, whether the run passed or not. A cluster
/// started here for a schedule with network faults is started behind the fault proxy
/// ([`crate::proxy`]), which runs as long as the run does.
pub fn run(options: &Options, seed: u64) -> Result<Report> {
    let dir = &options.cluster;
    let runtime = local_cluster::runtime()?;
    let interrupted = watch_interrupts(&runtime);
    let started_here = !dir.join("cluster.toml").exists();
    let mut proxy = None;
    if started_here {
        let behind_proxy = options.needs_proxy()?;
        if behind_proxy && options.keep {
            bail!(
                "--keep: this schedule's network faults need a cluster behind the fault \
                 proxy, which ends with the run; such a cluster cannot be kept"
            );
        }
        eprintln!(
            "hive-chaos: starting a {}-node {}+{} local cluster in {}{}",
            options.shape.nodes,
            options.shape.k,
            options.shape.m,
            dir.display(),
            if behind_proxy {
                ", behind the fault proxy"
            } else {
                ""
            }
        );
        if behind_proxy {
            let mut relay = Proxy::new(runtime.handle().clone(), seed);
            local_cluster::up_relayed(dir, &options.shape, GC, Some(&mut relay))?;
            proxy = Some(Arc::new(relay));
        } else {
            local_cluster::up(dir, &options.shape, GC)?;
        }
    }
    // Stopped however the run ends, a panic included, before the proxy and the
    // runtime go.
    let _stopper = (started_here && !options.keep).then(|| Stopper(dir));
    run_on(options, seed, &runtime, (proxy, &interrupted))
}

/// Set by the first SIGINT or SIGTERM: the run stops injecting, heals every fault, and
/// checks and reports what it has. A second one exits at once, leaving everything as
/// it is.
fn watch_interrupts(runtime: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            eprintln!("hive-chaos: cannot watch for SIGINT and SIGTERM; an interrupt ends the run at once");
            return;
        };
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if set.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "hive-chaos: interrupted again: exiting now; the cluster and the mount are left as they are"
                );
                std::process::exit(130);
            }
            eprintln!(
                "hive-chaos: interrupted: healing every fault, then checking and reporting (interrupt again to exit at once)"
            );
        }
    });
    flag
}

/// Stops the local cluster in its directory when dropped.
struct Stopper<'a>(&'a Path);

impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        if let Err(e) = local_cluster::down(self.0) {
            eprintln!("hive-chaos: stopping the cluster: {e:#}");
        }
    }
}

fn run_on(
    options: &Options,
    seed: u64,
    runtime: &tokio::runtime::Runtime,
    (proxy, interrupted): (Option<Arc<Proxy>>, &AtomicBool),
) -> Result<Report> {
    let dir = &options.cluster;
    let scheme = local_cluster::scheme(dir)?;
    let (k, m) = (scheme.k(), scheme.m());
    let mut target = Target::new(dir, runtime.handle().clone(), proxy.clone());
    let all = target.nodes()?;
    let control = local_cluster::control_nodes(dir)?;
    // The control plane's node is not a fault target of these schedules: losing it is
    // a metadata crash, which needs a replicated control plane to survive.
    let candidates: Vec<NodeId> = all
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !control.contains(n))
        .collect();
    // A schedule file is checked before anything starts.
    let (plan, schedule, needs) = plan(options, seed, &candidates, m)?;
    if needs.hooks {
        crate::faults::check_fault_hooks()?;
    }
    if needs.mount && options.no_mount {
        bail!("{schedule} kills the mount: leave out --no-mount");
    }
    let replicas = local_cluster::meta_group(dir)?.len();
    if needs.meta_group && replicas < MIN_META_REPLICAS {
        bail!(
            "{schedule} kills the metadata group's leader, which only a group of \
             {MIN_META_REPLICAS} or more replicas survives, and this cluster has {replicas}: \
             start one with --meta-replicas 3 (and 3 nodes or more)"
        );
    }
    if needs.network && proxy.is_none() {
        bail!(
            "{schedule}: network faults need the fault proxy, which stands only in front of \
             a cluster the run starts itself: give --cluster a directory without one"
        );
    }
    let (clients, capacity) = runtime.block_on(connect(dir))?;
    let budget = options
        .live_bytes
        .unwrap_or(capacity / u64::from(k + m) * u64::from(k) / LIVE_SHARE);
    let ledger_path = options
        .ledger
        .clone()
        .unwrap_or_else(|| dir.join(LEDGER_FILE));
    let workload = Workload::new(seed, options.ops, budget, Ledger::create(&ledger_path)?);
    // The file workload's mount, unmounted however the run ends (before the cluster
    // is stopped).
    let mount = if options.no_mount {
        None
    } else {
        Some(Mount::start(dir)?)
    };
    let _unmount = mount.clone().map(Unmount);
    target = target.with_mount(mount.clone());
    let files = mount
        .as_ref()
        .map(|m| Files::new(seed, m.dir(), workload.started()))
        .transpose()?;
    let tasks = {
        let _entered = runtime.enter();
        workload.spawn(&clients)
    };
    let writer = files.as_ref().map(|f| {
        let (files, workload) = (f.clone(), workload.clone());
        std::thread::spawn(move || files.run(&|line| workload.record(line)))
    });
    let faults = inject_all(&target, &workload, plan, (options, seed), interrupted);
    let end_ms = workload.now_ms();
    let crashed = wind_down(
        runtime,
        &target,
        (&workload, tasks),
        (files.as_deref(), writer),
        faults.as_ref().err(),
    )?;
    let faults = faults?;
    let healed = Instant::now();
    let repaired = target.wait_repaired()?;
    let full_health_s = healed.elapsed().as_secs_f64();
    let lines = workload.lines();
    let live = crate::ledger::live(&lines)?;
    eprintln!(
        "hive-chaos: faults healed; checking the {} acknowledged writes not deleted",
        live.len()
    );
    let outcome = runtime.block_on(checker::check(&clients.store, &lines))?;
    let meta_replicas = target.meta_agreement()?;
    let file_outcome = mount.as_ref().map(|m| {
        let outcome = crate::files::check(m.dir(), &lines);
        let (ops, failed) = files.as_ref().map_or((0, 0), |f| f.counts());
        FilesReport {
            ops,
            failed,
            outcome,
        }
    });
    let entries: Vec<Entry> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Write(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    let held: Vec<(u64, u64)> = faults
        .iter()
        // Faults that leave the object writers alone are not held against them.
        .filter(|f| !matches!(f.kind, FaultKind::Bitrot | FaultKind::KillMount))
        .map(|f| (ms(f.at_s), ms(f.healed_s)))
        .collect();
    let (free, during) = throughput(&entries, &held, end_ms);
    let (reads, read_errors) = workload.reads();
    let acked: Vec<_> = entries.iter().filter(|e| e.refused.is_none()).collect();
    // A write read back wrong during the run and by the checker is one finding.
    let mut corrupt_entries = workload.wrong_reads();
    for finding in outcome.corrupt {
        if !corrupt_entries.iter().any(|f| f.op == finding.op) {
            corrupt_entries.push(finding);
        }
    }
    let mut report = Report {
        schedule,
        seed,
        nodes: all.len(),
        k,
        m,
        duration_s: end_ms as f64 / 1000.0,
        acked: acked.len() as u64,
        acked_bytes: acked.iter().map(|e| e.len).sum(),
        refused: (entries.len() - acked.len()) as u64,
        deleted: lines
            .iter()
            .filter(|l| matches!(l, Line::Delete(_)))
            .count() as u64,
        gc_rounds: workload.gc_rounds(),
        shards_owed: workload.owed(),
        acked_beyond_m: acked_beyond_m(&entries, &faults, all.len(), k),
        reads,
        read_errors,
        verified: outcome.verified,
        verified_bytes: outcome.bytes,
        lost: 0,
        corrupt_returned: 0,
        lost_entries: outcome.lost,
        corrupt_entries,
        crashed_nodes: crashed.iter().map(|n| n.0).collect(),
        full_health_s,
        unreadable_chunks: repaired.unreadable,
        throughput_fault_free: free,
        throughput_during_faults: during,
        throughput_share: free.zip(during).map(|(f, d)| d / f),
        faults,
        network: proxy.map(|p| p.counts()),
        files: file_outcome,
        meta_replicas,
        interrupted: interrupted.load(Ordering::SeqCst),
        passed: false,
    };
    report.judge();
    Ok(report)
}

/// What a schedule's faults need besides the cluster.
struct Needs {
    /// The fault proxy.
    network: bool,
    /// A hive-node with fault hooks.
    hooks: bool,
    /// The file workload's mount.
    mount: bool,
    /// A metadata group that survives its leader's death.
    meta_group: bool,
}

/// The plan of the run's schedule, the schedule's name, and what its faults need.
fn plan(
    options: &Options,
    seed: u64,
    candidates: &[NodeId],
    m: u8,
) -> Result<(Plan, String, Needs)> {
    Ok(match &options.schedule_file {
        Some(path) => {
            let file = ScheduleFile::load(path, candidates.len(), m)?;
            let needs = Needs {
                network: file.needs_proxy(),
                hooks: file.needs_fault_hooks(),
                mount: file.needs_mount(),
                meta_group: file.needs_meta_group(),
            };
            (
                Plan::from_file(file, seed, candidates, m),
                format!("file {}", path.display()),
                needs,
            )
        }
        None => (
            Plan::new(options.schedule, seed, candidates, m),
            options.schedule.name().to_string(),
            Needs {
                network: options.schedule.needs_proxy(),
                hooks: options.schedule == Schedule::DiskError,
                mount: options.schedule.needs_mount(),
                meta_group: options.schedule == Schedule::MetaCrash,
            },
        ),
    })
}

/// The file writer's thread.
type FileWriter = std::thread::JoinHandle<Result<()>>;

/// Unmounts the file workload's mount when dropped, before the cluster is stopped.
struct Unmount(Arc<Mount>);

impl Drop for Unmount {
    fn drop(&mut self) {
        if let Err(e) = self.0.unmount() {
            eprintln!("hive-chaos: unmounting {}: {e:#}", self.0.dir().display());
        }
    }
}

/// Ends the run's faults and workload, whatever happened: every node back first (a
/// failed injection may have left some down or stopped), then the workload stopped
/// and its ledger synced. The nodes that had died by themselves.
fn wind_down(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    (workload, mut tasks): (&Workload, tokio::task::JoinSet<Result<()>>),
    (files, writer): (Option<&Files>, Option<FileWriter>),
    failed: Option<&anyhow::Error>,
) -> Result<Vec<NodeId>> {
    if let Some(e) = failed {
        eprintln!("hive-chaos: a fault failed ({e:#}); healing every node");
    }
    let healed = target.heal_all();
    workload.stop();
    if let Some(files) = files {
        files.stop();
    }
    let written = writer.map(|writer| {
        let until = Instant::now() + STOP_WAIT;
        while !writer.is_finished() && Instant::now() < until {
            std::thread::sleep(IDLE_STEP);
        }
        if !writer.is_finished() {
            anyhow::bail!("the file writer did not stop within {STOP_WAIT:?}");
        }
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the file writer panicked"))?
    });
    let stopped = runtime.block_on(async {
        tokio::time::timeout(STOP_WAIT, async {
            while let Some(task) = tasks.join_next().await {
                task.context("a workload task")??;
            }
            anyhow::Ok(())
        })
        .await
    });
    let synced = workload.sync_ledger();
    let crashed = healed?;
    stopped.with_context(|| format!("the workload did not stop within {STOP_WAIT:?}"))??;
    written.transpose().context("the file workload")?;
    synced?;
    Ok(crashed)
}

/// Seconds from a report back to milliseconds, as they were measured.
fn ms(seconds: f64) -> u64 {
    (seconds * 1000.0).round() as u64
}

/// The workload's clients, and the cluster's raw capacity.
async fn connect(dir: &Path) -> Result<(Clients, u64)> {
    let (store, authority) = local_cluster::connect(dir).await?;
    let status = local_cluster::admin(dir)?.status().await?;
    let capacity = status.nodes.iter().map(|n| n.store.capacity).sum();
    let clients = Clients {
        store,
        authority,
        meta: Arc::new(local_cluster::meta_client(dir, true)?),
        gc: Arc::new(local_cluster::gc_client(dir).await?),
        cluster: dir.to_path_buf(),
        chunker: Arc::new(Chunker::new(ChunkerConfig::default())?),
    };
    Ok((clients, capacity))
}

/// Injects the plan's faults one after another, each held and healed, until the
/// run's time or writes are spent; the faults made.
fn inject_all(
    target: &Target,
    workload: &Workload,
    plan: Plan,
    (options, seed): (&Options, u64),
    interrupted: &AtomicBool,
) -> Result<Vec<FaultEvent>> {
    let started = Instant::now();
    let done = || {
        started.elapsed() >= options.duration
            || workload.writes_done()
            || interrupted.load(Ordering::SeqCst)
    };
    let mut rng = Rng::new(seed ^ 0x6661_756c_7473);
    let mut events = Vec::new();
    idle(WARMUP.min(options.duration / 4), &done);
    for mut step in plan {
        if done() || started.elapsed() + step.hold >= options.duration {
            break;
        }
        let detail = target.inject(&mut step, &mut rng)?;
        let at = workload.now_ms();
        eprintln!(
            "hive-chaos: {:>6.1}s {} nodes {:?}: {detail}",
            at as f64 / 1000.0,
            step.kind.name(),
            step.nodes.iter().map(|n| n.0).collect::<Vec<_>>()
        );
        // A held fault is held for its time, whatever the workload does (an interrupt
        // heals it sooner).
        idle(step.hold, &|| interrupted.load(Ordering::SeqCst));
        let healing = workload.now_ms();
        target.heal(&step)?;
        let healed = workload.now_ms();
        // The next fault comes only once repair has caught up: a chunk written while
        // m nodes were down lacks those m shards until then, and another fault would
        // be more than m for it.
        let repaired = match step.kind {
            FaultKind::Bitrot => None,
            _ => Some(target.wait_repaired()?),
        };
        events.push(FaultEvent {
            kind: step.kind,
            nodes: step.nodes.iter().map(|n| n.0).collect(),
            at_s: at as f64 / 1000.0,
            healing_s: healing as f64 / 1000.0,
            healed_s: healed as f64 / 1000.0,
            repaired_s: repaired.map(|_| workload.now_ms() as f64 / 1000.0),
            rebuilt: repaired.map_or(0, |r| r.rebuilt),
            detail,
        });
        idle(GAP, &done);
    }
    while !done() {
        std::thread::sleep(IDLE_STEP);
    }
    Ok(events)
}

/// Waits `d`, or less if `done` comes true.
fn idle(d: Duration, done: &impl Fn() -> bool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !done() {
        std::thread::sleep(IDLE_STEP);
    }
}

/// Writes acknowledged although fewer than `k` of the cluster's `nodes` were up for
/// the whole of the write: from after the fault was in place to before its healing
/// began. (With more than k + m nodes, m + 1 down can leave k up for a chunk, and its
/// write is rightly acknowledged.)
fn acked_beyond_m(entries: &[Entry], faults: &[FaultEvent], nodes: usize, k: u8) -> Vec<Finding> {
    let windows: Vec<(u64, u64)> = faults
        .iter()
        .filter(|f| f.kind == FaultKind::Kill && nodes - f.nodes.len() < usize::from(k))
        .map(|f| (ms(f.at_s), ms(f.healing_s)))
        .collect();
    entries
        .iter()
        .filter(|e| e.refused.is_none())
        .filter(|e| {
            windows
                .iter()
                .any(|(from, to)| e.started_ms >= *from && e.answered_ms <= *to)
        })
        .map(|e| Finding {
            op: e.op,
            object: e.object.clone().unwrap_or_default(),
            reason: format!(
                "acknowledged at {:.1}s, started at {:.1}s, while fewer than {k} nodes were up",
                e.answered_ms as f64 / 1000.0,
                e.started_ms as f64 / 1000.0
            ),
        })
        .collect()
}
