//! Agent options, parsed and checked from the command-line flags.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cli::AgentFlags;

/// Default ring buffer size per CPU: a 5,000-process burst (two events each plus clone
/// messages, ~0.5 KiB per exec) fits several times over (docs/reference/events.md, "Loss").
pub const DEFAULT_RB_PER_CPU: u64 = 4 << 20;

/// The longest a process_exec may wait for its hash: every event behind it waits too.
pub const MAX_SHA256_WAIT: Duration = Duration::from_secs(5);

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
    /// `--enable-container-runtimes`: names and images from containerd and Docker.
    pub runtimes: Option<RuntimeOptions>,
    /// `--io-uring`: the built-in io_uring policy (resolved against the kernel at load).
    pub io_uring: super::io_uring::IoUringMode,
    /// `--cgroup-rate`; `None`: off.
    pub cgroup_rate: Option<vigil_bpf::cgroup_rate::CgroupRate>,
    /// `--enable-process-exec-sha256`: the hash settings.
    pub exec_sha256: Option<ExecSha256Options>,
}

#[derive(Debug, Clone)]
pub struct ExecSha256Options {
    /// How long a process_exec waits for its hash.
    pub wait: Duration,
    pub max_file_bytes: u64,
    pub cache_bytes: usize,
}

/// `--enable-container-runtimes`.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub containerd: Option<PathBuf>,
    pub docker: Option<PathBuf>,
    /// How long an event from a new cgroup waits for the runtimes.
    pub wait: Duration,
}

/// An event from a new cgroup waits at most this long (the events behind it wait too).
const MAX_RUNTIME_WAIT: Duration = Duration::from_secs(1);

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

/// Bounds of `--cgroup-rate`, so that the kernel's rate arithmetic cannot overflow
/// (events x interval in ns stays below 2^63).
const MAX_RATE_EVENTS: u32 = 1_000_000;
const MAX_RATE_INTERVAL: Duration = Duration::from_secs(3600);

/// Parses `--cgroup-rate N,interval` (Tetragon's form, e.g. `1000,1s`, `100,1m`). Empty, or
/// a zero count or interval, is off, as in Tetragon; anything else malformed is an error.
pub fn parse_cgroup_rate(value: &str) -> Result<Option<vigil_bpf::cgroup_rate::CgroupRate>> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let bad = || format!("--cgroup-rate: {value:?} is not <events>,<interval> (e.g. 1000,1s)");
    let (events, interval) = v.split_once(',').with_context(bad)?;
    let events: u32 = events.trim().parse().with_context(bad)?;
    let interval = parse_duration("cgroup-rate", interval).with_context(bad)?;
    if events == 0 || interval.is_zero() {
        return Ok(None);
    }
    if events > MAX_RATE_EVENTS || interval > MAX_RATE_INTERVAL {
        bail!("--cgroup-rate: {value:?} is above the maximum of {MAX_RATE_EVENTS} events per 1h");
    }
    Ok(Some(vigil_bpf::cgroup_rate::CgroupRate {
        events,
        interval_ns: interval.as_nanos() as u64,
    }))
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
        let runtime_wait = parse_duration("container-runtime-wait", &f.container_runtime_wait)?;
        if runtime_wait > MAX_RUNTIME_WAIT {
            bail!(
                "--container-runtime-wait: {runtime_wait:?} is above the {MAX_RUNTIME_WAIT:?} maximum (events behind a waiting one wait with it)"
            );
        }
        let socket = |flag: &str, v: &str| -> Result<Option<PathBuf>> {
            match v {
                "" => Ok(None),
                v if v.starts_with('/') => Ok(Some(PathBuf::from(v))),
                v => bail!("--{flag}: {v:?} is not an absolute socket path"),
            }
        };
        let runtimes = RuntimeOptions {
            containerd: socket(
                "containerd-address",
                f.containerd_address
                    .strip_prefix("unix://")
                    .unwrap_or(&f.containerd_address),
            )?,
            docker: socket(
                "docker-address",
                f.docker_address
                    .strip_prefix("unix://")
                    .unwrap_or(&f.docker_address),
            )?,
            wait: runtime_wait,
        };
        let sha256 = ExecSha256Options {
            wait: parse_duration("process-exec-sha256-wait", &f.process_exec_sha256_wait)?,
            max_file_bytes: parse_size(
                "process-exec-sha256-max-size",
                &f.process_exec_sha256_max_size,
            )?,
            cache_bytes: parse_size(
                "process-exec-sha256-cache-size",
                &f.process_exec_sha256_cache_size,
            )? as usize,
        };
        if sha256.wait > MAX_SHA256_WAIT {
            bail!(
                "--process-exec-sha256-wait: {:?} is above the {MAX_SHA256_WAIT:?} maximum (events behind a waiting exec wait with it)",
                sha256.wait
            );
        }
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
            runtimes: f.enable_container_runtimes.then_some(runtimes),
            io_uring: super::io_uring::IoUringMode::parse(&f.io_uring)?,
            cgroup_rate: parse_cgroup_rate(&f.cgroup_rate)?,
            exec_sha256: f.enable_process_exec_sha256.then_some(sha256),
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

    #[test]
    fn cgroup_rate_values() {
        let rate = |v| {
            parse_cgroup_rate(v)
                .unwrap()
                .map(|r| (r.events, r.interval_ns))
        };
        assert_eq!(rate("10,1s"), Some((10, 1_000_000_000)));
        assert_eq!(rate("100,1m"), Some((100, 60_000_000_000)));
        assert_eq!(rate(" 5 ,500ms"), Some((5, 500_000_000)));
        // Tetragon: empty, or a zero count or interval, is off.
        assert_eq!(rate(""), None);
        assert_eq!(rate("0,1s"), None);
        assert_eq!(rate("10,0s"), None);
        for bad in [
            "10",
            "ten,1s",
            "10,soon",
            "-1,1s",
            "10,1s,2",
            "2000000,1s",
            "10,2h",
        ] {
            let err = format!("{:#}", parse_cgroup_rate(bad).unwrap_err());
            assert!(err.contains("--cgroup-rate"), "{bad}: {err}");
        }
    }
}
