//! Client commands (tetra's): `getevents`, `status`, `version --server`, and the policy
//! commands that talk to a running agent over gRPC.

pub mod debug;
pub mod flags;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tonic::transport::Channel;
use vigil_api::client::{ClientTls, connect};
use vigil_api::compact::{Colors, render};
use vigil_api::fields::FieldFilters;
use vigil_api::filters::FilterList;
use vigil_proto::pbjson_types::FieldMask;
use vigil_proto::tetragon::fine_guidance_sensors_client::FineGuidanceSensorsClient;
use vigil_proto::tetragon::*;

use crate::agent::parse_duration;
use flags::{ClientFlags, ColorMode, GetEventsArgs, ListOutput, Output};

type Client = FineGuidanceSensorsClient<Channel>;

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client runtime")
}

/// Runs a client command: errors are one line on stderr, exit status 1.
pub fn run(what: &str, f: impl std::future::Future<Output = Result<()>>) -> ExitCode {
    let result = runtime().and_then(|rt| rt.block_on(f));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', "; ");
            eprintln!("vigil {what}: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::needless_pass_by_value)] // used as `.map_err(status_error)`
pub(crate) fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow!("{:?}: {}", s.code(), s.message())
}

pub(crate) async fn client(f: &ClientFlags) -> Result<Client> {
    let timeout = parse_duration("timeout", &f.timeout)?;
    let tls = ClientTls {
        cert_file: f.tls_cert_file.clone(),
        key_file: f.tls_key_file.clone(),
        ca_cert_files: f.tls_ca_cert_files.clone(),
        server_name: f.tls_server_name.clone(),
    };
    let address = if f.server_address.is_empty() {
        std::env::var("TETRA_SERVER_ADDRESS").unwrap_or_default()
    } else {
        f.server_address.clone()
    };
    Ok(connect(&address, &tls, timeout).await?)
}

fn event_type(name: &str) -> Result<i32> {
    EventType::from_str_name(name.trim())
        .map(|t| t as i32)
        .ok_or_else(|| anyhow!("--event-types: unknown event type {name:?}"))
}

/// The request tetra builds from its flags.
fn request(a: &GetEventsArgs) -> Result<GetEventsRequest> {
    let mut namespace = a.namespace.clone();
    if a.host {
        namespace.push(String::new());
    }
    let filter = Filter {
        binary_regex: a.process.clone(),
        namespace,
        pod_regex: a.pod.clone(),
        container_name_regex: a.containers.clone(),
        event_set: a
            .event_types
            .iter()
            .map(|t| event_type(t))
            .collect::<Result<_>>()?,
        policy_names: a.policy_names.clone(),
        namespace_regex: a.namespace_regex.clone(),
        cel_expression: a.cel_expression.clone(),
        ..Default::default()
    };
    let allow_list = if filter == Filter::default() {
        Vec::new()
    } else {
        vec![filter]
    };
    let mut field_filters = Vec::new();
    for (paths, action) in [
        (&a.include_fields, FieldFilterAction::Include),
        (&a.exclude_fields, FieldFilterAction::Exclude),
    ] {
        if !paths.is_empty() {
            field_filters.push(FieldFilter {
                fields: Some(FieldMask {
                    paths: paths.clone(),
                }),
                action: action as i32,
                ..Default::default()
            });
        }
    }
    Ok(GetEventsRequest {
        allow_list,
        field_filters,
        ..Default::default()
    })
}

struct Printer {
    output: Output,
    colors: Colors,
    timestamps: bool,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Printer {
    fn print(&mut self, ev: &GetEventsResponse) -> Result<()> {
        match self.output {
            Output::Json => {
                serde_json::to_writer(&mut self.out, ev)?;
                writeln!(self.out)?;
            }
            Output::Compact => {
                if let Some(line) = render(ev, self.colors, self.timestamps) {
                    writeln!(self.out, "{line}")?;
                }
            }
        }
        Ok(())
    }
}

/// stdin is a pipe or a file: render it instead of connecting (`< export.json`).
fn stdin_has_events() -> bool {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::metadata("/proc/self/fd/0") else {
        return false;
    };
    let t = meta.file_type();
    t.is_fifo() || t.is_file()
}

pub async fn getevents(a: GetEventsArgs) -> Result<()> {
    let req = request(&a)?;
    let colors = Colors::new(match a.color {
        ColorMode::Always => true,
        ColorMode::Never => false,
        ColorMode::Auto => std::io::stdout().is_terminal(),
    });
    let mut printer = Printer {
        output: a.output,
        colors,
        timestamps: a.timestamps,
        out: std::io::BufWriter::new(std::io::stdout()),
    };
    if stdin_has_events() {
        let mut filters = FilterList::new(&req.allow_list, &req.deny_list)?;
        let fields = FieldFilters::new(&req.field_filters)?;
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line.context("reading stdin")?;
            if line.trim().is_empty() {
                continue;
            }
            let ev: GetEventsResponse = serde_json::from_str(&line)
                .with_context(|| format!("stdin line {}: not a Tetragon event", n + 1))?;
            if filters.passes(&ev) {
                printer.print(&fields.apply(&ev)?)?;
            }
        }
        printer.out.flush()?;
        return Ok(());
    }
    let wait = parse_duration("reconnect-wait", &a.reconnect_wait)?;
    loop {
        let result = stream_once(&a.client, &req, &mut printer).await;
        printer.out.flush()?;
        match result {
            Err(e) if a.reconnect => {
                eprintln!("vigil getevents: {e:#}; reconnecting in {wait:?}");
            }
            Ok(()) if a.reconnect => {}
            other => return other,
        }
        tokio::time::sleep(wait).await;
    }
}

async fn stream_once(
    flags: &ClientFlags,
    req: &GetEventsRequest,
    printer: &mut Printer,
) -> Result<()> {
    let mut c = client(flags).await?;
    let mut stream = c
        .get_events(req.clone())
        .await
        .map_err(status_error)?
        .into_inner();
    loop {
        // Flush when no event is waiting, so a reader of a pipe sees events promptly.
        let next = match tokio::time::timeout(Duration::from_millis(50), stream.message()).await {
            Ok(n) => n,
            Err(_) => {
                printer.out.flush()?;
                stream.message().await
            }
        };
        match next.map_err(status_error)? {
            Some(ev) => {
                if let Err(e) = printer.print(&ev) {
                    // A closed stdout (| head) ends the command quietly.
                    if e.downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                    {
                        return Ok(());
                    }
                    return Err(e);
                }
            }
            None => return Ok(()),
        }
    }
}

pub async fn status(f: ClientFlags) -> Result<()> {
    let mut c = client(&f).await?;
    let r = c
        .get_health(GetHealthStatusRequest {
            event_set: vec![HealthStatusType::Status as i32],
        })
        .await
        .map_err(status_error)?
        .into_inner();
    for h in r.health_status {
        println!("Health Status: {}", h.details);
    }
    Ok(())
}

pub async fn server_version(f: ClientFlags) -> Result<()> {
    let mut c = client(&f).await?;
    let v = c
        .get_version(GetVersionRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    println!("Server version: {}", v.version);
    Ok(())
}

fn mode_arg(m: &str) -> Result<TracingPolicyMode> {
    match m {
        "enforce" => Ok(TracingPolicyMode::TpModeEnforce),
        "monitor" => Ok(TracingPolicyMode::TpModeMonitor),
        other => bail!("mode {other:?}: expected enforce or monitor"),
    }
}

/// What the policy commands do remotely.
#[derive(Debug)]
pub enum PolicyOp {
    Add {
        file: std::path::PathBuf,
        mode: Option<String>,
    },
    Delete,
    Enable,
    Disable,
    SetMode(String),
    List(ListOutput),
    Domains(ListOutput),
}

pub async fn policy(
    f: ClientFlags,
    op: PolicyOp,
    name: Option<String>,
    namespace: String,
    domain: String,
) -> Result<()> {
    let mut c = client(&f).await?;
    let name = name.unwrap_or_default();
    match op {
        PolicyOp::Add { file, mode } => {
            let mut yaml = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            if let Some(m) = mode.as_deref() {
                mode_arg(m)?;
                yaml = with_mode(&yaml, &file.display().to_string(), m)?;
            }
            c.add_tracing_policy(AddTracingPolicyRequest { yaml, domain })
                .await
                .map_err(status_error)?;
            println!("tracing policy {:?} added", file.display().to_string());
        }
        PolicyOp::Delete => {
            c.delete_tracing_policy(DeleteTracingPolicyRequest {
                name: name.clone(),
                namespace,
                domain,
            })
            .await
            .map_err(status_error)?;
            println!("tracing policy {name:?} deleted");
        }
        PolicyOp::Enable | PolicyOp::Disable | PolicyOp::SetMode(_) => {
            let (enable, mode, what) = match &op {
                PolicyOp::Enable => (Some(true), None, "enabled".to_string()),
                PolicyOp::Disable => (Some(false), None, "disabled".to_string()),
                PolicyOp::SetMode(m) => {
                    (None, Some(mode_arg(m)? as i32), format!("set to mode {m}"))
                }
                _ => unreachable!("matched above"),
            };
            c.configure_tracing_policy(ConfigureTracingPolicyRequest {
                name: name.clone(),
                namespace,
                enable,
                mode,
                domain,
            })
            .await
            .map_err(status_error)?;
            println!("tracing policy {name:?} {what}");
        }
        PolicyOp::List(out) => {
            let r = c
                .list_tracing_policies(ListTracingPoliciesRequest { domain })
                .await
                .map_err(status_error)?
                .into_inner();
            match out {
                ListOutput::Json => println!("{}", serde_json::to_string(&r)?),
                ListOutput::Text => print!("{}", vigil_api::table::policies(&r.policies)),
            }
        }
        PolicyOp::Domains(out) => {
            let r = c
                .list_domains(ListDomainsRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            match out {
                ListOutput::Json => println!("{}", serde_json::to_string(&r)?),
                ListOutput::Text => r.domains.iter().for_each(|d| println!("{d}")),
            }
        }
    }
    Ok(())
}

/// The policy with its `policy-mode` option set, so that it loads in that mode (the mode
/// given at load time wins over the YAML's, as with tetra).
fn with_mode(yaml: &str, source: &str, mode: &str) -> Result<String> {
    let mut p = vigil_policy::parse_policy(yaml, source).map_err(|e| anyhow!("{e}"))?;
    p.spec.options.retain(|o| o.name != "policy-mode");
    p.spec.options.push(vigil_policy::model::OptionSpec {
        name: "policy-mode".into(),
        value: mode.into(),
    });
    Ok(vigil_policy::serialize::to_yaml(&p))
}
