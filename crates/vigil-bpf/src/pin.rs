//! `--keep-sensors-on-exit`: a policy's links pinned in bpffs stay attached after the agent
//! exits (the pin holds them; the programs keep their maps), so enforcement does not lapse
//! while the agent restarts. The next agent releases them (`--release-pinned-bpf`) or adopts
//! them: keeps them until its own policies are attached, then releases them.

use std::path::{Path, PathBuf};

use libbpf_rs::Link;

/// Where links are pinned (bpffs must be mounted at /sys/fs/bpf).
pub const KEEP_DIR: &str = "/sys/fs/bpf/vigil/kept";

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("cannot create {path} (is bpffs mounted at /sys/fs/bpf?): {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot pin a link at {path}: {source}")]
    Pin {
        path: PathBuf,
        source: libbpf_rs::Error,
    },
}

/// Pins `links` as `dir/<prefix>-<n>` and disconnects them, so that dropping them (and the
/// agent exiting) leaves them attached. Returns how many were pinned.
pub(crate) fn pin_links(links: &mut [Link], dir: &Path, prefix: &str) -> Result<usize, PinError> {
    std::fs::create_dir_all(dir).map_err(|source| PinError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    for (n, link) in links.iter_mut().enumerate() {
        let path = dir.join(format!("{prefix}-{n}"));
        link.pin(&path)
            .map_err(|source| PinError::Pin { path, source })?;
        link.disconnect();
    }
    Ok(links.len())
}

/// The pins a previous agent left under `dir` (files in its policy directories).
pub fn kept_pins(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(policies) = std::fs::read_dir(dir) else {
        return out;
    };
    for policy in policies.flatten() {
        if let Ok(pins) = std::fs::read_dir(policy.path()) {
            out.extend(pins.flatten().map(|p| p.path()));
        }
    }
    out.sort();
    out
}

/// Removes every pin under `dir` (each link detaches when its last reference goes) and the
/// directories. Returns how many pins were removed.
pub fn release(dir: &Path) -> std::io::Result<usize> {
    let pins = kept_pins(dir);
    for p in &pins {
        std::fs::remove_file(p)?;
    }
    if let Ok(policies) = std::fs::read_dir(dir) {
        for policy in policies.flatten() {
            std::fs::remove_dir(policy.path())?;
        }
    }
    Ok(pins.len())
}
