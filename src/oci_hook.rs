//! `vigil oci-hook`: an OCI `createRuntime`/`createContainer` hook (Tetragon's
//! tetragon-oci-hook) that tells the agent about a container before its first process runs.
//! The runtime waits for the hook, so a failure is logged and ignored unless asked
//! otherwise: a missing agent must not stop containers from starting.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use vigil_api::client::{ClientTls, connect};
use vigil_api::runtime_hook::{create_container, parse_state};
use vigil_proto::tetragon::{RuntimeHookRequest, runtime_hook_request};

#[derive(Debug, Args)]
pub struct OciHookArgs {
    /// The stage the runtime runs the hook at (Tetragon's positional argument):
    /// createRuntime and createContainer register the container, others do nothing.
    #[arg(default_value = "createRuntime")]
    pub hook: String,
    /// The agent's gRPC address.
    #[arg(long, default_value = "unix:///var/run/vigil/vigil.sock")]
    pub grpc_address: String,
    /// How long to wait for the agent (connecting and answering).
    #[arg(long, default_value = "2s")]
    pub grpc_timeout: String,
    /// Exit 1 when the agent cannot be told, so that the runtime refuses the container.
    #[arg(long)]
    pub fail_on_error: bool,
    /// Append log lines to this file too (runtimes often discard a hook's stderr).
    #[arg(long)]
    pub log_fname: Option<PathBuf>,
}

fn log(args: &OciHookArgs, line: &str) {
    eprintln!("{line}");
    if let Some(path) = &args.log_fname
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

async fn register(args: &OciHookArgs, timeout: Duration) -> Result<String> {
    let mut stdin = String::new();
    std::io::stdin()
        .read_to_string(&mut stdin)
        .context("reading the OCI state on stdin")?;
    let state = parse_state(&stdin)?;
    let config_path = state.bundle.join("config.json");
    let config = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let msg = create_container(&state, &config, &config_path.display().to_string())?;
    let id = msg.container_id.clone();
    let req = RuntimeHookRequest {
        event: Some(runtime_hook_request::Event::CreateContainer(msg)),
    };
    let call = async {
        let mut client = connect(&args.grpc_address, &ClientTls::default(), timeout).await?;
        client
            .runtime_hook(req)
            .await
            .map_err(crate::remote::status_error)?;
        anyhow::Ok(())
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| anyhow::anyhow!("{}: no answer within {timeout:?}", args.grpc_address))??;
    Ok(id)
}

pub fn run(args: &OciHookArgs) -> ExitCode {
    if !matches!(args.hook.as_str(), "createRuntime" | "createContainer") {
        return ExitCode::SUCCESS;
    }
    let result =
        crate::agent::parse_duration("grpc-timeout", &args.grpc_timeout).and_then(|timeout| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the client runtime")?
                .block_on(register(args, timeout))
        });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', "; ");
            if args.fail_on_error {
                log(args, &format!("vigil oci-hook: error: {msg}"));
                ExitCode::FAILURE
            } else {
                log(
                    args,
                    &format!("vigil oci-hook: warning: container not registered: {msg}"),
                );
                ExitCode::SUCCESS
            }
        }
    }
}
