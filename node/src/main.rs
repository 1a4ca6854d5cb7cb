//! `hive-node`: a HiveFS storage node.

mod config;
mod ids;
mod metrics;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::sync::Arc;

use hive_actors::constants::{HEARTBEAT_TIMEOUT, SESSION_TICK};
use hive_actors::gc::{Collector, GcArgs, gc_service};
use hive_actors::group::Group;
use hive_actors::reserve::ReserveArgs;
use hive_actors::{
    Authority, AuthorityArgs, Child, DamageHints, FollowerArgs, HeartbeatArgs, MetaStore,
    NodeSupervisor, RepairArgs, RepairState, ScrubArgs, ShardActor, Shards, control_service,
    meta_service, route, run_repairer, shard_service,
};
use hive_meta::{Durability, Namespace};
use hive_nvme::{FormatOptions, Store};
use hive_wire::NodeId;
use hive_wire::net::control::{Control, ControlClient, MapMessage};
use hive_wire::net::enroll::{Enroller, enroll};
use hive_wire::net::gc::Gc;
use hive_wire::net::message::MessageSet;
use hive_wire::net::meta::{Meta, MetaClient, MetaRaft};
use hive_wire::net::pki::DEFAULT_CERT_VALIDITY;
use hive_wire::net::rustls_pki_types::CertificateDer;
use hive_wire::net::rustls_pki_types::pem::PemObject;
use hive_wire::net::shard_service::ShardService;
use hive_wire::net::tls::Revocations;
use hive_wire::net::{Client, Credentials, Identity, Role, Server, identity_of};
use hive_wire::net::{ClusterCa, TokenKey, TokenLedger};
use std::net::SocketAddr;
use tokio::sync::watch;

use crate::config::{Config, MetaConfig};

/// How long a node waits, on SIGTERM, for requests in flight to be answered.
const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// How often a node looks at its revocation list file for new entries.
const REVOCATION_RELOAD: Duration = Duration::from_secs(2);

/// Runs a HiveFS storage node.
/// The version `--version` prints; a chaos build says it has the fault hooks.
#[cfg(not(feature = "faults"))]
const VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(feature = "faults")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (with fault hooks)");

#[derive(Parser)]
#[command(name = "hive-node", version = VERSION)]
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
    /// Joins a cluster with a join token: makes this node's key, enrolls at the
    /// cluster's enrollment endpoint (checking it is the cluster the token names), and
    /// writes the certificate and key to the configuration's tls.cert and tls.key (and
    /// the CA certificate to tls.ca if that file does not exist yet). Prints the node id
    /// the cluster gave.
    Join {
        /// The node's TOML configuration.
        #[arg(long)]
        config: PathBuf,
        /// The token from 'hive token create --role node'.
        #[arg(long)]
        token: String,
        /// The enrollment endpoint, like 127.0.0.1:7500.
        #[arg(long)]
        enroll: SocketAddr,
    },
    /// Serves the shard store over QUIC with mutual TLS until SIGTERM or SIGINT, then
    /// drains requests in flight, closes the store and exits 0.
    Run {
        /// The node's TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Logs to stderr at the level `HIVE_LOG` names (error, warn, info, debug, trace;
/// default info).
fn init_logging() {
    use std::io::IsTerminal;
    let level = std::env::var("HIVE_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The Raft library narrates every election and startup at info: its warnings and
    // errors only, unless asked for debug or more.
    let raft_level = if level >= tracing::Level::DEBUG {
        level
    } else {
        level.min(tracing::Level::WARN)
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("openraft", raft_level);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr),
        )
        .with(filter)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Format { config } => format(&config),
        Command::Run { config } => run(&config),
        Command::Join {
            config,
            token,
            enroll,
        } => join(&config, &token, enroll),
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
    let (_, _, node) = credentials(&config)?;
    for store in &config.stores {
        let mut options = FormatOptions::new(node);
        options.size = store.size;
        if let Some(segment) = store.segment_size {
            options.segment_size = segment;
        }
        let sb = Store::format(&store.path, &options)?;
        eprintln!(
            "hive-node: formatted {} for node {}: {} segments of {} bytes",
            store.path.display(),
            node,
            sb.segment_count,
            sb.segment_size
        );
    }
    Ok(())
}

/// Writes a new file (never over an existing one) with `mode`, synced.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    hive_wire::files::write_new(path, contents, mode)
        .with_context(|| format!("writing {}", path.display()))
}

