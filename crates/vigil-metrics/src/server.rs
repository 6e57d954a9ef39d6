//! A minimal HTTP/1 server for `/metrics` and `/healthz` (one request per connection;
//! Prometheus scrapes are small and rare).
//!
//! Whoever can reach the port is not trusted: a request (line and headers) is read up to
//! [`REQUEST_LIMIT`] bytes within [`DEADLINE`], each connection is handled on its own
//! thread, and at most [`MAX_CONNECTIONS`] are open at once. A new connection beyond that
//! closes the oldest one: connections that send nothing (or slowly) cannot keep a scrape
//! out, and a client that sends an endless header line is cut at the limit.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Metrics;

/// Bytes of request line and headers read at most (a scrape sends a few hundred).
pub const REQUEST_LIMIT: usize = 8 << 10;
/// Time a connection has to send its request and take the answer.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// Connections handled at once; the oldest is closed for a new one.
pub const MAX_CONNECTIONS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics-server: {addr:?} is not an address (examples: :2112, localhost:2112)")]
    Address { addr: String },
    #[error("--metrics-server: cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// Go-style `:2112` means every interface.
pub fn normalize(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    }
}

/// The open connections, oldest first: (id, a handle to close it).
#[derive(Default)]
struct Open {
    conns: Mutex<VecDeque<(u64, TcpStream)>>,
    next: AtomicU64,
}

impl Open {
    /// Registers a connection, closing the oldest when all slots are taken.
    fn admit(&self, stream: &TcpStream) -> Option<u64> {
        let handle = stream.try_clone().ok()?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        while conns.len() >= MAX_CONNECTIONS {
            if let Some((_, oldest)) = conns.pop_front() {
                // Its thread's read or write fails at once and the thread ends.
                let _ = oldest.shutdown(Shutdown::Both);
            }
        }
        conns.push_back((id, handle));
        Some(id)
    }

    fn done(&self, id: u64) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|(i, _)| *i != id);
    }
}

/// Binds `addr` and serves in a background thread; returns the bound address.
pub fn serve(metrics: Arc<Metrics>, addr: &str) -> Result<std::net::SocketAddr, MetricsError> {
    let norm = normalize(addr);
    let resolved = norm
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| MetricsError::Address {
            addr: addr.to_string(),
        })?;
    let listener = TcpListener::bind(resolved).map_err(|source| MetricsError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    let local = listener.local_addr().unwrap_or(resolved);
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || accept_loop(&listener, &metrics))
        .map_err(|source| MetricsError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    Ok(local)
}

fn accept_loop(listener: &TcpListener, metrics: &Arc<Metrics>) {
    let open = Arc::new(Open::default());
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: do not spin.
                tracing::debug!(error = %e, "metrics accept failed");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Some(id) = open.admit(&stream) else {
            continue;
        };
        let (m, o) = (Arc::clone(metrics), Arc::clone(&open));
        let spawned = std::thread::Builder::new()
            .name("metrics-conn".into())
            .stack_size(64 << 10)
            .spawn(move || {
                if let Err(e) = handle(&m, stream) {
                    tracing::debug!(error = %e, "metrics request failed");
                }
                o.done(id);
            });
        if spawned.is_err() {
            open.done(id);
        }
    }
}

/// Why a request was not read.
#[derive(Debug, PartialEq, Eq)]
enum RequestError {
    TooLarge,
    /// Timed out or closed before the end of the headers.
    Incomplete,
}

/// Reads the request line and headers: up to [`REQUEST_LIMIT`] bytes, until `deadline`.
/// Returns the request line.
fn read_request(stream: &mut impl ReadTimed, deadline: Instant) -> Result<String, RequestError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RequestError::Incomplete);
        }
        stream
            .set_timeout(left)
            .map_err(|_| RequestError::Incomplete)?;
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(RequestError::Incomplete),
            Ok(n) => n,
        };
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        let end = header_end(&buf, from);
        if let Some(end) = end {
            if end > REQUEST_LIMIT {
                return Err(RequestError::TooLarge);
            }
            let head = String::from_utf8_lossy(&buf[..end]);
            return Ok(head.lines().next().unwrap_or("").to_string());
        }
        if buf.len() > REQUEST_LIMIT {
            return Err(RequestError::TooLarge);
        }
    }
}

/// Where the headers end (the blank line), searching from `from`.
fn header_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find(|&i| buf[i..].starts_with(b"\r\n\r\n") || buf[i..].starts_with(b"\n\n"))
}

/// A stream whose reads can be given a timeout (a `TcpStream`; a fake in tests).
trait ReadTimed: Read {
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()>;
}

impl ReadTimed for TcpStream {
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

fn handle(metrics: &Metrics, mut stream: TcpStream) -> std::io::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    stream.set_write_timeout(Some(DEADLINE))?;
    let request = match read_request(&mut stream, deadline) {
        Ok(r) => r,
        Err(RequestError::TooLarge) => {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            );
        }
        Err(RequestError::Incomplete) => return Ok(()),
    };
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".to_string(),
        ),
    };
    respond(&mut stream, status, ctype, &body)
}

fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    // Unread request bytes would turn close() into a reset that can lose the answer.
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
