//! `--metrics-listen`: a deliberately small HTTP/1.1 responder for Prometheus scrapes.
//! One request per connection, `GET /metrics` or 404; the request head is bounded, every read
//! and write has a deadline, and at most a few scrapes run at once. It is plain HTTP with no
//! allowlist of its own: keep it on loopback or behind the host firewall.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// Longest request head (request line and headers) read before answering 431.
const MAX_HEAD: usize = 8 * 1024;
/// Time a scraper has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a scraper has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes served at once; more wait in the kernel backlog.
const MAX_SCRAPES: usize = 4;
/// First and longest pause after a failed accept.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// The Prometheus exposition prometheus-client writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `metrics` on `listener` until `shutdown`, then waits for scrapes in progress.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(metrics_addr = %addr, "metrics: serving GET /metrics");
    }
    let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
    let scrapes = TaskTracker::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        // The slot is taken before accept: at the limit, scrapers wait in the backlog.
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF.0;
                let metrics = Arc::clone(&metrics);
                scrapes.spawn(async move {
                    answer(stream, &metrics).await;
                    drop(permit);
                });
            }
            Err(e) => {
                warn!(error = %e, "metrics: accept failed; backing off");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }
    scrapes.close();
    scrapes.wait().await;
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) {
    let mut head = [0u8; MAX_HEAD];
    let response = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream, &mut head)).await
    {
        Ok(Ok(len)) => respond(route(&head[..len]), metrics),
        Ok(Err(HeadError::TooLarge)) => respond(Route::TooLarge, metrics),
        Ok(Err(HeadError::Closed)) | Err(_) => return,
    };
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        debug!("metrics: scraper did not take the response");
    }
}

enum HeadError {
    TooLarge,
    Closed,
}

/// Reads until the blank line that ends the request head; returns its length.
async fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> Result<usize, HeadError> {
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            return Err(HeadError::TooLarge);
        }
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        let from = filled.saturating_sub(3);
        filled += n;
        if let Some(end) = memchr::memmem::find(&buf[from..filled], b"\r\n\r\n") {
            return Ok(from + end + 4);
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
    TooLarge,
}

/// Decides the answer from the request line alone; headers are ignored.
fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with(b"HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET", b"/metrics") => Route::Metrics,
        (_, b"/metrics") => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

fn respond(route: Route, metrics: &Metrics) -> Vec<u8> {
    let (status, content_type, body) = match route {
        Route::Metrics => ("200 OK", CONTENT_TYPE, metrics.render()),
        Route::NotFound => ("404 Not Found", "text/plain", "not found\n".into()),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        Route::BadRequest => ("400 Bad Request", "text/plain", "bad request\n".into()),
        Route::TooLarge => (
            "431 Request Header Fields Too Large",
            "text/plain",
            "request head too large\n".into(),
        ),
    };
    let allow = if route == Route::MethodNotAllowed {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"\x16\x03\x01\x02\x00\r\n\r\n"), Route::BadRequest);
    }

    #[test]
    fn responses_carry_length_and_close() {
        let m = Metrics::new();
        let text = String::from_utf8(respond(Route::Metrics, &m)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Connection: close"));
        assert!(
            body.contains("tls_echo_connections_accepted_total"),
            "{body}"
        );
    }
}
