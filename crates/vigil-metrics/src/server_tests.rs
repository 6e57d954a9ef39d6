//! The metrics listener against clients that do not play by the rules.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::*;
use crate::MetricsOptions;

fn metrics() -> Arc<Metrics> {
    Metrics::new(MetricsOptions {
        event_metrics: true,
        labels: Vec::new(),
        node_name: "n1".into(),
        version: "0.1.0".into(),
    })
}

/// A client that sends `total` bytes of header without ever ending a line, and counts
/// what the server read.
struct Endless {
    total: usize,
    read: usize,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.total - self.read);
        buf[..n].fill(b'A');
        self.read += n;
        Ok(n)
    }
}

impl ReadTimed for Endless {
    fn set_timeout(&mut self, _: Duration) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn an_endless_header_is_cut_at_the_limit() {
    let mut c = Endless {
        total: 1 << 20,
        read: 0,
    };
    let r = read_request(&mut c, Instant::now() + DEADLINE);
    assert_eq!(r, Err(RequestError::TooLarge));
    assert!(c.read <= REQUEST_LIMIT + 1024, "read {} bytes", c.read);
}

#[test]
fn headers_may_arrive_in_pieces_and_end_with_either_blank_line() {
    struct Pieces(Vec<&'static [u8]>);
    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let p = self.0.remove(0);
            buf[..p.len()].copy_from_slice(p);
            Ok(p.len())
        }
    }
    impl ReadTimed for Pieces {
        fn set_timeout(&mut self, _: Duration) -> std::io::Result<()> {
            Ok(())
        }
    }
    let deadline = Instant::now() + DEADLINE;
    let mut p = Pieces(vec![b"GET /metrics HTTP/1.1\r", b"\nHost: x\r\n\r", b"\n"]);
    assert_eq!(
        read_request(&mut p, deadline).unwrap(),
        "GET /metrics HTTP/1.1"
    );
    let mut p = Pieces(vec![b"GET /healthz HTTP/1.0\n\n"]);
    assert_eq!(
        read_request(&mut p, deadline).unwrap(),
        "GET /healthz HTTP/1.0"
    );
    let mut p = Pieces(vec![b"GET /metrics HTTP/1.1\r\n"]);
    assert_eq!(
        read_request(&mut p, deadline),
        Err(RequestError::Incomplete)
    );
}

fn scrape(addr: std::net::SocketAddr) -> (String, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out, t.elapsed())
}

#[test]
fn idle_connections_do_not_keep_a_scrape_out() {
    let addr = serve(metrics(), "127.0.0.1:0").unwrap();
    // More silent clients than slots, all connected before the scrape.
    let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS + 4)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let (out, took) = scrape(addr);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(took < Duration::from_secs(1), "scrape took {took:?}");
    drop(idle);
}

#[test]
fn a_header_flood_is_answered_431_and_the_server_goes_on() {
    let addr = serve(metrics(), "127.0.0.1:0").unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let chunk = vec![b'A'; 64 << 10];
    let mut sent = 0;
    // The server stops reading at the limit: writing fails (reset) or stalls (timeout).
    while sent < 1 << 20 {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 431"), "{out}");
    let (out, took) = scrape(addr);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(took < Duration::from_secs(1), "scrape took {took:?}");
}

#[test]
fn a_slow_client_is_closed_at_the_deadline() {
    let addr = serve(metrics(), "127.0.0.1:0").unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE * 2)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\n").unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let took = t.elapsed();
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert!(
        took >= DEADLINE - Duration::from_millis(500) && took < DEADLINE + Duration::from_secs(2),
        "closed after {took:?}"
    );
}
