//! Runtime hooks: the `RuntimeHook` RPC's `CreateContainer` message, built by the OCI hook
//! from the runtime's state and the bundle's `config.json`, and read by the agent into a
//! registration (cgroup, container id, pod identity) before the container's first exec.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use vigil_proto::tetragon::CreateContainer;

/// Annotations naming the pod and container, CRI runtimes' (containerd, then CRI-O/podman).
const POD_NAME: [&str; 2] = ["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"];
const POD_NAMESPACE: [&str; 2] = [
    "io.kubernetes.cri.sandbox-namespace",
    "io.kubernetes.pod.namespace",
];
const POD_UID: [&str; 2] = ["io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"];
const CONTAINER_NAME: [&str; 2] = [
    "io.kubernetes.cri.container-name",
    "io.kubernetes.container.name",
];
/// containerd marks sandboxes (pause containers) with this annotation = "sandbox".
const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("OCI state on stdin: {0}")]
    State(String),
    #[error("{path}: {msg}")]
    Config { path: String, msg: String },
    #[error("RuntimeHook request: {0}")]
    Request(String),
}

/// What runc passes a hook on stdin (OCI runtime spec, "State").
#[derive(Debug, Clone, PartialEq)]
pub struct OciState {
    pub id: String,
    pub pid: u32,
    pub bundle: PathBuf,
    pub annotations: BTreeMap<String, String>,
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses the state JSON; `id` and `bundle` are required.
pub fn parse_state(text: &str) -> Result<OciState, HookError> {
    let v: Value = serde_json::from_str(text).map_err(|e| HookError::State(e.to_string()))?;
    let field = |name: &str| {
        v[name]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| HookError::State(format!("no {name:?} string")))
    };
    Ok(OciState {
        id: field("id")?,
        bundle: PathBuf::from(field("bundle")?),
        pid: v["pid"].as_u64().unwrap_or(0) as u32,
        annotations: string_map(&v["annotations"]),
    })
}

fn first<'a>(annotations: &'a BTreeMap<String, String>, keys: &[&str]) -> &'a str {
    keys.iter()
        .find_map(|k| annotations.get(*k))
        .map_or("", String::as_str)
}

/// The `CreateContainer` message for a container: cgroup path and root from `config`
/// (the bundle's config.json, `config_path` names it in errors), annotations from the
/// config overlaid by the state's, pod identity from the CRI annotations.
pub fn create_container(
    state: &OciState,
    config: &str,
    config_path: &str,
) -> Result<CreateContainer, HookError> {
    let err = |msg: String| HookError::Config {
        path: config_path.to_string(),
        msg,
    };
    let v: Value = serde_json::from_str(config).map_err(|e| err(e.to_string()))?;
    let cgroups_path = v["linux"]["cgroupsPath"].as_str().unwrap_or_default();
    if cgroups_path.is_empty() {
        return Err(err("no linux.cgroupsPath".into()));
    }
    let mut annotations = string_map(&v["annotations"]);
    annotations.extend(state.annotations.clone());
    let root = v["root"]["path"].as_str().unwrap_or_default();
    let root_dir = if root.is_empty() || root.starts_with('/') {
        root.to_string()
    } else {
        state.bundle.join(root).display().to_string()
    };
    Ok(CreateContainer {
        cgroups_path: cgroups_path.to_string(),
        root_dir,
        container_name: first(&annotations, &CONTAINER_NAME).to_string(),
        container_id: state.id.clone(),
        pod_name: first(&annotations, &POD_NAME).to_string(),
        pod_uid: first(&annotations, &POD_UID).to_string(),
        pod_namespace: first(&annotations, &POD_NAMESPACE).to_string(),
        annotations,
        ..Default::default()
    })
}

/// A container the runtime announced, as the agent keeps it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Registration {
    /// Empty when the hook did not say (Tetragon's does not).
    pub container_id: String,
    pub container_name: String,
    /// Relative to the cgroup v2 mount (systemd `slice:prefix:name` expanded).
    pub cgroup_dir: PathBuf,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub sandbox: bool,
}

/// Reads a `CreateContainer` request: the message's fields, falling back to the annotations
/// (a hook that sent only annotations still gives the pod). `containerID` may be empty, as
/// from Tetragon's hook: the agent then takes it from the cgroup path.
pub fn registration(req: &CreateContainer) -> Result<Registration, HookError> {
    if req.cgroups_path.is_empty() {
        return Err(HookError::Request("cgroupsPath is empty".into()));
    }
    let or = |field: &str, keys: &[&str]| {
        if field.is_empty() {
            first(&req.annotations, keys).to_string()
        } else {
            field.to_string()
        }
    };
    Ok(Registration {
        container_id: req.container_id.clone(),
        container_name: or(&req.container_name, &CONTAINER_NAME),
        cgroup_dir: cgroup_dir(&req.cgroups_path),
        pod_name: or(&req.pod_name, &POD_NAME),
        pod_namespace: or(&req.pod_namespace, &POD_NAMESPACE),
        pod_uid: or(&req.pod_uid, &POD_UID),
        sandbox: req
            .annotations
            .get(CONTAINER_TYPE)
            .is_some_and(|t| t == "sandbox"),
    })
}

