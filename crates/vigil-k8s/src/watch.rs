//! The thin API-facing part: a client from a kubeconfig or the in-cluster service account,
//! and a watch of this node's pods (kube-runtime's watcher: list, then watch with bookmarks;
//! on `410 Gone` it lists again) feeding the [`PodStore`](crate::store::PodStore), and a
//! watch of the cluster's TracingPolicy objects feeding a [`PolicySink`] through the
//! [`Reconciler`].

use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config};

use crate::node::{NodeLabels, for_node};
use crate::policies::{Action, Desired, Key, Reconciler};

/// How long the policy watches wait for this node's labels at start.
const NODE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

use crate::scope::{SharedScopes, find_cgroups, pod_workloads};
use crate::store::{SharedPods, pod_key};

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
    scopes: Option<PodScopes>,
) -> Result<std::thread::JoinHandle<()>, K8sError> {
    let (rt, client) = runtime_and_client(&opts)?;
    std::thread::Builder::new()
        .name("vigil-k8s".into())
        .spawn(move || rt.block_on(watch_pods(client, opts.node_name, pods, scopes)))
        .map_err(K8sError::Thread)
}

/// Pod-scoped policies to keep current from the pod watch, and the cgroup v2 hierarchy
/// where the pods' containers' cgroups are looked up.
#[derive(Clone)]
pub struct PodScopes {
    pub scopes: SharedScopes,
    pub cgroup_root: PathBuf,
}

impl PodScopes {
    fn apply(&self, pod: &Pod) {
        let workloads = pod_workloads(pod);
        let missing = {
            let mut s = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
            s.set_pod(&pod_key(pod), workloads.clone());
            s.without_cgroups(workloads.iter().map(|(id, _)| id.as_str()))
        };
        // The file system walk happens outside the lock.
        let found = find_cgroups(&self.cgroup_root, &missing);
        let mut s = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        for (id, cgroup) in found {
            s.add_cgroup(&id, cgroup);
        }
    }

    fn with(&self, f: impl FnOnce(&mut crate::scope::Scopes)) {
        f(&mut self.scopes.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

fn runtime_and_client(opts: &WatchOptions) -> Result<(tokio::runtime::Runtime, Client), K8sError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(K8sError::Thread)?;
    let client = rt.block_on(client(opts))?;
    Ok((rt, client))
}

async fn watch_pods(client: Client, node: String, pods: SharedPods, scopes: Option<PodScopes>) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(ev) = events.next().await {
        let now = Instant::now();
        let mut store = pods.write().unwrap_or_else(|e| e.into_inner());
        let scopes = scopes.as_ref();
        match ev {
            Ok(watcher::Event::Init) => {
                store.begin_list();
                if let Some(s) = scopes {
                    s.with(|s| s.begin_list());
                }
            }
            Ok(watcher::Event::InitApply(p) | watcher::Event::Apply(p)) => {
                store.apply(&p);
                if let Some(s) = scopes {
                    s.apply(&p);
                }
            }
            Ok(watcher::Event::InitDone) => {
                store.end_list(now);
                if let Some(s) = scopes {
                    s.with(|s| s.end_list());
                }
                tracing::info!(pods = store.pods(), node, "Kubernetes pods listed");
            }
            Ok(watcher::Event::Delete(p)) => {
                store.delete(&p, now);
                if let Some(s) = scopes {
                    s.with(|s| s.delete_pod(&pod_key(&p)));
                }
            }
            Err(e) => tracing::warn!(error = %e, "Kubernetes pod watch failed; retrying"),
        }
        store.expire(now);
    }
}

/// Where the policies of the cluster go (the agent's policy manager, domain `k8s`). Each
/// call logs nothing; the watch logs the outcome with the policy's name.
pub trait PolicySink: Send + Sync + 'static {
    fn load(&self, policy: &Desired) -> Result<(), String>;
    /// Loads the new version, then removes the old one; on failure the old one stays.
    fn replace(&self, policy: &Desired) -> Result<(), String>;
    fn unload(&self, key: &Key) -> Result<(), String>;
    /// Lists a policy that is not for this node (nodeSelector) without loading it; a loaded
    /// version is unloaded.
    fn skip(&self, policy: &Desired) -> Result<(), String>;
    /// Every object of `kind` listed at start (or at a relist) has been acted on: the
    /// domain has reloaded what the cluster holds.
    fn listed(&self, _kind: &'static str) {}
}

const GROUP: &str = "cilium.io";
const VERSION: &str = "v1alpha1";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), plural)
}

