//! The agent side of the gRPC API: the bus sink, the server, and the narrow hooks into the
//! main loop (log level, process-cache dumps answered between batches).

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::reload::Handle;
use vigil_api::{
    AgentControl, AgentInfo, ApiServer, GrpcSink, Hub, MemoryPolicyManager, ServerConfig, Service,
    TlsFiles,
};
use vigil_proto::tetragon::{DumpProcessCacheReqArgs, LogLevel, ProcessInternal};

use crate::cli::{AgentFlags, ServerFlags};

use super::pipeline::Pipeline;

/// Replies of the pipeline thread to a cache-dump request.
pub struct DumpRequest {
    args: DumpProcessCacheReqArgs,
    reply: SyncSender<Vec<ProcessInternal>>,
}

/// Changes the log filter of the running agent.
pub type LogReload = Handle<EnvFilter, tracing_subscriber::Registry>;

pub fn level_of(name: &str) -> LogLevel {
    match name.trim().to_ascii_lowercase().as_str() {
        "trace" => LogLevel::Trace,
        "debug" => LogLevel::Debug,
        "warn" | "warning" => LogLevel::Warn,
        "error" => LogLevel::Error,
        "fatal" => LogLevel::Fatal,
        "panic" => LogLevel::Panic,
        _ => LogLevel::Info,
    }
}

struct Control {
    reload: LogReload,
    level: AtomicI32,
    dumps: Mutex<SyncSender<DumpRequest>>,
}

impl AgentControl for Control {
    fn log_level(&self) -> LogLevel {
        LogLevel::try_from(self.level.load(Ordering::Relaxed)).unwrap_or(LogLevel::Info)
    }

    fn set_log_level(&self, level: LogLevel) -> Result<(), String> {
        let directive = match level {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            // Rust logging has no fatal/panic levels: both keep errors only.
            LogLevel::Error | LogLevel::Fatal | LogLevel::Panic => "error",
        };
        self.reload
            .reload(EnvFilter::new(directive))
            .map_err(|e| e.to_string())?;
        self.level.store(level as i32, Ordering::Relaxed);
        Ok(())
    }

    fn dump_process_cache(
        &self,
        args: &DumpProcessCacheReqArgs,
    ) -> Result<Vec<ProcessInternal>, String> {
        let (reply, answer) = sync_channel(1);
        let req = DumpRequest { args: *args, reply };
        self.dumps
            .lock()
            .map_err(|_| "agent stopping".to_string())?
            .try_send(req)
            .map_err(|_| "the agent is busy with another dump; retry".to_string())?;
        answer
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the event pipeline did not answer within 10 s".to_string())
    }
}

/// The pipeline's progress for health `liveness`: batches the ring reader handed over and
/// batches the main loop handled. Records wait while the first is ahead.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    pub offered: Arc<AtomicU64>,
    handled: Arc<AtomicU64>,
}

impl Progress {
    /// The main loop handled one batch.
    pub fn handled_one(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
    }

    fn probe(&self) -> vigil_api::liveness::Probe {
        let me = self.clone();
        Box::new(move || {
            let handled = me.handled.load(Ordering::Relaxed);
            vigil_api::liveness::Sample {
                handled,
                waiting: me.offered.load(Ordering::Relaxed) > handled,
            }
        })
    }
}

/// The running API and the main loop's end of its requests.
pub struct Api {
    server: ApiServer,
    dumps: Receiver<DumpRequest>,
}

/// The agent's policies: those given at start and those added over gRPC, loaded through the
/// one runtime. Policies persisted by an earlier run (`--persist-grpc-policies`) come back.
pub fn policy_manager(
    flags: &ServerFlags,
    runtime: Arc<super::policies::Runtime>,
    btf: Option<&std::path::Path>,
) -> Arc<MemoryPolicyManager> {
    let persist = flags
        .persist_grpc_policies
        .then(|| flags.persist_grpc_policies_dir.clone());
    let btf = btf.map(|p| p.display().to_string());
    Arc::new(
        MemoryPolicyManager::new(
            crate::policy_cmd::detect_capabilities(),
            super::policies::loader(runtime),
            persist,
        )
        .with_kernel_checks(Box::new(move || match &btf {
            Some(path) => Box::new(vigil_policy::SystemKernel::with_btf_path(path)),
            None => Box::new(vigil_policy::SystemKernel::running()),
        })),
    )
}

/// Creates the fan-out hub; its sink goes on the bus before the pipeline starts.
pub fn hub(flags: &ServerFlags) -> (Arc<Hub>, GrpcSink) {
    let hub = Hub::with_limits(vigil_api::Limits {
        client_events: flags.grpc_client_buffer,
        client_bytes: flags.grpc_client_buffer_bytes,
        total_bytes: flags.grpc_buffer_bytes,
        max_clients: flags.grpc_max_clients,
    });
    let sink = GrpcSink::new(Arc::clone(&hub));
    (hub, sink)
}

