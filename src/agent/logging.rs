//! `--log-level`, `--log-format text|json`, `--log-file` (in addition to stderr), `--debug`.

use anyhow::{Context, Result, bail};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::AgentFlags;

const LEVELS: &[&str] = &[
    "error", "warn", "warning", "info", "debug", "trace", "panic", "fatal",
];

/// Checks the logging flags (for --check-config too).
pub fn check(flags: &AgentFlags) -> Result<()> {
    if !LEVELS.contains(&flags.log_level.to_ascii_lowercase().as_str()) {
        bail!(
            "--log-level: {:?} is not one of: error, warn, info, debug, trace",
            flags.log_level
        );
    }
    if !matches!(flags.log_format.as_str(), "text" | "json") {
        bail!("--log-format: {:?} is not text or json", flags.log_format);
    }
    Ok(())
}

/// Installs the subscriber; returns the handle that changes the level at run time (gRPC
/// SetDebug).
pub fn init(flags: &AgentFlags) -> Result<super::api::LogReload> {
    check(flags)?;
    let level = match flags.log_level.to_ascii_lowercase().as_str() {
        _ if flags.out.debug => "debug".to_string(),
        "warning" => "warn".into(),
        "panic" | "fatal" => "error".into(),
        l => l.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&level));
    // One reloadable filter for every output, first on the registry.
    let (filter, reload) = tracing_subscriber::reload::Layer::new(filter);
    let json = flags.log_format == "json";
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let stderr = if json {
        stderr.json().boxed()
    } else {
        stderr.boxed()
    };
    let file = match &flags.out.log_file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("--log-file: cannot open {}", path.display()))?;
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(std::sync::Mutex::new(f))
                .with_ansi(false);
            Some(if json {
                layer.json().boxed()
            } else {
                layer.boxed()
            })
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init()
        .ok();
    Ok(reload)
}
