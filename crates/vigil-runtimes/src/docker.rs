//! Docker's engine API over its unix socket: `GET /containers/{id}/json` (HTTP/1.1, one
//! request per connection) for the container's name and image.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Error, Found, Runtime, bounded};

/// Largest response read (an inspect carries the whole config; env and labels included).
const MAX_RESPONSE: usize = 4 << 20;
/// Longest header block accepted.
const MAX_HEAD: usize = 64 << 10;

pub struct Docker {
    socket: PathBuf,
    timeout: Duration,
}

impl Docker {
    pub fn new(socket: PathBuf, timeout: Duration) -> Self {
        Self { socket, timeout }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The container `id` (hex, from a cgroup path); `None` when Docker does not know it.
    pub fn inspect(&self, id: &str) -> Result<Option<Found>, Error> {
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let body = self.get(&format!("/containers/{id}/json"))?;
        let Some(body) = body else {
            return Ok(None);
        };
        parse_inspect(&body).map(Some)
    }

    /// The body of a 200 answer, `None` on 404.
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        let where_ = || self.socket.display().to_string();
        let deadline = Instant::now() + self.timeout;
        let mut s = UnixStream::connect(&self.socket)
            .map_err(|e| Error::Unreachable(format!("{}: {e}", where_())))?;
        let io = |e: std::io::Error| Error::Unreachable(format!("{}: {e}", where_()));
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
        );
        s.write_all(request.as_bytes()).map_err(io)?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 << 10];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Unreachable(format!(
                    "{}: no answer in {:?}",
                    where_(),
                    self.timeout
                )));
            }
            s.set_read_timeout(Some(left)).map_err(io)?;
            let n = s.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            if raw.len() + n > MAX_RESPONSE + MAX_HEAD {
                return Err(Error::Protocol(format!(
                    "{}: answer over {MAX_RESPONSE} bytes",
                    where_()
                )));
            }
            raw.extend_from_slice(&buf[..n]);
        }
        let (status, body) =
            parse_response(&raw).map_err(|e| Error::Protocol(format!("{}: {e}", where_())))?;
        match status {
            200 => Ok(Some(body)),
            404 => Ok(None),
            other => Err(Error::Protocol(format!(
                "{}: GET {path}: HTTP {other}",
                where_()
            ))),
        }
    }
}

/// Status and body of an HTTP/1.1 response read to its end (Content-Length, chunked, or
/// until the connection closed).
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let head_end = raw
        .windows(4)
        .take(MAX_HEAD)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "headers are not UTF-8")?;
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!(
            "not an HTTP/1 answer: {:?}",
            bounded(status_line, 80)
        ));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {:?}", bounded(status_line, 80)))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {:?}", bounded(line, 80)));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        body.get(..n)
            .ok_or("body shorter than its Content-Length")?
            .to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .take(64)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk size line")?;
        let line = std::str::from_utf8(&body[..eol]).map_err(|_| "bad chunk size line")?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "bad chunk size")?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or("truncated chunk")?;
    }
}

