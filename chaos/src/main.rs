//! `hive-chaos`: break a local cluster on purpose and prove that nothing acknowledged
//! was lost. See the crate's documentation (src/lib.rs) and ARCHITECTURE.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use hive_chaos::run::{LEDGER_FILE, Options, run};
use hive_chaos::schedule::Schedule;
use hive_chaos::{checker, ledger};
use hive_client::local_cluster;

const SCHEDULES: &str = "Schedules (--schedule):
  kill-m         SIGKILL m nodes, hold 3-8 s, restart them; again until the time is up
  stop-m         SIGSTOP m nodes (hung: connections open, nothing answers), hold, SIGCONT
  bitrot         damage shards in the store files of m nodes (bit flips, zeroed blocks,
                 destroyed record headers, erased records), found through the store's
                 own format reader; reads must refuse the damage, repair replaces it
  kill-beyond-m  SIGKILL m + 1 nodes once for 12 s: writes must be refused, and
                 everything acknowledged before must read back once they return
  full-disk      fill the stores of m nodes with shards nothing refers to until they
                 refuse more (store full), hold, then wait until garbage collection
                 and reclaim have freed them
  random         kills, stops and bitrot in a seeded mix, each on one to m of the same
                 m victims (no chunk ever has more than m bad shards)
  none           no faults: the workload and the checker alone

A schedule file (--schedule-file) lists steps run in order, and again from the first
unless repeat = false:

  repeat = true
  [[step]]
  fault = \"kill\"     # kill, stop, bitrot or fill
  nodes = 2          # how many nodes, drawn by the seed; more than m needs beyond_m = true
  hold = \"5s\"

Faults hit the nodes other than the map authority and the metadata node (node 1 of a
local cluster), at most m at once unless the schedule says otherwise. The same seed
gives the same faults on the same nodes at the same steps, and the same data.

The workload writes objects (1 KiB to 4 MiB, half text, half random) through the
client library and records each answer in a ledger (one JSON line per write:
object id, length, BLAKE3, times, or why it was refused), while a reader reads
acknowledged objects back. After the run every fault is healed and the checker reads
every acknowledged write back. The run fails (exit status 1) if any was lost or read
back wrong, if a write was acknowledged while more than m nodes were down, or if a
node died by itself.";

/// Break a local HiveFS cluster on purpose and prove that nothing acknowledged was lost.
#[derive(Parser)]
#[command(name = "hive-chaos", version, after_help = SCHEDULES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a workload against a local cluster while a schedule's faults are injected,
    /// heals them, checks every acknowledged write, and reports.
    #[command(after_help = SCHEDULES)]
    Run {
        /// The local cluster's directory; a cluster is started there (and stopped at the
        /// end, unless --keep) if it holds none.
        #[arg(long)]
        cluster: PathBuf,
        /// The faults.
        #[arg(long, value_enum, default_value_t = Schedule::KillM)]
        schedule: Schedule,
        /// A TOML file of steps to use instead of a named schedule (see below).
        #[arg(long, conflicts_with = "schedule")]
        schedule_file: Option<PathBuf>,
        /// Seeds the faults and the data (default: from the clock; printed either way).
        #[arg(long)]
        seed: Option<u64>,
        /// How long the workload runs, like 60s or 30m (it ends sooner once --ops writes
        /// are made: a long run at 40 MiB/s wants --ops 200000 or more).
        #[arg(long, default_value = "60s", value_parser = duration)]
        duration: Duration,
        /// Most writes the workload makes (at most 1,000,000).
        #[arg(long, default_value_t = 100_000)]
        ops: u64,
        /// Bytes of objects the workload keeps, like 512MiB: past it the oldest are
        /// deleted [default: a fifth of the cluster's space after its class's overhead].
        #[arg(long, value_parser = bytes)]
        live_bytes: Option<u64>,
        /// Where the ledger goes [default: chaos-ledger.jsonl in the cluster's directory].
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Leave a cluster this run started running at the end.
        #[arg(long)]
        keep: bool,
        /// The shape of a cluster started here.
        #[command(flatten)]
        shape: local_cluster::Shape,
    },
    /// Reads back every acknowledged write of a ledger and reports what was lost or
    /// read back wrong (exit status 1 if anything was).
    Check {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// The ledger [default: chaos-ledger.jsonl in the cluster's directory].
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// Also write the findings as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn duration(text: &str) -> Result<Duration> {
    let d = hive_wire::units::parse_duration(text)?;
    if d.is_zero() {
        bail!("must be longer than 0");
    }
    Ok(d)
}

fn bytes(text: &str) -> Result<u64> {
    Ok(hive_wire::units::parse_bytes(text)?)
}

fn main() -> ExitCode {
    match execute(Cli::parse().command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("hive-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the command; whether it found everything as it should be.
fn execute(command: Command) -> Result<bool> {
    match command {
        Command::Run {
            cluster,
            schedule,
            schedule_file,
            seed,
            duration,
            ops,
            live_bytes,
            ledger,
            json,
            keep,
            shape,
        } => {
            let seed = seed.unwrap_or_else(clock_seed);
            eprintln!("hive-chaos: seed {seed}");
            let report = run(&Options {
                cluster,
                shape,
                schedule,
                schedule_file,
                seed,
                duration,
                ops,
                live_bytes,
                ledger,
                keep,
            })?;
            print!("{}", report.render());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
            }
            Ok(report.passed)
        }
        Command::Check {
            cluster,
            ledger,
            json,
        } => {
            let path = ledger.unwrap_or_else(|| cluster.join(LEDGER_FILE));
            let lines = ledger::read(&path)?;
            let runtime = local_cluster::runtime()?;
            let outcome = runtime.block_on(async {
                let (store, _) = local_cluster::connect(&cluster).await?;
                checker::check(&store, &lines).await
            })?;
            print!("{}", outcome.render());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_vec_pretty(&outcome)?)?;
            }
            Ok(outcome.lost.is_empty() && outcome.corrupt.is_empty())
        }
    }
}

/// A seed from the clock, for runs that name none.
fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
