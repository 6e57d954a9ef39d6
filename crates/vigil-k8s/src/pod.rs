//! Pure: what a Pod object says about each of its containers, in Tetragon's `Pod` message.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use vigil_process::container::strip_runtime_scheme;
use vigil_proto::tetragon;
use vigil_proto::wkt::Timestamp;

/// One container of one pod, ready to be put on an event: everything but what depends on
/// the process (`container.pid`, `maybe_exec_probe`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerIdentity {
    pub pod: tetragon::Pod,
    /// The container's exec probe commands (liveness, readiness, startup).
    pub exec_probes: Vec<Vec<String>>,
}

impl ContainerIdentity {
    /// The `pod` field of an event from process `binary arguments`, pid `nspid` in the
    /// container's PID namespace.
    pub fn for_process(&self, binary: &str, arguments: &str, nspid: u32) -> tetragon::Pod {
        let mut pod = self.pod.clone();
        if let Some(c) = pod.container.as_mut() {
            c.pid = Some(nspid.into());
            c.maybe_exec_probe = self
                .exec_probes
                .iter()
                .any(|cmd| is_probe_command(cmd, binary, arguments));
        }
        pod
    }
}

/// Whether a process is the probe command: the same arguments, and the same binary (a bare
/// command name matches the binary it was found as on PATH).
pub fn is_probe_command(cmd: &[String], binary: &str, arguments: &str) -> bool {
    let Some((first, rest)) = cmd.split_first() else {
        return false;
    };
    let same_binary = if first.contains('/') {
        first == binary
    } else {
        binary.rsplit('/').next() == Some(first.as_str())
    };
    same_binary && rest.join(" ") == arguments
}

/// Tetragon's workload heuristic (from Istio's, through Cilium): the controller owner of a
/// pod with a generated name; a ReplicaSet carrying the pod-template-hash is its Deployment,
/// a Job named `<name>-<8 to 10 digits>` its CronJob. A pod without one is its own workload.
pub fn workload(pod: &Pod) -> (String, String) {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let own = (name, "Pod".to_string());
    if meta.generate_name.as_deref().unwrap_or("").is_empty() {
        return own;
    }
    let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    else {
        return own;
    };
    let label = |k: &str| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(k))
            .map(String::as_str)
            .unwrap_or("")
    };
    let hash = label("pod-template-hash");
    match owner.kind.as_str() {
        "ReplicaSet" if !hash.is_empty() && owner.name.ends_with(hash) => {
            let deployment = owner
                .name
                .strip_suffix(hash)
                .and_then(|n| n.strip_suffix('-'))
                .unwrap_or(&owner.name);
            (deployment.to_string(), "Deployment".to_string())
        }
        "ReplicationController" if !label("deploymentconfig").is_empty() => (
            label("deploymentconfig").to_string(),
            "DeploymentConfig".to_string(),
        ),
        "Job" => match cron_job_name(&owner.name) {
            Some(cron) => (cron.to_string(), "CronJob".to_string()),
            None => (owner.name.clone(), "Job".to_string()),
        },
        kind => (owner.name.clone(), kind.to_string()),
    }
}

/// `<name>-<8 to 10 digits>` -> `<name>` (a CronJob names its Jobs after the schedule time).
fn cron_job_name(job: &str) -> Option<&str> {
    let (name, digits) = job.rsplit_once('-')?;
    let ok = !name.is_empty()
        && (8..=10).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(name)
}

fn exec_probes(spec: &Container) -> Vec<Vec<String>> {
    [
        &spec.liveness_probe,
        &spec.readiness_probe,
        &spec.startup_probe,
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| p.exec.as_ref()?.command.clone())
    .filter(|c| !c.is_empty())
    .collect()
}