/// The cgroup directory of an OCI `cgroupsPath`, relative to the cgroup mount. runc's
/// systemd driver takes `slice:prefix:name` (the unit `prefix-name.scope` in `slice`, whose
/// dashes nest: `a-b.slice` lives in `a.slice`); otherwise the path is the directory.
pub fn cgroup_dir(cgroups_path: &str) -> PathBuf {
    let parts: Vec<&str> = cgroups_path.split(':').collect();
    if let [slice, prefix, name] = parts[..] {
        let mut dir = PathBuf::new();
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        if slice != "-.slice" {
            let stem = slice.strip_suffix(".slice").unwrap_or(slice);
            let mut acc = String::new();
            for part in stem.split('-') {
                if !acc.is_empty() {
                    acc.push('-');
                }
                acc.push_str(part);
                dir.push(format!("{acc}.slice"));
            }
        }
        let unit = if name.ends_with(".slice") {
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        dir.push(unit);
        return dir;
    }
    PathBuf::from(cgroups_path.trim_start_matches('/'))
}

/// What the agent does with a registration (implemented by the agent).
pub trait RuntimeHooks: Send + Sync {
    fn create_container(&self, reg: Registration) -> Result<(), String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = r#"{"ociVersion":"1.2.0","id":"web-1","status":"creating","pid":4242,
        "bundle":"/run/bundles/web-1","annotations":{"io.kubernetes.cri.sandbox-uid":"u-1"}}"#;

    #[test]
    fn state_is_parsed() {
        let s = parse_state(STATE).unwrap();
        assert_eq!(s.id, "web-1");
        assert_eq!(s.pid, 4242);
        assert_eq!(s.bundle, PathBuf::from("/run/bundles/web-1"));
        assert_eq!(s.annotations["io.kubernetes.cri.sandbox-uid"], "u-1");
    }

    #[test]
    fn bad_state_names_the_problem() {
        let e = parse_state(r#"{"id":"x"}"#).unwrap_err().to_string();
        assert!(e.contains("bundle"), "{e}");
        let e = parse_state("not json").unwrap_err().to_string();
        assert!(e.starts_with("OCI state on stdin"), "{e}");
    }

    #[test]
    fn config_gives_cgroup_root_and_pod() {
        let state = parse_state(STATE).unwrap();
        let config = r#"{"root":{"path":"rootfs"},"linux":{"cgroupsPath":"/kubepods/pod1/web"},
            "annotations":{"io.kubernetes.cri.sandbox-name":"web","io.kubernetes.cri.sandbox-namespace":"prod",
            "io.kubernetes.cri.container-name":"nginx"}}"#;
        let c = create_container(&state, config, "config.json").unwrap();
        assert_eq!(c.cgroups_path, "/kubepods/pod1/web");
        assert_eq!(c.root_dir, "/run/bundles/web-1/rootfs");
        assert_eq!(c.container_id, "web-1");
        assert_eq!(
            (c.pod_name.as_str(), c.pod_namespace.as_str()),
            ("web", "prod")
        );
        // The state's annotations count too.
        assert_eq!(c.pod_uid, "u-1");
        assert_eq!(c.container_name, "nginx");
    }

    #[test]
    fn crio_annotations() {
        let state = parse_state(STATE).unwrap();
        let config = r#"{"linux":{"cgroupsPath":"kubepods.slice:crio:abc"},
            "annotations":{"io.kubernetes.pod.name":"db","io.kubernetes.pod.namespace":"ns"}}"#;
        let c = create_container(&state, config, "c.json").unwrap();
        assert_eq!(
            (c.pod_name.as_str(), c.pod_namespace.as_str()),
            ("db", "ns")
        );
    }

    #[test]
    fn config_without_cgroup_is_an_error() {
        let state = parse_state(STATE).unwrap();
        let e = create_container(&state, r#"{"linux":{}}"#, "/b/config.json")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "/b/config.json: no linux.cgroupsPath");
    }

    #[test]
    fn cgroup_dirs() {
        assert_eq!(
            cgroup_dir("/kubepods/pod1/abc"),
            PathBuf::from("kubepods/pod1/abc")
        );
        assert_eq!(
            cgroup_dir("kubepods-besteffort-pod1.slice:cri-containerd:abc"),
            PathBuf::from(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"
            )
        );
        assert_eq!(
            cgroup_dir(":docker:abc"),
            PathBuf::from("system.slice/docker-abc.scope")
        );
    }

    #[test]
    fn registration_falls_back_to_annotations() {
        let mut req = CreateContainer {
            cgroups_path: "/x/y".into(),
            container_id: "c1".into(),
            ..Default::default()
        };
        req.annotations
            .insert("io.kubernetes.pod.namespace".into(), "ns".into());
        req.annotations
            .insert(CONTAINER_TYPE.into(), "sandbox".into());
        let r = registration(&req).unwrap();
        assert_eq!(r.pod_namespace, "ns");
        assert_eq!(r.cgroup_dir, PathBuf::from("x/y"));
        assert!(r.sandbox);
        req.cgroups_path.clear();
        let e = registration(&req).unwrap_err().to_string();
        assert!(e.contains("cgroupsPath"), "{e}");
    }
}
