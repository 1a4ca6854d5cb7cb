//! Every node serves its metrics over HTTP in the Prometheus (OpenMetrics) text format;
//! the Prometheus project's own parser (its Python client, installed by
//! `scripts/install-test-tools`) reads them, and the documented names are there.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod support;
use support::{Cluster, SEED};

/// The metric families the documentation names (counters without `_total`, as the
/// parser names their families).
const DOCUMENTED: &[&str] = &[
    "hive_shard_requests",
    "hive_shard_request_seconds",
    "hive_shard_bytes",
    "hive_store_capacity_bytes",
    "hive_store_used_bytes",
    "hive_store_live_bytes",
    "hive_store_garbage_bytes",
    "hive_store_shards",
    "hive_store_commits",
    "hive_scrub_passes",
    "hive_scrub_bytes",
    "hive_scrub_damaged_shards",
    "hive_scrub_pass_done_bytes",
    "hive_scrub_pass_total_bytes",
    "hive_scrub_rate_bytes_per_second",
    "hive_reclaim_segments_freed",
    "hive_reclaim_moved_bytes",
    "hive_repair_groups",
    "hive_repair_censused_groups",
    "hive_repair_rounds",
    "hive_repair_queued_chunks",
    "hive_repair_queued_bytes",
    "hive_repair_rebuilt_shards",
    "hive_repair_rebuilt_bytes",
    "hive_repair_failed",
    "hive_repair_unreadable_chunks",
    "hive_chunks",
];

fn python_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the client crate")
        .join("target/test-tools/python");
    assert!(
        path.join("prometheus_client").exists(),
        "{} lacks prometheus_client: run scripts/install-test-tools (scripts/test does)",
        path.display()
    );
    path
}

/// GET `path` from `addr`: the status line and the body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The families the OpenMetrics parser finds in `text`, one `name type` per line, with
/// each sample as `sample name{labels} value`.
fn parse(text: &str) -> String {
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   print(f.name, f.type)\n\
        \x20   for s in f.samples:\n\
        \x20       print('sample', s.name, sorted(s.labels.items()), s.value)\n";
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PYTHONPATH", python_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed the parser");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn every_node_serves_metrics_a_prometheus_parser_accepts() {
    let c = Cluster::up("metrics");
    let data = hive_testkit::random_bytes(SEED + 80, 8 << 20);
    let id = c.put("data.bin", &data);
    c.check(&id, &data);
    let file: toml::Table = std::fs::read_to_string(c.path("cluster.toml"))
        .expect("cluster.toml")
        .parse()
        .expect("toml");
    let mut puts = 0.0;
    for node in file["nodes"].as_array().expect("nodes") {
        let addr = node["metrics"]
            .as_str()
            .expect("each node has a metrics address");
        let (status, text) = get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK", "{text}");
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
        let parsed = parse(&text);
        for name in DOCUMENTED {
            assert!(
                parsed.lines().any(|l| l.split(' ').next() == Some(*name)),
                "{name} missing from node {}'s metrics:\n{parsed}",
                node["id"]
            );
        }
        puts += parsed
            .lines()
            .filter(|l| {
                l.starts_with("sample hive_shard_requests_total ")
                    && l.contains("('op', 'put')")
                    && l.contains("('outcome', 'ok')")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        let authority = node["id"].as_integer() == Some(1);
        assert_eq!(
            parsed
                .lines()
                .any(|l| l.split(' ').next() == Some("hive_shards_owed_reported")),
            authority,
            "the owed count is the map authority's (node 1) alone:\n{parsed}"
        );
        let (status, _) = get(addr, "/other");
        assert_eq!(status, "HTTP/1.1 404 Not Found");
    }
    assert!(puts > 0.0, "no node counted a put");
}
