//! Command-line interface. Agent flags use Tetragon's names (tetragon.md §3.2).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::remote::flags::{ClientFlags, GetEventsArgs, ListOutput, ServerFlags};

#[derive(Debug, Parser)]
#[command(
    name = "vigil",
    version,
    about = "eBPF runtime-security agent (Tetragon-compatible)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (root): load the eBPF sensors and export events.
    #[command(args_override_self = true)]
    Agent(Box<AgentFlags>),
    /// Print the version; with --server, the agent's too.
    Version(VersionArgs),
    /// TracingPolicy files (validate, explain: local) and the agent's policies (over gRPC).
    #[command(subcommand, alias = "tp")]
    Tracingpolicy(PolicyCommand),
    /// Stream the agent's events (tetra getevents); renders JSON lines piped to stdin.
    Getevents(Box<GetEventsArgs>),
    /// The agent's health (tetra status).
    Status(ClientFlags),
    /// The agent's eBPF programs and maps, its process cache (tetra debug/dump).
    #[command(subcommand)]
    Debug(crate::remote::debug::DebugCommand),
    /// Get or set the agent's log level (tetra loglevel).
    #[command(subcommand)]
    Loglevel(crate::remote::debug::LoglevelCommand),
    /// What this kernel offers vigil: hook mechanisms, helpers, map kinds (tetra probe).
    Probe(crate::kernel_probe::ProbeArgs),
    /// Write one archive for a bug report: versions, flags, kernel, probe, programs and maps,
    /// policies, log lines, process-cache summary; no secrets (tetra bugtool).
    Bugtool(Box<crate::bugtool::BugtoolArgs>),
    /// OCI createRuntime/createContainer hook: registers the container with the agent.
    OciHook(crate::oci_hook::OciHookArgs),
    /// The flight recorder's events (the agent's --history-dir): process trees, events by
    /// time, binary, pod, policy, action.
    #[command(subcommand)]
    History(crate::history_cmd::HistoryCommand),
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Also ask the agent for its version.
    #[arg(short = 's', long)]
    pub server: bool,
    #[command(flatten)]
    pub client: ClientFlags,
}

