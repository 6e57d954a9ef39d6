//! `--io-uring`: io_uring made visible, and deniable, where policies cannot see its requests.
//!
//! An io_uring request (IORING_OP_OPENAT, IORING_OP_CONNECT, ...) runs the kernel operation
//! without its system call, so hooks on syscall tracepoints never see it. On kernels with
//! kernel-function or LSM hooks a policy on `security_file_open` & co. sees both paths (see
//! tests/integration/kfuncs_uring.rs); on kernels without them (this project's host) the
//! requests cannot be filtered by a policy's selectors. What such a kernel does offer is the
//! `io_uring` tracepoints, so the agent loads one built-in TracingPolicy, `vigil-io-uring`,
//! compiled and loaded into the kernel by the same runtime as any `--tracing-policy` file,
//! that
//!
//! - `report`: posts a `process_tracepoint` event for every ring created
//!   (`io_uring:io_uring_create`, in the creating process);
//! - `kill`: also sends SIGKILL there, before the process returns from io_uring_setup(2)
//!   and so before it can submit a request; and kills any process that submits a request
//!   (`io_uring:io_uring_submit_req`) on a ring it was not seen creating (made before the
//!   agent started, or passed over a socket) — that request itself still runs.
//!
//! `auto` (the default) is `report` on a kernel without kernel-function hooks (kprobes and
//! fentry both missing) and `allow` elsewhere: the choice follows the kernel, not the
//! policies loaded at start, because policies come and go over gRPC while the agent runs.
//! Under `auto` the policy is loaded on a thread of its own while the agent starts, so
//! that the default costs nothing on the way to `ready` (one more object to verify took
//! 50-300 ms of it here); an explicit `report` or `kill` is attached before `ready`.
//!
//! The built-in policy stays out of the policy manager: it is the agent's own, set by a flag,
//! not one of the operator's policies, so `tracingpolicy list` and the API (disable, delete,
//! set-mode) show and change only theirs. Its events carry `policy_name: vigil-io-uring`.

use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Result, bail};

use super::policies::{PolicySensors, Runtime};

/// The built-in policy's name (`tracingpolicy list`, `policy_name` on its events).
pub const POLICY_NAME: &str = "vigil-io-uring";

/// What `--io-uring` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoUringMode {
    /// `report` where the kernel lacks kernel-function hooks, else `allow`.
    Auto,
    /// Nothing is loaded.
    Allow,
    /// An event per ring created.
    Report,
    /// SIGKILL at ring creation (and at any request on a ring not seen created).
    Kill,
}

impl IoUringMode {
    pub const VALUES: &str = "auto, allow, report, kill";

    /// Parses the flag's value; the error names the flag and the accepted values.
    pub fn parse(value: &str) -> Result<Self> {
        Ok(match value.trim() {
            "auto" => Self::Auto,
            "allow" => Self::Allow,
            "report" => Self::Report,
            "kill" => Self::Kill,
            other => bail!("--io-uring: {other:?} is not one of: {}", Self::VALUES),
        })
    }

    /// The mode in effect on a kernel with (or without) kernel-function hooks.
    pub fn resolve(self, kernel_function_hooks: bool) -> Self {
        match self {
            Self::Auto if kernel_function_hooks => Self::Allow,
            Self::Auto => Self::Report,
            other => other,
        }
    }
}

/// Field indices count the format's four `common_*` fields (as Tetragon's do):
/// io_uring_create is (fd, ctx, sq_entries, cq_entries, flags) from index 4.
const REPORT: &str = r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: vigil-io-uring
spec:
  tracepoints:
  - subsystem: "io_uring"
    event: "io_uring_create"
    message: "io_uring ring created: its requests do not pass syscall hooks"
    tags: ["io_uring"]
    args:
    - index: 4
    - index: 6
    - index: 8
"#;

/// `kill`: the same hook with Sigkill, and io_uring_submit_req (ctx, req, user_data,
/// opcode, flags, sq_thread, op_str from index 4) for rings the agent did not see created.
const KILL: &str = r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: vigil-io-uring
spec:
  tracepoints:
  - subsystem: "io_uring"
    event: "io_uring_create"
    message: "io_uring ring created: process killed (--io-uring=kill)"
    tags: ["io_uring"]
    args:
    - index: 4
    - index: 6
    - index: 8
    selectors:
    - matchActions:
      - action: Sigkill
  - subsystem: "io_uring"
    event: "io_uring_submit_req"
    message: "io_uring request: process killed (--io-uring=kill)"
    tags: ["io_uring"]
    args:
    - index: 7
    - index: 10
      type: "data_loc"
    selectors:
    - matchActions:
      - action: Sigkill
"#;

/// The policy text for a resolved mode (`None` for `allow`).
pub fn policy_yaml(mode: IoUringMode) -> Option<&'static str> {
    match mode {
        IoUringMode::Allow | IoUringMode::Auto => None,
        IoUringMode::Report => Some(REPORT),
        IoUringMode::Kill => Some(KILL),
    }
}

