//! OTLP export: events as OpenTelemetry log records over gRPC
//! (`opentelemetry.proto.collector.logs.v1.LogsService/Export`).
//!
//! The sink runs on the pipeline thread and never waits: it applies the export filters and
//! rate limit and queues the shared event. The queue is bounded in bytes (the events'
//! encoded size, counted until their batch is settled); an event that does not fit is
//! dropped and counted. A sender thread with its own small tokio runtime renders, batches
//! (by count and delay) and sends, retrying with exponential backoff. Every accepted event
//! ends up delivered or counted lost: queue full, retries exhausted (or a permanent error),
//! or rejected by the receiver (`partial_success.rejected_log_records`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::byte_queue::ByteQueue;
use crate::{AllowDeny, Event, RateLimiter, Sink};

mod record;
mod sender;

pub use record::{log_record, resource};

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error(
        "--export-otlp-endpoint {0:?}: expected host:port, http://host:port (plaintext) or https://host:port (TLS)"
    )]
    Endpoint(String),
    #[error("--export-otlp-endpoint {endpoint:?}: {reason}")]
    Conflict { endpoint: String, reason: String },
    #[error("{flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--export-otlp-key-file is required with --export-otlp-cert-file (and only with it)")]
    KeyWithoutCert,
    #[error("OTLP TLS settings: {0}")]
    Tls(String),
    #[error("cannot start the OTLP sender thread: {0}")]
    Thread(std::io::Error),
}

/// TLS files for the OTLP connection (PEM), as the CLI's `--tls-*` flags.
#[derive(Debug, Clone, Default)]
pub struct OtlpTlsFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl OtlpTlsFiles {
    fn any(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
}

/// The checked OTLP settings.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// Where and how to connect (scheme and TLS settled).
    pub endpoint: Endpoint,
    /// The endpoint as given, for logs.
    pub display: String,
    /// Bytes of queued and in-flight events (encoded size) at most.
    pub queue_bytes: u64,
    /// Records per Export request at most.
    pub batch_records: usize,
    /// How long the first queued event waits for a batch to fill.
    pub batch_delay: Duration,
    /// Timeout of one Export request.
    pub timeout: Duration,
    /// A batch is given up after retrying this long.
    pub max_retry: Duration,
}

fn read(flag: &'static str, path: &PathBuf) -> Result<Vec<u8>, OtlpError> {
    std::fs::read(path).map_err(|source| OtlpError::Read {
        flag,
        path: path.clone(),
        source,
    })
}

/// Checks `host:port` (host a name, an IPv4 address or a bracketed IPv6 address).
fn valid_authority(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[') {
        v6.strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    };
    host_ok && port.parse::<u16>().is_ok_and(|p| p != 0)
}

