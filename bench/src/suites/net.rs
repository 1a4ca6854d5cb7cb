//! `hive-bench net`: our QUIC transport (framing, identity, RPC) against bare quinn with
//! the same TLS configuration, both on loopback in one process, interleaved.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use hive_wire::NodeId;
use hive_wire::net::rpc::endpoint;
use hive_wire::net::tls::{Revocations, client_config, server_config, server_name};
use hive_wire::net::{
    Client, ClusterCa, Connection, Credentials, Handler, Identity, Peer, Request, Response, Role,
    Server, Validity,
};

use crate::measure::{Round, Rounds, Throughput};
use crate::report::{Line, Report};

const SUITE: &str = "net";
/// Bulk request and response size.
const BULK: usize = 256 << 10;
/// Bulk exchanges per stream per round.
const BULK_PER_ROUND: usize = 64;
/// Small request size and how many are in flight.
const SMALL: usize = 64;
const SMALL_IN_FLIGHT: usize = 64;
/// Small requests per task per round.
const SMALL_PER_TASK: usize = 64;
const DEADLINE: Duration = Duration::from_secs(30);

pub fn run(rounds: &Rounds, report: &mut Report) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting tokio")?;
    for line in runtime.block_on(measure(rounds))? {
        report.add(line);
    }
    Ok(())
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Echo: answers with a body the size the request asks for (first 4 bytes of the
/// message), so responses can be bulk while requests are small, or both bulk.
fn echo_handler() -> Handler {
    Arc::new(|_peer: Peer, request: Request| {
        Box::pin(async move {
            Ok(Response {
                message: Bytes::new(),
                body: request.body,
            })
        })
    })
}

struct Pair {
    ours: Connection,
    bare: quinn::Connection,
    _ours: Loopback,
    _bare_endpoint: quinn::Endpoint,
    _bare_client: quinn::Endpoint,
}

/// A cluster CA with one node's and one client's credentials, as a cluster issues them.
pub struct Pki {
    ca: ClusterCa,
    node: Identity,
    node_creds: Credentials,
    client_creds: Credentials,
}

impl Pki {
    pub fn new() -> Result<Self> {
        let ca = ClusterCa::create("bench")?;
        let validity = Validity::starting_now(Duration::from_secs(3600));
        let node = Identity::node(NodeId(1));
        let (cert, key) = ca.issue_with_key(node, validity)?;
        let node_creds = Credentials::new(cert, &key);
        let who = Identity {
            role: Role::Client,
            id: 1,
        };
        let (cert, key) = ca.issue_with_key(who, validity)?;
        let client_creds = Credentials::new(cert, &key);
        Ok(Self {
            ca,
            node,
            node_creds,
            client_creds,
        })
    }
}

/// Our RPC server on loopback (mutual TLS, as a node runs it) and a client connected
/// to it; both live as long as this.
pub struct Loopback {
    pub connection: Connection,
    _server: Server,
    _client: Client,
}

impl Loopback {
    /// Starts a server answering with `handler` and connects to it.
    pub async fn start(pki: &Pki, handler: Handler) -> Result<Self> {
        let server = Server::bind(
            loopback(),
            pki.ca.cert(),
            &pki.node_creds,
            Revocations::default(),
            handler,
        )?;
        let client = Client::new(pki.ca.cert(), Some(&pki.client_creds))?;
        let connection = client.connect(server.local_addr(), Some(pki.node)).await?;
        Ok(Self {
            connection,
            _server: server,
            _client: client,
        })
    }
}

async fn setup() -> Result<Pair> {
    let pki = Pki::new()?;
    let ours = Loopback::start(&pki, echo_handler()).await?;

    // Bare quinn, with the same TLS, transport and socket settings (the TLS builders
    // carry the transport settings).
    let bare_config = server_config(pki.ca.cert(), &pki.node_creds, Revocations::default(), true)?;
    let bare_server = endpoint(loopback(), Some(bare_config))?;
    tokio::spawn(bare_echo(bare_server.clone()));
    let mut bare_client = endpoint(SocketAddr::from(([0, 0, 0, 0], 0)), None)?;
    bare_client.set_default_client_config(client_config(pki.ca.cert(), Some(&pki.client_creds))?);
    let bare = bare_client
        .connect(bare_server.local_addr()?, &server_name(Some(pki.node)))?
        .await?;
    Ok(Pair {
        ours: ours.connection.clone(),
        bare,
        _ours: ours,
        _bare_endpoint: bare_server,
        _bare_client: bare_client,
    })
}

/// The bare baseline: read the request to its end, write the same bytes back.
async fn bare_echo(endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(connection) = incoming.await else {
                return;
            };
            while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                tokio::spawn(async move {
                    if let Ok(bytes) = recv.read_to_end(BULK * 2).await {
                        let _ = send.write_all(&bytes).await;
                        let _ = send.finish();
                    }
                });
            }
        });
    }
}