/// Binds and starts serving. `None` when the API is disabled (`--server-address ""` and
/// `--health-server-address ""`).
pub fn start(
    agent_flags: &AgentFlags,
    hub: Arc<Hub>,
    reload: LogReload,
    manager: Arc<MemoryPolicyManager>,
    runtime_hooks: Arc<super::containers::RuntimeRegistry>,
) -> Result<Option<Api>> {
    let flags = &agent_flags.api;
    let log_level = agent_flags.log_level.as_str();
    let conf = agent_flags.effective.clone();
    // For vigil.history.v1.History, served on the same listener.
    let history_dir = agent_flags
        .out
        .history_dir
        .clone()
        .filter(|d| !d.as_os_str().is_empty());
    if flags.server_address.is_empty() && flags.health_server_address.is_empty() {
        return Ok(None);
    }
    let (tx, dumps) = sync_channel(1);
    let control = Control {
        reload,
        level: AtomicI32::new(level_of(log_level) as i32),
        dumps: Mutex::new(tx),
    };
    let service = Service {
        hub,
        policies: manager,
        control: Arc::new(control),
        info: AgentInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            conf,
            commit: String::new(),
        },
        hooks: Some(runtime_hooks),
    };
    let cfg = ServerConfig {
        server_address: flags.server_address.clone(),
        socket_group: flags.server_socket_group.clone(),
        tls: TlsFiles {
            cert_file: flags.server_tls_cert_file.clone(),
            key_file: flags.server_tls_key_file.clone(),
            client_ca_files: flags.server_tls_client_ca_files.clone(),
            require_client_cert: flags.server_tls_require_client_cert,
        },
        health_address: flags.health_server_address.clone(),
        history_dir,
    };
    let server = ApiServer::start(&cfg, service)?;
    tracing::info!(
        address = server.listening,
        health = flags.health_server_address,
        client_buffer = flags.grpc_client_buffer,
        client_buffer_bytes = flags.grpc_client_buffer_bytes,
        buffer_bytes = flags.grpc_buffer_bytes,
        max_clients = flags.grpc_max_clients,
        "gRPC API listening"
    );
    Ok(Some(Api { server, dumps }))
}

impl Api {
    pub fn set_serving(&self) {
        self.server.set_serving();
    }

    /// From now on health `liveness` follows the pipeline's progress.
    pub fn watch_liveness(&self, progress: &Progress) {
        self.server
            .watch_liveness(progress.probe(), vigil_api::liveness::STALL_THRESHOLD);
    }

    /// Answers pending requests of the API (called by the main loop between batches).
    pub fn serve(&self, pipeline: &Pipeline) {
        while let Ok(req) = self.dumps.try_recv() {
            let _ = req.reply.try_send(pipeline.debug_processes(&req.args));
        }
    }

    pub fn stop(self) {
        self.server.stop();
    }
}

/// The cluster's TracingPolicy and TracingPolicyNamespaced objects go into the policy
/// manager, domain `k8s` (a namespaced one keeps its namespace in the policy's id).
pub struct K8sPolicies(pub Arc<MemoryPolicyManager>, pub K8sListed);

/// The policy kinds whose objects the cluster listed have all been acted on (both kinds:
/// the `k8s` domain has reloaded).
#[derive(Debug, Clone, Default)]
pub struct K8sListed(Arc<std::sync::Mutex<std::collections::BTreeSet<&'static str>>>);

impl K8sListed {
    pub fn complete(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len() >= 2
    }
}

fn k8s_source(d: &vigil_k8s::Desired) -> String {
    if d.namespace.is_empty() {
        format!("TracingPolicy {}", d.name)
    } else {
        format!("TracingPolicyNamespaced {}/{}", d.namespace, d.name)
    }
}

impl vigil_k8s::PolicySink for K8sPolicies {
    fn load(&self, d: &vigil_k8s::Desired) -> Result<(), String> {
        self.0
            .add_from(
                &d.yaml,
                &k8s_source(d),
                vigil_policy::state::Domain::K8s,
                None,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn replace(&self, d: &vigil_k8s::Desired) -> Result<(), String> {
        self.0
            .replace(&d.yaml, &k8s_source(d), vigil_policy::state::Domain::K8s)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn listed(&self, kind: &'static str) {
        self.1
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kind);
    }

    fn skip(&self, d: &vigil_k8s::Desired) -> Result<(), String> {
        self.0
            .skip(&d.yaml, &k8s_source(d), vigil_policy::state::Domain::K8s)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn unload(&self, key: &vigil_k8s::Key) -> Result<(), String> {
        use vigil_api::policy::PolicyManager;
        let id = vigil_policy::state::PolicyId {
            domain: vigil_policy::state::Domain::K8s,
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        };
        self.0.delete(&id).map_err(|e| e.to_string())
    }
}
