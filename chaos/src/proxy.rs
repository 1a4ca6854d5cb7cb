//! The fault proxy: a user-space UDP relay that every QUIC packet of a chaos cluster
//! passes through, between nodes and between clients and nodes, and that delays,
//! drops, duplicates, reorders or blocks packets by rules. This kernel has no netem,
//! nftables or iptables; the proxy acts on the real packets instead, with nothing in
//! the transport knowing it is there.
//!
//! How traffic reaches it: a cluster started behind the proxy has each node listen on
//! an address of its own (127.1.x.y) and advertise a *front*, a socket of the proxy's
//! on 127.0.0.1. The map, the other nodes and the clients only know fronts. A packet to
//! a front is relayed to its node from an *upstream* socket kept for that sender (a
//! session, like a NAT entry), and the node's answers come back the same way. A node's
//! own connections leave from its listen address, so the proxy tells who sent a packet
//! by its source IP: a node's, or else a client's.
//!
//! What happens to a packet is [`verdict`]'s decision alone (pure: the rules, who sent
//! it, who receives it, and random draws); the tasks only move packets.

use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use hive_testkit::Rng;
use hive_wire::NodeId;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Senders a front keeps a session for at once; a packet from one more is dropped.
pub const MAX_SESSIONS: usize = 1024;
/// Packets one front holds back at once (delayed, or held to be reordered): about
/// 24 MiB of QUIC packets. One more is dropped, as a full router queue drops it.
pub const DELAY_QUEUE: usize = 16_384;
/// A session with no packet either way for this long is closed (longer than the QUIC
/// idle timeout, so no live connection loses its route).
pub const SESSION_IDLE: Duration = Duration::from_secs(120);
/// The largest datagram relayed (UDP's largest).
pub const MAX_DATAGRAM: usize = 65_536;
/// Each proxy socket's kernel buffers, as large as a node endpoint's.
pub const SOCKET_BUFFER: usize = hive_wire::net::rpc::SOCKET_BUFFER;
/// How much later than its fellows a packet chosen for reordering is sent.
pub const REORDER_HOLD: Duration = Duration::from_millis(8);

/// Who sends or receives a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Party {
    /// Anyone who is not a node of the cluster: the mount, the chaos workload, `hive`.
    Client,
    /// A node of the cluster.
    Node(NodeId),
}

/// Which nodes a [`Side`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nodes {
    /// No node.
    None,
    /// These nodes.
    Only(Vec<NodeId>),
    /// Every node but these.
    AllBut(Vec<NodeId>),
}

/// One end of a rule: clients or not, and which nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// Whether clients are on this side.
    pub clients: bool,
    /// The nodes on this side.
    pub nodes: Nodes,
}

impl Side {
    /// Everyone.
    pub fn any() -> Self {
        Self {
            clients: true,
            nodes: Nodes::AllBut(Vec::new()),
        }
    }

    /// Clients only.
    pub fn clients() -> Self {
        Self {
            clients: true,
            nodes: Nodes::None,
        }
    }

    fn with_clients(mut self) -> Self {
        self.clients = true;
        self
    }

    /// These nodes only.
    pub fn nodes(nodes: &[NodeId]) -> Self {
        Self {
            clients: false,
            nodes: Nodes::Only(nodes.to_vec()),
        }
    }

    /// Every node but these, no client.
    pub fn other_nodes(nodes: &[NodeId]) -> Self {
        Self {
            clients: false,
            nodes: Nodes::AllBut(nodes.to_vec()),
        }
    }

    /// Everyone but these nodes: the clients and the other nodes.
    pub fn all_but(nodes: &[NodeId]) -> Self {
        Self::other_nodes(nodes).with_clients()
    }

    /// Whether `party` is on this side.
    pub fn holds(&self, party: Party) -> bool {
        match party {
            Party::Client => self.clients,
            Party::Node(node) => match &self.nodes {
                Nodes::None => false,
                Nodes::Only(these) => these.contains(&node),
                Nodes::AllBut(these) => !these.contains(&node),
            },
        }
    }
}

/// What a rule does to the packets it matches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Added to every packet's way.
    pub delay: Duration,
    /// Up to this much more, drawn for each packet.
    pub jitter: Duration,
    /// Share of packets dropped (1: none gets through).
    pub loss: f64,
    /// Share of packets sent twice.
    pub duplicate: f64,
    /// Share of packets held back [`REORDER_HOLD`] so later ones overtake them.
    pub reorder: f64,
}

