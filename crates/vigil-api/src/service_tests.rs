//! Policy RPCs change only grpc-domain policies, and only valid names.

use std::sync::Arc;

use tonic::{Code, Request};
use vigil_policy::compile::Capabilities;

use super::*;
use crate::policy::{MemoryPolicyManager, no_runtime};

struct NoControl;

impl AgentControl for NoControl {
    fn log_level(&self) -> LogLevel {
        LogLevel::Info
    }
    fn set_log_level(&self, _: LogLevel) -> Result<(), String> {
        Ok(())
    }
    fn dump_process_cache(
        &self,
        _: &DumpProcessCacheReqArgs,
    ) -> Result<Vec<ProcessInternal>, String> {
        Ok(Vec::new())
    }
}

fn yaml(name: &str) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: {name}\nspec: {{}}\n"
    )
}

fn service() -> (Service, Arc<MemoryPolicyManager>) {
    let caps = Capabilities {
        check_files: false,
        ..Capabilities::FULL_NO_ERROR_INJECTION
    };
    let mgr = Arc::new(MemoryPolicyManager::new(caps, Box::new(no_runtime), None));
    mgr.add(&yaml("from-file"), Domain::Static, None).unwrap();
    mgr.add_from(&yaml("from-k8s"), "k8s", Domain::K8s, None)
        .unwrap();
    let svc = Service {
        hub: crate::Hub::new(16),
        policies: mgr.clone(),
        control: Arc::new(NoControl),
        info: AgentInfo::default(),
        hooks: None,
    };
    (svc, mgr)
}

fn enabled(mgr: &MemoryPolicyManager, name: &str) -> bool {
    mgr.list(None)
        .iter()
        .any(|s| s.id.name == name && s.state == PolicyState::Enabled)
}

#[tokio::test]
async fn other_domains_policies_cannot_be_changed_over_grpc() {
    let (svc, mgr) = service();
    for (name, dom, hint) in [
        ("from-file", "static", "edit its file and restart"),
        ("from-k8s", "k8s", "Kubernetes TracingPolicy object"),
    ] {
        // Named explicitly, or by a client that meant it (default domain grpc).
        for given in [dom, ""] {
            let e = svc
                .delete_tracing_policy(Request::new(DeleteTracingPolicyRequest {
                    name: name.into(),
                    domain: given.into(),
                    ..Default::default()
                }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
            assert!(
                e.message().contains(&format!("belongs to domain {dom}"))
                    && e.message().contains(hint),
                "{e:?}"
            );
            let e = svc
                .disable_tracing_policy(Request::new(DisableTracingPolicyRequest {
                    name: name.into(),
                    domain: given.into(),
                    ..Default::default()
                }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
            let e = svc
                .configure_tracing_policy(Request::new(ConfigureTracingPolicyRequest {
                    name: name.into(),
                    domain: given.into(),
                    mode: Some(TracingPolicyMode::TpModeMonitor as i32),
                    ..Default::default()
                }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        }
        let e = svc
            .enable_tracing_policy(Request::new(EnableTracingPolicyRequest {
                name: name.into(),
                domain: dom.into(),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(enabled(&mgr, name), "{name} still loaded");
        // Nor can a client put a policy into that domain.
        let e = svc
            .add_tracing_policy(Request::new(AddTracingPolicyRequest {
                yaml: yaml("intruder"),
                domain: dom.into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    }
    assert_eq!(mgr.list(None).len(), 2);
    // A grpc-domain policy is the client's to change.
    svc.add_tracing_policy(Request::new(AddTracingPolicyRequest {
        yaml: yaml("mine"),
        domain: String::new(),
    }))
    .await
    .unwrap();
    svc.delete_tracing_policy(Request::new(DeleteTracingPolicyRequest {
        name: "mine".into(),
        ..Default::default()
    }))
    .await
    .unwrap();
    // Unknown everywhere: NotFound as before.
    let e = svc
        .delete_tracing_policy(Request::new(DeleteTracingPolicyRequest {
            name: "nobody".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

#[tokio::test]
async fn request_names_are_checked() {
    let (svc, _) = service();
    let e = svc
        .delete_tracing_policy(Request::new(DeleteTracingPolicyRequest {
            name: "tp".into(),
            namespace: "../../tmp/x".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("namespace "), "{e:?}");
    let e = svc
        .disable_tracing_policy(Request::new(DisableTracingPolicyRequest {
            name: "/etc/passwd".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("name "), "{e:?}");
    let e = svc
        .add_tracing_policy(Request::new(AddTracingPolicyRequest {
            yaml: yaml("\"../x\""),
            domain: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("metadata.name "), "{e:?}");
}
