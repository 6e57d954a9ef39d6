//! Listening: the API on a unix socket (default) or TCP (optionally TLS with client
//! certificates), and `grpc.health.v1` on its own TCP address. The server runs on its own
//! tokio runtime; the agent's main loop is not async.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use vigil_proto::tetragon::fine_guidance_sensors_server::FineGuidanceSensorsServer;

use crate::history::{HistoryServer, HistoryService};

use crate::service::Service;

/// Largest message a client may send (policies are YAML text).
const MAX_DECODING: usize = 16 << 20;

/// The health port is open to the network (kubelet probes it): connections open at once
/// (a new one closes the oldest), requests per connection, and how long anything lasts.
const HEALTH_MAX_CONNECTIONS: usize = 32;
const HEALTH_STREAMS_PER_CONNECTION: u32 = 4;
const HEALTH_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A probe needs one short request: every connection ends after this (gracefully, then
/// forcibly after the grace), silent ones included.
const HEALTH_CONNECTION_AGE: Duration = Duration::from_secs(30);
const HEALTH_CONNECTION_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("--server-address {0:?}: expected unix:///path/to.sock or host:port")]
    Address(String),
    #[error("--health-server-address {0:?}: expected host:port or :port")]
    HealthAddress(String),
    #[error("cannot listen on {what}: {source}")]
    Listen {
        what: String,
        source: std::io::Error,
    },
    #[error("another agent is already serving on {0}")]
    InUse(String),
    #[error("--server-socket-group {0:?}: no such group")]
    Group(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot start the gRPC runtime: {0}")]
    Runtime(std::io::Error),
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl Address {
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(path) = s.strip_prefix("unix://") {
            return (!path.is_empty()).then(|| Self::Unix(PathBuf::from(path)));
        }
        let (host, port) = s.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        Some(Self::Tcp(format!("{host}:{port}")))
    }

    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(hp) => hp.to_socket_addrs().ok()?.next(),
            Self::Unix(_) => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_files: Vec<PathBuf>,
    pub require_client_cert: bool,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Empty: no API server.
    pub server_address: String,
    /// Group owning the unix socket (mode 0660); none: mode 0600.
    pub socket_group: Option<String>,
    pub tls: TlsFiles,
    /// Empty: no health server.
    pub health_address: String,
    /// The agent's --history-dir, for `vigil.history.v1.History` (None: its calls fail).
    pub history_dir: Option<PathBuf>,
}

fn read(p: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(p).map_err(|e| ServerError::Tls(format!("{}: {e}", p.display())))
}

fn tls_config(t: &TlsFiles) -> Result<Option<ServerTlsConfig>, ServerError> {
    let Some(cert) = &t.cert_file else {
        if t.key_file.is_some() || t.require_client_cert || !t.client_ca_files.is_empty() {
            return Err(ServerError::Tls(
                "--server-tls-cert-file is required by the other --server-tls-* flags".into(),
            ));
        }
        return Ok(None);
    };
    let key = t.key_file.as_ref().ok_or_else(|| {
        ServerError::Tls("--server-tls-key-file is required with --server-tls-cert-file".into())
    })?;
    let mut cfg = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if t.require_client_cert && t.client_ca_files.is_empty() {
        return Err(ServerError::Tls(
            "--server-tls-require-client-cert needs --server-tls-client-ca-files".into(),
        ));
    }
    if !t.client_ca_files.is_empty() {
        let mut bundle = Vec::new();
        for f in &t.client_ca_files {
            bundle.extend(read(f)?);
            bundle.push(b'\n');
        }
        cfg = cfg
            .client_ca_root(Certificate::from_pem(bundle))
            .client_auth_optional(!t.require_client_cert);
    }
    Ok(Some(cfg))
}

fn group_id(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse() {
        return Some(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

fn bind_unix(
    path: &Path,
    group: Option<&str>,
) -> Result<std::os::unix::net::UnixListener, ServerError> {
    let what = format!("unix://{}", path.display());
    let gid = group
        .map(|g| group_id(g).ok_or_else(|| ServerError::Group(g.to_string())))
        .transpose()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::Listen {
            what: what.clone(),
            source,
        })?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServerError::InUse(what));
        }
        // A stale socket from an agent that did not exit cleanly.
        let _ = std::fs::remove_file(path);
    }
    // Created with no access for anyone, then opened up to exactly the intended mode, so
    // there is no window in which others can connect.
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|source| ServerError::Listen {
        what: what.clone(),
        source,
    })?;
    let mode = if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|source| ServerError::Listen {
            what: what.clone(),
            source,
        })?;
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|source| ServerError::Listen { what, source })?;
    Ok(listener)
}

