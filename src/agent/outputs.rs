//! Export, metrics and redaction: flags -> checked options -> the event bus's sinks.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use vigil_export::otlp::{OtlpConfig, OtlpSink, OtlpTlsFiles};
use vigil_export::{
    AllowDeny, Bus, ExportConfig, FieldFilters, FilterList, JsonLinesSink, Redactor, Rotation,
};
use vigil_history::slices::Budget;
use vigil_history::{HistoryConfig, HistorySink};
use vigil_metrics::{FILTERABLE_LABELS, Metrics, MetricsOptions};

use super::options::{parse_duration, parse_size};
use crate::cli::OutputFlags;

/// The export, metrics and redaction settings, all checked.
#[derive(Debug)]
pub struct OutputOptions {
    pub filename: Option<PathBuf>,
    pub rotation: Rotation,
    pub filters: AllowDeny,
    pub fields: FieldFilters,
    pub redaction: Redactor,
    /// None: unlimited; Some(0): no JSON export.
    pub rate_limit: Option<u64>,
    pub metrics_server: Option<String>,
    pub metrics: MetricsOptions,
    /// `--export-otlp-endpoint` and its settings, checked, with its own copy of the export
    /// filters (a filter keeps state: the pids it follows).
    pub otlp: Option<(OtlpConfig, AllowDeny)>,
    /// `--history-dir` and its limits, checked.
    pub history: Option<HistoryConfig>,
    /// `--web-address`, checked (only with `--history-dir`).
    pub web_address: Option<String>,
}

/// `--history-*`: the flight recorder's settings, or None when `--history-dir` is not given.
fn history_config(f: &OutputFlags, node_name: &str) -> Result<Option<HistoryConfig>> {
    let max_bytes = parse_size("history-max-bytes", &f.history_max_bytes)?;
    let max_age = parse_duration("history-max-age", &f.history_max_age)?;
    let queue_bytes = parse_size("history-queue-bytes", &f.history_queue_bytes)?;
    let Some(dir) = f.history_dir.clone().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(None);
    };
    if max_bytes < vigil_history::slices::MIN_BUDGET {
        bail!(
            "--history-max-bytes: {max_bytes} is below the minimum of {} (4M)",
            vigil_history::slices::MIN_BUDGET
        );
    }
    if max_age.is_zero() {
        bail!("--history-max-age: must be more than 0s");
    }
    if queue_bytes < 1 << 16 {
        bail!("--history-queue-bytes: {queue_bytes} is below the minimum of 65536");
    }
    if !dir.is_absolute() {
        bail!("--history-dir {}: must be an absolute path", dir.display());
    }
    Ok(Some(HistoryConfig {
        dir,
        budget: Budget { max_bytes, max_age },
        queue_bytes,
        node: node_name.to_string(),
    }))
}

