//! The agent's command line merged with Tetragon's configuration sources (vigil-config):
//! configured values become `--flag=value` arguments placed before the command line's, and
//! clap (later occurrences override) checks them all.

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches};
use vigil_config::{Known, SystemPaths};

use crate::cli::Cli;

fn known_flags() -> Vec<String> {
    let cmd = Cli::command();
    cmd.find_subcommand("agent")
        .map(|a| {
            a.get_arguments()
                .filter_map(|arg| arg.get_long().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses the process arguments; for `vigil agent`, with the configuration sources merged.
/// Returns the warnings to log once logging is set up.
pub fn parse() -> Result<(Cli, Vec<String>)> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) != Some("agent") {
        return Ok((Cli::parse_from_args(&argv), Vec::new()));
    }
    let known = known_flags();
    let is_known = |f: &str| known.iter().any(|k| k == f).then_some(Known::Value);
    let (cli_args, mut warnings) = vigil_config::strip_unimplemented(&argv[2..], is_known)?;
    let config_dir = vigil_config::find_value(&cli_args, "config-dir");
    let config_file = vigil_config::find_value(&cli_args, "config-file");
    let settings = vigil_config::collect(
        &SystemPaths::default(),
        config_file.as_deref().map(std::path::Path::new),
        config_dir.as_deref().map(std::path::Path::new),
    )?;
    let (config_args, more) = vigil_config::to_args(&settings, is_known)?;
    warnings.extend(more);
    let merged: Vec<String> = argv[..2]
        .iter()
        .cloned()
        .chain(config_args)
        .chain(cli_args)
        .collect();
    Ok((Cli::parse_from_args(&merged), warnings))
}

impl Cli {
    fn parse_from_args(args: &[String]) -> Cli {
        let matches = Cli::command().get_matches_from(args);
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        if let (crate::cli::Command::Agent(flags), Some(("agent", sub))) =
            (&mut cli.command, matches.subcommand())
        {
            flags.effective = effective_flags(sub);
        }
        cli
    }
}

/// Flag names whose values could be credentials: reported as set, never by value.
const SECRET_WORDS: &[&str] = &["token", "secret", "password", "passwd", "credential"];

/// Every agent flag with the value it took and where from (`command line`, `default`,
/// `config`: the configuration sources arrive as arguments before the command line's, so
/// they read as `command line` too). For GetInfo and `vigil bugtool`. Values from the
/// environment and of flags named like credentials are withheld.
fn effective_flags(m: &clap::ArgMatches) -> Vec<(String, String)> {
    let cmd = Cli::command();
    let Some(agent) = cmd.find_subcommand("agent") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for arg in agent.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        let Ok(Some(raw)) = m.try_get_raw(id) else {
            continue;
        };
        let values: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
        let value = match m.value_source(id) {
            _ if SECRET_WORDS.iter().any(|w| long.contains(w)) => "<redacted>".to_string(),
            Some(clap::parser::ValueSource::EnvVariable) => {
                "<from the environment, redacted>".to_string()
            }
            _ => values.join(","),
        };
        out.push((long.to_string(), value));
    }
    out
}