/// Every container of `pod` that has a container id (started at least once), keyed by the
/// runtime-neutral id. `annotations`: copy the pod's annotations (`--enable-pod-annotations`).
pub fn containers(pod: &Pod, annotations: bool) -> Vec<(String, Arc<ContainerIdentity>)> {
    let meta = &pod.metadata;
    let (workload, workload_kind) = workload(pod);
    let base = tetragon::Pod {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        container: None,
        pod_labels: meta.labels.clone().unwrap_or_default(),
        workload,
        workload_kind,
        pod_annotations: if annotations {
            meta.annotations.clone().unwrap_or_default()
        } else {
            Default::default()
        },
    };
    let spec = pod.spec.as_ref();
    let specs = spec.into_iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    });
    let status = pod.status.as_ref();
    let statuses = status.into_iter().flat_map(|s| {
        s.container_statuses
            .iter()
            .flatten()
            .chain(s.init_container_statuses.iter().flatten())
            .chain(s.ephemeral_container_statuses.iter().flatten())
    });
    let mut out = Vec::new();
    for st in statuses {
        let Some(full_id) = st.container_id.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let container_spec = specs.clone().find(|c| c.name == st.name);
        let started = st
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.as_ref())
            .map(|t| Timestamp::new(t.0.as_second(), t.0.subsec_nanosecond()));
        let privileged = container_spec
            .and_then(|c| c.security_context.as_ref())
            .and_then(|s| s.privileged)
            .unwrap_or(false);
        let container = tetragon::Container {
            id: full_id.to_string(),
            name: st.name.clone(),
            image: Some(tetragon::Image {
                id: st.image_id.clone(),
                name: st.image.clone(),
            }),
            start_time: started,
            pid: None,
            maybe_exec_probe: false,
            security_context: Some(tetragon::SecurityContext { privileged }),
        };
        let identity = ContainerIdentity {
            pod: tetragon::Pod {
                container: Some(container),
                ..base.clone()
            },
            exec_probes: container_spec.map(exec_probes).unwrap_or_default(),
        };
        out.push((
            strip_runtime_scheme(full_id).to_string(),
            Arc::new(identity),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn owned(generate: &str, kind: &str, owner: &str, labels: &serde_json::Value) -> Pod {
        pod(json!({
            "metadata": {
                "name": format!("{generate}x7k2p"), "generateName": generate,
                "labels": labels,
                "ownerReferences": [{"apiVersion": "v1", "kind": kind, "name": owner,
                                      "uid": "u", "controller": true}]
            }
        }))
    }

    #[test]
    fn workloads() {
        let rs = owned(
            "api-7d9f8c6b5-",
            "ReplicaSet",
            "api-7d9f8c6b5",
            &json!({"pod-template-hash": "7d9f8c6b5"}),
        );
        assert_eq!(workload(&rs), ("api".into(), "Deployment".into()));
        let bare_rs = owned("web-", "ReplicaSet", "web", &json!({}));
        assert_eq!(workload(&bare_rs), ("web".into(), "ReplicaSet".into()));
        let cron = owned("backup-28312345-", "Job", "backup-28312345", &json!({}));
        assert_eq!(workload(&cron), ("backup".into(), "CronJob".into()));
        let job = owned("migrate-", "Job", "migrate", &json!({}));
        assert_eq!(workload(&job), ("migrate".into(), "Job".into()));
        let ds = owned("agent-", "DaemonSet", "agent", &json!({}));
        assert_eq!(workload(&ds), ("agent".into(), "DaemonSet".into()));
        let sts = owned("db-", "StatefulSet", "db", &json!({}));
        assert_eq!(workload(&sts), ("db".into(), "StatefulSet".into()));
        let bare = pod(json!({"metadata": {"name": "debug"}}));
        assert_eq!(workload(&bare), ("debug".into(), "Pod".into()));
    }

    #[test]
    fn cron_job_names() {
        assert_eq!(cron_job_name("a-12345678"), Some("a"));
        assert_eq!(cron_job_name("a-b-1234567890"), Some("a-b"));
        assert_eq!(cron_job_name("a-1234567"), None);
        assert_eq!(cron_job_name("a-12345678901"), None);
        assert_eq!(cron_job_name("-12345678"), None);
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn sample() -> Pod {
        pod(json!({
            "metadata": {"name": "api-7d9f8c6b5-x7k2p", "namespace": "payments", "uid": "pod-uid-1",
                         "generateName": "api-7d9f8c6b5-",
                         "labels": {"app": "api", "pod-template-hash": "7d9f8c6b5"},
                         "annotations": {"team": "pay"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": "api-7d9f8c6b5", "uid": "rs", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "main", "image": "nginx:1.27",
                 "securityContext": {"privileged": true},
                 "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}}},
                {"name": "sidecar", "image": "busybox"}]},
            "status": {"containerStatuses": [
                {"name": "main", "containerID": format!("containerd://{ID}"), "image": "docker.io/library/nginx:1.27",
                 "imageID": "docker.io/library/nginx@sha256:abcd", "ready": true, "restartCount": 0,
                 "state": {"running": {"startedAt": "2026-11-28T20:00:01Z"}}},
                {"name": "sidecar", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}}]}
        }))
    }

    #[test]
    fn containers_of_a_pod() {
        let found = containers(&sample(), false);
        assert_eq!(found.len(), 1, "the sidecar has no container id yet");
        let (id, c) = &found[0];
        assert_eq!(id, ID);
        let p = &c.pod;
        assert_eq!(
            (p.namespace.as_str(), p.name.as_str(), p.uid.as_str()),
            ("payments", "api-7d9f8c6b5-x7k2p", "pod-uid-1")
        );
        assert_eq!(p.pod_labels.get("app").map(String::as_str), Some("api"));
        assert!(p.pod_annotations.is_empty());
        assert_eq!(
            (p.workload.as_str(), p.workload_kind.as_str()),
            ("api", "Deployment")
        );
        let ct = p.container.as_ref().unwrap();
        assert_eq!(ct.id, format!("containerd://{ID}"));
        assert_eq!(ct.name, "main");
        let image = ct.image.as_ref().unwrap();
        assert_eq!(image.name, "docker.io/library/nginx:1.27");
        assert_eq!(image.id, "docker.io/library/nginx@sha256:abcd");
        // 2026-11-28T20:00:01Z, computed by hand: 20785 days * 86400 + 20 h + 1 s.
        assert_eq!(ct.start_time.as_ref().unwrap().seconds, 1_795_896_001);
        assert!(ct.security_context.as_ref().unwrap().privileged);
        let with = containers(&sample(), true);
        assert_eq!(
            with[0]
                .1
                .pod
                .pod_annotations
                .get("team")
                .map(String::as_str),
            Some("pay")
        );
    }

    #[test]
    fn exec_probe_and_pid() {
        let (_, c) = containers(&sample(), false).remove(0);
        let probe = c.for_process("/bin/cat", "/tmp/healthy", 12);
        let ct = probe.container.unwrap();
        assert!(ct.maybe_exec_probe);
        assert_eq!(ct.pid, Some(12.into()));
        let other = c.for_process("/bin/cat", "/etc/passwd", 13);
        assert!(!other.container.unwrap().maybe_exec_probe);
        assert!(is_probe_command(
            &["/bin/sh".into(), "-c".into(), "true".into()],
            "/bin/sh",
            "-c true"
        ));
        assert!(!is_probe_command(&[], "/bin/sh", ""));
    }
}