impl Impairment {
    /// Nothing gets through: a partition.
    pub fn block() -> Self {
        Self {
            loss: 1.0,
            ..Self::default()
        }
    }

    /// Just a delay.
    pub fn delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }
}

impl std::fmt::Display for Impairment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.loss >= 1.0 {
            return write!(f, "blocked");
        }
        write!(
            f,
            "delay {} ms (+0-{} ms), loss {:.1}%, duplicated {:.1}%, reordered {:.1}%",
            self.delay.as_millis(),
            self.jitter.as_millis(),
            self.loss * 100.0,
            self.duplicate * 100.0,
            self.reorder * 100.0
        )
    }
}

/// Packets from `from` to `to` get `impairment`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The senders it applies to.
    pub from: Side,
    /// The receivers it applies to.
    pub to: Side,
    /// What it does.
    pub impairment: Impairment,
}

impl Rule {
    /// The same impairment both ways between `a` and `b`.
    pub fn both_ways(a: Side, b: Side, impairment: Impairment) -> [Rule; 2] {
        [
            Rule {
                from: a.clone(),
                to: b.clone(),
                impairment,
            },
            Rule {
                from: b,
                to: a,
                impairment,
            },
        ]
    }
}

/// What becomes of one packet: dropped (no sends), or sent once or twice, each after
/// its wait (zero: at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// One wait per copy sent.
    pub sends: Vec<Duration>,
}

/// Decides one packet's fate from `from` to `to` under `rules`: the first rule that
/// matches applies (none: sent at once). A node's packets to itself are never touched:
/// they cross no network. `draw` gives uniform numbers in [0, 1).
pub fn verdict(rules: &[Rule], from: Party, to: Party, mut draw: impl FnMut() -> f64) -> Verdict {
    let rule = (from != to || from == Party::Client)
        .then(|| rules.iter().find(|r| r.from.holds(from) && r.to.holds(to)))
        .flatten();
    let Some(rule) = rule else {
        return Verdict {
            sends: vec![Duration::ZERO],
        };
    };
    let i = rule.impairment;
    if draw() < i.loss {
        return Verdict { sends: Vec::new() };
    }
    let copies = if draw() < i.duplicate { 2 } else { 1 };
    let sends = (0..copies)
        .map(|_| {
            let mut wait = i.delay + i.jitter.mul_f64(draw());
            if draw() < i.reorder {
                wait += REORDER_HOLD;
            }
            wait
        })
        .collect();
    Verdict { sends }
}

/// What the proxy has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Packets received from anyone.
    pub received: u64,
    /// Packets sent on (copies included).
    pub sent: u64,
    /// Packets a rule dropped.
    pub dropped: u64,
    /// Extra copies a rule made.
    pub duplicated: u64,
    /// Packets held back before sending (delay, jitter or reordering).
    pub delayed: u64,
    /// Packets lost because a queue or a socket buffer was full, or a front had too
    /// many sessions.
    pub overflowed: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
    overflowed: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What every task of the proxy shares.
struct Shared {
    rules: RwLock<Vec<Rule>>,
    /// Each node's source IP address.
    nodes: RwLock<HashMap<IpAddr, NodeId>>,
    counters: Counters,
    /// When the proxy started (session activity is counted from it).
    epoch: Instant,
}

impl Shared {
    fn party(&self, ip: IpAddr) -> Party {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes.get(&ip).map_or(Party::Client, |n| Party::Node(*n))
    }

