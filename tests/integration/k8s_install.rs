//! The Kubernetes artefacts (`install/kubernetes/`): the plain manifests and the Helm chart
//! `install/kubernetes/vigil/`. helm cannot run here: the chart's templates use only
//! `{{ .Values.a.b }}` and `{{ .Release.Namespace }}`, which `render` substitutes (failing on
//! anything else); the results are deserialised into k8s-openapi types and checked like the
//! plain manifests, and the agent checks its configuration from the ConfigMap as kubelet
//! materialises it.

use std::path::Path;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use crate::harness::*;

fn dir() -> String {
    format!("{}/install/kubernetes", env!("CARGO_MANIFEST_DIR"))
}

fn parse<T: k8s_openapi::serde::de::DeserializeOwned>(origin: &str, text: &str) -> T {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{origin}: {e}\n{text}"))
}

/// Substitutes `{{ .Values.a.b }}` (from values.yaml) and `{{ .Release.Namespace }}`.
fn render(template: &str, values: &Value, namespace: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .unwrap_or_else(|| panic!("unclosed {{{{ in {rest}"))
            + start;
        let expr = rest[start + 2..end].trim();
        let value = if expr == ".Release.Namespace" {
            namespace.to_string()
        } else if let Some(path) = expr.strip_prefix(".Values.") {
            let v = path.split('.').fold(values, |v, k| &v[k]).clone();
            match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => panic!("{expr}: not a scalar in values.yaml: {other}"),
            }
        } else {
            panic!("unsupported template expression {{{{ {expr} }}}}");
        };
        out.push_str(&value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

struct Install {
    sa: ServiceAccount,
    role: ClusterRole,
    binding: ClusterRoleBinding,
    ds: DaemonSet,
    config: ConfigMap,
    crds: Vec<CustomResourceDefinition>,
}

impl Install {
    /// The objects from the files of `dir`, each passed through `text` first.
    fn load(dir: &str, text: impl Fn(&str) -> String) -> Install {
        let read = |name: &str| {
            let path = format!("{dir}/{name}");
            let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            (path, text(&raw))
        };
        macro_rules! obj {
            ($name:expr) => {{
                let (p, t) = read($name);
                parse(&p, &t)
            }};
        }
        Install {
            sa: obj!("serviceaccount.yaml"),
            role: obj!("clusterrole.yaml"),
            binding: obj!("clusterrolebinding.yaml"),
            ds: obj!("daemonset.yaml"),
            config: obj!("configmap.yaml"),
            crds: vec![
                obj!("crd-tracingpolicies.yaml"),
                obj!("crd-tracingpoliciesnamespaced.yaml"),
            ],
        }
    }
}

/// Writes a ConfigMap's data as kubelet does: a timestamped directory, `..data` pointing to
/// it and one symlink per key.
fn materialise(cm: &ConfigMap, dir: &Path) {
    let ts = dir.join("..2026_11_28_21_00_00.1");
    std::fs::create_dir_all(&ts).unwrap();
    std::os::unix::fs::symlink(ts.file_name().unwrap(), dir.join("..data")).unwrap();
    for (k, v) in cm.data.iter().flatten() {
        std::fs::write(ts.join(k), v).unwrap();
        std::os::unix::fs::symlink(format!("..data/{k}"), dir.join(k)).unwrap();
    }
}

fn check_config(args: &[String]) -> std::process::Output {
    std::process::Command::new(vigil_bin())
        .args(args)
        .arg("--check-config")
        .output()
        .unwrap()
}

/// What a user deploying `i` relies on; `scratch` names the test's scratch directory.
fn check(i: &Install, namespace: &str, scratch: &str) {
    // RBAC: get/list/watch on pods and on both policy kinds, bound to the agent's account.
    let rules = i.role.rules.clone().unwrap();
    for (group, resource) in [
        ("", "pods"),
        ("cilium.io", "tracingpolicies"),
        ("cilium.io", "tracingpoliciesnamespaced"),
    ] {
        assert!(
            rules.iter().any(|r| {
                r.api_groups.iter().flatten().any(|g| g == group)
                    && r.resources.iter().flatten().any(|x| x == resource)
                    && ["get", "list", "watch"]
                        .iter()
                        .all(|v| r.verbs.iter().any(|x| x == v))
            }),
            "no get/list/watch on {group}/{resource}"
        );
    }
    assert_eq!(
        i.binding.role_ref.name,
        i.role.metadata.name.clone().unwrap()
    );
    let subject = &i.binding.subjects.as_ref().unwrap()[0];
    assert_eq!(Some(&subject.name), i.sa.metadata.name.as_ref());
    assert_eq!(subject.namespace.as_deref(), Some(namespace));
    assert_eq!(i.sa.metadata.namespace.as_deref(), Some(namespace));
    assert_eq!(i.ds.metadata.namespace.as_deref(), Some(namespace));
    assert_eq!(i.config.metadata.namespace.as_deref(), Some(namespace));

    // The CRDs: Tetragon's group, version, names and scopes.
    let crd = |kind: &str| {
        i.crds
            .iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap_or_else(|| panic!("no CRD for {kind}"))
    };
    for (kind, plural, scope) in [
        ("TracingPolicy", "tracingpolicies", "Cluster"),
        (
            "TracingPolicyNamespaced",
            "tracingpoliciesnamespaced",
            "Namespaced",
        ),
    ] {
        let c = crd(kind);
        assert_eq!(
            c.metadata.name.as_deref(),
            Some(&*format!("{plural}.cilium.io"))
        );
        assert_eq!(c.spec.group, "cilium.io");
        assert_eq!(c.spec.names.plural, plural);
        assert_eq!(c.spec.scope, scope);
        let v = &c.spec.versions[0];
        assert_eq!(
            (v.name.as_str(), v.served, v.storage),
            ("v1alpha1", true, true)
        );
        let schema = v
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap();
        let spec = &schema.properties.as_ref().unwrap()["spec"];
        assert_eq!(spec.x_kubernetes_preserve_unknown_fields, Some(true));
    }

    // The DaemonSet: host PID namespace, privileged, the host mounts, NODE_NAME.
    let pod = i.ds.spec.clone().unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name, i.sa.metadata.name);
    assert_eq!(pod.host_pid, Some(true));
    let c = &pod.containers[0];
    assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
    let volumes = pod.volumes.unwrap();
    let volume_at = |mount: &str| {
        let m = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == mount)
            .unwrap_or_else(|| panic!("no mount at {mount}"));
        volumes.iter().find(|v| v.name == m.name).unwrap().clone()
    };
    let host_path_of = |mount: &str| volume_at(mount).host_path.map(|h| h.path);
    assert_eq!(host_path_of("/procRoot").as_deref(), Some("/proc"));
    assert_eq!(
        host_path_of("/sys/fs/cgroup").as_deref(),
        Some("/sys/fs/cgroup")
    );
    assert_eq!(host_path_of("/sys/fs/bpf").as_deref(), Some("/sys/fs/bpf"));
    assert_eq!(
        host_path_of("/sys/kernel/tracing").as_deref(),
        Some("/sys/kernel/tracing")
    );
    let node_env = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "NODE_NAME")
        .unwrap();
    let field = node_env
        .value_from
        .as_ref()
        .unwrap()
        .field_ref
        .as_ref()
        .unwrap();
    assert_eq!(field.field_path, "spec.nodeName");

    // The flags: the ConfigMap, mounted where --config-dir points.
    let args = c.args.clone().unwrap();
    assert_eq!(args[0], "agent");
    let config_dir = args
        .iter()
        .find_map(|a| a.strip_prefix("--config-dir="))
        .expect("--config-dir in the DaemonSet's args");
    let cm_volume = volume_at(config_dir).config_map.unwrap();
    assert_eq!(Some(cm_volume.name), i.config.metadata.name.clone());
    let data = i.config.data.clone().unwrap();
    assert_eq!(data["procfs"], "/procRoot");
    assert_eq!(data["enable-k8s-api"], "true");
    // The liveness probe as kubelet runs it: a grpc probe is a grpc.health.v1 Check of its
    // service on the port (an httpGet probe against the gRPC health server never passes).
    let probe = c.liveness_probe.clone().expect("a liveness probe");
    assert!(
        probe.http_get.is_none() && probe.tcp_socket.is_none() && probe.exec.is_none(),
        "the health server speaks gRPC only: {probe:?}"
    );
    let grpc = probe.grpc.clone().expect("a grpc liveness probe");
    assert_eq!(data["health-server-address"], format!(":{}", grpc.port));
    kubelet_grpc_probe(&grpc, probe.timeout_seconds.unwrap_or(1), scratch);

    // `vigil agent --check-config` with these args, the config dir as kubelet writes it.
    let dir = scratch_dir(scratch);
    materialise(&i.config, &dir);
    let local: Vec<String> = args
        .iter()
        .map(|a| {
            if a.starts_with("--config-dir=") {
                format!("--config-dir={}", dir.display())
            } else {
                a.clone()
            }
        })
        .collect();
    let out = check_config(&local);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
    // The directory is read: a key that is no flag is refused, naming it.
    std::fs::write(dir.join("no-such-flag"), "1").unwrap();
    let out = check_config(&local);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-flag"));
}

