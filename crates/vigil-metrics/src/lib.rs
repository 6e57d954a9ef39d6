//! Prometheus metrics with Tetragon's names and labels (tetragon.md §6), so existing
//! dashboards and alerts work, plus `vigil_*` metrics for what only vigil has.
//!
//! Event metrics come from a [`MetricsSink`] on the event bus; gauges and export counters
//! are fed by the agent ([`Metrics::set_process_cache`], [`Metrics::add_export`]) and read
//! at scrape time. [`serve`] answers `GET /metrics` and `GET /healthz` over HTTP/1.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use vigil_export::event::{event_type, parts};
use vigil_export::otlp::OtlpCounters;
use vigil_export::{Event, ExportCounters, Sink};
use vigil_history::HistoryCounters;
use vigil_proto::tetragon::{LossStage, get_events_response::Event as Payload};

mod server;
pub use server::{MetricsError, serve};

/// Labels of `tetragon_events_total` that `--metrics-label-filter` can turn off.
pub const FILTERABLE_LABELS: &[&str] = &["namespace", "workload", "pod", "binary"];

type Labels = Vec<(String, String)>;

#[derive(Debug, Clone)]
pub struct MetricsOptions {
    /// `--enable-event-metrics`.
    pub event_metrics: bool,
    /// Enabled labels among [`FILTERABLE_LABELS`].
    pub labels: Vec<String>,
    pub node_name: String,
    pub version: String,
}

/// A counter set from an absolute value read elsewhere (kernel counters, export counters).
fn sync(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

pub struct Metrics {
    registry: Registry,
    opts: MetricsOptions,
    events: Family<Labels, Counter>,
    flags: Family<Labels, Counter>,
    ringbuf_lost: Counter,
    bpf_missed: Family<Labels, Counter>,
    map_update_errors: Family<Labels, Counter>,
    vigil_lost: Family<Labels, Counter>,
    cache_size: Gauge,
    cache_capacity: Gauge,
    ringbuf_received: Counter,
    exported: Counter,
    exported_bytes: Counter,
    last_exported: Gauge,
    ratelimit_dropped: Counter,
    export: Mutex<Vec<Arc<ExportCounters>>>,
    otlp_exported: Counter,
    otlp_lost: Family<Labels, Counter>,
    otlp_queue_bytes: Gauge,
    otlp: Mutex<Option<Arc<OtlpCounters>>>,
    history_recorded: Counter,
    history_lost: Family<Labels, Counter>,
    history_queue_bytes: Gauge,
    history_slices_dropped: Counter,
    history: Mutex<Option<Arc<HistoryCounters>>>,
    received_total: AtomicU64,
    cache: (AtomicI64, AtomicI64),
    /// Label sets of `tetragon_events` so far: their values (binary, pod...) are chosen by
    /// workloads, so the series are capped at [`MAX_EVENT_SERIES`].
    event_series: Mutex<std::collections::HashSet<Labels>>,
}

/// `tetragon_events` series at most; later label sets have their workload-chosen values
/// (`binary`, `pod`, `workload`, `namespace`) replaced by [`OTHER`].
pub const MAX_EVENT_SERIES: usize = 4096;

/// The value that stands for every label value past [`MAX_EVENT_SERIES`].
pub const OTHER: &str = "__other__";

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("opts", &self.opts).finish()
    }
}

