//! The fault proxy alone, on real UDP sockets: an echo server stands for a node, and
//! the test sends through the proxy's front as a client, or as another node (from that
//! node's own address).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hive_chaos::proxy::{Impairment, Proxy, Rule, Side};
use hive_wire::NodeId;
use tokio::net::UdpSocket;

/// Pings per measurement.
const PINGS: usize = 21;
/// How long an answer may take before it counts as not coming (generous: the machine
/// may be busy; a blocked packet never comes at all).
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// The delay the proxy is told to add each way.
const ADDED: Duration = Duration::from_millis(40);

/// An echo server on `addr`, answering every datagram with itself.
async fn echo(addr: SocketAddr) -> SocketAddr {
    let socket = UdpSocket::bind(addr)
        .await
        .expect("binding the echo server");
    let at = socket.local_addr().expect("an address");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let _ = socket.send_to(&buf[..len], from).await;
        }
    });
    at
}

/// Sends ping `seq` to `to` and waits for its echo (answers to other pings are
/// skipped); the round trip, or `None` if none came within [`ANSWER_WAIT`].
async fn ping(socket: &UdpSocket, to: SocketAddr, seq: u64) -> Option<Duration> {
    let sent = Instant::now();
    socket.send_to(&seq.to_le_bytes(), to).await.expect("send");
    let mut buf = [0u8; 64];
    let deadline = sent + ANSWER_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.recv_from(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok((8, _))) if buf[..8] == seq.to_le_bytes() => return Some(sent.elapsed()),
            Ok(_) => {}
        }
    }
}

/// The median round trip of [`PINGS`] pings, every one answered.
async fn median_rtt(socket: &UdpSocket, to: SocketAddr, first_seq: u64) -> Duration {
    let mut rtts = Vec::with_capacity(PINGS);
    for i in 0..PINGS as u64 {
        let rtt = ping(socket, to, first_seq + i)
            .await
            .unwrap_or_else(|| panic!("ping {} through the proxy was not answered", i));
        rtts.push(rtt);
    }
    rtts.sort();
    rtts[PINGS / 2]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn a_delay_the_proxy_is_told_to_add_shows_in_the_round_trip() {
    let rt = runtime();
    rt.block_on(async {
        let node = echo(Proxy::node_address(NodeId(1), 0)).await;
        let mut proxy = Proxy::new(tokio::runtime::Handle::current(), 1);
        let front = proxy.add_front(NodeId(1), node).expect("a front");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
        let base = median_rtt(&client, front, 0).await;
        proxy.set_rules(vec![Rule {
            from: Side::any(),
            to: Side::any(),
            impairment: Impairment::delay(ADDED),
        }]);
        let delayed = median_rtt(&client, front, 1000).await;
        let added = delayed.saturating_sub(base);
        let want = 2 * ADDED;
        let off = added.abs_diff(want);
        assert!(
            off <= want / 5,
            "told to add {ADDED:?} each way: measured {added:?} more ({base:?} without, {delayed:?} with); want {want:?} within 20 %"
        );
        proxy.clear();
        let after = median_rtt(&client, front, 2000).await;
        assert!(
            after < ADDED,
            "cleared, the delay is gone: {after:?} (base {base:?})"
        );
        let counts = proxy.counts();
        assert!(counts.delayed >= 2 * PINGS as u64, "{counts:?}");
        assert_eq!(counts.dropped, 0, "{counts:?}");
    });
}

#[test]
fn a_partition_blocks_whom_it_names_and_no_one_else() {
    let rt = runtime();
    rt.block_on(async {
        // Node 1 is an echo server behind the proxy; node 2 sends from its own address.
        let node_1 = echo(Proxy::node_address(NodeId(1), 0)).await;
        let node_2_addr = Proxy::node_address(NodeId(2), 0);
        let mut proxy = Proxy::new(tokio::runtime::Handle::current(), 2);
        let front_1 = proxy.add_front(NodeId(1), node_1).expect("front 1");
        let node_2 = UdpSocket::bind(node_2_addr).await.expect("node 2's socket");
        let node_2_listen = node_2.local_addr().expect("an address");
        let _front_2 = proxy.add_front(NodeId(2), node_2_listen).expect("front 2");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
        assert!(ping(&client, front_1, 1).await.is_some());
        assert!(ping(&node_2, front_1, 2).await.is_some());

        // Clients cut off from node 1: node 2 still reaches it.
        proxy.set_rules(
            Rule::both_ways(
                Side::clients(),
                Side::nodes(&[NodeId(1)]),
                Impairment::block(),
            )
            .to_vec(),
        );
        assert_eq!(
            ping(&client, front_1, 3).await,
            None,
            "the client is cut off"
        );
        assert!(
            ping(&node_2, front_1, 4).await.is_some(),
            "node 2 is not a client"
        );

        // Node 1 cut off from the other nodes: the client reaches it again.
        proxy.set_rules(
            Rule::both_ways(
                Side::nodes(&[NodeId(1)]),
                Side::other_nodes(&[NodeId(1)]),
                Impairment::block(),
            )
            .to_vec(),
        );
        assert!(ping(&client, front_1, 5).await.is_some());
        assert_eq!(ping(&node_2, front_1, 6).await, None, "node 2 is cut off");

        // Only the answers blocked: requests get through, nothing comes back.
        proxy.set_rules(vec![Rule {
            from: Side::nodes(&[NodeId(1)]),
            to: Side::any(),
            impairment: Impairment::block(),
        }]);
        assert_eq!(ping(&client, front_1, 7).await, None);

        proxy.clear();
        assert!(ping(&client, front_1, 8).await.is_some(), "healed");
        assert!(ping(&node_2, front_1, 9).await.is_some(), "healed");
        let counts = proxy.counts();
        assert_eq!(
            counts.dropped, 3,
            "three pings or answers blocked: {counts:?}"
        );
    });
}

#[test]
fn duplication_sends_each_packet_twice() {
    let rt = runtime();
    rt.block_on(async {
        let node = echo(Proxy::node_address(NodeId(1), 0)).await;
        let mut proxy = Proxy::new(tokio::runtime::Handle::current(), 3);
        let front = proxy.add_front(NodeId(1), node).expect("a front");
        proxy.set_rules(vec![Rule {
            from: Side::clients(),
            to: Side::any(),
            impairment: Impairment {
                duplicate: 1.0,
                ..Impairment::default()
            },
        }]);
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
        client.send_to(b"once", front).await.expect("send");
        let mut buf = [0u8; 16];
        for copy in 1..=2 {
            let (len, _) = tokio::time::timeout(ANSWER_WAIT, client.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("copy {copy} did not come back"))
                .expect("recv");
            assert_eq!(&buf[..len], b"once");
        }
        assert_eq!(proxy.counts().duplicated, 1);
    });
}