/// Starts the watches of `TracingPolicy` and `TracingPolicyNamespaced` objects on their own
/// thread; both are loaded (a namespaced one applies to its namespace's pods only).
/// This node's labels are watched on the same thread (`node`): nodeSelector is evaluated
/// against them, and a relabelled node reloads or skips the policies it concerns.
pub fn spawn_policies(
    opts: &WatchOptions,
    sink: impl PolicySink,
    node: NodeLabels,
) -> Result<std::thread::JoinHandle<()>, K8sError> {
    let (rt, client) = runtime_and_client(opts)?;
    let sink = std::sync::Arc::new(sink);
    let name = opts.node_name.clone();
    let (changed, seen) = tokio::sync::watch::channel(0u64);
    std::thread::Builder::new()
        .name("vigil-k8s-policies".into())
        .spawn(move || {
            rt.block_on(futures::future::join3(
                watch_node(client.clone(), name, node.clone(), changed),
                watch_policies(
                    client.clone(),
                    sink.clone(),
                    Kind::Cluster,
                    node.clone(),
                    seen.clone(),
                ),
                watch_policies(client, sink, Kind::Namespaced, node, seen),
            ));
        })
        .map_err(K8sError::Thread)
}

/// Keeps `labels` current from this node's Node object; every change (and the end of the
/// first list, found or not) bumps `changed`. Errors leave the labels as they were.
async fn watch_node(
    client: Client,
    name: String,
    labels: NodeLabels,
    changed: tokio::sync::watch::Sender<u64>,
) {
    let api: Api<Node> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    let bump = || changed.send_modify(|n| *n += 1);
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::InitApply(n) | watcher::Event::Apply(n)) => {
                if labels.set(n.metadata.labels.clone().unwrap_or_default()) {
                    tracing::info!(node = name, "Kubernetes node labels read");
                    bump();
                }
            }
            Ok(watcher::Event::InitDone) => bump(),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, node = name, "Kubernetes Node watch failed; retrying");
                // A failure also releases the policy watches waiting at start (fail open).
                bump();
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cluster,
    Namespaced,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Cluster => "TracingPolicy",
            Kind::Namespaced => "TracingPolicyNamespaced",
        }
    }
}

/// The document our own parser validates: the object's kind, name, namespace and spec as
/// JSON (a YAML flow document); status and the rest of the metadata play no part.
fn desired(o: &DynamicObject, kind: Kind, node: &NodeLabels) -> Desired {
    let name = o.metadata.name.clone().unwrap_or_default();
    let namespace = match kind {
        Kind::Cluster => String::new(),
        Kind::Namespaced => o.metadata.namespace.clone().unwrap_or_default(),
    };
    let spec = o.data.get("spec").cloned().unwrap_or_default();
    // The API server bumps the generation on spec changes only; without one (not a real
    // API server), the spec itself is the version.
    let for_node = for_node(&spec, node.get().as_ref());
    let version = o
        .metadata
        .generation
        .map_or_else(|| spec.to_string(), |g| g.to_string());
    let version = format!("{version}/{for_node}");
    let mut metadata = serde_json::json!({ "name": name });
    if kind == Kind::Namespaced {
        metadata["namespace"] = namespace.clone().into();
    }
    let doc = serde_json::json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": kind.name(),
        "metadata": metadata,
        "spec": spec,
    });
    Desired {
        name,
        namespace,
        for_node,
        version,
        yaml: serde_json::to_string_pretty(&doc).unwrap_or_default(),
    }
}

