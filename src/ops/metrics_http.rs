//! The optional loopback HTTP listener (`--metrics ADDR:PORT`) that serves the counters in the
//! Prometheus text format: `GET /metrics` over HTTP/1 (hyper), one request per connection, a
//! few connections at once. This module owns the accept loop and its bounds; hyper owns the
//! protocol (request parsing, header limits, framing).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::metrics::{self, Metrics};
use crate::net::accept::AcceptBackoff;

/// The largest request head read from a metrics client (hyper's smallest buffer limit); a
/// larger one is answered `431` and the connection closed.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a metrics connection may take, from accept to the last byte of the reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Metrics connections served at once. A scraper needs one; more wait in the kernel's backlog,
/// where they cost this process no file descriptor, so a local process that opens connections
/// and holds them cannot take the descriptors forwarding and DNS over TCP need.
pub const MAX_CONNECTIONS: usize = 4;

/// Serves `GET /metrics` (HTTP/1.x, one request per connection) until the task is dropped: at
/// most [`MAX_CONNECTIONS`] at once (a slot is taken before `accept`), each closed after
/// [`REQUEST_TIMEOUT`] at the latest.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = AcceptBackoff::new("metrics");
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD)
        // One request per connection: the slot is free again as soon as the reply is written.
        .keep_alive(false);
    let http = Arc::new(http);
    loop {
        let Ok(permit) = Arc::clone(&connections).acquire_owned().await else {
            return;
        };
        let (stream, peer) = backoff.accept(|| listener.accept()).await;
        let (metrics, http) = (metrics.clone(), Arc::clone(&http));
        tokio::spawn(async move {
            let served =
                tokio::time::timeout(REQUEST_TIMEOUT, serve_connection(&http, stream, metrics));
            match served.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => debug!(%peer, %error, "metrics connection failed"),
                Err(_) => debug!(%peer, "metrics connection too slow; closed"),
            }
            drop(permit);
        });
    }
}

/// One connection, driven by hyper until its one request is answered (or it fails).
async fn serve_connection(
    http: &http1::Builder,
    stream: TcpStream,
    metrics: Metrics,
) -> Result<(), hyper::Error> {
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        let reply = respond(request.method(), request.uri().path(), &metrics);
        std::future::ready(Ok::<_, Infallible>(reply))
    });
    http.serve_connection(TokioIo::new(stream), service).await
}

/// The reply to `method path`: the metrics for `GET /metrics`, 405 for any other method, 404
/// for any other path.
fn respond(method: &Method, path: &str, metrics: &Metrics) -> Response<String> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET, "/metrics") => match metrics.try_render() {
            Ok(text) => (StatusCode::OK, metrics::CONTENT_TYPE, text),
            Err(error) => {
                warn!(%error, "cannot encode the metrics");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    "cannot encode the metrics\n".to_string(),
                )
            }
        },
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends `request` to a fresh listener and returns the whole reply (the server closes).
    async fn exchange(metrics: &Metrics, request: &[u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(serve(listener, metrics.clone()));
        let mut client = TcpStream::connect(address).await.expect("connect");
        client.write_all(request).await.expect("send");
        let mut reply = Vec::new();
        let read_all = async {
            let mut chunk = [0u8; 4096];
            // A reset after the reply (the server closed with part of an oversized request
            // unread) ends the reply as an end of file does.
            while let Ok(read @ 1..) = client.read(&mut chunk).await {
                reply.extend_from_slice(&chunk[..read]);
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT * 2, read_all)
            .await
            .expect("the server closes the connection");
        server.abort();
        String::from_utf8(reply).expect("UTF-8")
    }

    #[tokio::test]
    async fn get_metrics_is_the_text_format_and_other_requests_are_refused() {
        let metrics = Metrics::new();
        metrics.failover();
        let reply = exchange(
            &metrics,
            b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
        )
        .await;
        let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert_eq!(body, metrics.render());
        assert!(
            body.lines().any(|l| l == "failover_dns_failovers_total 1"),
            "{body}"
        );

        let reply = exchange(&metrics, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 404 Not Found\r\n"), "{reply}");
        let reply = exchange(&metrics, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            reply.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{reply}"
        );
        assert!(
            reply.to_ascii_lowercase().contains("\r\nallow: get\r\n"),
            "{reply}"
        );
        let reply = exchange(&metrics, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply}");
        let reply = exchange(&metrics, b"not http at all\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
    }

    /// A client that never finishes its request head is closed by the header read timeout,
    /// and a head larger than the limit is refused, without waiting for the connection limit.
    #[tokio::test]
    async fn slow_and_oversized_request_heads_are_closed() {
        let metrics = Metrics::new();
        let started = std::time::Instant::now();
        let reply = exchange(&metrics, b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
        assert!(!reply.contains("200 OK"), "{reply}");
        let waited = started.elapsed();
        assert!(
            waited >= HEADER_READ_TIMEOUT && waited < REQUEST_TIMEOUT,
            "closed after {waited:?}"
        );

        let mut huge = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        huge.resize(MAX_REQUEST_HEAD * 2, b'a');
        huge.extend_from_slice(b"\r\n\r\n");
        let reply = exchange(&metrics, &huge).await;
        assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    }
}
