//! `--keep-sensors-on-exit`: a policy's links pinned in bpffs stay attached after the agent
//! exits (the pin holds them; the programs keep their maps), so enforcement does not lapse
//! while the agent restarts. The next agent releases them (`--release-pinned-bpf`) or adopts
//! them: keeps them until its own policies are attached, then releases them.

use std::path::{Path, PathBuf};

use libbpf_rs::Link;

/// Where links are pinned (in the bpffs at [`BPFFS`], mounted by [`ensure_bpffs`]).
pub const KEEP_DIR: &str = "/sys/fs/bpf/vigil/kept";

/// Where bpffs is expected, as every BPF tool expects it.
pub const BPFFS: &str = "/sys/fs/bpf";

/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// bpffs could not be found or mounted: nothing can be pinned.
#[derive(Debug, thiserror::Error)]
#[error("bpffs is not mounted at {path} and mounting it failed: {source}")]
pub struct BpffsError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Whether a bpffs is mounted at `path`.
pub fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statfs.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Mounts bpffs at [`BPFFS`] when none is there (a fresh machine often has none; Tetragon
/// mounts it the same way). Returns whether this call mounted it.
pub fn ensure_bpffs() -> Result<bool, BpffsError> {
    let path = Path::new(BPFFS);
    if is_bpffs(path) {
        return Ok(false);
    }
    let err = |source| BpffsError {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    let (src, dst, fstype, data) = (c"bpf", c"/sys/fs/bpf", c"bpf", c"mode=0700");
    // SAFETY: every argument is a NUL-terminated string literal.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(true)
}

/// Checks, before anything is promised, that links can be pinned under `dir`: bpffs is
/// there (mounted if needed: returns whether this call mounted it) and the directory can be
/// created in it.
pub fn check_pinnable(dir: &Path) -> Result<bool, String> {
    let mounted = ensure_bpffs().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if !is_bpffs(dir) {
        return Err(format!("{} is not on a bpffs", dir.display()));
    }
    Ok(mounted)
}

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

/// Pins `links` as `dir/<prefix>-<n>` while the agent keeps them: dropping them still
/// detaches (bpf_link_detach), so an unloaded policy goes; a crash (no drop) leaves them
/// attached, held by the pins (`--keep-sensors-on-exit`: pinned at load, not at exit).
pub(crate) fn pin_links_live(
    links: &mut [Link],
    dir: &Path,
    prefix: &str,
) -> Result<usize, PinError> {
    std::fs::create_dir_all(dir).map_err(|source| PinError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    for (n, link) in links.iter_mut().enumerate() {
        let path = dir.join(format!("{prefix}-{n}"));
        link.pin(&path)
            .map_err(|source| PinError::Pin { path, source })?;
    }
    Ok(links.len())
}

/// Links pinned by [`pin_links_live`] outlive their `Link`s from now on (a clean exit that
/// keeps them).
pub(crate) fn disconnect_links(links: &mut [Link]) -> usize {
    for link in links.iter_mut() {
        link.disconnect();
    }
    links.len()
}

/// Removes the pins in `dir` and the directory (their links detach when the agent's own
/// references go too).
pub fn unpin_dir(dir: &Path) -> std::io::Result<()> {
    if let Ok(pins) = std::fs::read_dir(dir) {
        for p in pins.flatten() {
            std::fs::remove_file(p.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The directories under `dir` that another agent instance left (not named `own*`).
pub fn kept_by_others(dir: &Path, own: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| !n.starts_with(own))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Removes what other agent instances left under `dir` (not `own*`). Returns the pins
/// removed.
pub fn release_others(dir: &Path, own: &str) -> std::io::Result<usize> {
    let mut n = 0;
    for d in kept_by_others(dir, own) {
        n += std::fs::read_dir(&d).map_or(0, |f| f.count());
        unpin_dir(&d)?;
    }
    Ok(n)
}