    fn verdict(&self, from: Party, to: Party, rng: &mut Rng) -> Verdict {
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner());
        verdict(&rules, from, to, || unit(rng))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Sends `packet` to `dest` through `out` as `verdict` says: at once, or through
    /// the front's delay line.
    async fn deliver(
        &self,
        packet: &[u8],
        (out, dest): (&Arc<UdpSocket>, SocketAddr),
        verdict: Verdict,
        line: &mpsc::Sender<Delayed>,
    ) {
        let c = &self.counters;
        if verdict.sends.is_empty() {
            bump(&c.dropped);
            return;
        }
        if verdict.sends.len() > 1 {
            bump(&c.duplicated);
        }
        for wait in verdict.sends {
            if wait.is_zero() {
                // Waits only while the socket's buffer is full: the front reads no
                // more meanwhile, and the kernel drops what overflows its buffer.
                match out.send_to(packet, dest).await {
                    Ok(_) => bump(&c.sent),
                    Err(_) => bump(&c.overflowed),
                }
                continue;
            }
            bump(&c.delayed);
            let delayed = Delayed {
                due: Instant::now() + wait,
                packet: packet.to_vec(),
                out: out.clone(),
                dest,
            };
            if line.try_send(delayed).is_err() {
                bump(&c.overflowed);
            }
        }
    }
}

/// A uniform draw in [0, 1).
fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The fault proxy. Its tasks run on the runtime it was started on, until it is
/// dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    runtime: Handle,
    seed: u64,
    /// Each front's task (its sessions and delay line end with it).
    fronts: Vec<tokio::task::AbortHandle>,
}

impl Proxy {
    /// A proxy with no fronts yet, its tasks on `runtime`, its random draws from
    /// `seed`.
    pub fn new(runtime: Handle, seed: u64) -> Self {
        Self {
            shared: Arc::new(Shared {
                rules: RwLock::new(Vec::new()),
                nodes: RwLock::new(HashMap::new()),
                counters: Counters::default(),
                epoch: Instant::now(),
            }),
            runtime,
            seed,
            fronts: Vec::new(),
        }
    }

    /// The address node `id` listens on behind a proxy, with `port`: 127.1.x.y, one
    /// per node, so its packets are known by their source address.
    pub fn node_address(id: NodeId, port: u16) -> SocketAddr {
        let [_, _, _, _, _, _, hi, lo] = id.0.to_be_bytes();
        SocketAddr::from((Ipv4Addr::new(127, 1, hi, lo), port))
    }

    /// Starts relaying to `node`, listening on `listen` (whose IP address its own
    /// packets come from); the front address others reach it at.
    pub fn add_front(&mut self, node: NodeId, listen: SocketAddr) -> Result<SocketAddr> {
        let _entered = self.runtime.enter();
        let socket = udp_socket(SocketAddr::from(([127, 0, 0, 1], 0)))
            .with_context(|| format!("binding the proxy's front for node {node}"))?;
        let front = socket.local_addr()?;
        self.shared
            .nodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(listen.ip(), node);
        let task = self
            .runtime
            .spawn(serve_front(
                self.shared.clone(),
                Arc::new(socket),
                (node, listen),
                self.seed ^ node.0.rotate_left(17),
            ))
            .abort_handle();
        self.fronts.push(task);
        Ok(front)
    }

    /// Replaces the rules (the first that matches a packet applies).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.shared.rules.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    /// Removes every rule: packets pass untouched (those held back still go out).
    pub fn clear(&self) {
        self.set_rules(Vec::new());
    }

    /// What it has done so far.
    pub fn counts(&self) -> Counts {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            received: get(&c.received),
            sent: get(&c.sent),
            dropped: get(&c.dropped),
            duplicated: get(&c.duplicated),
            delayed: get(&c.delayed),
            overflowed: get(&c.overflowed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for front in &self.fronts {
            front.abort();
        }
    }
}

impl hive_client::local_cluster::Relay for Proxy {
    fn listen(&self, id: u64, port: u16) -> SocketAddr {
        Self::node_address(NodeId(id), port)
    }

    fn front(&mut self, id: u64, listen: SocketAddr) -> Result<SocketAddr> {
        self.add_front(NodeId(id), listen)
    }
}

/// A UDP socket on `addr` with [`SOCKET_BUFFER`]-sized buffers, on the current runtime.
fn udp_socket(addr: SocketAddr) -> Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let socket = socket2::Socket::from(socket);
    socket.set_recv_buffer_size(SOCKET_BUFFER)?;
    socket.set_send_buffer_size(SOCKET_BUFFER)?;
    socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(socket.into())?)
}

