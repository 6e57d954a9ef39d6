//! The thin API-facing part: a client from a kubeconfig or the in-cluster service account,
//! and a watch of this node's pods (kube-runtime's watcher: list, then watch with bookmarks;
//! on `410 Gone` it lists again) feeding the [`PodStore`](crate::store::PodStore), and a
//! watch of the cluster's TracingPolicy objects feeding a [`PolicySink`] through the
//! [`Reconciler`].

use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config};

use crate::policies::{Action, Desired, Reconciler};

use crate::store::SharedPods;

/// The underlying error is part of the message, not a `source`: kube's errors already print
/// their own causes, and the agent prints a source chain, which would repeat them.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("--k8s-kubeconfig-path {path}: {error}")]
    Kubeconfig {
        path: PathBuf,
        error: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration (not in a cluster, no kubeconfig): {0}")]
    Infer(kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    Client(kube::Error),
    #[error("starting the Kubernetes watch thread: {0}")]
    Thread(std::io::Error),
}

#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// A kubeconfig file; `None`: in-cluster config, then the usual kubeconfig places.
    pub kubeconfig: Option<PathBuf>,
    pub node_name: String,
}

async fn client(opts: &WatchOptions) -> Result<Client, K8sError> {
    let config = match &opts.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|error| {
                K8sError::Kubeconfig {
                    path: path.clone(),
                    error,
                }
            })?;
            Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|error| K8sError::Kubeconfig {
                    path: path.clone(),
                    error,
                })?
        }
        None => Config::infer().await.map_err(K8sError::Infer)?,
    };
    Client::try_from(config).map_err(K8sError::Client)
}

/// Starts the watch on its own thread (a small tokio runtime). Configuration errors are
/// returned; errors of the running watch are logged and retried with backoff.
pub fn spawn(
    opts: WatchOptions,
    pods: SharedPods,
) -> Result<std::thread::JoinHandle<()>, K8sError> {
    let (rt, client) = runtime_and_client(&opts)?;
    std::thread::Builder::new()
        .name("vigil-k8s".into())
        .spawn(move || rt.block_on(watch_pods(client, opts.node_name, pods)))
        .map_err(K8sError::Thread)
}

fn runtime_and_client(opts: &WatchOptions) -> Result<(tokio::runtime::Runtime, Client), K8sError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(K8sError::Thread)?;
    let client = rt.block_on(client(opts))?;
    Ok((rt, client))
}

async fn watch_pods(client: Client, node: String, pods: SharedPods) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(ev) = events.next().await {
        let now = Instant::now();
        let mut store = pods.write().unwrap_or_else(|e| e.into_inner());
        match ev {
            Ok(watcher::Event::Init) => store.begin_list(),
            Ok(watcher::Event::InitApply(p) | watcher::Event::Apply(p)) => store.apply(&p),
            Ok(watcher::Event::InitDone) => {
                store.end_list(now);
                tracing::info!(pods = store.pods(), node, "Kubernetes pods listed");
            }
            Ok(watcher::Event::Delete(p)) => store.delete(&p, now),
            Err(e) => tracing::warn!(error = %e, "Kubernetes pod watch failed; retrying"),
        }
        store.expire(now);
    }
}

/// Where the policies of the cluster go (the agent's policy manager, domain `k8s`). Each
/// call logs nothing; the watch logs the outcome with the policy's name.
pub trait PolicySink: Send + 'static {
    fn load(&self, name: &str, yaml: &str) -> Result<(), String>;
    /// Loads the new version, then removes the old one; on failure the old one stays.
    fn replace(&self, name: &str, yaml: &str) -> Result<(), String>;
    fn unload(&self, name: &str) -> Result<(), String>;
}

const GROUP: &str = "cilium.io";
const VERSION: &str = "v1alpha1";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), plural)
}

