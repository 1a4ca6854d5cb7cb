//! `hive`: the HiveFS command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hive_wire::net::{Identity, JoinToken, Role, TokenKey};

use hive_client::cluster_dir::ClusterDir;
use hive_client::{gc, health, inspect, local_cluster, meta_group, mount, output, status, volumes};
use hive_wire::NodeId;

/// Runs and manages a HiveFS cluster.
#[derive(Parser)]
#[command(name = "hive", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates a new cluster's certificate authority and its first admin identity in
    /// DIR: ca.pem (the CA certificate), ca.key and token.key (secrets, mode 0600),
    /// admin.pem and admin.key (the admin's certificate and key), and an empty
    /// revocation list. Refuses to overwrite an existing CA.
    Init {
        /// Directory for the cluster's files; created if missing.
        #[arg(long)]
        dir: PathBuf,
        /// A name for the cluster, shown in its CA certificate.
        #[arg(long, default_value = "hive")]
        name: String,
    },
    /// Join tokens: single-use permissions for one node or client to enroll.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// A local cluster of hive-node processes on loopback.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Stores FILE in the cluster and prints its object id. The object is recorded in
    /// the namespace and kept until 'hive delete'.
    Put {
        /// The local cluster's directory ('hive cluster up --dir').
        #[arg(long)]
        cluster: PathBuf,
        /// The file to store.
        file: PathBuf,
    },
    /// Deletes object ID: garbage collection then frees the chunks no file or other
    /// object uses (storing the same bytes again gives the same id, and one delete
    /// deletes it).
    Delete {
        /// The local cluster's directory ('hive cluster up --dir').
        #[arg(long)]
        cluster: PathBuf,
        /// The object id 'hive put' printed.
        id: String,
    },
    /// Garbage collection: starts a round now, which deletes the shards of chunks that
    /// no file and no object refers to and that no writer stored or deduplicated
    /// against within the grace period ('[gc] grace'); the stores' reclaim then frees
    /// the space. Rounds also start by themselves every '[gc] interval'. Without
    /// --wait, prints the last round and returns once the new one is ordered.
    Gc {
        /// The local cluster's directory ('hive cluster up --dir').
        #[arg(long)]
        cluster: PathBuf,
        /// Count what the round would delete; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Wait for the round to finish, with a progress bar, and print what it found
        /// and freed.
        #[arg(long)]
        wait: bool,
    },
    /// Shows the cluster on one screen: its health (OK, DEGRADED or UNREADABLE), nodes
    /// up, down and out, its chunks by how many of their shards are intact (from the
    /// last census of every placement group), repair progress, rate and ETA, scrub
    /// progress, space, and a line per node.
    Status {
        /// The local cluster's directory ('hive cluster up --dir').
        #[arg(long)]
        cluster: PathBuf,
        /// One JSON object instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Reads and verifies every shard stored on the nodes now (scrub also runs by
    /// itself, a pass every [scrub] period, 7 days by default). Damaged shards are
    /// dropped and rebuilt by repair.
    Scrub {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// Only this node (its id); default every node that is up.
        #[arg(long)]
        node: Option<u64>,
        /// How fast each node may read, per second: like 200MiB, or unlimited.
        #[arg(long, default_value = "unlimited")]
        rate: String,
        /// Wait for the passes to finish, with a progress bar.
        #[arg(long)]
        wait: bool,
    },
    /// Shows repair, sets its rate, or waits for it. Every node takes a census of the
    /// placement groups it is primary for (every cluster.census_interval) and rebuilds
    /// the shards its chunks lack, fewest intact shards first.
    Repair {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// Bytes of rebuilt shards each node may write per second, from now on: like
        /// 64MiB, or unlimited.
        #[arg(long)]
        rate: Option<String>,
        /// Wait until a full census finds nothing left to rebuild, with a progress bar.
        #[arg(long)]
        wait: bool,
    },
    /// Shows rebalance, or waits for it: after a node joins, is marked out or has its
    /// weight or domain set, each group's census copies the shards whose slots moved to
    /// their new holders and drops the old copies; reads meanwhile also look where the
    /// earlier placements put them. Done when every node has found its groups in place
    /// (at least 40 s after the last change).
    Rebalance {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// Wait until it is done, showing the shards moved so far.
        #[arg(long)]
        wait: bool,
    },
    /// Nodes of the cluster.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Shows what a chunk or a file is made of: every chunk's shards, the node holding
    /// each, and each shard's health (read and verified).
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Volumes: named trees of one cluster, each mounted on its own.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// The metadata group: the replicas (Raft) that hold the namespace. Each change is
    /// committed on a majority of them, so a group of 3 survives the loss of one, and
    /// of 5 the loss of two.
    #[command(subcommand)]
    Meta(MetaCommand),
    /// Mounts a volume on MOUNTPOINT through FUSE. Returns once the mount is ready and
    /// serves it from a background process (its log is in CLUSTER/mounts/); with
    /// --foreground it stays attached (for systemd). Files written there are cut into
    /// chunks and stored when they are closed or fsynced, or as the write buffer fills.
    Mount {
        /// The local cluster's directory ('hive cluster up --dir').
        #[arg(long)]
        cluster: PathBuf,
        /// The volume to mount.
        #[arg(long, default_value = "default")]
        volume: String,
        /// Stay attached instead of serving in the background.
        #[arg(long)]
        foreground: bool,
        /// How long the cluster keeps this mount's open files after it last heard from
        /// it: if the mount dies, files it had open and that were unlinked go then.
        #[arg(long, default_value_t = 60)]
        lease_seconds: u64,
        /// Mount flags, comma-separated, as mount -o takes them: ro (read-only: every
        /// change is refused with EROFS), rw (the default), noexec, exec, nosuid, suid,
        /// nodev, dev, noatime, atime, relatime, sync, async, dirsync. Any other is
        /// refused.
        #[arg(short = 'o', long = "options", value_delimiter = ',')]
        options: Vec<String>,
        /// Where to mount it (an existing directory).
        mountpoint: PathBuf,
    },
    /// Unmounts a mounted volume (the mount process then exits).
    Umount {
        /// Where it is mounted.
        mountpoint: PathBuf,
    },
    /// Reads object ID from the cluster into OUT.
    Get {
        /// The local cluster's directory ('hive cluster up --dir').
        #[arg(long)]
        cluster: PathBuf,
        /// The object id 'hive put' printed.
        id: String,
        /// Where to write it.
        #[arg(short, long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Marks a node out now ('hive node drain' is the same): its placement slots move to
    /// other nodes. If it still runs, its shards are copied from it (it keeps serving
    /// reads until they are, and ends empty: a drain; 'hive rebalance --wait' says
    /// when); if it is dead, repair
    /// rebuilds them from the others. A node down for cluster.out_after is marked out by
    /// itself. Refused if too few nodes would be left for a storage class.
    #[command(alias = "drain")]
    Out {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// The node's id.
        node: u64,
    },
    /// Puts a node into placement: one that joined the cluster (a node that joins, with
    /// 'hive-node join' on its host, is out until an administrator puts it in), or one
    /// marked out. Placement gives it its share of every group's slots, and rebalance
    /// copies their shards to it while reads keep finding them ('hive rebalance --wait'
    /// follows it). Refused for a node not heard from (start it first) or removed.
    In {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// The node's id.
        node: u64,
    },
    /// Removes a node from the cluster for good: the map keeps it only as a tombstone,
    /// it is never asked for shards again, its heartbeats are refused, and its
    /// certificate is revoked; a local cluster's node is stopped and dropped from
    /// cluster.toml. Refused while it is in placement (drain it first with 'node out'),
    /// while it still holds shards ('hive rebalance --wait'), or while it is not heard
    /// from, unless --force.
    Remove {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// Remove a dead node although it is in placement or holds shards: repair then
        /// rebuilds them from the others. Refused for a node that still runs.
        #[arg(long)]
        force: bool,
        /// The node's id.
        node: u64,
    },
    /// Sets a node's placement weight, its failure domain, or both. Only an
    /// administrator changes these (a node's own heartbeat carries its address and
    /// liveness only). Each group's slots move as for a join, and rebalance moves their
    /// shards while reads keep finding them. A node joins with weight 0 (out of
    /// placement) and its host (host=IP) as its domain; 'hive node in' gives it weight 1.
    Set {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// Relative capacity, 0 to 65536: a node of weight 2 gets about twice the
        /// shards of one of weight 1. 0 takes it out of placement (its shards move off).
        #[arg(long)]
        weight: Option<u32>,
        /// What it fails together with, as key=value pairs broadest first, like
        /// rack=r1,host=h3: each group's shards spread over distinct values of the first
        /// pair (at most ceil(k+m / domains) shards share one). The rest are shown only.
        #[arg(long)]
        domain: Option<String>,
        /// The node's id.
        node: u64,
    },
}

#[derive(Subcommand)]
enum InspectCommand {
    /// A chunk's shards: by default in every storage class that holds any of it.
    Chunk {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// Only this class's data shards (with --m).
        #[arg(long, requires = "m")]
        k: Option<u8>,
        /// Only this class's parity shards (with --k).
        #[arg(long, requires = "k")]
        m: Option<u8>,
        /// The chunk id (64 hex digits).
        id: String,
    },
    /// A file's extents and each extent chunk's shards.
    File {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// The volume the file is in.
        #[arg(long, default_value = "default")]
        volume: String,
        /// Its path from the volume's root, like photos/2024/a.jpg.
        path: String,
    },
}

#[derive(Subcommand)]
enum MetaCommand {
    /// Shows the group: its leader, term, and each member's log index and lag.
    Status {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Adds node NODE to the group. The node is given a replica (restarted with one if
    /// it had none), catches up from a snapshot and the log as a learner, and then
    /// votes. Returns once it votes.
    Add {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// The node (its number, as `hive status` lists it).
        node: u64,
    },
    /// Asks each replica for the last log index it applied and a digest of its
    /// namespace; replicas that applied the same index must agree (exit status 1 if
    /// any do not).
    Check {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Removes node NODE from the group: it stops voting and receiving changes (its
    /// files stay on the node). The last voting member cannot be removed.
    Remove {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// The node.
        node: u64,
    },
}

#[derive(Subcommand)]
enum VolumeCommand {
    /// Creates a volume (an empty tree, owned by root, mode 0755) with its storage
    /// class: every chunk of its files is coded as k data + m parity shards on k + m
    /// different nodes, and survives the loss of any m of them. A chunk stored in two
    /// volumes of different classes is stored once per class.
    Create {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// Data shards per chunk, 1 to 32 (default: the cluster's).
        #[arg(long)]
        k: Option<u8>,
        /// Parity shards per chunk, 0 to 16; k + m must not exceed the nodes (default:
        /// the cluster's).
        #[arg(long)]
        m: Option<u8>,
        /// Its name (1 to 64 bytes, no '/').
        name: String,
    },
    /// Lists the volumes.
    List {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
    },
    /// Deletes a volume; refused while it holds anything, unless --force.
    Delete {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// Delete its files and directories too.
        #[arg(long)]
        force: bool,
        /// Its name.
        name: String,
    },
    /// Sets a volume's quota, its storage class, or both.
    ///
    /// Quota: past it, a change that adds bytes or files fails with EDQUOT (through a
    /// mount, at the create, or at the close or fsync that stores the bytes); what the
    /// volume holds is never touched, even below a new limit. A mount's df shows it.
    ///
    /// Class (--k and --m): new writes use it at once, and the command then stores every
    /// chunk of the volume's files in it (a progress line shows how far), while mounts
    /// keep reading and writing. When all are, the old class is forgotten and garbage
    /// collection frees its shards. If the command stops before that, the re-encode
    /// stays under way ('hive volume list' shows OLD>NEW): reads look in both classes,
    /// and running it again with the same class goes on.
    Set {
        /// The local cluster's directory.
        #[arg(long)]
        cluster: PathBuf,
        /// Data shards per chunk of the new class (with --m).
        #[arg(long, requires = "m")]
        k: Option<u8>,
        /// Parity shards per chunk of the new class (with --k).
        #[arg(long, requires = "k")]
        m: Option<u8>,
        /// The most logical bytes (the sizes of its files and symlinks): like 10GiB, or
        /// none (unchanged if not given).
        #[arg(long, value_parser = limit_bytes)]
        max_bytes: Option<u64>,
        /// The most inodes (files, directories and the rest, its root included), or none
        /// (unchanged if not given).
        #[arg(long, value_parser = limit_count)]
        max_files: Option<u64>,
        /// Its name.
        name: String,
    },
}

/// A byte limit: a size like 10GiB, or none (0).
fn limit_bytes(text: &str) -> Result<u64> {
    if text == "none" {
        return Ok(0);
    }
    let n = hive_wire::units::parse_bytes(text)?;
    if n == 0 {
        bail!("0 is no limit; say none");
    }
    Ok(n)
}

/// A count limit: a number, or none (0).
fn limit_count(text: &str) -> Result<u64> {
    if text == "none" {
        return Ok(0);
    }
    let n: u64 = text
        .parse()
        .with_context(|| format!("{text:?} is not a number of files, or none"))?;
    if n == 0 {
        bail!("0 is no limit; say none");
    }
    Ok(n)
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Creates a CA and N nodes in DIR, formats their file-backed stores, starts them on
    /// 127.0.0.1 and returns once all listen, the map shows them up and each follows
    /// the map. Writes DIR/cluster.toml.
    Up {
        /// Directory for the cluster (must not hold one already).
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        shape: local_cluster::Shape,
        /// Garbage collection's grace period ('[gc] grace'): a chunk written or
        /// deduplicated against this recently is never deleted. Short on a local
        /// cluster, so deleted data comes back as free space within a minute or so.
        #[arg(long, default_value = "30s", value_parser = duration)]
        gc_grace: Duration,
        /// Time between garbage collection rounds that start by themselves ('[gc]
        /// interval'); 'hive gc' starts one at any time.
        #[arg(long, default_value = "10m", value_parser = duration)]
        gc_interval: Duration,
    },
    /// Starts the cluster's nodes that are not running (after a crash, a kill or
    /// 'cluster down'), on their own ports and stores, and waits until the map shows
    /// them up and each follows the map again.
    Start {
        /// The cluster's directory.
        #[arg(long)]
        dir: PathBuf,
        /// Only this node (repeat for several); without it, every stopped node.
        #[arg(long = "node")]
        nodes: Vec<u64>,
    },
    /// Adds nodes to the running cluster in DIR, made like those 'cluster up' made (the
    /// same store size and settings, each joining with a token as a node on another
    /// host would), puts them into placement as 'hive node in' does, and returns once the
    /// map shows them up. The map moves some placement slots to them; reads keep finding
    /// every chunk under the earlier placements while each group's census moves its
    /// shards over ('hive status' shows the progress).
    Add {
        /// The cluster's directory.
        #[arg(long)]
        dir: PathBuf,
        /// How many nodes to add.
        #[arg(long, default_value_t = 1)]
        nodes: u64,
        /// Leave them out of placement, as a node that joins a cluster is, until 'hive
        /// node in' puts each in.
        #[arg(long)]
        out: bool,
    },
    /// Stops every node of the cluster in DIR (SIGTERM; each drains and exits).
    Down {
        /// The cluster's directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Prints a new single-use join token. It carries the CA's fingerprint (so the
    /// joiner can check it reached the right cluster), the role and an expiry, and is
    /// MACed with the cluster's token key.
    Create {
        /// The cluster directory made by 'hive init'.
        #[arg(long)]
        dir: PathBuf,
        /// What the joiner becomes: node, client or admin.
        #[arg(long)]
        role: String,
        /// How long the token stays valid: 30s, 15m, 2h or 1d.
        #[arg(long, default_value = "15m")]
        ttl: String,
        /// For a client: the one volume it may mount, read and write (without it, a
        /// client token grants every volume).
        #[arg(long)]
        volume: Option<String>,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Revokes every certificate of IDENTITY (like node/000000000000002a): it is added
    /// to the cluster's revocation list, which servers consult on every connection and
    /// every request.
    Revoke {
        /// The cluster directory made by 'hive init'.
        #[arg(long)]
        dir: PathBuf,
        /// The identity to revoke, as role/16-hex-digit-id.
        identity: String,
    },
}

/// A duration flag: 30s, 10m, 2h, 7d (never 0).
fn duration(text: &str) -> Result<Duration> {
    let d = hive_wire::units::parse_duration(text)?;
    if d.is_zero() {
        bail!("must be longer than 0");
    }
    Ok(d)
}

/// An object id as typed.
fn object_id(text: &str) -> Result<hive_wire::ChunkId> {
    text.parse()
        .with_context(|| format!("{text:?} is not an object id (64 hex digits)"))
}

fn main() -> ExitCode {
    // Installed as /sbin/mount.fuse.hive, the tool is mount(8)'s helper.
    let args: Vec<String> = std::env::args().collect();
    let called = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string());
    if called.as_deref() == Some("mount.fuse.hive") {
        let result = mount::helper_args(&args[1..]).and_then(|a| mount::mount(&a));
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("mount.fuse.hive: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hive: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { dir, name } => {
            let made = ClusterDir::init(&dir, &name)?;
            hive_client::outln!("created cluster {name:?} in {}", dir.display());
            hive_client::outln!("CA fingerprint: {}", made.fingerprint);
            hive_client::outln!("admin identity: {}", made.admin);
            hive_client::outln!(
                "keep ca.key and token.key secret: they are written with mode 0600"
            );
            Ok(())
        }
        Command::Token(TokenCommand::Create {
            dir,
            role,
            ttl,
            volume,
        }) => {
            let role: Role = role
                .parse()
                .with_context(|| format!("--role {role:?} must be node, client or admin"))?;
            if volume.is_some() && role != Role::Client {
                bail!("--volume is for client tokens only");
            }
            if volume
                .as_ref()
                .is_some_and(|v| v.is_empty() || v.len() > 64)
            {
                bail!("--volume must be 1 to 64 bytes long");
            }
            let ttl = parse_ttl(&ttl)?;
            let cluster = ClusterDir::open(&dir)?;
            let key: TokenKey = cluster.token_key()?;
            let token = JoinToken::new(cluster.fingerprint()?, role, volume, ttl);
            hive_client::outln!("{}", token.seal(&key));
            let grants = match (role, &token.volume) {
                (Role::Client, Some(volume)) => format!("; grants volume {volume:?}"),
                (Role::Client, None) => "; grants every volume".to_string(),
                _ => String::new(),
            };
            eprintln!(
                "single use, valid until {}{grants}",
                hive_wire::net::token::utc(token.expires)
            );
            Ok(())
        }
        Command::Cluster(ClusterCommand::Up {
            dir,
            shape,
            gc_grace,
            gc_interval,
        }) => local_cluster::up(
            &dir,
            &shape,
            local_cluster::GcTimes {
                grace: gc_grace,
                interval: gc_interval,
            },
        ),
        Command::Cluster(ClusterCommand::Start { dir, nodes }) => {
            local_cluster::start(&dir, &nodes)
        }
        Command::Cluster(ClusterCommand::Add { dir, nodes, out }) => {
            for node in local_cluster::add(&dir, nodes, !out)? {
                if out {
                    hive_client::outln!(
                        "node {node} added, out of placement until 'hive node in {}'",
                        node.0
                    );
                } else {
                    hive_client::outln!("node {node} added");
                }
            }
            Ok(())
        }
        Command::Status { cluster, json } => status::status(&cluster, json),
        Command::Scrub {
            cluster,
            node,
            rate,
            wait,
        } => health::scrub(&cluster, node.map(NodeId), health::parse_rate(&rate)?, wait),
        Command::Rebalance { cluster, wait } => health::rebalance(&cluster, wait),
        Command::Repair {
            cluster,
            rate,
            wait,
        } => {
            let rate = rate.as_deref().map(health::parse_rate).transpose()?;
            health::repair(&cluster, rate, wait)
        }
        Command::Node(NodeCommand::Out { cluster, node }) => {
            health::node_out(&cluster, NodeId(node))
        }
        Command::Node(NodeCommand::In { cluster, node }) => health::node_in(&cluster, NodeId(node)),
        Command::Node(NodeCommand::Remove {
            cluster,
            force,
            node,
        }) => health::node_remove(&cluster, NodeId(node), force),
        Command::Node(NodeCommand::Set {
            cluster,
            weight,
            domain,
            node,
        }) => health::node_set(&cluster, NodeId(node), weight, domain),
        Command::Inspect(InspectCommand::Chunk { cluster, k, m, id }) => {
            let id: hive_wire::ChunkId = id
                .parse()
                .with_context(|| format!("{id:?} is not a chunk id (64 hex digits)"))?;
            let scheme = match (k, m) {
                (Some(k), Some(m)) => Some(hive_codec::ErasureScheme::new(k, m)?),
                _ => None,
            };
            inspect::inspect_chunk(&cluster, id, scheme)
        }
        Command::Inspect(InspectCommand::File {
            cluster,
            volume,
            path,
        }) => inspect::inspect_file(&cluster, &volume, &path),
        Command::Cluster(ClusterCommand::Down { dir }) => local_cluster::down(&dir),
        Command::Put { cluster, file } => {
            let id = local_cluster::put(&cluster, &file)?;
            hive_client::outln!("{id}");
            Ok(())
        }
        Command::Volume(VolumeCommand::Create {
            cluster,
            k,
            m,
            name,
        }) => {
            volumes::create(&cluster, &name, k, m)?;
            hive_client::outln!("created volume {name:?}");
            Ok(())
        }
        Command::Meta(MetaCommand::Status { cluster, json }) => {
            let group = meta_group::status(&cluster)?;
            if json {
                output::println(&meta_group::to_json(&group).to_string());
            } else {
                output::print(&meta_group::render(&group));
            }
            Ok(())
        }
        Command::Meta(MetaCommand::Check { cluster, json }) => {
            let digests = meta_group::digests(&cluster)?;
            if json {
                output::println(&meta_group::digests_json(&digests).to_string());
            } else {
                output::print(&meta_group::render_digests(&digests));
            }
            let differ = meta_group::disagreements(&digests);
            if !differ.is_empty() {
                anyhow::bail!("replicas that applied the same entries differ: {differ:?}");
            }
            Ok(())
        }
        Command::Meta(MetaCommand::Add { cluster, node }) => {
            let group = meta_group::add(&cluster, node)?;
            hive_client::outln!("node {} votes in the metadata group", NodeId(node));
            output::print(&meta_group::render(&group));
            Ok(())
        }
        Command::Meta(MetaCommand::Remove { cluster, node }) => {
            let group = meta_group::remove(&cluster, node)?;
            hive_client::outln!("node {} left the metadata group", NodeId(node));
            output::print(&meta_group::render(&group));
            Ok(())
        }
        Command::Volume(VolumeCommand::List { cluster }) => {
            output::print(&volumes::render_list(&volumes::list(&cluster)?));
            Ok(())
        }
        Command::Volume(VolumeCommand::Set {
            cluster,
            k,
            m,
            max_bytes,
            max_files,
            name,
        }) => {
            if k.is_none() && max_bytes.is_none() && max_files.is_none() {
                bail!("give --k and --m, --max-bytes, --max-files, or some of them");
            }
            if max_bytes.is_some() || max_files.is_some() {
                let set = volumes::set_quota(&cluster, &name, max_bytes, max_files)?;
                hive_client::outln!("volume {name:?}: {}", volumes::quota_text(&set));
            }
            if let (Some(k), Some(m)) = (k, m) {
                let done = hive_client::reencode::reencode(&cluster, &name, k, m, false)?;
                hive_client::outln!("{}", hive_client::reencode::render(&name, k, m, &done));
            }
            Ok(())
        }
        Command::Volume(VolumeCommand::Delete {
            cluster,
            force,
            name,
        }) => {
            volumes::delete(&cluster, &name, force)?;
            hive_client::outln!("deleted volume {name:?}");
            Ok(())
        }
        Command::Mount {
            cluster,
            volume,
            foreground,
            lease_seconds,
            options,
            mountpoint,
        } => {
            if lease_seconds < 3 {
                bail!("--lease-seconds must be at least 3 (the mount renews at a third of it)");
            }
            mount::mount(&mount::MountArgs {
                cluster,
                volume,
                mountpoint,
                foreground,
                log: None,
                lease: Duration::from_secs(lease_seconds),
                options,
                announce: true,
            })
        }
        Command::Umount { mountpoint } => {
            mount::umount(&mountpoint)?;
            hive_client::outln!("unmounted {}", mountpoint.display());
            Ok(())
        }
        Command::Delete { cluster, id } => {
            let id = object_id(&id)?;
            local_cluster::delete_object(&cluster, id)?;
            hive_client::outln!("deleted object {id}; 'hive gc' frees its chunks");
            Ok(())
        }
        Command::Gc {
            cluster,
            dry_run,
            wait,
        } => gc::gc(&cluster, dry_run, wait),
        Command::Get { cluster, id, out } => {
            let id = object_id(&id)?;
            let bytes = local_cluster::get(&cluster, id, &out)?;
            eprintln!("wrote {bytes} bytes to {}", out.display());
            Ok(())
        }
        Command::Cert(CertCommand::Revoke { dir, identity }) => {
            let identity: Identity = identity.parse().with_context(|| {
                format!("{identity:?} is not an identity like node/000000000000002a")
            })?;
            let cluster = ClusterDir::open(&dir)?;
            cluster.revoke(identity)?;
            hive_client::outln!("revoked {identity}");
            Ok(())
        }
    }
}

/// `30s`, `15m`, `2h`, `1d`.
fn parse_ttl(text: &str) -> Result<Duration> {
    let ttl = hive_wire::units::parse_duration(text).with_context(|| format!("--ttl {text:?}"))?;
    if ttl.is_zero() || ttl > Duration::from_secs(30 * 86_400) {
        bail!("--ttl must be between 1s and 30d");
    }
    Ok(ttl)
}
