//! containerd's own API (not CRI): every namespace's containers, with the image and the
//! cgroup their spec asked for. One connection per refresh: refreshes are rare (a cgroup
//! the agent has not seen before) and a reconnect is a unix-socket dial.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use crate::{Error, Found, Runtime, bounded};

#[allow(clippy::all, rust_2018_idioms)]
mod proto {
    pub mod namespaces {
        tonic::include_proto!("containerd.services.namespaces.v1");
    }
    pub mod containers {
        tonic::include_proto!("containerd.services.containers.v1");
    }
    pub mod images {
        tonic::include_proto!("containerd.services.images.v1");
    }
}

use proto::containers::containers_client::ContainersClient;
use proto::images::images_client::ImagesClient;
use proto::namespaces::namespaces_client::NamespacesClient;

/// The request header that selects a containerd namespace.
const NAMESPACE_HEADER: &str = "containerd-namespace";

/// Largest message accepted from containerd (a listing carries every container's spec).
const MAX_MESSAGE: usize = 16 << 20;
/// Namespaces and containers read at most per refresh.
const MAX_NAMESPACES: usize = 256;
const MAX_CONTAINERS: usize = 16384;
/// Docker's containers live in containerd's `moby` namespace without their names: the
/// engine API names them.
const DOCKER_NAMESPACE: &str = "moby";
/// Labels that name a container better than its id: CRI's and nerdctl's.
const NAME_LABELS: [&str; 2] = ["io.kubernetes.container.name", "nerdctl/name"];

/// A connection to containerd's socket.
pub struct Containerd {
    socket: PathBuf,
    timeout: Duration,
}

impl Containerd {
    pub fn new(socket: PathBuf, timeout: Duration) -> Self {
        Self { socket, timeout }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn channel(&self) -> Result<Channel, Error> {
        let path = self.socket.clone();
        let connector = tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        });
        // The URI is required but unused: the connector dials the socket.
        Endpoint::from_static("http://localhost")
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .connect_with_connector(connector)
            .await
            .map_err(|e| Error::Unreachable(format!("{}: {e}", self.socket.display())))
    }

    /// Every container of every namespace (but Docker's) whose spec names a cgroup.
    pub async fn list(&self) -> Result<Vec<Found>, Error> {
        let channel = self.channel().await?;
        let rpc = |what: &str, e: tonic::Status| {
            Error::Protocol(format!(
                "{}: {what}: {}",
                self.socket.display(),
                e.message()
            ))
        };
        let mut namespaces = NamespacesClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .list(proto::namespaces::ListNamespacesRequest::default())
            .await
            .map_err(|e| rpc("Namespaces/List", e))?
            .into_inner()
            .namespaces;
        namespaces.truncate(MAX_NAMESPACES);
        let mut found = Vec::new();
        for ns in namespaces {
            if ns.name == DOCKER_NAMESPACE {
                continue;
            }
            let Ok(header) = ns.name.parse::<tonic::metadata::MetadataValue<_>>() else {
                continue;
            };
            let mut request =
                tonic::Request::new(proto::containers::ListContainersRequest::default());
            request
                .metadata_mut()
                .insert(NAMESPACE_HEADER, header.clone());
            let containers = ContainersClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .list(request)
                .await
                .map_err(|e| rpc("Containers/List", e))?
                .into_inner()
                .containers;
            let mut digests: HashMap<String, String> = HashMap::new();
            for c in containers
                .into_iter()
                .take(MAX_CONTAINERS - found.len().min(MAX_CONTAINERS))
            {
                let Some(cgroup_dir) = c.spec.as_ref().and_then(|s| spec_cgroup_dir(&s.value))
                else {
                    continue;
                };
                if !digests.contains_key(&c.image) && !c.image.is_empty() {
                    let digest = self.image_digest(&channel, &header, &c.image).await;
                    digests.insert(c.image.clone(), digest.unwrap_or_default());
                }
                let name = NAME_LABELS
                    .iter()
                    .find_map(|l| c.labels.get(*l))
                    .unwrap_or(&c.id);
                let digest = digests.get(&c.image).map(String::as_str).unwrap_or("");
                found.push(Found {
                    runtime: Runtime::Containerd,
                    id: bounded(&c.id, crate::MAX_ID),
                    name: bounded(name, crate::MAX_NAME),
                    image_id: image_id(&c.image, digest),
                    image: bounded(&c.image, crate::MAX_IMAGE),
                    cgroup_dir,
                });
            }
            if found.len() >= MAX_CONTAINERS {
                break;
            }
        }
        Ok(found)
    }

    /// The digest of an image's target: Tetragon's `image.id` is `repo@digest`.
    async fn image_digest(
        &self,
        channel: &Channel,
        namespace: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
        image: &str,
    ) -> Option<String> {
        let mut request = tonic::Request::new(proto::images::GetImageRequest {
            name: image.to_string(),
        });
        request
            .metadata_mut()
            .insert(NAMESPACE_HEADER, namespace.clone());
        let reply = ImagesClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .get(request)
            .await
            .ok()?;
        reply.into_inner().image?.target.map(|t| t.digest)
    }
}

/// `linux.cgroupsPath` of an OCI spec (JSON), as a directory below the cgroup root.
pub fn spec_cgroup_dir(spec_json: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Spec {
        linux: Option<Linux>,
    }
    #[derive(serde::Deserialize)]
    struct Linux {
        #[serde(rename = "cgroupsPath")]
        cgroups_path: Option<String>,
    }
    let spec: Spec = serde_json::from_slice(spec_json).ok()?;
    crate::cgroup::cgroup_dir(&spec.linux?.cgroups_path?)
}

/// `repo@digest` from an image reference and its digest (the tag, if any, dropped); empty
/// without a well-formed digest.
fn image_id(image: &str, digest: &str) -> String {
    let well_formed = digest.len() <= 200
        && digest.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty() && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())
        });
    if !well_formed || image.is_empty() {
        return String::new();
    }
    let repo = image.split_once('@').map_or(image, |(r, _)| r);
    let last_slash = repo.rfind('/').map_or(0, |i| i + 1);
    let repo = match repo[last_slash..].find(':') {
        Some(colon) => &repo[..last_slash + colon],
        None => repo,
    };
    bounded(&format!("{repo}@{digest}"), crate::MAX_IMAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ids() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            image_id("docker.io/library/busybox:latest", &d),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            image_id("localhost:5000/app", &d),
            format!("localhost:5000/app@{d}")
        );
        assert_eq!(image_id("a/b@sha256:00", &d), format!("a/b@{d}"));
        assert_eq!(image_id("a/b:1", "garbage"), "");
        assert_eq!(image_id("", &d), "");
    }

    #[test]
    fn spec_cgroups() {
        let spec = br#"{"ociVersion":"1.0.2","linux":{"cgroupsPath":"/somens/web","x":[1]}}"#;
        assert_eq!(spec_cgroup_dir(spec).as_deref(), Some("somens/web"));
        assert_eq!(spec_cgroup_dir(br#"{"linux":{}}"#), None);
        assert_eq!(spec_cgroup_dir(b"not json"), None);
        assert_eq!(spec_cgroup_dir(br#"{"linux":{"cgroupsPath":7}}"#), None);
    }
}
