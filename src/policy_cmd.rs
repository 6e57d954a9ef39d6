//! `vigil tracingpolicy validate|explain|backtest` and the agent's policy commands.

use std::process::ExitCode;

use vigil_policy::cli;
use vigil_policy::compile::Capabilities;
use vigil_policy::kernel::SystemKernel;

use crate::cli::PolicyCommand;

pub fn run(cmd: PolicyCommand) -> ExitCode {
    use crate::remote::{PolicyOp, policy, run as remote};
    let out = match cmd {
        PolicyCommand::Add {
            file,
            mode,
            domain,
            client,
        } => {
            let op = PolicyOp::Add { file, mode };
            return remote(
                "tracingpolicy",
                policy(client, op, None, String::new(), domain),
            );
        }
        PolicyCommand::Delete(t) => return remote_target(t, PolicyOp::Delete),
        PolicyCommand::Enable(t) => return remote_target(t, PolicyOp::Enable),
        PolicyCommand::Disable(t) => return remote_target(t, PolicyOp::Disable),
        PolicyCommand::SetMode { target, mode } => {
            return remote_target(target, PolicyOp::SetMode(mode));
        }
        PolicyCommand::List {
            output,
            domain,
            client,
        } => {
            let op = PolicyOp::List(output);
            return remote(
                "tracingpolicy",
                policy(client, op, None, String::new(), domain),
            );
        }
        PolicyCommand::Domains { output, client } => {
            let op = PolicyOp::Domains(output);
            return remote(
                "tracingpolicy",
                policy(client, op, None, String::new(), String::new()),
            );
        }
        PolicyCommand::Validate {
            files,
            btf,
            no_kernel,
        } => {
            let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            let kernel = kernel_info(btf.as_deref());
            cli::validate(&files, if no_kernel { None } else { Some(&kernel) })
        }
        PolicyCommand::Backtest(args) => return crate::backtest::run(&args),
        PolicyCommand::Explain { file, btf } => {
            let kernel = kernel_info(btf.as_deref());
            let caps = detect_capabilities();
            cli::explain(&file.display().to_string(), Some(&kernel), &caps)
        }
    };
    print!("{}", out.text);
    ExitCode::from(u8::try_from(out.status).unwrap_or(1))
}

fn remote_target(t: crate::cli::PolicyTarget, op: crate::remote::PolicyOp) -> ExitCode {
    crate::remote::run(
        "tracingpolicy",
        crate::remote::policy(t.client, op, Some(t.name), t.namespace, t.domain),
    )
}

fn kernel_info(btf: Option<&std::path::Path>) -> SystemKernel {
    match btf {
        Some(p) => SystemKernel::with_btf_path(&p.display().to_string()),
        None => SystemKernel::running(),
    }
}

/// What the running kernel offers (also what the agent's policy manager compiles for):
/// decided in one place, `kernel_probe::KernelFacts`, which `vigil probe` reports.
pub fn detect_capabilities() -> Capabilities {
    crate::kernel_probe::KernelFacts::read().capabilities()
}
