//! Agent options, parsed and checked from the command-line flags.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cli::AgentFlags;

/// Default ring buffer size per CPU: a 5,000-process burst (two events each plus clone
/// messages, ~0.5 KiB per exec) fits several times over (README, "Loss").
pub const DEFAULT_RB_PER_CPU: u64 = 4 << 20;

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub export_filename: Option<PathBuf>,
    pub export_file_perm: u32,
    pub btf: Option<PathBuf>,
    pub procfs: PathBuf,
    pub ring_buffer_bytes: u32,
    pub queue_size: usize,
    pub process_table_entries: u32,
    pub process_cache_size: usize,
    pub gc_interval: Duration,
    pub args_limit: u32,
    pub cluster_name: String,
    pub ancestors_base: bool,
    /// Ancestors on process_kprobe events (needs `base`, as in Tetragon).
    pub ancestors_kprobe: bool,
    pub process_cred: bool,
    pub process_ns: bool,
    pub expose_stack_addresses: bool,
    pub keep_sensors_on_exit: bool,
    pub release_pinned_bpf: bool,
    pub environment: bool,
    pub username_unix: bool,
    /// Where DnsLookup actions send their query (None: /etc/resolv.conf's nameserver).
    pub dns_lookup_server: Option<std::net::SocketAddr>,
    pub state_dir: PathBuf,
    /// `--enable-k8s-api`: the pod watch's options.
    pub k8s: Option<K8sOptions>,
    /// `--io-uring`: the built-in io_uring policy (resolved against the kernel at load).
    pub io_uring: super::io_uring::IoUringMode,
}

#[derive(Debug, Clone)]
pub struct K8sOptions {
    pub kubeconfig: Option<PathBuf>,
    pub annotations: bool,
    /// How long an event waits for its container's pod.
    pub pod_wait: Duration,
}

/// Parses Tetragon-style sizes: `65536`, `64K`, `4M`, `1G`.
pub fn parse_size(flag: &str, value: &str) -> Result<u64> {
    let v = value.trim();
    let (digits, mult) = match v.chars().last() {
        Some('k' | 'K') => (&v[..v.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&v[..v.len() - 1], 1 << 20),
        Some('g' | 'G') => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("--{flag}: {value:?} is not a size (examples: 65536, 64K, 4M)"))?;
    Ok(n * mult)
}

/// Parses durations: `30s`, `500ms`, `2m`, or plain seconds.
pub fn parse_duration(flag: &str, value: &str) -> Result<Duration> {
    let v = value.trim();
    let bad = || format!("--{flag}: {value:?} is not a duration (examples: 30s, 500ms, 2m)");
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = num.parse().with_context(bad)?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => bail!(bad()),
    })
}

const ANCESTOR_TYPES: &[&str] = &[
    "base",
    "kprobe",
    "tracepoint",
    "uprobe",
    "lsm",
    "usdt",
    "loader",
];

impl AgentOptions {
    pub fn from_flags(f: &AgentFlags, cpus: usize) -> Result<Self> {
        let per_cpu = parse_size("rb-size", &f.rb_size)?;
        let total = parse_size("rb-size-total", &f.rb_size_total)?;
        let ring = if total > 0 {
            total
        } else {
            (if per_cpu > 0 {
                per_cpu
            } else {
                DEFAULT_RB_PER_CPU
            }) * cpus as u64
        };
        if ring > 1 << 30 {
            bail!("--rb-size/--rb-size-total: {ring} bytes is above the 1G maximum");
        }
        let queue = parse_size("rb-queue-size", &f.rb_queue_size)?;
        if queue == 0 {
            bail!("--rb-queue-size must be at least 1");
        }
        let perm = u32::from_str_radix(&f.export_file_perm, 8).with_context(|| {
            format!(
                "--export-file-perm: {:?} is not an octal mode",
                f.export_file_perm
            )
        })?;
        let mut ancestors_base = false;
        let mut ancestors_kprobe = false;
        for t in f
            .enable_ancestors
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            if !ANCESTOR_TYPES.contains(&t) {
                // Tetragon ignores unknown types; we say so instead of staying silent.
                tracing::warn!("--enable-ancestors: unknown event type {t:?} ignored");
            }
            ancestors_base |= t == "base";
            ancestors_kprobe |= t == "kprobe";
        }
        let username_unix = match f.username_metadata.as_str() {
            "disabled" => false,
            "unix" => true,
            other => bail!("--username-metadata: {other:?} is not one of: disabled, unix"),
        };
        if f.max_args_size < 64 {
            bail!(
                "--max-args-size: {} is below the 64-byte minimum",
                f.max_args_size
            );
        }
        // Checked even without --enable-k8s-api: a bad value is a mistake either way.
        let pod_wait = parse_duration("k8s-pod-wait", &f.k8s_pod_wait)?;
        Ok(Self {
            export_filename: f.export_filename.clone(),
            export_file_perm: perm,
            btf: f.btf.clone(),
            procfs: f.procfs.clone(),
            ring_buffer_bytes: ring as u32,
            queue_size: queue as usize,
            process_table_entries: if f.execve_map_entries == 0 {
                32768
            } else {
                f.execve_map_entries
            },
            process_cache_size: f.process_cache_size,
            gc_interval: parse_duration("process-cache-gc-interval", &f.process_cache_gc_interval)?,
            args_limit: f.max_args_size,
            cluster_name: f.cluster_name.clone(),
            ancestors_base,
            // Tetragon: `base` is required by the other types for correct reference counting.
            ancestors_kprobe: ancestors_kprobe && ancestors_base,
            process_cred: f.enable_process_cred,
            process_ns: f.enable_process_ns,
            expose_stack_addresses: f.expose_stack_addresses,
            keep_sensors_on_exit: f.keep_sensors_on_exit,
            release_pinned_bpf: f.release_pinned_bpf,
            environment: f.enable_process_environment_variables,
            username_unix,
            dns_lookup_server: match f.dns_lookup_server.as_deref() {
                None | Some("") => None,
                Some(a) => Some(a.parse().map_err(|_| {
                    anyhow::anyhow!("--dns-lookup-server {a:?}: expected an IP:port address")
                })?),
            },
            state_dir: f.state_dir.clone(),
            k8s: f.enable_k8s_api.then(|| K8sOptions {
                kubeconfig: f.k8s_kubeconfig_path.clone(),
                annotations: f.enable_pod_annotations,
                pod_wait,
            }),
            io_uring: super::io_uring::IoUringMode::parse(&f.io_uring)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("x", "64K").unwrap(), 65536);
        assert_eq!(parse_size("x", "4M").unwrap(), 4 << 20);
        assert_eq!(parse_size("x", "100").unwrap(), 100);
        assert!(
            parse_size("x", "4Q")
                .unwrap_err()
                .to_string()
                .contains("--x")
        );
        assert_eq!(
            parse_duration("x", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("x", "30s").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("x", "1y").is_err());
    }
}