impl Metrics {
    pub fn new(opts: MetricsOptions) -> Arc<Self> {
        let mut r = Registry::default();
        let events = Family::<Labels, Counter>::default();
        if opts.event_metrics {
            r.register(
                "tetragon_events",
                "The total number of Tetragon events",
                events.clone(),
            );
        }
        let flags = Family::<Labels, Counter>::default();
        r.register(
            "tetragon_flags",
            "The total number of Tetragon flags. For internal use only.",
            flags.clone(),
        );
        let ringbuf_lost = Counter::default();
        r.register(
            "tetragon_observer_ringbuf_events_lost",
            "Number of perf events Tetragon ring buffer lost.",
            ringbuf_lost.clone(),
        );
        let ringbuf_received = Counter::default();
        r.register(
            "tetragon_observer_ringbuf_events_received",
            "Number of perf events Tetragon ring buffer received.",
            ringbuf_received.clone(),
        );
        let bpf_missed = Family::<Labels, Counter>::default();
        r.register(
            "tetragon_bpf_missed_events",
            "Number of Tetragon perf events that are failed to be sent from the kernel.",
            bpf_missed.clone(),
        );
        let map_update_errors = Family::<Labels, Counter>::default();
        r.register(
            "tetragon_map_errors_update",
            "The number of failed updates per map.",
            map_update_errors.clone(),
        );
        let cache_size = Gauge::default();
        r.register(
            "tetragon_process_cache_size",
            "The size of the process cache",
            cache_size.clone(),
        );
        let cache_capacity = Gauge::default();
        r.register(
            "tetragon_process_cache_capacity",
            "The capacity of the process cache. Expected to be constant.",
            cache_capacity.clone(),
        );
        let exported = Counter::default();
        r.register(
            "tetragon_events_exported",
            "Total number of events exported",
            exported.clone(),
        );
        let exported_bytes = Counter::default();
        r.register(
            "tetragon_events_exported_bytes",
            "Number of bytes exported for events",
            exported_bytes.clone(),
        );
        let last_exported = Gauge::default();
        r.register(
            "tetragon_events_last_exported_timestamp",
            "Timestamp of the most recent event to be exported",
            last_exported.clone(),
        );
        let ratelimit_dropped = Counter::default();
        r.register(
            "tetragon_export_ratelimit_events_dropped",
            "Number of events dropped on export due to rate limiting",
            ratelimit_dropped.clone(),
        );
        let vigil_lost = Family::<Labels, Counter>::default();
        r.register(
            "vigil_events_lost",
            "Events lost, per stage (LOSS_STAGE_*) and event type, as in events_lost events",
            vigil_lost.clone(),
        );
        let otlp_exported = Counter::default();
        r.register(
            "vigil_otlp_log_records_exported",
            "Log records the OTLP receiver accepted",
            otlp_exported.clone(),
        );
        let otlp_lost = Family::<Labels, Counter>::default();
        r.register(
            "vigil_otlp_log_records_lost",
            "Events the OTLP export lost, by reason: queue_full, send_failed, rejected",
            otlp_lost.clone(),
        );
        let otlp_queue_bytes = Gauge::default();
        r.register(
            "vigil_otlp_queue_bytes",
            "Bytes of events queued or in flight for the OTLP receiver",
            otlp_queue_bytes.clone(),
        );
        let history_recorded = Counter::default();
        r.register(
            "vigil_history_events_recorded",
            "Events the flight recorder committed to its database",
            history_recorded.clone(),
        );
        let history_lost = Family::<Labels, Counter>::default();
        r.register(
            "vigil_history_events_lost",
            "Events the flight recorder lost, by reason: queue_full, write_failed",
            history_lost.clone(),
        );
        let history_queue_bytes = Gauge::default();
        r.register(
            "vigil_history_queue_bytes",
            "Bytes of events waiting for the flight recorder's writer",
            history_queue_bytes.clone(),
        );
        let history_slices_dropped = Counter::default();
        r.register(
            "vigil_history_slices_dropped",
            "History slices removed by retention (--history-max-bytes, --history-max-age)",
            history_slices_dropped.clone(),
        );
        let build = Family::<Labels, Gauge>::default();
        build
            .get_or_create(&vec![("version".into(), opts.version.clone())])
            .set(1);
        r.register(
            "tetragon_build_info",
            "Build information about tetragon",
            build,
        );
        Arc::new(Self {
            registry: r,
            opts,
            events,
            flags,
            ringbuf_lost,
            bpf_missed,
            map_update_errors,
            vigil_lost,
            cache_size,
            cache_capacity,
            ringbuf_received,
            exported,
            exported_bytes,
            last_exported,
            ratelimit_dropped,
            export: Mutex::default(),
            otlp_exported,
            otlp_lost,
            otlp_queue_bytes,
            otlp: Mutex::default(),
            history_recorded,
            history_lost,
            history_queue_bytes,
            history_slices_dropped,
            history: Mutex::default(),
            received_total: AtomicU64::new(0),
            cache: (AtomicI64::new(0), AtomicI64::new(0)),
            event_series: Mutex::default(),
        })
    }

    /// A sink for the event bus that counts events.
    pub fn sink(self: &Arc<Self>) -> MetricsSink {
        MetricsSink(Arc::clone(self))
    }

    /// Export counters of a JSON sink, read at scrape time.
    pub fn add_export(&self, counters: Arc<ExportCounters>) {
        self.export
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(counters);
    }

    /// Counters of the flight recorder, read at scrape time.
    pub fn add_history(&self, counters: Arc<HistoryCounters>) {
        *self.history.lock().unwrap_or_else(|e| e.into_inner()) = Some(counters);
    }

    /// Counters of the OTLP sink, read at scrape time.
    pub fn add_otlp(&self, counters: Arc<OtlpCounters>) {
        *self.otlp.lock().unwrap_or_else(|e| e.into_inner()) = Some(counters);
    }

    pub fn set_process_cache(&self, size: usize, capacity: usize) {
        self.cache.0.store(size as i64, Ordering::Relaxed);
        self.cache.1.store(capacity as i64, Ordering::Relaxed);
    }

    /// Messages read from the ring buffer so far.
    pub fn set_ringbuf_received(&self, total: u64) {
        self.received_total.store(total, Ordering::Relaxed);
    }