/// Runs `probe` the way kubelet does against a running agent whose health server listens
/// where the probe's port would be (a free local port stands in for it: the manifest's own
/// port may be taken on this machine). kubelet counts SERVING within the timeout as success.
fn kubelet_grpc_probe(
    probe: &k8s_openapi::api::core::v1::GRPCAction,
    timeout_seconds: i32,
    scratch: &str,
) {
    let port = free_port();
    let agent = Agent::start(
        &format!("{scratch}-probe"),
        &[&format!("--health-server-address=127.0.0.1:{port}")],
    );
    let service = probe.service.clone().unwrap_or_default();
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let timeout = std::time::Duration::from_secs(timeout_seconds.max(1) as u64);
            let ch = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                .unwrap()
                .timeout(timeout)
                .connect()
                .await
                .expect("kubelet connects to the health port");
            tonic_health::pb::health_client::HealthClient::new(ch)
                .check(tonic_health::pb::HealthCheckRequest { service })
                .await
                .expect("the health service answers the probe's service")
                .into_inner()
                .status
        });
    agent.stop();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
        "kubelet would restart the pod"
    );
}

#[test]
fn k8s_manifests_deserialise_and_their_config_is_accepted() {
    let i = Install::load(&dir(), |t| t.to_string());
    check(&i, "kube-system", "k8s-install-plain");
}

