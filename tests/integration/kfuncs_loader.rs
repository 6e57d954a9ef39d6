//! `spec.loader`: `process_loader` events for the executable mappings of a process (its
//! loader and libraries), with their build IDs. Guest-only (`kfunc_`). Expected values are
//! written by hand; the build ID parser is checked against readelf in the agent's unit tests.

use std::process::Command;

use base64::Engine;

use crate::harness::*;
use crate::kernel_caps;
use crate::kfuncs::wait_or_log;

#[test]
fn kfunc_loader_reports_executable_mappings_with_build_ids() {
    if !kernel_caps::require("fentry") {
        return;
    }
    let _g = serial();
    let dir = scratch_dir("kfunc-loader-files");
    let policy = write_policy(
        &dir,
        "loader",
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: loader\nspec:\n  loader: true\n",
    );
    let agent = Agent::start("kfunc-loader", &["--tracing-policy", &policy]);
    let pid = u64::from(run(&mut Command::new("/usr/bin/true")));
    let libc_of = |e: &serde_json::Value| {
        pid_of(e) == pid && e["path"].as_str().is_some_and(|p| p.contains("libc.so"))
    };
    let events = wait_or_log(&agent, "the libc mapping of true", |ev| {
        of_kind(ev, "process_loader").iter().any(|e| libc_of(e))
    });
    agent.stop();
    let loads = of_kind(&events, "process_loader");
    let libc = loads.iter().find(|e| libc_of(e)).unwrap();
    assert_eq!(libc["process"]["binary"], "/usr/bin/true", "{libc}");
    let id = base64::engine::general_purpose::STANDARD
        .decode(libc["buildid"].as_str().unwrap_or(""))
        .unwrap();
    assert_eq!(id.len(), 20, "a GNU build ID (SHA-1): {libc}");
    // Data mappings (PROT_EXEC not set) are not reported: every path of this process is
    // a loaded object (ld.so, libc) or the binary itself.
    for e in loads.iter().filter(|e| pid_of(e) == pid) {
        let p = e["path"].as_str().unwrap_or("");
        assert!(
            p.contains(".so") || p == "/usr/bin/true",
            "only executable mappings: {e}"
        );
    }
}
