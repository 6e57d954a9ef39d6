//! `tetragon.FineGuidanceSensors` served by vigil.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vigil_policy::state::{Domain, PolicyId, PolicyMode, PolicyState, ReportedMode};
use vigil_proto::pbjson_types::{Any, BoolValue};
use vigil_proto::tetragon::fine_guidance_sensors_server::FineGuidanceSensors;
use vigil_proto::tetragon::*;

use crate::fanout::{EventStream, Hub};
use crate::fields::FieldFilters;
use crate::filters::FilterList;
use crate::policy::{PolicyManager, PolicyOpError, PolicyStatus, domain_name, parse_domain};

/// The narrow interface into the agent that GetDebug/SetDebug need.
pub trait AgentControl: Send + Sync {
    fn log_level(&self) -> LogLevel;
    fn set_log_level(&self, level: LogLevel) -> Result<(), String>;
    /// Blocking: asks the pipeline thread for a snapshot of the process cache.
    fn dump_process_cache(
        &self,
        args: &DumpProcessCacheReqArgs,
    ) -> Result<Vec<ProcessInternal>, String>;
}

/// Static facts GetVersion/GetInfo report.
#[derive(Debug, Clone, Default)]
pub struct AgentInfo {
    pub version: String,
    /// Effective configuration, flag name -> value.
    pub conf: Vec<(String, String)>,
    pub commit: String,
}

pub struct Service {
    pub hub: Arc<Hub>,
    pub policies: Arc<dyn PolicyManager>,
    pub control: Arc<dyn AgentControl>,
    pub info: AgentInfo,
    /// Where `RuntimeHook` registrations go; `None`: the RPC is unimplemented.
    pub hooks: Option<Arc<dyn crate::runtime_hook::RuntimeHooks>>,
}

fn op_status(e: PolicyOpError) -> Status {
    match e {
        PolicyOpError::InvalidArgument(m) => Status::invalid_argument(m),
        PolicyOpError::NotFound(m) => Status::not_found(m),
        PolicyOpError::AlreadyExists(m) => Status::already_exists(m),
        PolicyOpError::FailedPrecondition(m) => Status::failed_precondition(m),
    }
}

fn domain(s: &str) -> Result<Domain, Status> {
    if s.is_empty() {
        return Ok(Domain::Grpc);
    }
    parse_domain(s).ok_or_else(|| {
        Status::invalid_argument(format!("unknown domain {s:?}: one of grpc, static, k8s"))
    })
}

/// How a policy of a domain other than `grpc` is changed: only through its owner, never
/// over gRPC (the owner would never restore what a client deleted or disabled).
fn how_to_change(d: Domain) -> &'static str {
    match d {
        Domain::Static => {
            "it was given at start (--tracing-policy / --tracing-policy-dir): edit its file \
             and restart the agent"
        }
        Domain::K8s => {
            "it comes from a Kubernetes TracingPolicy object: edit or delete that object \
             (kubectl)"
        }
        Domain::Grpc => "change it over gRPC",
    }
}

fn not_yours(d: Domain, namespace: &str, name: &str) -> Status {
    let what = if namespace.is_empty() {
        format!("policy {name:?}")
    } else {
        format!("policy {namespace}/{name}")
    };
    Status::failed_precondition(format!(
        "{what} belongs to domain {}; the API changes only grpc-domain policies: {}",
        domain_name(d),
        how_to_change(d)
    ))
}

/// The target of a delete/enable/disable/configure request: a valid name in the `grpc`
/// domain (the only one the API may change).
fn policy_id(dom: &str, namespace: &str, name: &str) -> Result<PolicyId, Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument("policy name is empty"));
    }
    let d = domain(dom)?;
    if d != Domain::Grpc {
        return Err(not_yours(d, namespace, name));
    }
    let id = PolicyId {
        domain: d,
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    crate::policy::check_id(&id, "name", "namespace").map_err(op_status)?;
    Ok(id)
}

fn mode(m: i32) -> Result<PolicyMode, Status> {
    match TracingPolicyMode::try_from(m) {
        Ok(TracingPolicyMode::TpModeEnforce) => Ok(PolicyMode::Enforce),
        Ok(TracingPolicyMode::TpModeMonitor) => Ok(PolicyMode::Monitor),
        _ => Err(Status::invalid_argument(format!(
            "mode {m}: only TP_MODE_ENFORCE and TP_MODE_MONITOR can be set"
        ))),
    }
}

