//! The OTLP sender: a thread with a current-thread tokio runtime that takes queued events in
//! batches, renders them and sends them, one request in flight at a time (the queue is
//! where back-pressure shows, and where it is bounded).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

use super::{CLOSE_DEADLINE, OtlpConfig, Queued, Shared, record};
use crate::seq;

const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) fn spawn(
    cfg: OtlpConfig,
    shared: Arc<Shared>,
    node_name: String,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("vigil-otlp".into())
        .spawn(move || {
            rt.block_on(async move {
                // Lazy: the agent starts whether or not the collector is up; failures are
                // retried and counted like any other.
                let channel = cfg.endpoint.connect_lazy();
                let sender = Sender {
                    client: LogsServiceClient::new(channel),
                    resource: record::resource(&node_name, seq::instance()),
                    shared,
                    cfg,
                    failing: false,
                    close_by: None,
                };
                sender.run().await;
            });
        })
}

/// How one attempt at a batch went.
enum Attempt {
    Accepted { rejected: u64, message: String },
    Retry(String),
    Permanent(String),
}

/// OTLP/gRPC's retryable codes (the specification's list; RESOURCE_EXHAUSTED is the
/// receiver asking us to slow down).
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
            | Code::ResourceExhausted
    )
}

struct Sender {
    client: LogsServiceClient<Channel>,
    resource: Resource,
    shared: Arc<Shared>,
    cfg: OtlpConfig,
    /// Inside a run of failed attempts (logged once when it starts and once when it ends).
    failing: bool,
    /// Set at shutdown: nothing is sent after this.
    close_by: Option<Instant>,
}

impl Sender {
    fn closing(&mut self) -> bool {
        if self.close_by.is_none() && self.shared.closing.load(Ordering::SeqCst) {
            self.close_by = Some(Instant::now() + CLOSE_DEADLINE);
        }
        self.close_by.is_some()
    }

    async fn run(mut self) {
        loop {
            // Wait for a first event (a permit is stored if the sink notified first).
            while self.shared.lock().is_empty() {
                if self.closing() {
                    return;
                }
                self.shared.wake.notified().await;
            }
            // Let the batch fill for a while, unless it is full already or we are closing.
            let fill_by = Instant::now() + self.cfg.batch_delay;
            while self.shared.lock().len() < self.cfg.batch_records && !self.closing() {
                if tokio::time::timeout_at(fill_by, self.shared.wake.notified())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let batch: Vec<Queued> = self.shared.lock().take(self.cfg.batch_records);
            self.send(&batch).await;
            let size: u64 = batch.iter().map(|q| q.size).sum();
            let mut q = self.shared.lock();
            q.release(size);
            self.shared
                .counters
                .queue_bytes
                .store(q.charged(), Ordering::Relaxed);
        }
    }

    fn request(&self, batch: &[Queued]) -> ExportLogsServiceRequest {
        let observed = SystemTime::now();
        let log_records = batch
            .iter()
            .map(|q| {
                let mut line = serde_json::to_vec(&*q.event).unwrap_or_default();
                seq::stamp(&mut line, q.seq, seq::instance());
                // serde_json writes UTF-8.
                let body = String::from_utf8(line).unwrap_or_default();
                record::log_record(&q.event, body, observed)
            })
            .collect();
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "vigil".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    async fn attempt(&mut self, req: &ExportLogsServiceRequest, deadline: Instant) -> Attempt {
        let until = deadline.min(Instant::now() + self.cfg.timeout);
        let mut grpc = tonic::Request::new(req.clone());
        grpc.set_timeout(until.saturating_duration_since(Instant::now()));
        match tokio::time::timeout_at(until, self.client.export(grpc)).await {
            Err(_) => Attempt::Retry("timed out".into()),
            Ok(Ok(resp)) => {
                let p = resp.into_inner().partial_success.unwrap_or_default();
                Attempt::Accepted {
                    rejected: p.rejected_log_records.max(0) as u64,
                    message: p.error_message,
                }
            }
            Ok(Err(s)) if retryable(s.code()) => Attempt::Retry(format!("{s}")),
            Ok(Err(s)) => Attempt::Permanent(format!("{s}")),
        }
    }

    /// Sends one batch until it is accepted, fails for good, or its retry time is up.
    async fn send(&mut self, batch: &[Queued]) {
        let n = batch.len() as u64;
        let req = self.request(batch);
        let counters = Arc::clone(&self.shared.counters);
        let started = Instant::now();
        let mut backoff = INITIAL_BACKOFF;
        loop {
            self.closing();
            let deadline = match self.close_by {
                Some(c) => c.min(started + self.cfg.max_retry),
                None => started + self.cfg.max_retry,
            };
            let error = match self.attempt(&req, deadline).await {
                Attempt::Accepted { rejected, message } => {
                    let rejected = rejected.min(n);
                    counters.exported.fetch_add(n - rejected, Ordering::Relaxed);
                    if rejected > 0 {
                        counters
                            .lost_rejected
                            .fetch_add(rejected, Ordering::Relaxed);
                        tracing::warn!(endpoint = %self.cfg.display, rejected, message = %message,
                            "OTLP receiver rejected log records; counted as lost");
                    }
                    if std::mem::take(&mut self.failing) {
                        tracing::warn!(endpoint = %self.cfg.display, lost_so_far = counters.lost(),
                            "OTLP export resumed");
                    }
                    return;
                }
                Attempt::Permanent(e) => {
                    counters.lost_send_failed.fetch_add(n, Ordering::Relaxed);
                    tracing::error!(endpoint = %self.cfg.display, error = %e, lost = n,
                        "OTLP export refused (not retryable); batch counted as lost");
                    return;
                }
                Attempt::Retry(e) => e,
            };
            if !self.failing {
                self.failing = true;
                tracing::error!(endpoint = %self.cfg.display, error = %error,
                    "OTLP export failing; retrying with backoff (events queue meanwhile)");
            }
            let next = Instant::now() + backoff;
            if next >= deadline {
                counters.lost_send_failed.fetch_add(n, Ordering::Relaxed);
                tracing::error!(endpoint = %self.cfg.display, error = %error, lost = n,
                    lost_so_far = counters.lost(),
                    "OTLP export retries ran out; batch counted as lost");
                return;
            }
            tokio::time::sleep_until(next).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
