//! The optional loopback HTTP listener (`--metrics ADDR:PORT`) that serves the counters in the
//! Prometheus text format: `GET /metrics`, one request per connection, a few connections at
//! once.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::metrics::Metrics;
use crate::net::accept::AcceptBackoff;

/// Longest request head read from a metrics client.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a metrics connection may take, from accept to the last byte of the reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Metrics connections served at once. A scraper needs one; more wait in the kernel's backlog,
/// where they cost this process no file descriptor, so a local process that opens connections
/// and holds them cannot take the descriptors forwarding and DNS over TCP need.
pub const MAX_CONNECTIONS: usize = 4;

/// Serves `GET /metrics` (HTTP/1.x, one request per connection) until the task is dropped: at
/// most [`MAX_CONNECTIONS`] at once, each closed after [`REQUEST_TIMEOUT`] at the latest.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = AcceptBackoff::new("metrics");
    loop {
        let Ok(permit) = Arc::clone(&connections).acquire_owned().await else {
            return;
        };
        let (stream, peer) = backoff.accept(|| listener.accept()).await;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let served = tokio::time::timeout(REQUEST_TIMEOUT, serve_connection(stream, &metrics));
            match served.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => debug!(%peer, %error, "metrics connection failed"),
                Err(_) => debug!(%peer, "metrics connection too slow; closed"),
            }
            drop(permit);
        });
    }
}

async fn serve_connection(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(chunk.get(..read).unwrap_or_default());
    }
    let request_line = String::from_utf8_lossy(&head);
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