fn status_proto(s: &PolicyStatus) -> TracingPolicyStatus {
    let (state, error) = match &s.state {
        PolicyState::Unknown => (TracingPolicyState::TpStateUnknown, String::new()),
        PolicyState::Loading => (TracingPolicyState::TpStateLoading, String::new()),
        PolicyState::Enabled => (TracingPolicyState::TpStateEnabled, String::new()),
        PolicyState::PartiallyEnabled => {
            (TracingPolicyState::TpStatePartiallyEnabled, String::new())
        }
        PolicyState::Disabled => (TracingPolicyState::TpStateDisabled, String::new()),
        PolicyState::LoadError(e) => (TracingPolicyState::TpStateLoadError, e.clone()),
        PolicyState::Error(e) => (TracingPolicyState::TpStateError, e.clone()),
        PolicyState::Unloading => (TracingPolicyState::TpStateUnloading, String::new()),
        PolicyState::Skipped => (TracingPolicyState::TpStateSkipped, String::new()),
    };
    let mode = match s.mode {
        ReportedMode::Enforce => TracingPolicyMode::TpModeEnforce,
        ReportedMode::Monitor => TracingPolicyMode::TpModeMonitor,
        ReportedMode::MonitorOnly => TracingPolicyMode::TpModeMonitorOnly,
    };
    #[allow(deprecated)]
    TracingPolicyStatus {
        id: s.seq,
        name: s.id.name.clone(),
        namespace: s.id.namespace.clone(),
        info: s.info.clone(),
        sensors: s.sensors.clone(),
        enabled: s.state == PolicyState::Enabled,
        filter_id: 0,
        error,
        state: state as i32,
        kernel_memory_bytes: s.kernel_memory_bytes,
        mode: mode as i32,
        // As Tetragon: no stats for a policy that is not loaded.
        stats: (s.state == PolicyState::Enabled).then(|| TracingPolicyStats {
            action_counters: Some(TracingPolicyActionCounters {
                post: s.counters.post,
                signal: s.counters.signal,
                monitor_signal: s.counters.monitor_signal,
                nopost: s.counters.nopost,
                ..Default::default()
            }),
            selector_action_counters: Vec::new(),
        }),
        domain: domain_name(s.id.domain).to_string(),
        hook_statuses: s
            .hooks
            .iter()
            .map(|h| HookStatus {
                state: if h.loaded {
                    HookState::StatusLoaded
                } else {
                    HookState::StatusUnspecified
                } as i32,
                hook_description: h.description.clone(),
                section: h.section.clone(),
                hook_idx: h.index,
            })
            .collect(),
    }
}

fn deprecated(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is deprecated in Tetragon's API and not served by vigil; use the TracingPolicy RPCs"
    ))
}

impl Service {
    /// A grpc-domain policy that does not exist but has a namesake in another domain: the
    /// client meant that one, which the API may not change; say so instead of NotFound.
    fn owner_refusal(&self, id: &PolicyId, e: PolicyOpError) -> Status {
        if matches!(e, PolicyOpError::NotFound(_))
            && let Some(other) = self.policies.list(None).into_iter().find(|s| {
                s.id.domain != Domain::Grpc
                    && s.id.name == id.name
                    && s.id.namespace == id.namespace
            })
        {
            return not_yours(other.id.domain, &id.namespace, &id.name);
        }
        op_status(e)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))
}

#[tonic::async_trait]
impl FineGuidanceSensors for Service {
    type GetEventsStream = EventStream;

