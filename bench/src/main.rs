//! `hive-bench`: measures HiveFS against the baseline it is built on, in one run.
//!
//! Every suite times our code and its baseline (the raw crate, disk or filesystem)
//! interleaved in the same process, and reports the ratio oriented so that higher is
//! better for us.

mod measure;
mod report;
mod suites;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::measure::Rounds;
use crate::report::Report;

/// Benchmarks HiveFS side by side with its baselines.
///
/// Each result line names the benchmark, its unit, our figure, the baseline's figure
/// from the same run, and the ratio (ours / baseline for rates, baseline / ours for
/// latencies), so a ratio above 1 always means HiveFS is faster.
#[derive(Parser)]
#[command(name = "hive-bench", version)]
struct Cli {
    /// Print one JSON object per result line instead of a table.
    #[arg(long, global = true)]
    json: bool,

    /// Timed rounds per side; each side's figure is the median of its rounds.
    #[arg(long, global = true, default_value_t = 15, value_parser = clap::value_parser!(u32).range(3..=1000))]
    rounds: u32,

    /// Minimum milliseconds of work in one round; short operations repeat to fill it.
    #[arg(long, global = true, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    round_ms: u32,

    #[command(subcommand)]
    suite: Suite,
}

#[derive(Subcommand)]
enum Suite {
    /// The codec on 1 MiB chunks: Reed-Solomon encode and decode (vs raw
    /// reed-solomon-simd), BLAKE3 chunk ids (vs raw blake3), zstd (vs raw zstd), and the
    /// whole write pipeline on incompressible data (vs the same pipeline with
    /// compression off).
    Codec,
    /// Our QUIC transport against bare quinn with the same TLS configuration, on
    /// loopback: 256 KiB request/response on one and on eight streams, and 64-byte
    /// requests with 64 in flight.
    Net,
    /// The shard store against raw O_DIRECT I/O through io_uring on the same file
    /// system: 1 MiB durable appends (vs write + fdatasync), 4 KiB random gets at depth
    /// 32 (vs random reads), 4 KiB puts from 64 writers (vs a write + fdatasync loop),
    /// and index memory per entry (vs a 50-byte budget).
    Store {
        /// Directory for the store and raw files (up to a few GiB, sparse); put it on
        /// the drive you want measured.
        #[arg(long, default_value_os_t = suites::store::default_dir())]
        dir: std::path::PathBuf,
    },
    /// A whole cluster of hive-node processes (6 nodes, 4+2; started here unless
    /// --cluster names one) through the client library: a 1 GiB object put and got
    /// (vs writing it to a local file with fdatasync, and reading it with O_DIRECT),
    /// both against this machine's CPU ceiling from per-stage costs measured in the
    /// same run, and p99 chunk-put latency with one node stopped (vs none stopped).
    /// --rounds and --round-ms do not apply. Needs the hive and hive-node binaries next
    /// to this one.
    Cluster {
        /// Use the running local cluster in this directory ('hive cluster up --dir')
        /// instead of starting one; it is left running, and the benchmark's files
        /// (about 2.5 GiB at most) go there for as long as it runs.
        #[arg(long, conflicts_with = "dir")]
        cluster: Option<std::path::PathBuf>,
        /// Directory to start the cluster in, with the benchmark's files beside it
        /// (about 6 GiB at most, sparse stores); put it on the drive you want measured.
        #[arg(long, default_value_os_t = suites::store::default_dir())]
        dir: std::path::PathBuf,
    },
    /// How fast a cluster heals (8 nodes, 4+2, started here): the rate shards are
    /// rebuilt after a node is killed and marked out (vs a local sequential write of as
    /// many bytes with fdatasync), the p99 of 1 MiB chunk gets during that repair (vs
    /// with no repair), and one node's scrub rate at no limit (vs a raw O_DIRECT read
    /// of as many bytes of its store). --rounds and --round-ms do not apply. Needs the
    /// hive and hive-node binaries next to this one.
    Repair {
        /// Directory to start the cluster in (sparse stores, about 2 GiB written to
        /// each); put it on the drive you want measured.
        #[arg(long, default_value_os_t = suites::store::default_dir())]
        dir: std::path::PathBuf,
    },
    /// Growing a cluster (6 nodes, 4+2, started here, then a 7th added): the fraction
    /// of shards moved (vs the ideal 1/7), the rate they move at (vs a local
    /// sequential write of as many bytes with fdatasync), and the p99 of 1 MiB chunk
    /// gets while they move (vs before the join). --rounds and --round-ms do not apply.
    /// Needs the hive and hive-node binaries next to this one.
    Rebalance {
        /// Directory to start the cluster in (sparse stores, about 300 MiB written to
        /// each); put it on the drive you want measured.
        #[arg(long, default_value_os_t = suites::store::default_dir())]
        dir: std::path::PathBuf,
    },
    /// The replicated metadata group through a FUSE mount (two clusters of 4 nodes,
    /// 2+1, started here one after the other): empty files created per second with 3
    /// metadata replicas (vs the same with 1), from 4 threads and from 1, and seconds
    /// from killing the group's
    /// leader until a create succeeds again (vs a 5 s target). Needs root, /dev/fuse,
    /// and the hive and hive-node binaries next to this one.
    Meta {
        /// Directory to start the clusters in.
        #[arg(long, default_value_os_t = suites::store::default_dir())]
        dir: std::path::PathBuf,
    },
    /// A mounted volume against a local directory, the same workloads on both (6 nodes,
    /// 4+2, started here and mounted unless --dir names a mount): sequential 1 MiB
    /// writes and reads of a 1 GiB file, 4 KiB random O_DIRECT writes and reads from 4
    /// threads over 256 MiB, the p99 of a 4 KiB write + fsync, file creates, stats,
    /// renames, listings and unlinks from 4 threads, and 4-byte O_APPEND writes. --rounds and --round-ms do
    /// not apply. Needs root, /dev/fuse, and the hive and hive-node binaries next to
    /// this one (unless --dir is given).
    Fs {
        /// A mounted HiveFS volume to measure instead of starting a cluster; the
        /// suite's files go in a directory it makes there and removes after.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// A directory on the local file system for the baseline (about 1.3 GiB
        /// written, removed after).
        #[arg(long, default_value_os_t = suites::store::default_dir())]
        baseline_dir: std::path::PathBuf,
        /// Where to start the cluster when --dir is not given (sparse stores).
        #[arg(long, default_value_os_t = suites::store::default_dir())]
        cluster_dir: std::path::PathBuf,
        /// A short run (a 32 MiB file, a few hundred operations each): checks that the
        /// suite works, not the numbers.
        #[arg(long)]
        quick: bool,
    },
    /// Getting space back (6 nodes, 4+2, started here, 5 s grace): the rate a garbage
    /// collection round and reclaim free 1 GiB of unreferenced chunks (vs a local
    /// sequential write of as many bytes with fdatasync), and the p99 of 1 MiB chunk
    /// puts while they do (vs with no collection), and the space a tree of 3,000
    /// small files takes on the stores (vs each file compressed alone with zstd -3,
    /// times (k + m) / k). --rounds and --round-ms do not apply. Needs the hive and
    /// hive-node binaries next to this one.
    Gc {
        /// Directory to start the cluster in (sparse stores, about 1 GiB written to
        /// each); put it on the drive you want measured.
        #[arg(long, default_value_os_t = suites::store::default_dir())]
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rounds = Rounds::new(cli.rounds, cli.round_ms);
    let mut report = Report::new(cli.json);
    let result = match cli.suite {
        Suite::Codec => suites::codec::run(&rounds, &mut report),
        Suite::Net => suites::net::run(&rounds, &mut report),
        Suite::Store { dir } => suites::store::run(&rounds, &mut report, &dir),
        Suite::Cluster { cluster, dir } => {
            suites::cluster::run(&mut report, &suites::cluster::Options { cluster, dir })
        }
        Suite::Repair { dir } => suites::repair::run(&mut report, &dir),
        Suite::Rebalance { dir } => suites::rebalance::run(&mut report, &dir),
        Suite::Gc { dir } => suites::gc::run(&mut report, &dir),
        Suite::Meta { dir } => suites::meta::run(&mut report, &dir),
        Suite::Fs {
            dir,
            baseline_dir,
            cluster_dir,
            quick,
        } => suites::fs::run(
            &mut report,
            &suites::fs::Options {
                mount: dir,
                baseline_dir,
                cluster_dir,
                quick,
            },
        ),
    };
    report.finish();
    let _ = std::io::stdout().flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hive-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