    fn count(&self, ev: &vigil_proto::tetragon::GetEventsResponse) {
        let ty = event_type(ev);
        if let Some(Payload::EventsLost(l)) = &ev.event {
            self.on_loss(l);
        }
        let p = parts(ev).process;
        if let (Some(Payload::ProcessExec(_)), Some(p)) = (&ev.event, p) {
            for f in p.flags.split_whitespace() {
                self.flags
                    .get_or_create(&vec![("type".into(), f.to_string())])
                    .inc();
            }
        }
        if !self.opts.event_metrics {
            return;
        }
        let pod = p.and_then(|p| p.pod.as_ref());
        let mut labels: Labels = Vec::with_capacity(6);
        for name in FILTERABLE_LABELS {
            if !self.opts.labels.iter().any(|l| l == name) {
                continue;
            }
            let value = match *name {
                "namespace" => pod.map(|p| p.namespace.clone()),
                "workload" => pod.map(|p| p.workload.clone()),
                "pod" => pod.map(|p| p.name.clone()),
                _ => p.map(|p| p.binary.clone()),
            };
            labels.push((name.to_string(), value.unwrap_or_default()));
        }
        labels.push(("node_name".into(), self.opts.node_name.clone()));
        labels.push(("type".into(), ty.as_str_name().to_string()));
        labels.sort();
        {
            let mut seen = self.event_series.lock().unwrap_or_else(|e| e.into_inner());
            if !seen.contains(&labels) {
                if seen.len() < MAX_EVENT_SERIES {
                    seen.insert(labels.clone());
                } else {
                    for (k, v) in &mut labels {
                        if FILTERABLE_LABELS.contains(&k.as_str()) {
                            *v = OTHER.to_string();
                        }
                    }
                }
            }
        }
        self.events.get_or_create(&labels).inc();
    }

    fn on_loss(&self, l: &vigil_proto::tetragon::EventsLost) {
        let stage = LossStage::try_from(l.stage).unwrap_or(LossStage::Unspecified);
        self.vigil_lost
            .get_or_create(&vec![
                ("event_type".into(), l.event_type.clone()),
                ("stage".into(), stage.as_str_name().to_string()),
            ])
            .inc_by(l.count);
        match stage {
            LossStage::RingBuffer => {
                self.ringbuf_lost.inc_by(l.count);
                // Tetragon's message opcodes: execve 5, exit 7, clone 23.
                let op = match l.event_type.as_str() {
                    "PROCESS_EXEC" => "5",
                    "PROCESS_EXIT" => "7",
                    "PROCESS_CLONE" => "23",
                    "PROCESS_KPROBE" => "13",
                    _ => "unknown",
                };
                self.bpf_missed
                    .get_or_create(&vec![
                        ("error".into(), "ENOSPC".into()),
                        ("msg_op".into(), op.into()),
                    ])
                    .inc_by(l.count);
            }
            LossStage::KernelProcessTable => {
                self.map_update_errors
                    .get_or_create(&vec![("map".into(), "execve_map".into())])
                    .inc_by(l.count);
            }
            _ => {}
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        self.cache_size.set(self.cache.0.load(Ordering::Relaxed));
        self.cache_capacity
            .set(self.cache.1.load(Ordering::Relaxed));
        sync(
            &self.ringbuf_received,
            self.received_total.load(Ordering::Relaxed),
        );
        let export = self.export.lock().unwrap_or_else(|e| e.into_inner());
        let sum = |f: fn(&ExportCounters) -> u64| export.iter().map(|c| f(c)).sum::<u64>();
        sync(&self.exported, sum(|c| c.exported.load(Ordering::Relaxed)));
        sync(
            &self.exported_bytes,
            sum(|c| c.exported_bytes.load(Ordering::Relaxed)),
        );
        sync(
            &self.ratelimit_dropped,
            sum(|c| c.ratelimit_dropped.load(Ordering::Relaxed)),
        );
        let last = export
            .iter()
            .map(|c| c.last_exported.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        self.last_exported.set(last as i64);
        drop(export);
        if let Some(c) = &*self.otlp.lock().unwrap_or_else(|e| e.into_inner()) {
            sync(&self.otlp_exported, c.exported.load(Ordering::Relaxed));
            for (reason, n) in [
                ("queue_full", &c.lost_queue_full),
                ("send_failed", &c.lost_send_failed),
                ("rejected", &c.lost_rejected),
            ] {
                let counter = self
                    .otlp_lost
                    .get_or_create(&vec![("reason".into(), reason.into())]);
                sync(&counter, n.load(Ordering::Relaxed));
            }
            self.otlp_queue_bytes
                .set(c.queue_bytes.load(Ordering::Relaxed) as i64);
        }
        if let Some(c) = &*self.history.lock().unwrap_or_else(|e| e.into_inner()) {
            sync(&self.history_recorded, c.recorded.load(Ordering::Relaxed));
            for (reason, n) in [
                ("queue_full", &c.lost_queue_full),
                ("write_failed", &c.lost_write_failed),
            ] {
                let counter = self
                    .history_lost
                    .get_or_create(&vec![("reason".into(), reason.into())]);
                sync(&counter, n.load(Ordering::Relaxed));
            }
            self.history_queue_bytes
                .set(c.queue_bytes.load(Ordering::Relaxed) as i64);
            sync(
                &self.history_slices_dropped,
                c.slices_dropped.load(Ordering::Relaxed),
            );
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Counts every event published on the bus.
pub struct MetricsSink(Arc<Metrics>);

impl Sink for MetricsSink {
    fn name(&self) -> &str {
        "metrics"
    }

    fn publish(&mut self, event: &Event) {
        self.0.count(event);
    }
}

#[cfg(test)]
mod tests;
