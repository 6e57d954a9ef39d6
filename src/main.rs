//! `vigil`: eBPF runtime-security agent, Tetragon-compatible.

mod agent;
mod cli;
mod policy_cmd;

use std::process::ExitCode;

fn main() -> ExitCode {
    let (cli, warnings) = match agent::parse_cli() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("vigil agent: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        cli::Command::Version => {
            println!("vigil {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        cli::Command::Agent(flags) => match agent::run(&flags, &warnings) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // One line naming the problem, as the README promises.
                eprintln!("vigil agent: error: {e:#}");
                ExitCode::FAILURE
            }
        },
        cli::Command::Tracingpolicy(cmd) => policy_cmd::run(cmd),
    }
}
