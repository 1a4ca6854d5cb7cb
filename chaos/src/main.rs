//! `hive-chaos`: break a local cluster on purpose and prove that nothing acknowledged
//! was lost. See the crate's documentation (src/lib.rs) and ARCHITECTURE.md.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use hive_chaos::run::{LEDGER_FILE, Options, run};
use hive_chaos::{checker, files, ledger};
use hive_client::local_cluster;

const SCHEDULES: &str = "Schedules (--schedule):
  kill-m         SIGKILL m nodes (one step in four SIGTERM, which drains), hold 3-8 s,
                 restart them; again until the time is up
  stop-m         SIGSTOP m nodes (hung: connections open, nothing answers), hold, SIGCONT
  bitrot         damage shards in the store files of m nodes (bit flips, zeroed blocks,
                 destroyed record headers, erased records), found through the store's
                 own format reader; reads must refuse the damage, repair replaces it
  kill-beyond-m  SIGKILL m + 1 nodes once for 12 s: writes must be refused, and
                 everything acknowledged before must read back once they return
  full-disk      fill the stores of m nodes with shards nothing refers to until they
                 refuse more (store full), hold, then wait until garbage collection
                 and reclaim have freed them
  flaky-network  the packets of m nodes, both ways and with everyone, delayed (up to
                 80 ms, with jitter), dropped (up to 10 %), duplicated (up to 5 %) and
                 reordered (up to 20 %), amounts drawn each step; hold, then let pass
  partition      cut m nodes off from everyone, from the clients only, or from the
                 other nodes only (drawn each step); hold, then let pass
  disk-error     make the next fdatasync or write of m nodes' stores fail (drawn each
                 step; needs a hive-node built with --features faults, never for
                 production): each node must stop itself (fail-stop); restart them
  kill-mount     SIGKILL the mount process the file workload writes through, hold,
                 mount again: every file fsynced before must read back
  meta-crash     SIGKILL whichever replica leads the metadata group when the step
                 starts, hold, restart it and wait until every replica has caught up;
                 then SIGKILL the map authority and delete or damage its map file,
                 hold, restart it: it must serve the map at its epoch again, from the
                 metadata group's copy; the two in turn until the time is up (needs 3
                 or more metadata replicas)
  random         kills, stops, bitrot, flaky networks, partitions and mount kills in a
                 seeded mix, each on one to m of the same m victims (no chunk ever has
                 more than m bad shards)
  none           no faults: the workload and the checker alone

A schedule file (--schedule-file) lists steps run in order, and again from the first
unless repeat = false:

  repeat = true
  [[step]]
  fault = \"kill\"     # kill, stop, bitrot, fill, flaky, partition, disk-error, kill-mount,
                     # meta-kill, map-loss
  nodes = 2          # how many nodes, drawn by the seed; more than m needs beyond_m = true
                     # (none for kill-mount, meta-kill and map-loss, which find their
                     # target)
  hold = \"5s\"

Network faults act on real packets: a run whose schedule has them starts its cluster
behind the fault proxy, a UDP relay that every QUIC packet between nodes, and between
clients and nodes, passes through (so it needs a --cluster directory without a
cluster, and cannot --keep it).

Faults hit the nodes other than the map authority and the metadata replicas (nodes 1
to 3 of a local cluster of three or more), at most m at once unless the schedule says
otherwise; meta-crash hits the metadata leader or the map authority alone. After every run the metadata
replicas must end alike (the same index applied, the same namespace digest). The same seed
gives the same faults on the same nodes at the same steps, and the same data.

The workload writes objects (1 KiB to 4 MiB, half text, half random) through the
client library and records each answer in a ledger (one JSON line per write:
object id, length, BLAKE3, times, or why it was refused), while a reader reads
acknowledged objects back. A file writer works through a FUSE mount of the default
volume (unless --no-mount): it creates, overwrites, appends to, truncates, rewrites,
renames and unlinks files, and records each change once fsync returned, and each
rename and unlink once it returned. After the run every fault is healed and the
checker reads every acknowledged write back, and every file at its last name (names
renamed away or unlinked must be gone). The run fails (exit status 1) if any was lost or read
back wrong (a fsynced file included), if a write was acknowledged while more than m nodes were down, or if a
node died by itself. Ctrl-C (SIGINT) or SIGTERM ends a run early: the fault held is
healed, and what was done is checked and reported; a second one exits at once.";

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
        #[command(flatten)]
        options: Options,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
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
        Command::Run { options, json } => {
            let seed = options.seed();
            eprintln!("hive-chaos: seed {seed}");
            let report = run(&options, seed)?;
            hive_client::output::print(&report.render());
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
            hive_client::output::print(&outcome.render());
            // Files are read through a mount of their own, if the ledger has any.
            let files = if lines.iter().any(|l| matches!(l, ledger::Line::File(_))) {
                let mount = files::Mount::start(&cluster)?;
                let checked = files::check(mount.dir(), &lines);
                mount.unmount()?;
                hive_client::output::print(&checked.render());
                Some(checked)
            } else {
                None
            };
            if let Some(path) = json {
                let both = serde_json::json!({ "objects": outcome, "files": files });
                std::fs::write(&path, serde_json::to_vec_pretty(&both)?)?;
            }
            Ok(outcome.lost.is_empty()
                && outcome.corrupt.is_empty()
                && files.is_none_or(|f| f.lost.is_empty() && f.corrupt.is_empty()))
        }
    }
}
