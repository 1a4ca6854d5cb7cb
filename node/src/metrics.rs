//! The node's metrics over HTTP: `GET /metrics` answers the Prometheus (OpenMetrics)
//! text of `hive_actors::metrics::render`. A deliberately small HTTP/1.1 server (one
//! request per connection, then close): Prometheus scrapes need nothing more, and a
//! web framework would be the node's largest dependency.

use std::sync::Arc;
use std::time::Duration;

use hive_actors::metrics::{MetricsSource, render};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Scrapes served at once; more connections are closed at once (a scraper retries).
const METRICS_CONNECTIONS: usize = 16;
/// The longest request head read (a scrape's is a few hundred bytes).
const MAX_REQUEST_HEAD: usize = 8 << 10;
/// How long one scrape may take, reading the request to writing the last byte.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(10);
/// What OpenMetrics text is served as.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves scrapes on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, source: MetricsSource) {
    let slots = Arc::new(Semaphore::new(METRICS_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let source = source.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(SCRAPE_DEADLINE, answer(stream, &source)).await;
        });
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, source: &MetricsSource) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await?;
        if n == 0 || head.len() + n > MAX_REQUEST_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, content_type, body) = match (method, path) {
        (b"GET", b"/metrics") => match render(source).await {
            Ok(text) => ("200 OK", CONTENT_TYPE, text),
            Err(e) => (
                "500 Internal Server Error",
                "text/plain",
                format!("metrics unavailable: {e}\n"),
            ),
        },
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "hive-node serves its metrics at /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