/// Starts the watch of `TracingPolicy` (loaded) and `TracingPolicyNamespaced` (refused,
/// logged) objects on its own thread.
pub fn spawn_policies(
    opts: &WatchOptions,
    sink: impl PolicySink,
) -> Result<std::thread::JoinHandle<()>, K8sError> {
    let (rt, client) = runtime_and_client(opts)?;
    std::thread::Builder::new()
        .name("vigil-k8s-policies".into())
        .spawn(move || {
            rt.block_on(futures::future::join(
                watch_policies(client.clone(), sink),
                watch_namespaced(client),
            ));
        })
        .map_err(K8sError::Thread)
}

/// The document our own parser validates: the object's kind, name and spec as JSON (a
/// YAML flow document); status and the rest of the metadata play no part.
fn desired(o: &DynamicObject) -> Desired {
    let name = o.metadata.name.clone().unwrap_or_default();
    let spec = o.data.get("spec").cloned().unwrap_or_default();
    // The API server bumps the generation on spec changes only; without one (not a real
    // API server), the spec itself is the version.
    let version = o
        .metadata
        .generation
        .map_or_else(|| spec.to_string(), |g| g.to_string());
    let doc = serde_json::json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "TracingPolicy",
        "metadata": { "name": name },
        "spec": spec,
    });
    Desired {
        name,
        version,
        yaml: serde_json::to_string_pretty(&doc).unwrap_or_default(),
    }
}

fn run(sink: &impl PolicySink, r: &mut Reconciler, action: &Action) {
    let (what, result) = match action {
        Action::Load(d) => ("loaded", sink.load(&d.name, &d.yaml)),
        Action::Replace(d) => ("replaced", sink.replace(&d.name, &d.yaml)),
        Action::Unload(n) => ("unloaded", sink.unload(n)),
    };
    let name = match action {
        Action::Load(d) | Action::Replace(d) => d.name.as_str(),
        Action::Unload(n) => n.as_str(),
    };
    match &result {
        Ok(()) => tracing::info!(policy = name, "Kubernetes TracingPolicy {what}"),
        Err(reason) => {
            let reason = reason.replace('\n', "; ");
            let kept = if matches!(action, Action::Replace(_)) {
                " (the previous version stays loaded)"
            } else {
                ""
            };
            tracing::error!(
                policy = name,
                "Kubernetes TracingPolicy not {what}{kept}: {reason}"
            );
        }
    }
    r.done(action, result.is_ok());
}

async fn watch_policies(client: Client, sink: impl PolicySink) {
    let api: Api<DynamicObject> =
        Api::all_with(client, &resource("TracingPolicy", "tracingpolicies"));
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut r = Reconciler::default();
    while let Some(ev) = events.next().await {
        let actions = match ev {
            Ok(watcher::Event::Init) => {
                r.begin_list();
                Vec::new()
            }
            Ok(watcher::Event::InitApply(o)) => r.listed(desired(&o)).into_iter().collect(),
            Ok(watcher::Event::InitDone) => r.end_list(),
            Ok(watcher::Event::Apply(o)) => r.apply(desired(&o)).into_iter().collect(),
            Ok(watcher::Event::Delete(o)) => r
                .delete(o.metadata.name.as_deref().unwrap_or_default())
                .into_iter()
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "Kubernetes TracingPolicy watch failed; retrying");
                Vec::new()
            }
        };
        for a in actions {
            run(&sink, &mut r, &a);
        }
    }
}

/// Namespaced policies are refused: they apply to the pods of one namespace, which needs
/// per-cgroup filtering in the kernel programs. Each version is logged once.
async fn watch_namespaced(client: Client) {
    let api: Api<DynamicObject> = Api::all_with(
        client,
        &resource("TracingPolicyNamespaced", "tracingpoliciesnamespaced"),
    );
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut logged = std::collections::HashSet::new();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::InitApply(o) | watcher::Event::Apply(o)) => {
                let namespace = o.metadata.namespace.clone().unwrap_or_default();
                let d = desired(&o);
                if logged.insert((namespace.clone(), d.name.clone(), d.version)) {
                    tracing::error!(
                        policy = d.name,
                        namespace,
                        "Kubernetes TracingPolicyNamespaced not loaded: namespaced policies \
                         need per-cgroup filtering, not implemented yet"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e,
                "Kubernetes TracingPolicyNamespaced watch failed; retrying"),
        }
    }
}