impl OtlpConfig {
    /// `endpoint` is `host:port` (TLS unless `insecure`), `http://host:port` (plaintext) or
    /// `https://host:port` (TLS). Certificate files are read now: a bad one is a start-up
    /// error, not a silent export failure later.
    pub fn new(endpoint: &str, insecure: bool, tls: &OtlpTlsFiles) -> Result<Self, OtlpError> {
        let conflict = |reason: &str| OtlpError::Conflict {
            endpoint: endpoint.to_string(),
            reason: reason.to_string(),
        };
        let (authority, use_tls) = if let Some(rest) = endpoint.strip_prefix("http://") {
            if tls.any() {
                return Err(conflict(
                    "http:// is plaintext, but TLS files were given (use https://)",
                ));
            }
            (rest, false)
        } else if let Some(rest) = endpoint.strip_prefix("https://") {
            if insecure {
                return Err(conflict(
                    "https:// asks for TLS, but --export-otlp-insecure was given",
                ));
            }
            (rest, true)
        } else {
            if insecure && tls.any() {
                return Err(conflict(
                    "--export-otlp-insecure (plaintext) and TLS files do not go together",
                ));
            }
            (endpoint, !insecure)
        };
        // A trailing slash is harmless; any other path is not where OTLP/gRPC listens.
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if !valid_authority(authority) {
            return Err(OtlpError::Endpoint(endpoint.to_string()));
        }
        let scheme = if use_tls { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{authority}"))
            .map_err(|_| OtlpError::Endpoint(endpoint.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if use_tls {
            let mut cfg = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &tls.ca_file {
                cfg = cfg.ca_certificate(Certificate::from_pem(read("--export-otlp-ca-file", ca)?));
            }
            match (&tls.cert_file, &tls.key_file) {
                (Some(c), Some(k)) => {
                    cfg = cfg.identity(Identity::from_pem(
                        read("--export-otlp-cert-file", c)?,
                        read("--export-otlp-key-file", k)?,
                    ));
                }
                (None, None) => {}
                _ => return Err(OtlpError::KeyWithoutCert),
            }
            ep = ep
                .tls_config(cfg)
                .map_err(|e| OtlpError::Tls(e.to_string()))?;
        }
        Ok(Self {
            endpoint: ep,
            display: endpoint.to_string(),
            queue_bytes: 64 << 20,
            batch_records: 512,
            batch_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            max_retry: Duration::from_secs(60),
        })
    }
}

/// OTLP counters, shared with the metrics (`vigil_otlp_*`).
#[derive(Debug, Default)]
pub struct OtlpCounters {
    /// Records the receiver accepted.
    pub exported: AtomicU64,
    /// Events dropped because the queue was full.
    pub lost_queue_full: AtomicU64,
    /// Events whose batch failed: retries exhausted, a permanent error, or shutdown.
    pub lost_send_failed: AtomicU64,
    /// Records the receiver rejected (partial success).
    pub lost_rejected: AtomicU64,
    /// Bytes queued or in flight now.
    pub queue_bytes: AtomicU64,
}

impl OtlpCounters {
    pub fn lost(&self) -> u64 {
        self.lost_queue_full.load(Ordering::Relaxed)
            + self.lost_send_failed.load(Ordering::Relaxed)
            + self.lost_rejected.load(Ordering::Relaxed)
    }
}

struct Queued {
    event: Event,
    /// The event's encoded size, charged to the queue until its batch is settled.
    size: u64,
    /// The record's `vigil_seq` on this sink.
    seq: u64,
}

/// What the sink and the sender thread share.
struct Shared {
    /// Charged with the events' encoded size until their batch is settled.
    queue: Mutex<ByteQueue<Queued>>,
    wake: tokio::sync::Notify,
    closing: AtomicBool,
    counters: Arc<OtlpCounters>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByteQueue<Queued>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Events are sent for at most this long at shutdown; what is left is counted lost.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// The OTLP sink on the event bus.
pub struct OtlpSink {
    name: String,
    shared: Arc<Shared>,
    filters: AllowDeny,
    limiter: Option<RateLimiter>,
    batch_records: usize,
    seq: u64,
    sender: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for OtlpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpSink")
            .field("name", &self.name)
            .finish()
    }
}

impl OtlpSink {
    /// Starts the sender thread. `rate_limit` is events per minute (None: unlimited).
    pub fn start(
        cfg: OtlpConfig,
        filters: AllowDeny,
        rate_limit: Option<u64>,
        node_name: &str,
    ) -> Result<Self, OtlpError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(ByteQueue::new(cfg.queue_bytes)),
            wake: tokio::sync::Notify::new(),
            closing: AtomicBool::new(false),
            counters: Arc::default(),
        });
        let name = format!("otlp {}", cfg.display);
        let batch_records = cfg.batch_records;
        let sender = sender::spawn(cfg, Arc::clone(&shared), node_name.to_string())
            .map_err(OtlpError::Thread)?;
        Ok(Self {
            name,
            shared,
            filters,
            limiter: rate_limit.map(|n| RateLimiter::new(n, Instant::now())),
            batch_records,
            seq: 0,
            sender: Some(sender),
        })
    }

    pub fn counters(&self) -> Arc<OtlpCounters> {
        Arc::clone(&self.shared.counters)
    }
}

impl Sink for OtlpSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn publish(&mut self, event: &Event) {
        if !self.filters.passes(event) {
            return;
        }
        if let Some(l) = &mut self.limiter
            && !l.allow(Instant::now())
        {
            // The JSON sink reports rate-limit drops; the same limit is not a loss here either.
            return;
        }
        let size = event.encoded_len() as u64;
        let queued = Queued {
            event: Arc::clone(event),
            size,
            seq: self.seq + 1,
        };
        let mut q = self.shared.lock();
        match q.push(queued, size) {
            Ok(len) => {
                let bytes = q.charged();
                drop(q);
                self.seq += 1;
                self.shared
                    .counters
                    .queue_bytes
                    .store(bytes, Ordering::Relaxed);
                // Wake the sender for a new batch or a full one, not for every event.
                if len == 1 || len == self.batch_records {
                    self.shared.wake.notify_one();
                }
            }
            Err(dropped) => {
                let queue_bytes = q.capacity();
                drop(q);
                let c = &self.shared.counters;
                c.lost_queue_full.fetch_add(1, Ordering::Relaxed);
                if dropped.first_in_burst {
                    tracing::error!(sink = %self.name, queue_bytes, lost_so_far = c.lost(),
                        "OTLP queue full (the receiver is slow or unreachable); events are dropped and counted as lost until it drains");
                }
            }
        }
    }

    fn flush(&mut self) {
        // The sender batches on its own clock; an idle pipeline needs nothing more.
    }

    fn close(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        if let Some(t) = self.sender.take()
            && t.join().is_err()
        {
            tracing::error!(sink = %self.name, "OTLP sender thread panicked");
        }
        // Anything the sender could not take (it panicked) is lost, and counted.
        let left = self.shared.lock().clear() as u64;
        if left > 0 {
            self.shared
                .counters
                .lost_send_failed
                .fetch_add(left, Ordering::Relaxed);
        }
        let c = &self.shared.counters;
        tracing::info!(sink = %self.name, exported = c.exported.load(Ordering::Relaxed),
            lost = c.lost(), "OTLP export closed");
    }

    fn lost(&self) -> u64 {
        self.shared.counters.lost()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