    async fn get_events(
        &self,
        request: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetEventsStream>, Status> {
        let req = request.into_inner();
        let filters = FilterList::new(&req.allow_list, &req.deny_list)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let fields = FieldFilters::new(&req.field_filters)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Aggregation is accepted and, as in Tetragon's open-source events, a no-op.
        Ok(Response::new(self.hub.subscribe(filters, fields)?))
    }

    async fn get_health(
        &self,
        _request: Request<GetHealthStatusRequest>,
    ) -> Result<Response<GetHealthStatusResponse>, Status> {
        Ok(Response::new(GetHealthStatusResponse {
            health_status: vec![HealthStatus {
                event: HealthStatusType::Status as i32,
                status: HealthStatusResult::HealthStatusRunning as i32,
                details: "running".into(),
            }],
        }))
    }

    async fn add_tracing_policy(
        &self,
        request: Request<AddTracingPolicyRequest>,
    ) -> Result<Response<AddTracingPolicyResponse>, Status> {
        let req = request.into_inner();
        let dom = domain(&req.domain)?;
        if dom != Domain::Grpc {
            return Err(Status::failed_precondition(format!(
                "domain {}: the API adds policies to domain grpc only (static ones are given \
                 with --tracing-policy / --tracing-policy-dir, k8s ones are Kubernetes \
                 TracingPolicy objects)",
                domain_name(dom)
            )));
        }
        let mgr = Arc::clone(&self.policies);
        let status = blocking(move || mgr.add(&req.yaml, dom, None))
            .await?
            .map_err(op_status)?;
        tracing::info!(
            name = status.id.name,
            namespace = status.id.namespace,
            "policy added"
        );
        Ok(Response::new(AddTracingPolicyResponse {}))
    }

    async fn delete_tracing_policy(
        &self,
        request: Request<DeleteTracingPolicyRequest>,
    ) -> Result<Response<DeleteTracingPolicyResponse>, Status> {
        let r = request.into_inner();
        let id = policy_id(&r.domain, &r.namespace, &r.name)?;
        let mgr = Arc::clone(&self.policies);
        let target = id.clone();
        blocking(move || mgr.delete(&target))
            .await?
            .map_err(|e| self.owner_refusal(&id, e))?;
        Ok(Response::new(DeleteTracingPolicyResponse {}))
    }

    async fn list_tracing_policies(
        &self,
        request: Request<ListTracingPoliciesRequest>,
    ) -> Result<Response<ListTracingPoliciesResponse>, Status> {
        let r = request.into_inner();
        let dom = if r.domain.is_empty() {
            None
        } else {
            Some(domain(&r.domain)?)
        };
        let policies = self.policies.list(dom).iter().map(status_proto).collect();
        Ok(Response::new(ListTracingPoliciesResponse { policies }))
    }

    async fn configure_tracing_policy(
        &self,
        request: Request<ConfigureTracingPolicyRequest>,
    ) -> Result<Response<ConfigureTracingPolicyResponse>, Status> {
        let r = request.into_inner();
        let id = policy_id(&r.domain, &r.namespace, &r.name)?;
        let m = r.mode.map(mode).transpose()?;
        let mgr = Arc::clone(&self.policies);
        let target = id.clone();
        blocking(move || mgr.configure(&target, r.enable, m))
            .await?
            .map_err(|e| self.owner_refusal(&id, e))?;
        Ok(Response::new(ConfigureTracingPolicyResponse {}))
    }

    async fn list_domains(
        &self,
        _request: Request<ListDomainsRequest>,
    ) -> Result<Response<ListDomainsResponse>, Status> {
        let domains = self
            .policies
            .domains()
            .into_iter()
            .map(|d| domain_name(d).to_string())
            .collect();
        Ok(Response::new(ListDomainsResponse { domains }))
    }

    async fn enable_tracing_policy(
        &self,
        request: Request<EnableTracingPolicyRequest>,
    ) -> Result<Response<EnableTracingPolicyResponse>, Status> {
        let r = request.into_inner();
        let id = policy_id(&r.domain, &r.namespace, &r.name)?;
        let mgr = Arc::clone(&self.policies);
        let target = id.clone();
        blocking(move || mgr.configure(&target, Some(true), None))
            .await?
            .map_err(|e| self.owner_refusal(&id, e))?;
        Ok(Response::new(EnableTracingPolicyResponse {}))
    }

    async fn disable_tracing_policy(
        &self,
        request: Request<DisableTracingPolicyRequest>,
    ) -> Result<Response<DisableTracingPolicyResponse>, Status> {
        let r = request.into_inner();
        let id = policy_id(&r.domain, &r.namespace, &r.name)?;
        let mgr = Arc::clone(&self.policies);
        let target = id.clone();
        blocking(move || mgr.configure(&target, Some(false), None))
            .await?
            .map_err(|e| self.owner_refusal(&id, e))?;
        Ok(Response::new(DisableTracingPolicyResponse {}))
    }

    async fn list_sensors(
        &self,
        _request: Request<ListSensorsRequest>,
    ) -> Result<Response<ListSensorsResponse>, Status> {
        Err(deprecated("ListSensors"))
    }

    async fn enable_sensor(
        &self,
        _request: Request<EnableSensorRequest>,
    ) -> Result<Response<EnableSensorResponse>, Status> {
        Err(deprecated("EnableSensor"))
    }

    async fn disable_sensor(
        &self,
        _request: Request<DisableSensorRequest>,
    ) -> Result<Response<DisableSensorResponse>, Status> {
        Err(deprecated("DisableSensor"))
    }

    async fn remove_sensor(
        &self,
        _request: Request<RemoveSensorRequest>,
    ) -> Result<Response<RemoveSensorResponse>, Status> {
        Err(deprecated("RemoveSensor"))
    }

    async fn get_version(
        &self,
        _request: Request<GetVersionRequest>,
    ) -> Result<Response<GetVersionResponse>, Status> {
        Ok(Response::new(GetVersionResponse {
            version: self.info.version.clone(),
        }))
    }

    async fn get_info(
        &self,
        _request: Request<GetInfoRequest>,
    ) -> Result<Response<GetInfoResponse>, Status> {
        use get_info_response::{BuildInfo, ConfVal, Probe};
        let conf = self
            .info
            .conf
            .iter()
            .map(|(k, v)| ConfVal {
                key: k.clone(),
                value: Some(Any {
                    type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
                    value: prost::Message::encode_to_vec(&vigil_proto::pbjson_types::StringValue {
                        value: v.clone(),
                    })
                    .into(),
                }),
            })
            .collect();
        Ok(Response::new(GetInfoResponse {
            version: self.info.version.clone(),
            name: "vigil".into(),
            probes: vec![Probe {
                name: "lifecycle (sched_process_exec/fork/exit BTF tracepoints)".into(),
                enabled: Some(BoolValue { value: true }),
            }],
            conf,
            build: Some(BuildInfo {
                go_version: String::new(),
                commit: self.info.commit.clone(),
                time: String::new(),
                modified: String::new(),
            }),
        }))
    }

    async fn runtime_hook(
        &self,
        request: Request<RuntimeHookRequest>,
    ) -> Result<Response<RuntimeHookResponse>, Status> {
        let Some(hooks) = &self.hooks else {
            return Err(Status::unimplemented(
                "RuntimeHook: not enabled in this agent",
            ));
        };
        let Some(runtime_hook_request::Event::CreateContainer(c)) = request.into_inner().event
        else {
            return Err(Status::invalid_argument(
                "RuntimeHook: no event (only createContainer is known)",
            ));
        };
        let reg = crate::runtime_hook::registration(&c)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        hooks
            .create_container(reg)
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(RuntimeHookResponse {}))
    }

