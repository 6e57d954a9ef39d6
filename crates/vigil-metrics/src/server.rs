//! A minimal HTTP/1 server for `/metrics` and `/healthz` (one thread, one request per
//! connection; Prometheus scrapes are small and rare).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::Metrics;

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
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = handle(&metrics, stream) {
                    tracing::debug!(error = %e, "metrics request failed");
                }
            }
        })
        .map_err(|source| MetricsError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    Ok(local)
}

fn handle(metrics: &Metrics, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
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
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
