//! The `vigil tracingpolicy validate|explain` commands as functions returning text and an
//! exit status; the binary only prints them.

use std::fmt::Write as _;

use crate::aliases;
use crate::compile::{KernelCapabilities, compile};
use crate::kernel::{KernelInfo, check_policy};
use crate::parse_policy;

/// Text to print and the process exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub text: String,
    pub status: i32,
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: cannot read: {e}"))
}

/// `validate FILE...`: `FILE: OK` or every error of each file; status 1 if any file fails.
/// With `kernel`, kernel checks run too and the skipped ones are listed. Syscall aliases a
/// policy leaves open are warnings ([`aliases`]): printed, status unchanged.
pub fn validate(files: &[String], kernel: Option<&dyn KernelInfo>) -> CommandOutput {
    let mut text = String::new();
    let mut failed = false;
    if let Some(k) = kernel {
        let _ = writeln!(text, "kernel checks: {}", k.describe());
    } else {
        text.push_str("kernel checks: skipped (not requested)\n");
    }
    for file in files {
        let source = match read(file) {
            Ok(s) => s,
            Err(e) => {
                failed = true;
                let _ = writeln!(text, "{e}");
                continue;
            }
        };
        match parse_policy(&source, file) {
            Err(errors) => {
                failed = true;
                let _ = writeln!(text, "{errors}");
            }
            Ok(policy) => {
                let report = kernel.map(|k| check_policy(&policy, k)).unwrap_or_default();
                if report.errors.is_empty() {
                    let _ = writeln!(text, "{file}: OK");
                } else {
                    failed = true;
                    for e in &report.errors {
                        let _ = writeln!(text, "{e}");
                    }
                }
                for skipped in &report.skipped {
                    let _ = writeln!(text, "{file}: skipped check: {skipped}");
                }
                for w in aliases::warnings(&policy, kernel) {
                    let _ = writeln!(text, "{w}");
                }
            }
        }
    }
    CommandOutput {
        text,
        status: i32::from(failed),
    }
}

/// `explain FILE`: per hook, what will be attached and how on this kernel, and what cannot
/// be and why, and the syscall aliases it leaves open (warnings). Status 1 if the policy
/// would be refused.
pub fn explain(
    file: &str,
    kernel: Option<&dyn KernelInfo>,
    caps: &dyn KernelCapabilities,
) -> CommandOutput {
    let source = match read(file) {
        Ok(s) => s,
        Err(e) => {
            return CommandOutput {
                text: e + "\n",
                status: 1,
            };
        }
    };
    let policy = match parse_policy(&source, file) {
        Ok(p) => p,
        Err(errors) => {
            return CommandOutput {
                text: format!("{errors}\n"),
                status: 1,
            };
        }
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "policy {} ({}), kernel: {}",
        policy.metadata.name,
        policy.kind.name(),
        caps.describe()
    );
    let plan = compile(&policy, caps);
    let _ = writeln!(text, "mode: {:?}", plan.mode);
    for hook in &plan.hooks {
        let _ = writeln!(
            text,
            "{}: attach {} via {}{}",
            hook.path,
            hook.targets.join(", "),
            hook.mechanism.name(),
            if hook.on_return { " (return)" } else { "" }
        );
        for a in &hook.arguments {
            let _ = writeln!(
                text,
                "    read {:?} {} as {}{}",
                a.origin,
                a.index,
                a.arg_type,
                a.label
                    .as_ref()
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default()
            );
        }
        for (i, s) in hook.selectors.iter().enumerate() {
            let actions: Vec<&str> = s.actions.iter().map(|a| a.action.name()).collect();
            let actions = if actions.is_empty() {
                "Post".to_string()
            } else {
                actions.join(", ")
            };
            let _ = writeln!(
                text,
                "    selector {i}: {} filter(s) -> {actions}",
                s.filters.len()
            );
        }
    }
    for r in &plan.refusals {
        let _ = writeln!(text, "{}: cannot attach: {}", r.path, r.reason);
    }
    for w in aliases::warnings(&policy, kernel) {
        let _ = writeln!(text, "{w}");
    }
    let mut failed = !plan.is_loadable();
    if let Some(k) = kernel {
        let report = check_policy(&policy, k);
        for e in &report.errors {
            failed = true;
            let _ = writeln!(text, "{e}");
        }
        for s in &report.skipped {
            let _ = writeln!(text, "skipped check: {s}");
        }
    }
    let _ = writeln!(
        text,
        "{}",
        if failed {
            "result: refused (nothing is attached)"
        } else {
            "result: loads"
        }
    );
    CommandOutput {
        text,
        status: i32::from(failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::Capabilities;

    /// An alias warning is printed by both commands and leaves the status at 0.
    #[test]
    fn alias_warnings_do_not_fail_validate_or_explain() {
        let dir = std::env::temp_dir().join(format!("vigil-cli-aliases-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("exec.yaml");
        std::fs::write(
            &file,
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: ex\n\
             spec:\n  kprobes:\n  - call: \"sys_execve\"\n",
        )
        .unwrap();
        let file = file.display().to_string();
        let warning =
            format!("{file}:7:11: spec.kprobes[0].call: warning: hooks execve but not execveat:");
        let out = validate(std::slice::from_ref(&file), None);
        assert_eq!(out.status, 0, "{}", out.text);
        assert!(out.text.contains(&format!("{file}: OK\n")), "{}", out.text);
        assert!(out.text.contains(&warning), "{}", out.text);
        let out = explain(&file, None, &Capabilities::TRACEPOINTS_ONLY);
        assert_eq!(out.status, 0, "{}", out.text);
        assert!(out.text.contains(&warning), "{}", out.text);
        assert!(out.text.ends_with("result: loads\n"), "{}", out.text);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
