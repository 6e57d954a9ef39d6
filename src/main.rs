//! `vigil`: eBPF runtime-security agent, Tetragon-compatible.

mod agent;
mod cli;
mod policy_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Version => {
            println!("vigil {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        cli::Command::Agent(flags) => match agent::run(&flags) {
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