/// Which policy of the agent (`-n` namespace, `--domain`).
#[derive(Debug, Args)]
pub struct PolicyTarget {
    pub name: String,
    #[arg(short = 'n', long, default_value = "")]
    pub namespace: String,
    #[arg(long, default_value = "")]
    pub domain: String,
    #[command(flatten)]
    pub client: ClientFlags,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check policy files: prints OK or every error (file:line:column: path: reason).
    Validate {
        files: Vec<PathBuf>,
        /// BTF file for kernel checks instead of the running kernel's.
        #[arg(long)]
        btf: Option<PathBuf>,
        /// Skip the checks that need the kernel.
        #[arg(long)]
        no_kernel: bool,
    },
    /// Show what each hook would attach, by which mechanism on this kernel, and what cannot.
    Explain {
        file: PathBuf,
        #[arg(long)]
        btf: Option<PathBuf>,
    },
    /// What a policy would have done (posted, killed, overridden) to the calls the flight
    /// recorder holds, per selector, and what the history cannot tell.
    Backtest(crate::backtest::BacktestArgs),
    /// Add a policy to the running agent.
    Add {
        file: PathBuf,
        /// Mode: enforce or monitor.
        #[arg(short = 'm', long)]
        mode: Option<String>,
        #[arg(long, default_value = "")]
        domain: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Delete a policy from the agent.
    Delete(PolicyTarget),
    /// Enable a policy.
    Enable(PolicyTarget),
    /// Disable a policy.
    Disable(PolicyTarget),
    /// Set a policy's mode (enforce or monitor).
    SetMode {
        #[command(flatten)]
        target: PolicyTarget,
        mode: String,
    },
    /// List the agent's policies.
    List {
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: ListOutput,
        #[arg(long, default_value = "")]
        domain: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// List the policy domains the agent serves.
    Domains {
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: ListOutput,
        #[command(flatten)]
        client: ClientFlags,
    },
}

#[derive(Debug, Args)]
pub struct AgentFlags {
    /// Write JSON events to this file instead of stdout.
    #[arg(long)]
    pub export_filename: Option<PathBuf>,
    /// Access permissions of the export file (octal).
    #[arg(long, default_value = "600")]
    pub export_file_perm: String,
    /// Location of the kernel BTF (default: /sys/kernel/btf/vmlinux).
    #[arg(long)]
    pub btf: Option<PathBuf>,
    /// Location of procfs, for the start-up scan of running processes.
    #[arg(long, default_value = "/proc/")]
    pub procfs: PathBuf,
    /// Ring buffer size per CPU (K/M/G suffixes). 0: the default, 4M per CPU.
    #[arg(long, default_value = "0")]
    pub rb_size: String,
    /// Ring buffer size in total (overrides --rb-size).
    #[arg(long, default_value = "0")]
    pub rb_size_total: String,
    /// Size of the queue between the ring buffer reader and the event pipeline.
    #[arg(long, default_value = "65535")]
    pub rb_queue_size: String,
    /// Entries of the kernel process table (Tetragon's execve_map); 0: 32768.
    #[arg(long, default_value = "0")]
    pub execve_map_entries: u32,
    /// Exec and exit events per cgroup: `N,interval` (e.g. 1000,1s) per CPU; over it the
    /// cgroup is throttled (process_throttle events). Empty: off.
    #[arg(long, default_value = "")]
    pub cgroup_rate: String,
    /// Size of the user-space process cache.
    #[arg(long, default_value = "65536")]
    pub process_cache_size: usize,
    /// Time an ended process stays in the cache for late events (e.g. 30s, 500ms).
    #[arg(long, default_value = "30s")]
    pub process_cache_gc_interval: String,
    /// Bytes of argv copied per exec (vigil; larger argv is truncated and flagged truncArgs).
    #[arg(long, default_value = "65536")]
    pub max_args_size: u32,
    /// Name of the cluster, on every event.
    #[arg(long, default_value = "")]
    pub cluster_name: String,
    /// Event types that carry ancestors: base, kprobe, tracepoint, uprobe, lsm, usdt, loader.
    #[arg(long, value_delimiter = ',', default_value = "")]
    pub enable_ancestors: Vec<String>,
    /// Add cap, process_credentials and binary_properties.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub enable_process_cred: bool,
    /// Where DnsLookup policy actions send their query, IP:port (vigil; default: the first
    /// nameserver of /etc/resolv.conf).
    #[arg(long)]
    pub dns_lookup_server: Option<String>,
    /// Leave the policies' programs attached (pinned under /sys/fs/bpf/vigil/kept) when the
    /// agent exits, so enforcement goes on while it restarts.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub keep_sensors_on_exit: bool,
    /// At start, detach the programs a previous agent left pinned instead of adopting them
    /// (adopting: they stay until this agent's policies are attached).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub release_pinned_bpf: bool,
    /// Put the linear addresses of stack frames (userStackTrace) in events.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub expose_stack_addresses: bool,
    /// Add namespaces (ns).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub enable_process_ns: bool,
    /// Include environment variables in process_exec events.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub enable_process_environment_variables: bool,
    /// Add the SHA-256 of the executed file to process_exec (vigil; `binary_sha256`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub enable_process_exec_sha256: bool,
    /// With --enable-process-exec-sha256: how long a process_exec waits for its hash before
    /// going out without it (vigil; e.g. 50ms, 0).
    #[arg(long, default_value = "50ms")]
    pub process_exec_sha256_wait: String,
    /// With --enable-process-exec-sha256: larger executed files are not hashed (vigil; K/M/G).
    #[arg(long, default_value = "128M")]
    pub process_exec_sha256_max_size: String,
    /// With --enable-process-exec-sha256: bytes of the digest cache (vigil; K/M/G).
    #[arg(long, default_value = "4M")]
    pub process_exec_sha256_cache_size: String,
    /// Resolve user names: disabled or unix (/etc/passwd, host processes only).
    #[arg(long, default_value = "disabled")]
    pub username_metadata: String,
    /// Directory for the agent's runtime files (process-cache dumps on SIGUSR1).
    #[arg(long, default_value = "/var/run/vigil")]
    pub state_dir: PathBuf,
    /// Watch this node's pods in the Kubernetes API and add `pod` to container events.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub enable_k8s_api: bool,
    /// Kubeconfig for --enable-k8s-api (default: in-cluster, then the usual places).
    #[arg(long)]
    pub k8s_kubeconfig_path: Option<PathBuf>,
    /// Copy pod annotations into `pod.pod_annotations`.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub enable_pod_annotations: bool,
    /// With --enable-k8s-api: how long an event from a container whose pod is not known yet
    /// waits for it before going out without `pod` (vigil; e.g. 2s, 500ms, 0).
    #[arg(long, default_value = "2s")]
    pub k8s_pod_wait: String,
    /// Name containers run without Kubernetes: ask containerd (every namespace) and Docker
    /// which container a new cgroup belongs to, and put its name and image in
    /// `process.container` (vigil).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub enable_container_runtimes: bool,
    /// With --enable-container-runtimes: containerd's socket; empty: containerd is not asked
    /// (vigil).
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    pub containerd_address: String,
    /// With --enable-container-runtimes: Docker's engine socket; empty: Docker is not asked
    /// (vigil).
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub docker_address: String,
    /// With --enable-container-runtimes: how long an event from a cgroup not seen before
    /// waits for the runtimes' answer (vigil; at most 1s; e.g. 100ms, 0).
    #[arg(long, default_value = "100ms")]
    pub container_runtime_wait: String,
    /// io_uring requests bypass syscall hooks: auto (report where the kernel lacks
    /// kernel-function hooks, else allow), allow, report (an event per ring created) or
    /// kill (SIGKILL at ring creation) (vigil; docs/guides/no-lsm-kernels.md).
    #[arg(long, default_value = "auto")]
    pub io_uring: String,
    /// TracingPolicy file to load at start (repeatable).
    #[arg(long)]
    pub tracing_policy: Vec<PathBuf>,
    /// Directory of TracingPolicy files (*.yaml, *.yml) loaded at start.
    #[arg(long, default_value = "/etc/tetragon/tetragon.tp.d")]
    pub tracing_policy_dir: PathBuf,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    pub log_format: String,
    #[command(flatten)]
    pub out: OutputFlags,
    #[command(flatten)]
    pub api: ServerFlags,
    /// Every flag's value as parsed (`--flag` name, value), filled after parsing: GetInfo's
    /// `conf`, which `vigil bugtool` collects.
    #[arg(skip)]
    pub effective: Vec<(String, String)>,
}

/// Export, configuration, logging and metrics flags (Tetragon's names; docs/reference/flags.md).
#[derive(Debug, Args)]
pub struct OutputFlags {
    /// Size in MB at which the export file is rotated.
    #[arg(long, default_value = "10")]
    pub export_file_max_size_mb: u64,
    /// Number of rotated export files to keep.
    #[arg(long, default_value = "5")]
    pub export_file_max_backups: usize,
    /// Rotate the export file at this interval as well as by size (0s: never).
    #[arg(long, default_value = "0s")]
    pub export_file_rotation_interval: String,
    /// Gzip rotated export files.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub export_file_compress: bool,
    /// Export allow list: Tetragon filter JSON, one filter per line.
    #[arg(long, default_value = "")]
    pub export_allowlist: String,
    /// Export deny list: Tetragon filter JSON, one filter per line.
    #[arg(long, default_value = "")]
    pub export_denylist: String,
    /// Field filters for the export (FieldFilter JSON, one per line).
    #[arg(long, default_value = "")]
    pub field_filters: String,
    /// Redaction filters (RedactionFilter JSON, one per line).
    #[arg(long, default_value = "")]
    pub redaction_filters: String,
    /// Events per minute exported; -1: unlimited, 0: no JSON export.
    #[arg(long, default_value = "-1", allow_hyphen_values = true)]
    pub export_rate_limit: i64,
    /// OTLP/gRPC collector to send events to as log records: host:port (TLS unless
    /// --export-otlp-insecure), http://host:port or https://host:port; empty: off.
    #[arg(long, default_value = "")]
    pub export_otlp_endpoint: String,
    /// Plaintext to a host:port OTLP endpoint (no TLS).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub export_otlp_insecure: bool,
    /// CA certificate (PEM) the OTLP collector's certificate must chain to (besides the system's).
    #[arg(long)]
    pub export_otlp_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for the OTLP collector (mutual TLS).
    #[arg(long)]
    pub export_otlp_cert_file: Option<PathBuf>,
    /// Client key (PEM) for --export-otlp-cert-file.
    #[arg(long)]
    pub export_otlp_key_file: Option<PathBuf>,
    /// Bytes of events the OTLP export queues (encoded size) before it drops and counts.
    #[arg(long, default_value = "67108864")]
    pub export_otlp_queue_bytes: u64,
    /// Flight recorder: keep every event (after redaction) in SQLite files in this
    /// directory, for `vigil history`; empty: off.
    #[arg(long)]
    pub history_dir: Option<PathBuf>,
    /// Bytes the recorder's files (databases and WALs together) may take; the oldest
    /// slice goes first.
    #[arg(long, default_value = "1G")]
    pub history_max_bytes: String,
    /// Recorded events older than this go (by whole slices, about an eighth of it each).
    #[arg(long, default_value = "168h")]
    pub history_max_age: String,
    /// Bytes of events (protobuf size) waiting for the recorder's writer before it drops
    /// and counts.
    #[arg(long, default_value = "64M")]
    pub history_queue_bytes: String,
    /// Flight recorder's web explorer: serve a read-only page over the history on this
    /// address (`:2113` is loopback; a token is required, `vigil history web-url` prints
    /// the URL); needs --history-dir; empty: off.
    #[arg(long, default_value = "")]
    pub web_address: String,
    /// Timeout of one OTLP Export request.
    #[arg(long, default_value = "10s")]
    pub export_otlp_timeout: String,
    /// Accepted as in Tetragon, where aggregation is a pass-through.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub enable_export_aggregation: bool,
    /// Accepted (aggregation is a pass-through).
    #[arg(long, default_value = "15s")]
    pub export_aggregation_window_size: String,
    /// Accepted (aggregation is a pass-through).
    #[arg(long, default_value = "10000")]
    pub export_aggregation_buffer_size: u64,
    /// Serve Prometheus metrics on this address (e.g. :2112); empty: off.
    #[arg(long, default_value = "")]
    pub metrics_server: String,
    /// Labels of event metrics: namespace, workload, pod, binary.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "namespace,workload,pod,binary"
    )]
    pub metrics_label_filter: Vec<String>,
    /// Per-event metrics (tetragon_events_total).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = clap::ArgAction::Set)]
    pub enable_event_metrics: bool,
    /// Also write logs to this file.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Debug logs (same as --log-level=debug).
    #[arg(short = 'd', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub debug: bool,
    /// Directory with one file per flag (file name = flag name, content = value).
    #[arg(long)]
    pub config_dir: Option<PathBuf>,
    /// YAML file of flag: value (vigil; replaces /etc/tetragon/tetragon.yaml).
    #[arg(long)]
    pub config_file: Option<PathBuf>,
    /// Validate the configuration, print the result and exit (0: valid, 1: not).
    #[arg(long)]
    pub check_config: bool,
}