/// One sender's route to a front's node.
struct Session {
    upstream: Arc<UdpSocket>,
    /// When a packet last passed either way (ms since the proxy started).
    active: Arc<AtomicU64>,
    /// Set by the session's task when it ends.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

/// Relays packets arriving at `front` to `node` (listening at `listen`), a session per
/// sender; its sessions and delay line end with it.
async fn serve_front(
    shared: Arc<Shared>,
    front: Arc<UdpSocket>,
    (node, listen): (NodeId, SocketAddr),
    seed: u64,
) {
    let mut tasks = JoinSet::new();
    let (line, queue) = mpsc::channel(DELAY_QUEUE);
    tasks.spawn(delay_line(queue, shared.clone()));
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        // Errors on a UDP socket (an ICMP unreachable from an earlier send) concern
        // one packet, not the socket.
        let Ok((len, sender)) = front.recv_from(&mut buf).await else {
            continue;
        };
        bump(&shared.counters.received);
        let session = match sessions.get(&sender) {
            Some(s) if !s.closed.load(Ordering::Relaxed) => s,
            _ => {
                sessions.retain(|_, s| !s.closed.load(Ordering::Relaxed));
                if sessions.len() >= MAX_SESSIONS {
                    bump(&shared.counters.overflowed);
                    continue;
                }
                let Ok(upstream) = udp_socket(SocketAddr::from(([127, 0, 0, 1], 0))) else {
                    bump(&shared.counters.overflowed);
                    continue;
                };
                let session = Session {
                    upstream: Arc::new(upstream),
                    active: Arc::new(AtomicU64::new(shared.now_ms())),
                    closed: Arc::default(),
                };
                tasks.spawn(serve_session(
                    shared.clone(),
                    (session.upstream.clone(), front.clone()),
                    (node, listen, sender),
                    (session.active.clone(), session.closed.clone()),
                    (line.clone(), rng.next_u64()),
                ));
                sessions.entry(sender).insert_entry(session).into_mut()
            }
        };
        session.active.store(shared.now_ms(), Ordering::Relaxed);
        let from = shared.party(sender.ip());
        let verdict = shared.verdict(from, Party::Node(node), &mut rng);
        shared
            .deliver(&buf[..len], (&session.upstream, listen), verdict, &line)
            .await;
    }
}

/// Relays `node`'s answers from `upstream` back to `sender` through `front`, until
/// the session has been idle for [`SESSION_IDLE`].
async fn serve_session(
    shared: Arc<Shared>,
    (upstream, front): (Arc<UdpSocket>, Arc<UdpSocket>),
    (node, listen, sender): (NodeId, SocketAddr, SocketAddr),
    (active, closed): (Arc<AtomicU64>, Arc<std::sync::atomic::AtomicBool>),
    (line, seed): (mpsc::Sender<Delayed>, u64),
) {
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let to = shared.party(sender.ip());
    loop {
        match tokio::time::timeout(SESSION_IDLE, upstream.recv_from(&mut buf)).await {
            Err(_) => {
                let idle = shared.now_ms() - active.load(Ordering::Relaxed);
                if Duration::from_millis(idle) >= SESSION_IDLE {
                    closed.store(true, Ordering::Relaxed);
                    return;
                }
            }
            Ok(Err(_)) => {}
            Ok(Ok((len, from))) if from == listen => {
                bump(&shared.counters.received);
                active.store(shared.now_ms(), Ordering::Relaxed);
                let verdict = shared.verdict(Party::Node(node), to, &mut rng);
                shared
                    .deliver(&buf[..len], (&front, sender), verdict, &line)
                    .await;
            }
            // Not from the node: nothing to relay.
            Ok(Ok(_)) => {}
        }
    }
}

/// A packet held back until `due`.
struct Delayed {
    due: Instant,
    packet: Vec<u8>,
    out: Arc<UdpSocket>,
    dest: SocketAddr,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}

impl Eq for Delayed {}

impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delayed {
    /// The soonest due is the greatest: first out of a max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.due.cmp(&self.due)
    }
}