/// The running servers.
pub struct ApiServer {
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Vec<oneshot::Sender<()>>,
    health: Option<HealthReporter>,
    unix_path: Option<PathBuf>,
    /// What the API listens on, for logs.
    pub listening: String,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("listening", &self.listening)
            .finish()
    }
}

impl ApiServer {
    /// Binds every listener (errors come back here, before the agent says it is ready) and
    /// starts serving. Health reports NOT_SERVING until [`ApiServer::set_serving`].
    pub fn start(cfg: &ServerConfig, service: Service) -> Result<Self, ServerError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vigil-grpc")
            .enable_all()
            .build()
            .map_err(ServerError::Runtime)?;
        let mut me = ApiServer {
            runtime: None,
            shutdown: Vec::new(),
            health: None,
            unix_path: None,
            listening: String::new(),
        };
        if !cfg.server_address.is_empty() {
            let addr = Address::parse(&cfg.server_address)
                .ok_or_else(|| ServerError::Address(cfg.server_address.clone()))?;
            let svc =
                FineGuidanceSensorsServer::new(service).max_decoding_message_size(MAX_DECODING);
            // Its requests are a few filters.
            let history = HistoryServer::new(HistoryService::new(cfg.history_dir.clone()))
                .max_decoding_message_size(64 << 10);
            let (tx, rx) = oneshot::channel::<()>();
            let stop = async {
                let _ = rx.await;
            };
            match &addr {
                Address::Unix(path) => {
                    let std_listener = bind_unix(path, cfg.socket_group.as_deref())?;
                    std_listener
                        .set_nonblocking(true)
                        .map_err(|source| ServerError::Listen {
                            what: cfg.server_address.clone(),
                            source,
                        })?;
                    let _guard = runtime.enter();
                    let listener =
                        tokio::net::UnixListener::from_std(std_listener).map_err(|source| {
                            ServerError::Listen {
                                what: cfg.server_address.clone(),
                                source,
                            }
                        })?;
                    let incoming = UnixListenerStream::new(listener);
                    runtime.spawn(async move {
                        if let Err(e) = Server::builder()
                            .add_service(svc)
                            .add_service(history)
                            .serve_with_incoming_shutdown(incoming, stop)
                            .await
                        {
                            tracing::error!(error = %e, "gRPC server failed");
                        }
                    });
                    me.unix_path = Some(path.clone());
                    me.listening = format!("unix://{}", path.display());
                }
                Address::Tcp(hp) => {
                    let tls = tls_config(&cfg.tls)?;
                    let sa = addr
                        .socket_addr()
                        .ok_or_else(|| ServerError::Address(cfg.server_address.clone()))?;
                    let listener = runtime
                        .block_on(tokio::net::TcpListener::bind(sa))
                        .map_err(|source| ServerError::Listen {
                            what: hp.clone(),
                            source,
                        })?;
                    let mut builder = Server::builder();
                    if let Some(tls) = tls {
                        builder = builder
                            .tls_config(tls)
                            .map_err(|e| ServerError::Tls(e.to_string()))?;
                        me.listening = format!("{sa} (TLS)");
                    } else {
                        tracing::warn!(address = %sa, "gRPC API on TCP without TLS: anyone who can reach it controls the agent");
                        me.listening = sa.to_string();
                    }
                    let incoming = TcpListenerStream::new(listener);
                    runtime.spawn(async move {
                        if let Err(e) = builder
                            .add_service(svc)
                            .add_service(history)
                            .serve_with_incoming_shutdown(incoming, stop)
                            .await
                        {
                            tracing::error!(error = %e, "gRPC server failed");
                        }
                    });
                }
            }
            me.shutdown.push(tx);
        }
        if !cfg.health_address.is_empty() {
            let sa = Address::parse(&cfg.health_address)
                .and_then(|a| a.socket_addr())
                .ok_or_else(|| ServerError::HealthAddress(cfg.health_address.clone()))?;
            let (reporter, health_svc) = tonic_health::server::health_reporter();
            runtime.block_on(reporter.set_service_status("liveness", ServingStatus::NotServing));
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(sa))
                .map_err(|source| ServerError::Listen {
                    what: format!("health address {sa}"),
                    source,
                })?;
            let (tx, rx) = oneshot::channel::<()>();
            let _guard = runtime.enter();
            let incoming = crate::limit::incoming(
                listener,
                crate::limit::ConnLimit::new(HEALTH_MAX_CONNECTIONS),
            );
            runtime.spawn(async move {
                let stop = async {
                    let _ = rx.await;
                };
                if let Err(e) = Server::builder()
                    .concurrency_limit_per_connection(HEALTH_STREAMS_PER_CONNECTION as usize)
                    .max_concurrent_streams(HEALTH_STREAMS_PER_CONNECTION)
                    .timeout(HEALTH_REQUEST_TIMEOUT)
                    .http2_keepalive_interval(Some(Duration::from_secs(10)))
                    .http2_keepalive_timeout(Some(Duration::from_secs(5)))
                    .http2_max_header_list_size(16 << 10)
                    .tcp_keepalive(Some(Duration::from_secs(30)))
                    .max_connection_age(HEALTH_CONNECTION_AGE)
                    .max_connection_age_grace(HEALTH_CONNECTION_GRACE)
                    .add_service(health_svc)
                    .serve_with_incoming_shutdown(incoming, stop)
                    .await
                {
                    tracing::error!(error = %e, "gRPC health server failed");
                }
            });
            me.shutdown.push(tx);
            me.health = Some(reporter);
        }
        me.runtime = Some(runtime);
        Ok(me)
    }

    /// The agent is ready: health `liveness` becomes SERVING.
    pub fn set_serving(&self) {
        if let (Some(rt), Some(h)) = (&self.runtime, &self.health) {
            rt.block_on(h.set_service_status("liveness", ServingStatus::Serving));
        }
    }

    /// Keeps health `liveness` true to the pipeline: NOT_SERVING while `probe` shows records
    /// waiting without progress for `threshold`, SERVING again when it moves. Call after
    /// [`ApiServer::set_serving`].
    pub fn watch_liveness(&self, probe: crate::liveness::Probe, threshold: Duration) {
        let (Some(rt), Some(h)) = (&self.runtime, &self.health) else {
            return;
        };
        let reporter = h.clone();
        rt.spawn(async move {
            let mut detector =
                crate::liveness::StallDetector::new(threshold, std::time::Instant::now());
            let mut alive = true;
            let mut tick = tokio::time::interval(crate::liveness::SAMPLE_EVERY);
            loop {
                tick.tick().await;
                let now_alive = detector.observe(probe(), std::time::Instant::now());
                if now_alive == alive {
                    continue;
                }
                alive = now_alive;
                if alive {
                    tracing::info!("event pipeline progressing again: health liveness SERVING");
                    reporter
                        .set_service_status("liveness", ServingStatus::Serving)
                        .await;
                } else {
                    tracing::error!(stalled_for = ?threshold,
                        "event pipeline stalled with records waiting: health liveness NOT_SERVING");
                    reporter
                        .set_service_status("liveness", ServingStatus::NotServing)
                        .await;
                }
            }
        });
    }

    /// Stops serving (open streams end) and removes the socket.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        for tx in self.shutdown.drain(..) {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
        if let Some(p) = self.unix_path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Address::parse("unix:///var/run/vigil/vigil.sock"),
            Some(Address::Unix("/var/run/vigil/vigil.sock".into()))
        );
        assert_eq!(
            Address::parse(":6789"),
            Some(Address::Tcp("0.0.0.0:6789".into()))
        );
        assert_eq!(
            Address::parse("localhost:54321"),
            Some(Address::Tcp("localhost:54321".into()))
        );
        assert_eq!(Address::parse("nonsense"), None);
        assert_eq!(Address::parse("unix://"), None);
    }

    #[test]
    fn tls_flags_must_come_together() {
        let t = TlsFiles {
            require_client_cert: true,
            ..Default::default()
        };
        assert!(
            tls_config(&t)
                .unwrap_err()
                .to_string()
                .contains("--server-tls-cert-file")
        );
    }
}
