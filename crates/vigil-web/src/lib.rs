//! The flight recorder's web explorer (`--web-address`): the agent serves a read-only page
//! (embedded HTML, JavaScript and CSS; no build step, nothing fetched from elsewhere) and the
//! JSON behind it, read from the history directory (`vigil-history`'s queries).
//!
//! Access: a random token made at start, written to `<history dir>/web-token` (0600, with
//! the page's URL: `vigil history web-url` prints it) and required on every request; the
//! `Host` and `Origin` checks of `guard` keep other web pages out (DNS rebinding, CSRF).
//! Serving (`server`): its own thread and single-threaded runtime, history reads on the
//! runtime's blocking pool, connections, request heads and answers bounded.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod api;
pub mod guard;
mod server;

pub use api::{ENFORCEMENT_ACTIONS, ViewQuery};

/// The token file, in the history directory.
pub const TOKEN_FILE: &str = "web-token";

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "--web-address: {0:?} is not an address (examples: :2113, 127.0.0.1:2113, [::1]:2113, localhost:2113)"
    )]
    Address(String),
    #[error("--web-address: cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("web token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the web token: {0}")]
    Random(std::io::Error),
    #[error("cannot start the web server thread: {0}")]
    Thread(std::io::Error),
    #[error(
        "{path}: no web token (is the agent running with --history-dir and --web-address?): {source}"
    )]
    NoToken {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a web token file (expected the token, then the URL)")]
    BadTokenFile(PathBuf),
}

/// `--web-address`: `:PORT` (loopback), `localhost:PORT`, or an IP address and port.
/// Host names are refused: what they resolve to can change.
pub fn parse_address(given: &str) -> Result<SocketAddr, WebError> {
    let bad = || WebError::Address(given.to_string());
    let given_trimmed = given.trim();
    if let Some(port) = given_trimmed.strip_prefix(':') {
        let port = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = given_trimmed.strip_prefix("localhost:") {
        let port = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    given_trimmed.parse().map_err(|_| bad())
}

/// A running explorer.
#[derive(Debug, Clone)]
pub struct WebServer {
    pub address: SocketAddr,
    pub url: String,
    pub token_file: PathBuf,
}

fn random_token() -> Result<String, WebError> {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        let rest = &mut bytes[filled..];
        // SAFETY: getrandom(2) writes at most `rest.len()` bytes into `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(WebError::Random(e));
        }
        filled += n as usize;
    }
    Ok(vigil_hex::encode(&bytes))
}

/// Writes the token and the URL, readable by the owner only (an existing file is replaced
/// in place and its mode set again; a symlink is refused).
fn write_token_file(path: &Path, token: &str, url: &str) -> Result<(), WebError> {
    let err = |source| WebError::TokenFile {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    f.write_all(format!("{token}\n{url}\n").as_bytes())
        .map_err(err)?;
    Ok(())
}

/// The page's URL (with the token) an agent wrote in `history_dir`.
pub fn read_url(history_dir: &Path) -> Result<String, WebError> {
    let path = history_dir.join(TOKEN_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| WebError::NoToken {
        path: path.clone(),
        source,
    })?;
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(token), Some(url)) if !token.is_empty() && url.contains(token) => Ok(url.to_string()),
        _ => Err(WebError::BadTokenFile(path)),
    }
}

/// Binds `address`, writes the token file in `history_dir` and serves in a thread of its
/// own; listening when this returns.
pub fn start(address: &str, history_dir: &Path) -> Result<WebServer, WebError> {
    let wanted = parse_address(address)?;
    let listener = std::net::TcpListener::bind(wanted).map_err(|source| WebError::Listen {
        addr: wanted,
        source,
    })?;
    let bound = listener.local_addr().unwrap_or(wanted);
    listener
        .set_nonblocking(true)
        .map_err(|source| WebError::Listen {
            addr: wanted,
            source,
        })?;
    let token = random_token()?;
    let url = format!("http://{bound}/?token={token}");
    let token_file = history_dir.join(TOKEN_FILE);
    write_token_file(&token_file, &token, &url)?;
    let state = Arc::new(server::State {
        bound,
        token,
        history_dir: history_dir.to_path_buf(),
        queries: Arc::new(tokio::sync::Semaphore::new(server::CONCURRENT_QUERIES)),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(server::CONCURRENT_QUERIES)
        .thread_name("web-query")
        .build()
        .map_err(WebError::Thread)?;
    std::thread::Builder::new()
        .name("web".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => server::accept_loop(l, state).await,
                    Err(e) => tracing::error!(error = %e, "web server cannot serve"),
                }
            });
        })
        .map_err(WebError::Thread)?;
    Ok(WebServer {
        address: bound,
        url,
        token_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_without_a_host_are_loopback() {
        assert_eq!(
            parse_address(":2113").unwrap(),
            "127.0.0.1:2113".parse().unwrap()
        );
        assert_eq!(
            parse_address("localhost:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            parse_address("[::1]:2113").unwrap(),
            "[::1]:2113".parse().unwrap()
        );
        for bad in ["", "2113", "example.com:80", ":port", "127.0.0.1"] {
            let e = parse_address(bad).unwrap_err().to_string();
            assert!(e.starts_with("--web-address:"), "{e}");
        }
    }

    #[test]
    fn the_token_file_is_private_and_names_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_token_file(&path, "abc", "http://127.0.0.1:1/?token=abc").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            read_url(dir.path()).unwrap(),
            "http://127.0.0.1:1/?token=abc"
        );
        let t = random_token().unwrap();
        assert_eq!(t.len(), 64);
        assert_ne!(t, random_token().unwrap());
    }
}