impl OutputOptions {
    pub fn from_flags(
        f: &OutputFlags,
        filename: Option<PathBuf>,
        perm: u32,
        node_name: &str,
    ) -> Result<Self> {
        let interval = parse_duration(
            "export-file-rotation-interval",
            &f.export_file_rotation_interval,
        )?;
        parse_duration(
            "export-aggregation-window-size",
            &f.export_aggregation_window_size,
        )?;
        if f.enable_export_aggregation {
            tracing::info!(
                "--enable-export-aggregation: accepted; aggregation is a pass-through, as in Tetragon"
            );
        }
        let rate_limit = match f.export_rate_limit {
            -1 => None,
            n if n >= 0 => Some(n as u64),
            n => bail!("--export-rate-limit: {n} is not -1 (unlimited), 0 (no export) or a rate"),
        };
        let otlp = if f.export_otlp_endpoint.is_empty() {
            let tls_flag = [
                ("--export-otlp-ca-file", f.export_otlp_ca_file.is_some()),
                ("--export-otlp-cert-file", f.export_otlp_cert_file.is_some()),
                ("--export-otlp-key-file", f.export_otlp_key_file.is_some()),
                ("--export-otlp-insecure", f.export_otlp_insecure),
            ];
            if let Some((flag, _)) = tls_flag.iter().find(|(_, set)| *set) {
                bail!("{flag} needs --export-otlp-endpoint");
            }
            None
        } else {
            let tls = OtlpTlsFiles {
                ca_file: f.export_otlp_ca_file.clone(),
                cert_file: f.export_otlp_cert_file.clone(),
                key_file: f.export_otlp_key_file.clone(),
            };
            let mut cfg = OtlpConfig::new(&f.export_otlp_endpoint, f.export_otlp_insecure, &tls)?;
            if f.export_otlp_queue_bytes < 1 << 16 {
                bail!(
                    "--export-otlp-queue-bytes: {} is below the minimum of 65536",
                    f.export_otlp_queue_bytes
                );
            }
            cfg.queue_bytes = f.export_otlp_queue_bytes;
            cfg.timeout = parse_duration("export-otlp-timeout", &f.export_otlp_timeout)?;
            if cfg.timeout.is_zero() {
                bail!("--export-otlp-timeout: must be more than 0s");
            }
            let filters = AllowDeny {
                allow: FilterList::parse("--export-allowlist", &f.export_allowlist)?,
                deny: FilterList::parse("--export-denylist", &f.export_denylist)?,
            };
            Some((cfg, filters))
        };
        let mut labels = Vec::new();
        for l in f.metrics_label_filter.iter().map(|s| s.trim()) {
            if FILTERABLE_LABELS.contains(&l) {
                labels.push(l.to_string());
            } else if !l.is_empty() {
                // Tetragon ignores unknown labels; we say so.
                tracing::warn!("--metrics-label-filter: unknown label {l:?} ignored");
            }
        }
        let history = history_config(f, node_name)?;
        let web_address = match f.web_address.trim() {
            "" => None,
            _ if history.is_none() => bail!(
                "--web-address needs --history-dir: the web explorer shows the flight recorder's files"
            ),
            addr => {
                vigil_web::parse_address(addr)?;
                Some(addr.to_string())
            }
        };
        Ok(Self {
            filename,
            rotation: Rotation {
                max_size: f.export_file_max_size_mb << 20,
                max_backups: f.export_file_max_backups,
                interval: (!interval.is_zero()).then_some(interval),
                compress: f.export_file_compress,
                perm,
            },
            filters: AllowDeny {
                allow: FilterList::parse("--export-allowlist", &f.export_allowlist)?,
                deny: FilterList::parse("--export-denylist", &f.export_denylist)?,
            },
            fields: FieldFilters::parse("--field-filters", &f.field_filters)?,
            redaction: Redactor::parse("--redaction-filters", &f.redaction_filters)?,
            rate_limit,
            metrics_server: (!f.metrics_server.is_empty()).then(|| f.metrics_server.clone()),
            metrics: MetricsOptions {
                event_metrics: f.enable_event_metrics,
                labels,
                node_name: node_name.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
            otlp,
            history,
            web_address,
        })
    }
}

/// The bus with the JSON export (unless the rate limit is 0) and the metrics sink; the
/// metrics server is listening when this returns.
pub fn build(o: OutputOptions, node_name: &str) -> Result<(Bus, Option<Arc<Metrics>>)> {
    let mut bus = Bus::new();
    bus.set_redactor(o.redaction);
    let metrics = o.metrics_server.as_ref().map(|_| Metrics::new(o.metrics));
    if let Some((cfg, filters)) = o.otlp {
        let endpoint = cfg.display.clone();
        // Rate limit 0 turns the JSON export off, not the collector's feed.
        let rate_limit = o.rate_limit.filter(|n| *n > 0);
        let sink = OtlpSink::start(cfg, filters, rate_limit, node_name)?;
        if let Some(m) = &metrics {
            m.add_otlp(sink.counters());
        }
        bus.add(Box::new(sink));
        tracing::info!(%endpoint, "OTLP export on");
    }
    if let Some(cfg) = o.history {
        let dir = cfg.dir.clone();
        let budget = cfg.budget;
        let sink = HistorySink::start(cfg).context("--history-dir")?;
        if let Some(m) = &metrics {
            m.add_history(sink.counters());
        }
        bus.add(Box::new(sink));
        tracing::info!(dir = %dir.display(), max_bytes = budget.max_bytes,
            max_age = ?budget.max_age, "flight recorder on");
        if let Some(addr) = &o.web_address {
            let web = vigil_web::start(addr, &dir)?;
            tracing::info!(address = %web.address, token_file = %web.token_file.display(),
                "web explorer listening (`vigil history web-url` prints its URL)");
        }
    }
    if o.rate_limit == Some(0) {
        tracing::info!("--export-rate-limit=0: JSON export disabled");
    } else {
        let sink = match &o.filename {
            Some(path) => JsonLinesSink::rotating(path, o.rotation)?,
            None => JsonLinesSink::stdout(),
        }
        .with_config(ExportConfig {
            filters: o.filters,
            fields: o.fields,
            rate_limit: o.rate_limit,
            node_name: node_name.to_string(),
        });
        if let Some(m) = &metrics {
            m.add_export(sink.counters());
        }
        bus.add(Box::new(sink));
    }
    if let (Some(m), Some(addr)) = (&metrics, &o.metrics_server) {
        bus.add(Box::new(m.sink()));
        let bound = vigil_metrics::serve(Arc::clone(m), addr).context("metrics server")?;
        tracing::info!(address = %bound, "metrics server listening (/metrics, /healthz)");
    }
    Ok((bus, metrics))
}