/// The loaded built-in policy: dropping it detaches its programs.
pub struct BuiltIn {
    _sensors: PolicySensors,
}

/// The built-in policy: attached, or being attached on its own thread (`auto`).
pub enum Loading {
    Done(Option<BuiltIn>),
    Background(JoinHandle<Option<BuiltIn>>),
}

impl Loading {
    /// Waits for a background load: its programs are detached when the result is dropped.
    pub fn finish(self) -> Option<BuiltIn> {
        match self {
            Self::Done(built_in) => built_in,
            Self::Background(handle) => handle.join().ok().flatten(),
        }
    }
}

/// Starts what the mode asks for: in the background under `auto`, before returning under
/// an explicit `report` or `kill` (an operator who asks for enforcement gets it by `ready`).
pub fn start(runtime: &Arc<Runtime>, mode: IoUringMode) -> Loading {
    if mode != IoUringMode::Auto {
        return Loading::Done(load(runtime, mode));
    }
    let runtime = Arc::clone(runtime);
    match std::thread::Builder::new()
        .name("io-uring-load".into())
        .spawn(move || {
            let built_in = load(&runtime, mode);
            // This thread's share of the load's memory goes back before the thread ends.
            super::memory::return_free_memory();
            built_in
        }) {
        Ok(handle) => Loading::Background(handle),
        Err(e) => {
            tracing::error!(
                policy = POLICY_NAME,
                "io_uring: built-in policy not loaded: no thread ({e})"
            );
            Loading::Done(None)
        }
    }
}

/// Loads the built-in policy the mode asks for on this kernel. A failure is logged (the
/// agent runs on without it, as with a policy file that does not load), never fatal.
fn load(runtime: &Runtime, mode: IoUringMode) -> Option<BuiltIn> {
    let caps = crate::policy_cmd::detect_capabilities();
    let resolved = mode.resolve(caps.kprobes || caps.fentry);
    let Some(yaml) = policy_yaml(resolved) else {
        tracing::info!(?mode, "io_uring: no built-in policy loaded");
        return None;
    };
    let loaded = vigil_policy::parse_policy(yaml, POLICY_NAME)
        .map_err(|e| e.to_string())
        .and_then(|policy| {
            let plan = vigil_policy::compile(&policy, &caps);
            if !plan.is_loadable() {
                let reasons: Vec<String> = plan
                    .refusals
                    .iter()
                    .map(|r| format!("{}: {}", r.path, r.reason))
                    .collect();
                return Err(reasons.join("; "));
            }
            runtime.load(&plan)
        });
    match loaded {
        Ok((_, sensors)) => {
            tracing::info!(policy = POLICY_NAME, ?mode, effective = ?resolved,
                "io_uring: rings are reported{}",
                if resolved == IoUringMode::Kill { " and their creators killed" } else { "" });
            Some(BuiltIn { _sensors: sensors })
        }
        Err(e) => {
            tracing::error!(
                policy = POLICY_NAME,
                ?mode,
                "io_uring: built-in policy not loaded: {}",
                e.replace('\n', "; ")
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_policy::compile::{Capabilities, Mechanism};

    #[test]
    fn the_flag_and_its_default() {
        assert_eq!(IoUringMode::parse("kill").unwrap(), IoUringMode::Kill);
        let e = IoUringMode::parse("deny").unwrap_err().to_string();
        assert!(
            e.contains("--io-uring") && e.contains("auto, allow, report, kill"),
            "{e}"
        );
        assert_eq!(IoUringMode::Auto.resolve(false), IoUringMode::Report);
        assert_eq!(IoUringMode::Auto.resolve(true), IoUringMode::Allow);
        assert_eq!(IoUringMode::Kill.resolve(true), IoUringMode::Kill);
        assert!(policy_yaml(IoUringMode::Allow).is_none());
    }

    /// Both texts compile for a tracepoint-only kernel, through the user policies' path.
    #[test]
    fn the_built_in_policies_compile_on_tracepoints_only() {
        for (mode, hooks, actions) in [(IoUringMode::Report, 1, 0), (IoUringMode::Kill, 2, 1)] {
            let yaml = policy_yaml(mode).unwrap();
            let policy = vigil_policy::parse_policy(yaml, POLICY_NAME).unwrap();
            assert_eq!(policy.metadata.name, POLICY_NAME);
            let plan = vigil_policy::compile(&policy, &Capabilities::TRACEPOINTS_ONLY);
            assert!(plan.is_loadable(), "{mode:?}: {:?}", plan.refusals);
            assert_eq!(plan.hooks.len(), hooks, "{mode:?}");
            for h in &plan.hooks {
                assert_eq!(h.mechanism, Mechanism::Tracepoint, "{mode:?}");
                let n: usize = h.selectors.iter().map(|s| s.actions.len()).sum();
                assert_eq!(n, actions, "{mode:?}: {}", h.path);
            }
        }
    }
}