fn pem(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

fn join(path: &Path, token: &str, enroll_at: SocketAddr) -> Result<()> {
    let config = Config::load(path)?;
    for (file, key) in [(&config.cert, "tls.cert"), (&config.key, "tls.key")] {
        if file.exists() {
            bail!(
                "{key}: {} exists, so this node has joined already; remove its certificate and key to join again",
                file.display()
            );
        }
    }
    let key = rcgen::KeyPair::generate().context("generating the node's key")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the network runtime")?;
    let enrolled = runtime
        .block_on(enroll(enroll_at, token, &key))
        .with_context(|| format!("joining through {enroll_at}"))?;
    let me = enrolled.identity;
    if me.role != Role::Node {
        bail!(
            "the token made this a {me}, not a node; use a token from 'hive token create --role node'"
        );
    }
    if let Some(id) = config.node_id
        && id != me.id
    {
        bail!(
            "the cluster named this node {me}, but node_id says {}; remove node_id from the configuration",
            Identity::node(NodeId(id))
        );
    }
    if config.ca.exists() {
        let ca = CertificateDer::from_pem_slice(read(&config.ca, "CA certificate")?.as_bytes())
            .with_context(|| format!("tls.ca: {} is not a PEM certificate", config.ca.display()))?;
        if ca != enrolled.ca {
            bail!(
                "tls.ca: {} is another cluster's CA than the one this node joined",
                config.ca.display()
            );
        }
    } else {
        write_new(
            &config.ca,
            pem("CERTIFICATE", &enrolled.ca).as_bytes(),
            0o644,
        )?;
    }
    write_new(&config.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(
        &config.cert,
        pem("CERTIFICATE", &enrolled.cert).as_bytes(),
        0o644,
    )?;
    println!("{me}");
    eprintln!(
        "hive-node: joined as {me}; certificate valid until {}",
        hive_wire::net::token::utc(enrolled.not_after)
    );
    Ok(())
}

/// The enrollment endpoint, if the configuration asks for one.
fn enrollment_server(
    config: &Config,
    ca: &CertificateDer<'static>,
    me: &Credentials,
    revocations: &Revocations,
    node: NodeId,
    group: Option<(Arc<MetaClient>, Arc<MetaStore>)>,
) -> Result<Option<Server>> {
    let Some(e) = &config.enroll else {
        return Ok(None);
    };
    let authority = ClusterCa::from_pem(
        &read(&config.ca, "CA certificate")?,
        &read(&e.ca_key, "CA key")?,
    )
    .with_context(|| {
        format!(
            "enroll.ca_key: {} is not the key of tls.ca",
            e.ca_key.display()
        )
    })?;
    let token_key = TokenKey::from_hex(read(&e.token_key, "token key")?.trim())
        .with_context(|| format!("enroll.token_key: {}", e.token_key.display()))?;
    let ids = ids::Ids::open(e.ids.clone(), node.0)?;
    let ledger = TokenLedger::durable(e.used_tokens.clone())
        .with_context(|| format!("enroll.used_tokens: {}", e.used_tokens.display()))?;
    let mut enroller = Enroller::new(
        authority,
        token_key,
        ids::allocator(ids.clone()),
        DEFAULT_CERT_VALIDITY,
    )
    .with_ledger(ledger);
    if let Some((group, store)) = group {
        tracing::info!("enrollment: the metadata group admits tokens and gives ids");
        enroller = enroller.with_admit(ids::group_admit(group, store, ids));
    }
    let enroller = Arc::new(enroller);
    // Joiners pin the CA by fingerprint: the chain must carry it.
    let chained = Credentials {
        chain: me.chain.iter().cloned().chain([ca.clone()]).collect(),
        key: me.key.clone_key(),
    };
    let server = Server::bind_enrollment(
        e.listen,
        ca,
        &chained,
        revocations.clone(),
        enroller.handler(),
    )
    .with_context(|| format!("enroll.listen: binding {}", e.listen))?;
    tracing::info!("enrollment listening on {}", server.local_addr());
    Ok(Some(server))
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// The CA certificate, the node's credentials and its id (the one its certificate
/// names, which `node_id`, if given, must match).
fn credentials(config: &Config) -> Result<(CertificateDer<'static>, Credentials, NodeId)> {
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
    let named = identity_of(&cert).context("tls.cert")?;
    if named.role != Role::Node {
        bail!("tls.cert names {named}, which is not a node");
    }
    let node = NodeId(named.id);
    if let Some(id) = config.node_id
        && id != node.0
    {
        bail!(
            "tls.cert names {named}, but node_id says this is {}",
            Identity::node(NodeId(id))
        );
    }
    Ok((ca, Credentials::new(cert, &key), node))
}

fn run(path: &Path) -> Result<()> {
    tracing::info!(
        "hive-node starting (version {VERSION}) with {}",
        path.display()
    );
    let config = Config::load(path)?;
    let (ca, me, node) = credentials(&config)?;
    if let Some(cluster) = &config.cluster {
        cluster.check_for(node.0)?;
    }
    let revocations = match &config.revoked {
        Some(list) => Revocations::parse(&read(list, "revocation list")?)
            .with_context(|| format!("tls.revoked: {}", list.display()))?,
        None => Revocations::default(),
    };
    // One executor per store, each opened (recovered) before the node listens. Damage
    // found at open or by scrub is named on `damaged`, for the repairer.
    let (scrub, hints) = ScrubArgs::new(config.scrub_period);
    let mut actors = Vec::with_capacity(config.stores.len());
    let mut threads = Vec::with_capacity(config.stores.len());
    for store in &config.stores {
        let (actor, thread) = ShardActor::start(
            store.path.clone(),
            node,
            store.cpu,
            scrub.clone(),
            config.space,
        )
        .with_context(|| format!("opening the store {}", store.path.display()))?;
        actors.push(actor);
        threads.push(thread);
    }
    let actor = Shards::new(actors, scrub.orders.clone()).with_hints(scrub.damaged.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.network_threads)
        .enable_all()
        .build()
        .context("starting the network runtime")?;
    drop(scrub);
    let result = runtime.block_on(serve(config, node, ca, me, revocations, actor, hints));
    // Dropping the runtime drops every task and actor holding the shard actors: they
    // then close their stores.
    drop(runtime);
    for thread in threads {
        thread.join();
    }
    result?;
    tracing::info!("stopped");
    Ok(())
}

/// The replicas of the metadata group as configured: those named, or this node alone
/// (reached at `addr`).
fn group_replicas(
    meta: &MetaConfig,
    node: NodeId,
    addr: SocketAddr,
) -> std::collections::BTreeMap<u64, String> {
    let mut replicas = meta.replicas.clone();
    if replicas.is_empty() {
        replicas.insert(node.0, addr.to_string());
    }
    replicas
}

/// The replicas a client of the metadata group starts from (it follows redirects to
/// any others): the configured ones whose address parses.
fn meta_replicas(meta: &MetaConfig, node: NodeId, addr: SocketAddr) -> Vec<(NodeId, SocketAddr)> {
    group_replicas(meta, node, addr)
        .into_iter()
        .filter_map(|(id, a)| Some((NodeId(id), a.parse().ok()?)))
        .collect()
}

/// Opens the namespace and starts this node's replica of the metadata group.
async fn start_meta(meta: &MetaConfig, node: NodeId, config: &Config) -> Result<Arc<MetaStore>> {
    let path = &meta.path;
    let namespace = Namespace::open_with_class(path, Durability::Buffered, meta.class)
        .with_context(|| format!("meta.path: opening the namespace in {}", path.display()))?;
    let addr = config
        .cluster
        .as_ref()
        .and_then(|c| c.advertise)
        .unwrap_or(config.listen);
    let replicas = group_replicas(meta, node, addr);
    if !replicas.contains_key(&node.0) {
        bail!(
            "meta.replicas: names {:?} but not this node ({node})",
            replicas.keys().collect::<Vec<_>>()
        );
    }
    // The group's log and snapshot live in the namespace's directory (fjall reads
    // only its own folders there), so the directory is the replica's whole state.
    let namespace = Arc::new(namespace);
    let group = Group::start(node.0, &path.join("group"), namespace.clone(), replicas)
        .await
        .map_err(anyhow::Error::msg)?;
    let store = MetaStore::new(namespace, group);
    tracing::info!("metadata service on {}", path.display());
    Ok(store)
}

/// Serves until a signal (or until the control actors give up), then drains.
async fn serve(
    config: Config,
    node: NodeId,
    ca: CertificateDer<'static>,
    me: Credentials,
    revocations: Revocations,
    actor: Shards,
    hints: DamageHints,
) -> Result<()> {
    if let Some(list) = config.revoked.clone() {
        tokio::spawn(watch_revocations(list, revocations.clone()));
    }
    let empty = || {
        Arc::new(MapMessage {
            epoch: 0,
            pg_bits: 0,
            nodes: Vec::new(),
            classes: Vec::new(),
            repair_rate: 0,
            history: Vec::new(),
        })
    };
    // The map this node answers with: the authority's own, or the one it follows.
    let (published, watched) = watch::channel(empty());
    let authority_name = format!("map-authority-{node}");
    let authority = match &config.cluster {
        Some(c) if c.authority_id == node.0 => Authority::Here(authority_name.clone()),
        Some(c) => Authority::Elsewhere(NodeId(c.authority_id)),
        None => Authority::Elsewhere(node),
    };
    let node_map = watched.clone();
    let shard_metrics = hive_actors::metrics::ShardMetrics::default();
    let repair = Arc::new(RepairState::default());
    if let Some(listen) = config.metrics {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("metrics.listen: binding {listen}"))?;
        tracing::info!("metrics at http://{}/metrics", listener.local_addr()?);
        tokio::spawn(metrics::serve(
            listener,
            hive_actors::metrics::MetricsSource {
                requests: shard_metrics.clone(),
                shards: actor.clone(),
                repair: repair.clone(),
                authority: match &authority {
                    Authority::Here(name) => Some(name.clone()),
                    Authority::Elsewhere(_) => None,
                },
            },
        ));
    }
    let control = control_service(authority, watched, actor.clone());
    let mut routes = vec![
        (
            ShardService::PROTOCOL,
            shard_service(actor.clone(), shard_metrics.clone()),
        ),
        (Control::PROTOCOL, control),
    ];
    // Garbage collection runs where the namespace is.
    let mut collector = None;
    // Resolves if this node's metadata replica stops for good.
    let mut replica = None;
    if let Some(meta) = &config.meta {
        let store = start_meta(meta, node, &config).await?;
        store.clone().expire_sessions(SESSION_TICK);
        routes.push((Meta::PROTOCOL, meta_service(store.clone())));
        routes.push((MetaRaft::PROTOCOL, store.group().service()));
        let gc = Collector::new(config.space.grace, config.gc_interval);
        routes.push((Gc::PROTOCOL, gc_service(gc.clone(), store.clone())));
        replica = Some(store.group().stopped());
        collector = Some((gc, store));
    }
    let handler = route(routes);
    let server = Server::bind(config.listen, &ca, &me, revocations.clone(), handler)?;
    let local = server.local_addr();
    tracing::info!("listening on {local}");
    // Connections to peers leave from the address the node listens on (any address,
    // when it listens on all).
    let client = Arc::new(if local.ip().is_unspecified() {
        Client::new(&ca, Some(&me))?
    } else {
        Client::from_address(local.ip(), &ca, &me)?
    });
    let advertise = config
        .cluster
        .as_ref()
        .and_then(|c| c.advertise)
        .unwrap_or(local);
    // On a replica of the metadata group: the group, which keeps the map's copy and
    // records enrollments.
    let group = config.meta.as_ref().map(|meta| {
        Arc::new(MetaClient::group(
            client.clone(),
            &meta_replicas(meta, node, advertise),
        ))
    });
    let enrollment = enrollment_server(
        &config,
        &ca,
        &me,
        &revocations,
        node,
        group
            .clone()
            .zip(collector.as_ref().map(|(_, store)| store.clone())),
    )?;
    let supervisor = match &config.cluster {
        Some(cluster) => {
            if advertise.ip().is_unspecified() {
                bail!(
                    "cluster.advertise: required when listen is {local} (others cannot reach an unspecified address)"
                );
            }
            if let Some((_, meta)) = &collector {
                meta.group().connect_through(client.clone());
                hive_actors::reserve::start(ReserveArgs {
                    client: client.clone(),
                    map: node_map.clone(),
                    meta: meta.clone(),
                });
            }
            if let Some((gc, meta)) = collector {
                tracing::info!(
                    "garbage collection every {:?}, grace {:?}",
                    config.gc_interval,
                    config.space.grace
                );
                tokio::spawn(hive_actors::gc::run(
                    GcArgs {
                        grace: config.space.grace,
                        interval: config.gc_interval,
                        client: client.clone(),
                        map: node_map.clone(),
                        meta,
                    },
                    gc,
                ));
            }
            tokio::spawn(run_repairer(RepairArgs {
                node,
                client: client.clone(),
                map: node_map,
                interval: cluster.census_interval,
                hints,
                state: repair.clone(),
            }));
            let authority = Arc::new(ControlClient::new(
                client.clone(),
                cluster.authority,
                NodeId(cluster.authority_id),
            ));
            let mut children = Vec::new();
            // The follower feeds the control service's map, except on the authority,
            // whose own map does.
            let mut followed = published.clone();
            if let Some(map) = &cluster.map {
                // The metadata group keeps a copy of the map when this node is one of
                // its replicas (and so knows them all).
                if let Some(group) = &group {
                    tokio::spawn(hive_actors::keep_map_in_group(
                        group.clone(),
                        published.subscribe(),
                    ));
                }
                children.push(Child::Authority {
                    name: authority_name,
                    args: AuthorityArgs {
                        path: map.clone(),
                        pg_bits: cluster.pg_bits,
                        timeout: HEARTBEAT_TIMEOUT,
                        out_after: cluster.out_after,
                        classes: config
                            .meta
                            .iter()
                            .filter_map(|m| {
                                hive_codec::ErasureScheme::new(m.class.0, m.class.1).ok()
                            })
                            .collect(),
                        published,
                        group,
                    },
                });
                followed = watch::channel(empty()).0;
            }
            children.push(Child::Heartbeater(HeartbeatArgs {
                authority: authority.clone(),
                shards: actor.clone(),
                addr: advertise,
                repair,
            }));
            children.push(Child::Follower(FollowerArgs {
                authority,
                current: followed,
            }));
            let (supervisor, handle) =
                ractor::Actor::spawn(Some(format!("node-{node}")), NodeSupervisor, children)
                    .await
                    .map_err(|e| anyhow::anyhow!("starting the control actors: {e}"))?;
            Some((supervisor, handle))
        }
        None => {
            tracing::info!("no [cluster] section: serving shards without a cluster map");
            if collector.is_some() {
                tracing::warn!(
                    "garbage collection does not run without a [cluster] section: 'hive gc' orders wait"
                );
            }
            None
        }
    };
    // A store that refuses writes after a failed write or sync stops the node: its
    // unsynced writes may be lost, and it must not go on answering as if whole.
    let store_poisoned = actor.poisoned();
    let poisoned = async move {
        match replica {
            Some(replica) => tokio::select! {
                reason = store_poisoned => reason,
                reason = replica => reason,
            },
            None => store_poisoned.await,
        }
    };
    tokio::pin!(poisoned);
    #[cfg(feature = "faults")]
    tokio::spawn(arm_on_signals(actor.clone()));
    drop(actor);
    let fail_stop = |reason: String| {
        tracing::error!("{reason}: the node drains and stops (fail-stop)");
        anyhow::anyhow!(
            "{reason}: stopping the node (fail-stop); check the device, then start the node \
             again (its store replays what was durable)"
        )
    };
    let failed = match supervisor {
        Some((supervisor, handle)) => {
            let mut handle = handle;
            let outcome = tokio::select! {
                signal = wait_for_signal() => { signal?; None }
                _ = &mut handle => Some(anyhow::anyhow!("the control actors stopped; see the log above")),
                reason = &mut poisoned => Some(fail_stop(reason)),
            };
            supervisor.stop(None);
            let _ = handle.await;
            outcome
        }
        None => tokio::select! {
            signal = wait_for_signal() => { signal?; None }
            reason = &mut poisoned => Some(fail_stop(reason)),
        },
    };
    tracing::info!("draining");
    if let Some(enrollment) = &enrollment {
        enrollment.close();
    }
    server.shutdown(DRAIN_GRACE).await;
    match failed {
        Some(err) => Err(err),
        None => Ok(()),
    }
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
                        tracing::info!("revocation: {identity} refused from now on");
                        live.revoke(identity);
                    }
                }
                seen = modified;
            }
            Ok(Err(err)) => {
                tracing::warn!("revocation: list {} unreadable: {err}", path.display());
            }
            Err(err) => tracing::warn!("revocation: reading {}: {err}", path.display()),
        }
    }
}

/// A chaos build's fault hooks, armed by signals: SIGUSR1 makes every store's next
/// fdatasync fail, SIGUSR2 its next write.
#[cfg(feature = "faults")]
async fn arm_on_signals(shards: Shards) -> Result<()> {
    use hive_actors::ArmedFault;
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1()).context("listening for SIGUSR1")?;
    let mut usr2 = signal(SignalKind::user_defined2()).context("listening for SIGUSR2")?;
    loop {
        let fault = tokio::select! {
            _ = usr1.recv() => ArmedFault::FailNextSync,
            _ = usr2.recv() => ArmedFault::FailNextWrite,
        };
        match shards.arm(fault).await {
            Ok(()) => tracing::warn!("fault hooks: {fault:?} armed on every store"),
            Err(err) => tracing::warn!("fault hooks: arming {fault:?}: {err}"),
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
