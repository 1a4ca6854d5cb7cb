//! `hive-node`: a HiveFS storage node.

mod config;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hive_actors::{ShardActor, shard_service};
use hive_nvme::{FormatOptions, Store};
use hive_wire::NodeId;
use hive_wire::net::rustls_pki_types::CertificateDer;
use hive_wire::net::rustls_pki_types::pem::PemObject;
use hive_wire::net::tls::Revocations;
use hive_wire::net::{Credentials, Identity, Server, identity_of};

use crate::config::Config;

/// How long a node waits, on SIGTERM, for requests in flight to be answered.
const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// How often a node looks at its revocation list file for new entries.
const REVOCATION_RELOAD: Duration = Duration::from_secs(2);
/// Tokio worker threads for networking: the shard executor has its own thread.
const NETWORK_THREADS: usize = 2;

/// Runs a HiveFS storage node.
#[derive(Parser)]
#[command(name = "hive-node", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes an empty shard store on the configured file or device (all data on it is
    /// lost).
    Format {
        /// The node's TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Serves the shard store over QUIC with mutual TLS until SIGTERM or SIGINT, then
    /// drains requests in flight, closes the store and exits 0.
    Run {
        /// The node's TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Format { config } => format(&config),
        Command::Run { config } => run(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hive-node: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn format(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    let mut options = FormatOptions::new(NodeId(config.node_id));
    options.size = config.store_size;
    if let Some(segment) = config.segment_size {
        options.segment_size = segment;
    }
    let sb = Store::format(&config.store_path, &options)?;
    eprintln!(
        "hive-node: formatted {} for node {}: {} segments of {} bytes",
        config.store_path.display(),
        NodeId(config.node_id),
        sb.segment_count,
        sb.segment_size
    );
    Ok(())
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// The node's credentials, checked to name this node.
fn credentials(config: &Config) -> Result<(CertificateDer<'static>, Credentials)> {
    let ca = CertificateDer::from_pem_slice(read(&config.ca, "CA certificate")?.as_bytes())
        .with_context(|| format!("tls.ca: {} is not a PEM certificate", config.ca.display()))?;
    let cert = CertificateDer::from_pem_slice(read(&config.cert, "node certificate")?.as_bytes())
        .with_context(|| {
        format!(
            "tls.cert: {} is not a PEM certificate",
            config.cert.display()
        )
    })?;
    let key = rcgen::KeyPair::from_pem(&read(&config.key, "node key")?)
        .with_context(|| format!("tls.key: {} is not a PEM private key", config.key.display()))?;
    let me = Identity::node(NodeId(config.node_id));
    let named = identity_of(&cert).context("tls.cert")?;
    if named != me {
        bail!("tls.cert names {named}, but node_id says this is {me}");
    }
    Ok((ca, Credentials::new(cert, &key)))
}

fn run(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    let node = NodeId(config.node_id);
    let (ca, me) = credentials(&config)?;
    let revocations = match &config.revoked {
        Some(list) => Revocations::parse(&read(list, "revocation list")?)
            .with_context(|| format!("tls.revoked: {}", list.display()))?,
        None => Revocations::default(),
    };
    let (actor, actor_thread) = ShardActor::start(config.store_path.clone(), node, config.cpu)
        .with_context(|| format!("opening the store {}", config.store_path.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(NETWORK_THREADS)
        .enable_all()
        .build()
        .context("starting the network runtime")?;
    runtime.block_on(async move {
        if let Some(list) = config.revoked.clone() {
            tokio::spawn(watch_revocations(list, revocations.clone()));
        }
        let server = Server::bind(config.listen, &ca, &me, revocations, shard_service(actor))?;
        eprintln!("hive-node {node}: listening on {}", server.local_addr());
        wait_for_signal().await?;
        eprintln!("hive-node {node}: draining");
        server.shutdown(DRAIN_GRACE).await;
        anyhow::Ok(())
    })?;
    drop(runtime);
    // Every handle to the actor is gone with the server: it closes the store.
    actor_thread.join();
    eprintln!("hive-node {node}: stopped");
    Ok(())
}

/// Applies identities added to the revocation list file while the node runs: they are
/// refused from their next request on (`hive cert revoke` takes effect without a
/// restart). A file that cannot be read or parsed is reported and retried.
async fn watch_revocations(path: PathBuf, live: Revocations) {
    let mut seen = None;
    let mut ticker = tokio::time::interval(REVOCATION_RELOAD);
    loop {
        ticker.tick().await;
        // Modification time and length together: a rewrite within one timestamp tick
        // still shows as a change.
        let modified = std::fs::metadata(&path)
            .and_then(|m| Ok((m.modified()?, m.len())))
            .ok();
        if modified.is_none() || modified == seen {
            continue;
        }
        match std::fs::read_to_string(&path).map(|t| Revocations::parse(&t)) {
            Ok(Ok(list)) => {
                for identity in list.list() {
                    if !live.is_revoked(&identity) {
                        eprintln!("revocation: {identity} refused from now on");
                        live.revoke(identity);
                    }
                }
                seen = modified;
            }
            Ok(Err(err)) => eprintln!("revocation: list {} unreadable: {err}", path.display()),
            Err(err) => eprintln!("revocation: reading {}: {err}", path.display()),
        }
    }
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