/// Sends each packet of `queue` when it is due, at most [`DELAY_QUEUE`] held at once.
async fn delay_line(mut queue: mpsc::Receiver<Delayed>, shared: Arc<Shared>) {
    let mut held: BinaryHeap<Delayed> = BinaryHeap::new();
    loop {
        let next = held.peek().map(|d| d.due);
        tokio::select! {
            got = queue.recv() => match got {
                Some(delayed) if held.len() < DELAY_QUEUE => held.push(delayed),
                Some(_) => bump(&shared.counters.overflowed),
                None => return,
            },
            () = sleep_until(next) => {
                let now = Instant::now();
                while held.peek().is_some_and(|d| d.due <= now) {
                    let d = held.pop().expect("invariant: a packet was peeked");
                    match d.out.send_to(&d.packet, d.dest).await {
                        Ok(_) => bump(&shared.counters.sent),
                        Err(_) => bump(&shared.counters.overflowed),
                    }
                }
            }
        }
    }
}

/// Sleeps until `due`, or for ever when there is nothing to wait for.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: u64) -> Party {
        Party::Node(NodeId(id))
    }

    #[test]
    fn the_first_matching_rule_decides_and_a_node_to_itself_is_untouched() {
        let victims = [NodeId(3), NodeId(4)];
        let mut rules = Rule::both_ways(
            Side::nodes(&victims),
            Side::all_but(&victims),
            Impairment::block(),
        )
        .to_vec();
        rules.push(Rule {
            from: Side::any(),
            to: Side::any(),
            impairment: Impairment::delay(Duration::from_millis(5)),
        });
        let zero = || 0.5;
        assert!(verdict(&rules, n(3), n(1), zero).sends.is_empty());
        assert!(verdict(&rules, Party::Client, n(4), zero).sends.is_empty());
        assert!(verdict(&rules, n(4), Party::Client, zero).sends.is_empty());
        assert_eq!(
            verdict(&rules, n(3), n(4), zero).sends,
            vec![Duration::from_millis(5)],
            "the victims still reach each other"
        );
        assert_eq!(
            verdict(&rules, n(1), n(2), zero).sends,
            vec![Duration::from_millis(5)]
        );
        assert_eq!(
            verdict(&rules, n(3), n(3), zero).sends,
            vec![Duration::ZERO],
            "a node to itself crosses no network"
        );
        assert_eq!(
            verdict(&[], n(1), Party::Client, zero).sends,
            vec![Duration::ZERO]
        );
    }

    #[test]
    fn impairments_drop_duplicate_jitter_and_reorder_by_the_draws() {
        let flaky = Impairment {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(4),
            loss: 0.1,
            duplicate: 0.2,
            reorder: 0.3,
        };
        let rules = [Rule {
            from: Side::clients(),
            to: Side::nodes(&[NodeId(2)]),
            impairment: flaky,
        }];
        // Draws in order: loss, duplicate, then per copy jitter and reorder.
        let run = |draws: &[f64]| {
            let mut draws = draws.iter().copied();
            verdict(&rules, Party::Client, n(2), move || {
                draws.next().expect("enough draws")
            })
            .sends
        };
        assert!(run(&[0.05]).is_empty(), "lost");
        assert_eq!(
            run(&[0.5, 0.9, 0.5, 0.9]),
            vec![Duration::from_millis(12)],
            "delay plus half the jitter"
        );
        assert_eq!(
            run(&[0.5, 0.1, 0.0, 0.9, 0.0, 0.1]),
            vec![
                Duration::from_millis(10),
                Duration::from_millis(10) + REORDER_HOLD
            ],
            "duplicated, the copy reordered"
        );
        assert_eq!(
            verdict(&rules, n(2), Party::Client, || 0.0).sends,
            vec![Duration::ZERO],
            "the rule is one way"
        );
    }

    #[test]
    fn sides_hold_whom_they_name() {
        let v = [NodeId(2)];
        assert!(Side::any().holds(Party::Client) && Side::any().holds(n(9)));
        assert!(Side::clients().holds(Party::Client) && !Side::clients().holds(n(1)));
        assert!(Side::nodes(&v).holds(n(2)) && !Side::nodes(&v).holds(n(1)));
        assert!(!Side::nodes(&v).holds(Party::Client));
        assert!(Side::other_nodes(&v).holds(n(1)) && !Side::other_nodes(&v).holds(n(2)));
        assert!(!Side::other_nodes(&v).holds(Party::Client));
        assert!(Side::all_but(&v).holds(Party::Client) && !Side::all_but(&v).holds(n(2)));
        assert_eq!(
            Proxy::node_address(NodeId(258), 7),
            "127.1.1.2:7".parse::<SocketAddr>().expect("an address")
        );
    }
}