/// Docker's inspect JSON -> name (without the leading `/`), image as given and image id.
pub fn parse_inspect(body: &[u8]) -> Result<Found, Error> {
    #[derive(serde::Deserialize)]
    struct Inspect {
        #[serde(rename = "Id")]
        id: String,
        #[serde(rename = "Name", default)]
        name: String,
        #[serde(rename = "Image", default)]
        image_id: String,
        #[serde(rename = "Config")]
        config: Option<Config>,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(rename = "Image", default)]
        image: String,
    }
    let c: Inspect = serde_json::from_slice(body)
        .map_err(|e| Error::Protocol(format!("container inspect: {e}")))?;
    Ok(Found {
        runtime: Runtime::Docker,
        id: bounded(&c.id, crate::MAX_ID),
        name: bounded(c.name.strip_prefix('/').unwrap_or(&c.name), crate::MAX_NAME),
        image: bounded(
            &c.config.map(|c| c.image).unwrap_or_default(),
            crate::MAX_IMAGE,
        ),
        image_id: bounded(&c.image_id, crate::MAX_IMAGE),
        cgroup_dir: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses() {
        let r =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}xx";
        assert_eq!(parse_response(r).unwrap(), (200, b"{}".to_vec()));
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), (200, b"abcde".to_vec()));
        let r = b"HTTP/1.1 404 Not Found\r\n\r\nno such container";
        assert_eq!(parse_response(r).unwrap().0, 404);
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffff\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"SSH-2.0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK",
        ] {
            assert!(
                parse_response(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn inspect_fields() {
        let body = br#"{"Id":"abc","Name":"/web","Image":"sha256:11","Config":{"Image":"busybox:1"},"State":{}}"#;
        let f = parse_inspect(body).unwrap();
        assert_eq!(
            (
                f.id.as_str(),
                f.name.as_str(),
                f.image.as_str(),
                f.image_id.as_str()
            ),
            ("abc", "web", "busybox:1", "sha256:11")
        );
        assert!(parse_inspect(b"[]").is_err());
        let long = format!(r#"{{"Id":"a","Name":"/{}"}}"#, "n".repeat(10_000));
        assert_eq!(
            parse_inspect(long.as_bytes()).unwrap().name.len(),
            crate::MAX_NAME
        );
    }
}

/// The client against a local server on a unix socket answering as Docker's engine does
/// (chunked JSON for a known id, 404 for an unknown one), and against servers that misbehave.
#[cfg(test)]
mod server_tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::net::UnixListener;

    /// Serves one connection per entry of `answers`; returns the request lines seen.
    fn serve(dir: &Path, answers: Vec<Vec<u8>>) -> (PathBuf, std::thread::JoinHandle<Vec<String>>) {
        let sock = dir.join("docker.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).unwrap();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                seen.push(line.trim_end().to_string());
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                        break;
                    }
                }
                let _ = s.write_all(&answer);
            }
            seen
        });
        (sock, handle)
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vigil-docker-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn inspect_over_a_unix_socket() {
        let d = dir("ok");
        let id = "ab".repeat(32);
        let json = format!(
            r#"{{"Id":"{id}","Created":"2024-01-01T00:00:00Z","Name":"/shop-web","Image":"sha256:{}","Config":{{"Image":"nginx:1.27","Env":["A=b"]}}}}"#,
            "cd".repeat(32)
        );
        let (a, b) = json.split_at(json.len() / 2);
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        );
        let not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 29\r\n\r\n{\"message\":\"No such thing\"}\r\n".to_vec();
        let (sock, server) = serve(&d, vec![chunked.into_bytes(), not_found]);
        let docker = Docker::new(sock, Duration::from_secs(2));
        let found = docker.inspect(&id).unwrap().unwrap();
        assert_eq!(found.name, "shop-web");
        assert_eq!(found.image, "nginx:1.27");
        assert_eq!(found.image_id, format!("sha256:{}", "cd".repeat(32)));
        assert_eq!(found.id, id);
        assert_eq!(docker.inspect(&"ef".repeat(32)).unwrap(), None);
        let seen = server.join().unwrap();
        assert_eq!(
            seen,
            [
                format!("GET /containers/{id}/json HTTP/1.1"),
                format!("GET /containers/{}/json HTTP/1.1", "ef".repeat(32)),
            ]
        );
        // Not an id: never sent (it would be a path in the request line).
        assert_eq!(docker.inspect("../../info").unwrap(), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn misbehaving_servers() {
        let d = dir("bad");
        let id = "ab".repeat(32);
        let huge = {
            let mut r = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            r.resize(MAX_RESPONSE + MAX_HEAD + 10, b'x');
            r
        };
        let answers = vec![
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!".to_vec(),
            huge,
        ];
        let (sock, server) = serve(&d, answers);
        let docker = Docker::new(sock.clone(), Duration::from_secs(2));
        let e = docker.inspect(&id).unwrap_err().to_string();
        assert!(e.contains("HTTP 500"), "{e}");
        let e = docker.inspect(&id).unwrap_err().to_string();
        assert!(e.contains("inspect"), "{e}");
        let e = docker.inspect(&id).unwrap_err().to_string();
        assert!(e.contains("over"), "{e}");
        server.join().unwrap();
        // A server that accepts and never answers: the call gives up at its timeout.
        let _ = std::fs::remove_file(&sock);
        let silent = UnixListener::bind(&sock).unwrap();
        let docker = Docker::new(sock, Duration::from_millis(200));
        let t = Instant::now();
        let e = docker.inspect(&id).unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_secs(2), "{e}");
        drop(silent);
        let e = Docker::new(d.join("absent.sock"), Duration::from_secs(1))
            .inspect(&id)
            .unwrap_err();
        assert!(matches!(e, Error::Unreachable(_)), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
