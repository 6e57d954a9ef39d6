//! Checks run before loading, so that a machine that cannot run vigil gets one line naming
//! what is missing instead of a libbpf error.

use std::path::{Path, PathBuf};

use libbpf_rs::btf::Btf;

/// The tracepoints the lifecycle sensor attaches to (BTF-typed tracepoints).
pub const LIFECYCLE_TRACEPOINTS: &[&str] = &[
    "sched_process_exec",
    "sched_process_fork",
    "sched_process_exit",
];

/// Default location of the running kernel's BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "vigil agent must run as root (it loads eBPF programs: needs CAP_BPF, CAP_PERFMON and \
         CAP_SYS_ADMIN); effective uid is {0}"
    )]
    NotRoot(u32),
    #[error(
        "kernel BTF not found at {0} ({1}): vigil needs BTF type information \
         (CONFIG_DEBUG_INFO_BTF) or a BTF file given with --btf"
    )]
    BtfMissing(PathBuf, &'static str),
    #[error("kernel BTF at {path} cannot be read: {reason}")]
    BtfUnreadable { path: PathBuf, reason: String },
    #[error(
        "tracepoint sched/{0} is missing from this kernel (no btf_trace_{0} in {1}): the \
         process lifecycle sensor needs it"
    )]
    TracepointMissing(&'static str, PathBuf),
}

/// Returns the BTF path to use: `--btf` when given, else the running kernel's.
pub fn btf_path(custom: Option<&Path>) -> PathBuf {
    custom.map_or_else(|| PathBuf::from(KERNEL_BTF), Path::to_path_buf)
}

/// Checks privileges, BTF and the lifecycle tracepoints.
pub fn check(custom_btf: Option<&Path>) -> Result<(), PreflightError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(PreflightError::NotRoot(euid));
    }
    let path = btf_path(custom_btf);
    if !path.exists() {
        let origin = if custom_btf.is_some() {
            "--btf"
        } else {
            "the running kernel"
        };
        return Err(PreflightError::BtfMissing(path, origin));
    }
    check_btf(&path)
}

/// The BTF at `path` parses and describes the lifecycle tracepoints (also `vigil probe`'s
/// `btf` and `tp_btf` rows).
pub fn check_btf(path: &Path) -> Result<(), PreflightError> {
    let btf = Btf::from_path(path).map_err(|e| PreflightError::BtfUnreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    for tp in LIFECYCLE_TRACEPOINTS {
        let name = format!("btf_trace_{tp}");
        if btf
            .type_by_name::<libbpf_rs::btf::types::Typedef<'_>>(&name)
            .is_none()
        {
            return Err(PreflightError::TracepointMissing(tp, path.to_path_buf()));
        }
    }
    Ok(())
}
