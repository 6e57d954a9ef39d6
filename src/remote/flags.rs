//! Flags of the gRPC API: the agent's server flags (Tetragon's names, tetragon.md §3.2) and
//! the client commands' flags (tetra's names, §5.1/§5.2).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Agent flags for the API server (flattened into `vigil agent`).
#[derive(Debug, Args, Clone)]
pub struct ServerFlags {
    /// gRPC API address: unix:///path or host:port ("" disables the API).
    #[arg(long = "server-address", default_value = vigil_api::client::DEFAULT_SERVER_ADDRESS)]
    pub server_address: String,
    /// Group (name or gid) that may use the unix socket: mode 0660 instead of 0600 (vigil).
    #[arg(long)]
    pub server_socket_group: Option<String>,
    /// PEM server certificate: enables TLS on a TCP listener.
    #[arg(long)]
    pub server_tls_cert_file: Option<PathBuf>,
    /// PEM private key of --server-tls-cert-file.
    #[arg(long)]
    pub server_tls_key_file: Option<PathBuf>,
    /// PEM CA bundles that verify client certificates (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub server_tls_client_ca_files: Vec<PathBuf>,
    /// Require and verify client certificates (mTLS).
    #[arg(long)]
    pub server_tls_require_client_cert: bool,
    /// grpc.health.v1 address, service "liveness" ("" disables it).
    #[arg(long, default_value = ":6789")]
    pub health_server_address: String,
    /// Keep policies added over gRPC across agent restarts.
    #[arg(long)]
    pub persist_grpc_policies: bool,
    /// Where persisted gRPC policies are kept.
    #[arg(long, default_value = "/var/run/vigil/grpc-policies")]
    pub persist_grpc_policies_dir: PathBuf,
    /// Events queued per GetEvents client before a slow client is disconnected (vigil).
    #[arg(long, default_value_t = vigil_api::DEFAULT_CLIENT_BUFFER)]
    pub grpc_client_buffer: usize,
    /// Bytes (encoded events) queued per GetEvents client before it is disconnected (vigil).
    #[arg(long, default_value_t = vigil_api::DEFAULT_CLIENT_BUFFER_BYTES)]
    pub grpc_client_buffer_bytes: usize,
    /// Bytes queued for all GetEvents clients together; over it, the clients holding the
    /// most are disconnected (vigil).
    #[arg(long, default_value_t = vigil_api::DEFAULT_BUFFER_BYTES)]
    pub grpc_buffer_bytes: usize,
    /// Concurrent GetEvents streams; more are refused with RESOURCE_EXHAUSTED (vigil).
    #[arg(long, default_value_t = vigil_api::DEFAULT_MAX_CLIENTS)]
    pub grpc_max_clients: usize,
}

/// Connection flags shared by every client command (tetra's global flags).
#[derive(Debug, Args, Clone)]
pub struct ClientFlags {
    /// Agent API address (unix:///path or host:port).
    #[arg(long, env = "VIGIL_SERVER_ADDRESS", default_value = vigil_api::client::DEFAULT_SERVER_ADDRESS)]
    pub server_address: String,
    /// Connection and request timeout (e.g. 30s).
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    /// PEM client certificate (mTLS).
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM key of --tls-cert-file.
    #[arg(long)]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates that verify the server (comma-separated); enables TLS.
    #[arg(long, value_delimiter = ',')]
    pub tls_ca_cert_files: Vec<PathBuf>,
    /// Server name to verify instead of the address's host.
    #[arg(long)]
    pub tls_server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Compact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorMode {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListOutput {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct GetEventsArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "json")]
    pub output: Output,
    /// Colors in compact output.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorMode,
    /// Fields to include (comma-separated FieldMask paths, e.g. process.binary,parent).
    #[arg(short = 'f', long, value_delimiter = ',')]
    pub include_fields: Vec<String>,
    /// Fields to exclude.
    #[arg(short = 'F', long, value_delimiter = ',')]
    pub exclude_fields: Vec<String>,
    /// Event types (e.g. PROCESS_EXEC,PROCESS_EXIT).
    #[arg(short = 'e', long, value_delimiter = ',')]
    pub event_types: Vec<String>,
    /// Kubernetes namespaces.
    #[arg(short = 'n', long, alias = "namespaces", value_delimiter = ',')]
    pub namespace: Vec<String>,
    /// Binary regular expressions.
    #[arg(long, alias = "processes", value_delimiter = ',')]
    pub process: Vec<String>,
    /// Pod name regular expressions.
    #[arg(long, alias = "pods", value_delimiter = ',')]
    pub pod: Vec<String>,
    /// Container name regular expressions.
    #[arg(long, value_delimiter = ',')]
    pub containers: Vec<String>,
    /// Also host processes (namespace "").
    #[arg(long)]
    pub host: bool,
    /// Policy names.
    #[arg(long, value_delimiter = ',')]
    pub policy_names: Vec<String>,
    /// Namespace regular expressions.
    #[arg(long, value_delimiter = ',')]
    pub namespace_regex: Vec<String>,
    /// CEL expressions over the event (Tetragon's variables: `process_exec.process.binary`, ...);
    /// one matching is enough.
    #[arg(long)]
    pub cel_expression: Vec<String>,
    /// Prefix compact lines with the event time.
    #[arg(long)]
    pub timestamps: bool,
    /// Reconnect when the stream ends.
    #[arg(long)]
    pub reconnect: bool,
    /// Wait between reconnections.
    #[arg(long, default_value = "2s")]
    pub reconnect_wait: String,
}