fn run(sink: &impl PolicySink, r: &mut Reconciler, action: &Action, kind: Kind) {
    let (what, result) = match action {
        Action::Load(d) | Action::Replace(d) if !d.for_node => {
            ("skipped (not for this node)", sink.skip(d))
        }
        Action::Load(d) => ("loaded", sink.load(d)),
        Action::Replace(d) => ("replaced", sink.replace(d)),
        Action::Unload(k) => ("unloaded", sink.unload(k)),
    };
    let key = match action {
        Action::Load(d) | Action::Replace(d) => d.key(),
        Action::Unload(k) => k.clone(),
    };
    let (name, namespace) = (key.name.as_str(), key.namespace.as_str());
    let kind = kind.name();
    match &result {
        Ok(()) => tracing::info!(policy = name, namespace, "Kubernetes {kind} {what}"),
        Err(reason) => {
            let reason = reason.replace('\n', "; ");
            let kept = if matches!(action, Action::Replace(_)) {
                " (the previous version stays loaded)"
            } else {
                ""
            };
            tracing::error!(
                policy = name,
                namespace,
                "Kubernetes {kind} not {what}{kept}: {reason}"
            );
        }
    }
    r.done(action, result.is_ok());
}

/// What the policy watch loop reacts to.
enum Input {
    Watch(Box<Result<watcher::Event<DynamicObject>, watcher::Error>>),
    NodeChanged,
}

async fn watch_policies(
    client: Client,
    sink: std::sync::Arc<impl PolicySink>,
    kind: Kind,
    node: NodeLabels,
    mut seen: tokio::sync::watch::Receiver<u64>,
) {
    // The node's labels first (a bounded wait; then fail open), so that a policy not for
    // this node is not loaded for a moment at start.
    let _ = tokio::time::timeout(NODE_WAIT, seen.changed()).await;
    seen.mark_unchanged();
    let api: Api<DynamicObject> = match kind {
        Kind::Cluster => Api::all_with(client, &resource("TracingPolicy", "tracingpolicies")),
        Kind::Namespaced => Api::all_with(
            client,
            &resource("TracingPolicyNamespaced", "tracingpoliciesnamespaced"),
        ),
    };
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .map(|ev| Input::Watch(Box::new(ev)));
    let node_changes = futures::stream::unfold(seen, |mut rx| async move {
        rx.changed().await.ok()?;
        Some((Input::NodeChanged, rx))
    });
    let mut inputs = futures::stream::select(events, node_changes).boxed();
    let mut r = Reconciler::default();
    // The objects as last seen, to re-evaluate nodeSelector when the node changes.
    let mut objects: BTreeMap<Key, DynamicObject> = BTreeMap::new();
    let mut listing = false;
    while let Some(input) = inputs.next().await {
        let ev = match input {
            Input::Watch(ev) => *ev,
            Input::NodeChanged if listing => continue,
            Input::NodeChanged => {
                let actions: Vec<Action> = objects
                    .values()
                    .filter_map(|o| r.apply(desired(o, kind, &node)))
                    .collect();
                for a in actions {
                    run(sink.as_ref(), &mut r, &a, kind);
                }
                continue;
            }
        };
        let init_done = matches!(&ev, Ok(watcher::Event::InitDone));
        let actions = match ev {
            Ok(watcher::Event::Init) => {
                listing = true;
                objects.clear();
                r.begin_list();
                Vec::new()
            }
            Ok(watcher::Event::InitApply(o)) => {
                let d = desired(&o, kind, &node);
                objects.insert(d.key(), o);
                r.listed(d).into_iter().collect()
            }
            Ok(watcher::Event::InitDone) => {
                listing = false;
                r.end_list()
            }
            Ok(watcher::Event::Apply(o)) => {
                let d = desired(&o, kind, &node);
                objects.insert(d.key(), o);
                r.apply(d).into_iter().collect()
            }
            Ok(watcher::Event::Delete(o)) => {
                let key = desired(&o, kind, &node).key();
                objects.remove(&key);
                r.delete(key).into_iter().collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "Kubernetes {} watch failed; retrying", kind.name());
                Vec::new()
            }
        };
        for a in actions {
            run(sink.as_ref(), &mut r, &a, kind);
        }
        if init_done {
            sink.listed(kind.name());
        }
    }
}
