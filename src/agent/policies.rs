//! Loading TracingPolicies at start (`--tracing-policy`, `--tracing-policy-dir`): parse,
//! compile for this kernel, build kernel tables, load. A policy loads completely or not at
//! all; one that fails is reported (log, with every reason) and the agent starts without it.

use std::path::{Path, PathBuf};

use vigil_bpf::lifecycle::LifecycleSensor;
use vigil_bpf::syscalls::SyscallSensor;
use vigil_policy::compile::Capabilities;
use vigil_runtime::HookInfo;
use vigil_runtime::tables::{Ids, build};

/// A policy that is loaded and attached.
pub struct LoadedPolicy {
    pub name: String,
    pub file: PathBuf,
    pub hooks: Vec<HookInfo>,
    pub sensor: SyscallSensor,
}

/// Policy files named by the flags: explicit files first, then the directory's `*.yaml`
/// and `*.yml` files in name order (a missing directory is not an error: it is optional).
pub fn policy_files(files: &[PathBuf], dir: Option<&Path>) -> Vec<PathBuf> {
    let mut out = files.to_vec();
    if let Some(dir) = dir
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        found.sort();
        out.extend(found);
    }
    out
}

/// The kernel identity of a binary for matchBinaries: (inode, device in the kernel's
/// encoding, major << 20 | minor).
pub fn binary_identity(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    Some((meta.ino(), (major << 20) | minor))
}

/// Loads every policy it can; returns them and logs each failure.
pub fn load_all(
    files: &[PathBuf],
    lifecycle: &LifecycleSensor,
    btf: Option<&Path>,
) -> Vec<LoadedPolicy> {
    let mut ids = Ids::default();
    let mut loaded = Vec::new();
    for file in files {
        match load_one(file, lifecycle, btf, &mut ids) {
            Ok(p) => {
                tracing::info!(policy = %p.name, file = %p.file.display(), hooks = p.hooks.len(),
                    attached = p.sensor.attached(), "tracing policy loaded");
                loaded.push(p);
            }
            Err(reason) => {
                tracing::error!(file = %file.display(), "tracing policy not loaded: {reason}");
            }
        }
    }
    loaded
}

fn load_one(
    file: &Path,
    lifecycle: &LifecycleSensor,
    btf: Option<&Path>,
    ids: &mut Ids,
) -> Result<LoadedPolicy, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read: {e}"))?;
    let policy = vigil_policy::parse_policy(&text, &file.display().to_string())
        .map_err(|errors| errors.to_string())?;
    let plan = vigil_policy::compile(&policy, &Capabilities::TRACEPOINTS_ONLY);
    if !plan.is_loadable() {
        let reasons: Vec<String> = plan
            .refusals
            .iter()
            .map(|r| format!("{}: {}", r.path, r.reason))
            .collect();
        return Err(reasons.join("; "));
    }
    let tables = build(&plan, ids, &binary_identity).map_err(|e| e.to_string())?;
    let sensor = SyscallSensor::load(lifecycle, &tables.tables, btf).map_err(|e| e.to_string())?;
    Ok(LoadedPolicy {
        name: plan.name,
        file: file.to_path_buf(),
        hooks: tables.hooks,
        sensor,
    })
}