#[test]
fn k8s_helm_chart_renders_to_the_same_deployment() {
    let chart_dir = format!("{}/vigil", dir());
    let chart: Value = parse(
        "Chart.yaml",
        &std::fs::read_to_string(format!("{chart_dir}/Chart.yaml")).unwrap(),
    );
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "vigil");
    assert!(chart["version"].as_str().is_some_and(|v| !v.is_empty()));
    let values: Value = parse(
        "values.yaml",
        &std::fs::read_to_string(format!("{chart_dir}/values.yaml")).unwrap(),
    );
    let ns = "security";
    let i = Install::load(&format!("{chart_dir}/templates"), |t| {
        render(t, &values, ns)
    });
    check(&i, ns, "k8s-install-chart");
    let c = &i.ds.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some(&*format!(
            "{}:{}",
            values["image"]["repository"].as_str().unwrap(),
            values["image"]["tag"].as_str().unwrap()
        ))
    );
    // The chart's CRDs are the plain manifests' ones.
    let plain = Install::load(&dir(), |t| t.to_string());
    assert_eq!(i.crds, plain.crds);
}

#[test]
fn k8s_chart_renderer_refuses_what_it_cannot_substitute() {
    let values: Value = serde_json::json!({"a": {"b": "x"}});
    assert_eq!(render("v: {{ .Values.a.b }}", &values, "n"), "v: x");
    for bad in [
        "{{ .Values.a.b | quote }}",
        "{{ include \"x\" . }}",
        "{{ .Values.a.c }}",
        "{{ .Values.a",
    ] {
        assert!(
            std::panic::catch_unwind(|| render(bad, &values, "n")).is_err(),
            "{bad}"
        );
    }
}
