//! `vigil bugtool` (tetra bugtool): one tar.gz an operator attaches to a bug report. It
//! holds what a maintainer asks first: versions, the agent's flags, kernel facts and
//! `vigil probe`, the agent's eBPF programs and maps, its policies with their counters, its
//! last log lines and a summary of its process cache. When no agent answers, the archive
//! says so and holds the rest.
//!
//! Nothing is collected that carries an environment or process arguments; every part goes
//! through `redact::Redactor` and is cut at `MAX_PART` bytes.

mod collect;
mod redact;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::remote::flags::ClientFlags;

/// Largest part in the archive; longer ones are cut with a line saying so.
const MAX_PART: usize = 4 << 20;

#[derive(Debug, clap::Args)]
pub struct BugtoolArgs {
    /// Where to write the archive (default: vigil-bugtool-<time>.tar.gz in the temporary
    /// directory). An existing file is not overwritten.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Log lines of the agent to include (at most 10000).
    #[arg(long, default_value = "500")]
    pub log_lines: usize,
    #[command(flatten)]
    pub client: ClientFlags,
}

/// One file of the archive.
pub struct Part {
    pub name: &'static str,
    pub text: String,
}

pub fn run(args: &BugtoolArgs) -> ExitCode {
    match write(args) {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "vigil bugtool: error: {}",
                format!("{e:#}").replace('\n', "; ")
            );
            ExitCode::FAILURE
        }
    }
}

fn write(args: &BugtoolArgs) -> Result<PathBuf> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = args
        .out
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("vigil-bugtool-{now}.tar.gz")));
    // Created first, 0600 and exclusive, so that nothing is collected for an archive that
    // cannot be written and no other user can read it while it grows.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("--out {}", path.display()))?;
    let parts = collect::all(args);
    let result = archive(file, &format!("vigil-bugtool-{now}"), now, &parts);
    if result.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    result.with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn archive(file: std::fs::File, dir: &str, mtime: u64, parts: &[Part]) -> Result<()> {
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for part in parts {
        let data = bounded(&part.text);
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, Path::new(dir).join(part.name), data.as_bytes())?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()?.sync_all()?;
    Ok(())
}

/// The text, cut at `MAX_PART` bytes (on a character boundary) with a line saying so.
fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_PART {
        return text.into();
    }
    let mut end = MAX_PART;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[cut by vigil bugtool: {} of {} bytes kept]\n",
        &text[..end],
        end,
        text.len()
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_cut_on_char_boundaries() {
        let long = "é".repeat(MAX_PART);
        let cut = bounded(&long);
        assert!(cut.len() < MAX_PART + 100);
        assert!(cut.contains("[cut by vigil bugtool"));
        assert_eq!(bounded("short"), "short");
    }
}