async fn bare_call(connection: &quinn::Connection, bytes: Bytes) -> usize {
    let (mut send, mut recv) = connection.open_bi().await.expect("open");
    send.write_chunk(bytes).await.expect("write");
    send.finish().expect("finish");
    recv.read_to_end(BULK * 2).await.expect("read").len()
}

async fn our_call(connection: &Connection, body: Bytes) -> usize {
    let request = Request {
        protocol: 1,
        version: 1,
        op: 1,
        message: Bytes::new(),
        body,
    };
    connection
        .call(request, DEADLINE)
        .await
        .expect("call")
        .body
        .len()
}

async fn measure(rounds: &Rounds) -> Result<Vec<Line>> {
    let pair = Arc::new(setup().await?);
    let bulk = Bytes::from(vec![0x42u8; BULK]);
    let small = Bytes::from(vec![0x17u8; SMALL]);
    let mut lines = Vec::new();
    for (name, streams) in [("net_bulk_1stream", 1usize), ("net_bulk_8streams", 8)] {
        let bytes = (2 * BULK * BULK_PER_ROUND * streams) as f64;
        let t = compare(rounds, bytes, streams, BULK_PER_ROUND, &pair, &bulk).await;
        lines.push(line(name, "MiB/s", mib(t), "bare quinn, same TLS"));
    }
    let ops = (SMALL_IN_FLIGHT * SMALL_PER_TASK) as f64;
    let t = compare(rounds, ops, SMALL_IN_FLIGHT, SMALL_PER_TASK, &pair, &small).await;
    lines.push(line(
        "net_rpc_small",
        "ops/s",
        t,
        "bare quinn, same TLS, 64 in flight",
    ));
    Ok(lines)
}

/// Sends `body` `per_task` times from each of `tasks` tasks, through our RPC and through
/// bare quinn in interleaved rounds; each round counts `units`.
async fn compare(
    rounds: &Rounds,
    units: f64,
    tasks: usize,
    per_task: usize,
    pair: &Arc<Pair>,
    body: &Bytes,
) -> Throughput {
    let ours = {
        let (pair, body) = (pair.clone(), body.clone());
        move || {
            let (pair, body) = (pair.clone(), body.clone());
            async move { our_call(&pair.ours, body).await }
        }
    };
    let bare = {
        let (pair, body) = (pair.clone(), body.clone());
        move || {
            let (pair, body) = (pair.clone(), body.clone());
            async move { bare_call(&pair.bare, body).await }
        }
    };
    rounds
        .interleaved(
            async |_| Round::time(units, fan_out(tasks, per_task, ours.clone())).await,
            async |_| Round::time(units, fan_out(tasks, per_task, bare.clone())).await,
        )
        .await
}

/// Runs `per_task` calls on each of `tasks` concurrent tasks.
async fn fan_out<F, Fut>(tasks: usize, per_task: usize, call: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = usize> + Send + 'static,
{
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    call().await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
}

fn mib(t: Throughput) -> Throughput {
    Throughput {
        hive: t.hive / f64::from(1 << 20),
        baseline: t.baseline / f64::from(1 << 20),
    }
}

fn line(name: &'static str, unit: &'static str, t: Throughput, against: &'static str) -> Line {
    Line::rate(SUITE, name, unit, t, against)
}
