//! GetUrl and DnsLookup: what a selector asks the agent to do when its event arrives (canary
//! tokens). Fire-and-forget, as Tetragon: a few worker threads take requests from a bounded
//! queue, so a slow or dead server never delays events; when the queue is full the request is
//! dropped and logged. The event itself is posted as usual.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use vigil_runtime::UserAction;

const WORKERS: usize = 4;
const QUEUE: usize = 1024;
const TIMEOUT: Duration = Duration::from_secs(3);

struct Runner {
    queue: SyncSender<UserAction>,
}

static RUNNER: OnceLock<Runner> = OnceLock::new();

/// Starts the workers. `dns_server`: where DnsLookup sends its query (`--dns-lookup-server`);
/// None: the first `nameserver` of /etc/resolv.conf, port 53.
pub fn start(dns_server: Option<SocketAddr>) {
    RUNNER.get_or_init(|| {
        let (tx, rx) = sync_channel::<UserAction>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..WORKERS {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("vigil-action-{i}"))
                .spawn(move || worker(&rx, dns_server));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a GetUrl/DnsLookup worker");
            }
        }
        Runner { queue: tx }
    });
}

/// Actions dropped because the queue was full (reported as events_lost).
static DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Actions dropped since start.
pub fn dropped() -> u64 {
    DROPPED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Queues the actions of a matched selector.
pub fn submit(actions: &[UserAction]) {
    let Some(r) = RUNNER.get() else {
        return;
    };
    for a in actions {
        match r.queue.try_send(a.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(a)) => {
                DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(action = ?a, "GetUrl/DnsLookup queue full: action dropped");
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Queues the GetUrl / DnsLookup actions of the matched selector; the event's action names
/// the first of them (Post when there is none), as Tetragon's.
pub fn action_of(
    hook: &vigil_runtime::HookInfo,
    selector: u32,
) -> vigil_proto::tetragon::KprobeAction {
    let Some(actions) = hook.user_actions.get(selector as usize) else {
        return vigil_proto::tetragon::KprobeAction::Post;
    };
    submit(actions);
    match actions.first() {
        Some(vigil_runtime::UserAction::GetUrl(_)) => vigil_proto::tetragon::KprobeAction::Geturl,
        Some(vigil_runtime::UserAction::DnsLookup(_)) => {
            vigil_proto::tetragon::KprobeAction::Dnslookup
        }
        None => vigil_proto::tetragon::KprobeAction::Post,
    }
}

fn worker(rx: &Mutex<Receiver<UserAction>>, dns_server: Option<SocketAddr>) {
    loop {
        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(action) = next else { return };
        let result = match &action {
            UserAction::GetUrl(url) => http_get(url).map(|status| format!("HTTP {status}")),
            UserAction::DnsLookup(name) => dns_lookup(name, dns_server),
        };
        match result {
            Ok(outcome) => tracing::debug!(action = ?action, outcome, "policy action done"),
            Err(e) => tracing::warn!(action = ?action, error = e, "policy action failed"),
        }
    }
}

/// `http://host[:port]/path` -> (host, port, path).
pub fn split_http_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are fetched"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((
        host.trim_matches(['[', ']']).to_string(),
        port,
        path.to_string(),
    ))
}

/// One GET, the response status line read (the body is not needed): the status code.
fn http_get(url: &str) -> Result<u16, String> {
    let (host, port, path) = split_http_url(url)?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vigil\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {line:?}"))
}

/// A DNS query (type A, recursion desired) for `name`, as RFC 1035 lays it out.
pub fn dns_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name}: bad label {label:?}"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    Ok(q)
}

fn system_nameserver() -> Result<SocketAddr, String> {
    let conf = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("/etc/resolv.conf: {e}"))?;
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .ok_or_else(|| "no nameserver in /etc/resolv.conf".to_string())
}

/// Sends the query and waits for the answer's header: "answers: N" or an error.
fn dns_lookup(name: &str, server: Option<SocketAddr>) -> Result<String, String> {
    let server = match server {
        Some(s) => s,
        None => system_nameserver()?,
    };
    let id = (std::process::id() as u16) ^ (vigil_process::clock::boot_ns() as u16);
    let query = dns_query(id, name)?;
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    sock.send_to(&query, server)
        .map_err(|e| format!("{server}: {e}"))?;
    let mut buf = [0u8; 512];
    let (n, _) = sock
        .recv_from(&mut buf)
        .map_err(|e| format!("{server}: {e}"))?;
    if n < 12 || buf[..2] != id.to_be_bytes() {
        return Err(format!("{server}: not an answer to the query"));
    }
    Ok(format!(
        "rcode {}, answers {}",
        buf[3] & 0xf,
        u16::from_be_bytes([buf[6], buf[7]])
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_split_into_host_port_and_path() {
        assert_eq!(
            split_http_url("http://127.0.0.1:8080/canary?x=1").unwrap(),
            ("127.0.0.1".into(), 8080, "/canary?x=1".into())
        );
        assert_eq!(
            split_http_url("http://ebpf.io").unwrap(),
            ("ebpf.io".into(), 80, "/".into())
        );
        assert!(split_http_url("https://ebpf.io").is_err());
        assert!(split_http_url("http://:80/").is_err());
    }

    #[test]
    fn dns_query_is_rfc1035_wire_format() {
        let q = dns_query(0x1234, "a.bc").unwrap();
        assert_eq!(
            q,
            [
                0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header: RD, 1 question
                1, b'a', 2, b'b', b'c', 0, // name
                0, 1, 0, 1, // type A, class IN
            ]
        );
        assert!(dns_query(1, "a..b").is_err());
    }
}
