//! Configuration sources as Tetragon's (tetragon.md §3.1): every flag can also be a file
//! named after the flag in a drop-in directory (content = value) or a key of a YAML file.
//! Precedence, lowest first: `/usr/lib/tetragon/tetragon.conf.d/`,
//! `/usr/local/lib/tetragon/tetragon.conf.d/`, `/etc/tetragon/tetragon.yaml` (or
//! `--config-file`), `/etc/tetragon/tetragon.conf.d/`, `--config-dir`, then the command line.
//!
//! The result is a list of `--flag=value` arguments placed before the command-line ones, so
//! that one parser (clap, with later occurrences overriding earlier ones) checks everything.
//! Tetragon flags that vigil does not implement are listed in [`UNIMPLEMENTED`]: accepted
//! with a warning naming them, or refused; never silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod table;
mod yaml;

pub use table::{Disposition, UNIMPLEMENTED, lookup};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: cannot read: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("--{flag} ({origin}): not supported by vigil: {reason}")]
    Refused {
        flag: String,
        origin: String,
        reason: String,
    },
    #[error("{origin}: unknown flag --{flag}")]
    Unknown { flag: String, origin: String },
}

/// System locations, lowest precedence first (the YAML file sits between the lib drop-ins
/// and /etc's drop-ins).
#[derive(Debug, Clone)]
pub struct SystemPaths {
    pub lib_dropins: Vec<PathBuf>,
    pub yaml: PathBuf,
    pub etc_dropins: PathBuf,
}

impl Default for SystemPaths {
    fn default() -> Self {
        Self {
            lib_dropins: vec![
                "/usr/lib/tetragon/tetragon.conf.d".into(),
                "/usr/local/lib/tetragon/tetragon.conf.d".into(),
            ],
            yaml: "/etc/tetragon/tetragon.yaml".into(),
            etc_dropins: "/etc/tetragon/tetragon.conf.d".into(),
        }
    }
}

/// One setting and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub value: String,
    pub origin: String,
}

/// Reads a drop-in directory: one file per flag, file name = flag name, content = value
/// (trimmed). Hidden entries (Kubernetes ConfigMap `..data` links) and subdirectories are
/// skipped. A missing directory is empty unless `required`.
pub fn read_dir(dir: &Path, required: bool) -> Result<Vec<(String, Setting)>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::Read {
                origin: dir.display().to_string(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || path.is_dir() {
            continue;
        }
        let value = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            origin: path.display().to_string(),
            source,
        })?;
        out.push((
            name,
            Setting {
                value: value.trim().to_string(),
                origin: path.display().to_string(),
            },
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Reads a YAML file of `flag: value` (sequences become comma-separated lists).
pub fn read_yaml(path: &Path, required: bool) -> Result<Vec<(String, Setting)>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::Read {
                origin: path.display().to_string(),
                source,
            });
        }
    };
    let origin = path.display().to_string();
    Ok(yaml::flat_map(&text)
        .map_err(|reason| ConfigError::Invalid {
            origin: origin.clone(),
            reason,
        })?
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                Setting {
                    value: v,
                    origin: origin.clone(),
                },
            )
        })
        .collect())
}

/// Every configured setting, later sources overriding earlier ones.
pub fn collect(
    sys: &SystemPaths,
    config_file: Option<&Path>,
    config_dir: Option<&Path>,
) -> Result<BTreeMap<String, Setting>, ConfigError> {
    let mut all = BTreeMap::new();
    for d in &sys.lib_dropins {
        all.extend(read_dir(d, false)?);
    }
    match config_file {
        Some(f) => all.extend(read_yaml(f, true)?),
        None => all.extend(read_yaml(&sys.yaml, false)?),
    }
    all.extend(read_dir(&sys.etc_dropins, false)?);
    if let Some(d) = config_dir {
        all.extend(read_dir(d, true)?);
    }
    Ok(all)
}

/// How the agent's parser sees a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Implemented; takes a value (`--flag=value`).
    Value,
    /// Implemented boolean.
    Bool,
}

/// Settings as `--flag=value` arguments for the implemented flags, and warnings for the
/// accepted-but-unimplemented ones; refused and unknown flags are errors.
pub fn to_args(
    settings: &BTreeMap<String, Setting>,
    known: impl Fn(&str) -> Option<Known>,
) -> Result<(Vec<String>, Vec<String>), ConfigError> {
    let (mut args, mut warnings) = (Vec::new(), Vec::new());
    for (flag, s) in settings {
        if flag == "config-dir" || flag == "config-file" {
            continue;
        }
        match known(flag) {
            Some(_) => args.push(format!("--{flag}={}", s.value)),
            None => match lookup(flag) {
                Some((_, Disposition::Warn(why))) => {
                    warnings.push(format!(
                        "--{flag} ({}) accepted but ignored: {why}",
                        s.origin
                    ));
                }
                Some((_, Disposition::Refuse(why))) => {
                    return Err(ConfigError::Refused {
                        flag: flag.clone(),
                        origin: s.origin.clone(),
                        reason: why.to_string(),
                    });
                }
                None => {
                    return Err(ConfigError::Unknown {
                        flag: flag.clone(),
                        origin: s.origin.clone(),
                    });
                }
            },
        }
    }
    Ok((args, warnings))
}

/// Removes the accepted-but-unimplemented Tetragon flags from command-line arguments (with
/// their value), returning the rest and a warning per flag; refused flags are errors.
/// Flags the parser knows (`known`) are left alone, whatever the table says.
pub fn strip_unimplemented(
    args: &[String],
    known: impl Fn(&str) -> Option<Known>,
) -> Result<(Vec<String>, Vec<String>), ConfigError> {
    let (mut out, mut warnings) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        let Some(body) = a.strip_prefix("--") else {
            out.push(a.clone());
            continue;
        };
        if body.is_empty() {
            // `--`: the rest is positional.
            out.extend(args[i - 1..].iter().cloned());
            break;
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if known(name).is_some() {
            out.push(a.clone());
            continue;
        }
        match lookup(name) {
            Some((takes_value, disp)) => {
                if takes_value && inline.is_none() && i < args.len() {
                    i += 1;
                }
                match disp {
                    Disposition::Warn(why) => warnings.push(format!(
                        "--{name} (command line) accepted but ignored: {why}"
                    )),
                    Disposition::Refuse(why) => {
                        return Err(ConfigError::Refused {
                            flag: name.to_string(),
                            origin: "command line".into(),
                            reason: why.to_string(),
                        });
                    }
                }
            }
            None => out.push(a.clone()),
        }
    }
    Ok((out, warnings))
}

/// The value of `--name VALUE` / `--name=VALUE` in `args` (last occurrence).
pub fn find_value(args: &[String], name: &str) -> Option<String> {
    let long = format!("--{name}");
    let mut found = None;
    for (i, a) in args.iter().enumerate() {
        if a == &long {
            found = args.get(i + 1).cloned();
        } else if let Some(v) = a.strip_prefix(&format!("{long}=")) {
            found = Some(v.to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests;