    async fn get_debug(
        &self,
        request: Request<GetDebugRequest>,
    ) -> Result<Response<GetDebugResponse>, Status> {
        let r = request.into_inner();
        match ConfigFlag::try_from(r.flag) {
            Ok(ConfigFlag::LogLevel) => Ok(Response::new(GetDebugResponse {
                flag: r.flag,
                arg: Some(get_debug_response::Arg::Level(
                    self.control.log_level() as i32
                )),
            })),
            Ok(ConfigFlag::DumpProcessCache) => {
                let args = match r.arg {
                    Some(get_debug_request::Arg::Dump(d)) => d,
                    None => DumpProcessCacheReqArgs::default(),
                };
                let control = Arc::clone(&self.control);
                let processes = blocking(move || control.dump_process_cache(&args))
                    .await?
                    .map_err(Status::unavailable)?;
                Ok(Response::new(GetDebugResponse {
                    flag: r.flag,
                    arg: Some(get_debug_response::Arg::Processes(
                        DumpProcessCacheResArgs { processes },
                    )),
                }))
            }
            Err(_) => Err(Status::invalid_argument(format!(
                "unknown debug flag {}",
                r.flag
            ))),
        }
    }

    async fn set_debug(
        &self,
        request: Request<SetDebugRequest>,
    ) -> Result<Response<SetDebugResponse>, Status> {
        let r = request.into_inner();
        if ConfigFlag::try_from(r.flag) != Ok(ConfigFlag::LogLevel) {
            return Err(Status::invalid_argument(
                "SetDebug: only CONFIG_FLAG_LOG_LEVEL can be set",
            ));
        }
        let Some(set_debug_request::Arg::Level(l)) = r.arg else {
            return Err(Status::invalid_argument("SetDebug: level missing"));
        };
        let level = LogLevel::try_from(l)
            .map_err(|_| Status::invalid_argument(format!("unknown log level {l}")))?;
        self.control
            .set_log_level(level)
            .map_err(Status::invalid_argument)?;
        tracing::info!(level = level.as_str_name(), "log level changed over gRPC");
        Ok(Response::new(SetDebugResponse {
            flag: r.flag,
            arg: Some(set_debug_response::Arg::Level(l)),
        }))
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
