//! The thin API-facing part: a client from a kubeconfig or the in-cluster service account,
//! and a watch of this node's pods (kube-runtime's watcher: list, then watch with bookmarks;
//! on `410 Gone` it lists again) feeding the [`PodStore`](crate::store::PodStore).

use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config};

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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(K8sError::Thread)?;
    let client = rt.block_on(client(&opts))?;
    std::thread::Builder::new()
        .name("vigil-k8s".into())
        .spawn(move || rt.block_on(watch_pods(client, opts.node_name, pods)))
        .map_err(K8sError::Thread)
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
