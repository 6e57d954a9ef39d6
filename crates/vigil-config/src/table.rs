//! Tetragon daemon flags (tetragon.md §3.2) that vigil does not implement, and what vigil
//! does with each. The README's flag table is this list.

/// What happens to a Tetragon flag vigil does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Accepted; a warning names the flag and says why it has no effect.
    Warn(&'static str),
    /// Refused at start-up: accepting it would change what is reported or enforced.
    Refuse(&'static str),
}

use Disposition::{Refuse, Warn};

const NO_BPF_FS: &str =
    "vigil ships its eBPF objects in the binary and pins only what --keep-sensors-on-exit keeps";
const PROFILING: &str = "Go runtime profiling has no equivalent in vigil";
const TUNING: &str = "tuning of a Tetragon component vigil does not have";
const K8S: &str = "not implemented: containers come from cgroup paths, pods from --enable-k8s-api";
const POLICY: &str =
    "the policy runtime runs syscall hooks only so far; this option has no effect yet";
const PARENTS: &str =
    "matchParentBinaries always works: the kernel process table keeps each parent's binary";
const GRPC: &str = "not implemented by vigil's gRPC server";

/// (flag, takes a value, disposition).
pub const UNIMPLEMENTED: &[(&str, bool, Disposition)] = &[
    ("bpf-dir", true, Warn(NO_BPF_FS)),
    ("bpf-lib", true, Warn(NO_BPF_FS)),
    (
        "cgroup-rate",
        true,
        Refuse("cgroup rate throttling is not implemented"),
    ),
    ("cpuprofile", true, Warn(PROFILING)),
    ("memprofile", true, Warn(PROFILING)),
    ("gops-address", true, Warn(PROFILING)),
    ("pprof-address", true, Warn(PROFILING)),
    ("cri-endpoint", true, Warn(K8S)),
    ("enable-cri", false, Warn(K8S)),
    ("enable-cgidmap", false, Warn(K8S)),
    ("enable-cgidmap-debug", false, Warn(K8S)),
    ("enable-cgtrackerid", false, Warn(K8S)),
    ("enable-pod-info", false, Warn(K8S)),
    ("k8s-controlplane-retry", true, Warn(K8S)),
    ("deleted-pod-cache-size", true, Warn(K8S)),
    ("enable-policy-filter", false, Warn(POLICY)),
    ("enable-policy-filter-cgroup-map", false, Warn(POLICY)),
    ("enable-policy-filter-debug", false, Warn(POLICY)),
    ("enable-tracing-policy-crd", false, Warn(POLICY)),
    ("enable-deprecated-tracingpolicy-grpc", false, Warn(POLICY)),
    ("disable-kprobe-multi", false, Warn(POLICY)),
    ("parents-map-enabled", false, Warn(PARENTS)),
    ("parents-map-entries", true, Warn(PARENTS)),
    ("parents-map-size", true, Warn(PARENTS)),
    ("sleepable-preload-size", true, Warn(POLICY)),
    ("retprobes-cache-size", true, Warn(POLICY)),
    ("data-cache-size", true, Warn(TUNING)),
    ("event-cache-retries", true, Warn(TUNING)),
    ("event-cache-retry-delay", true, Warn(TUNING)),
    ("event-queue-size", true, Warn(TUNING)),
    ("enable-msg-handling-latency", false, Warn(TUNING)),
    (
        "force-large-progs",
        false,
        Warn("vigil has one object per program, chosen by kernel feature checks"),
    ),
    (
        "force-small-progs",
        false,
        Warn("vigil has one object per program, chosen by kernel feature checks"),
    ),
    (
        "kernel",
        true,
        Warn("vigil probes the running kernel's features instead of its version"),
    ),
    (
        "verbose",
        true,
        Warn("verifier logs are printed in full when a program is rejected"),
    ),
    ("netns-dir", true, Warn(TUNING)),
    (
        "use-perf-ring-buffer",
        false,
        Refuse("vigil needs the BPF ring buffer (Linux 5.8+)"),
    ),
    ("execve-map-size", true, Refuse("use --execve-map-entries")),
    (
        "disable-process-cache",
        false,
        Refuse("vigil's events need the process cache"),
    ),
    (
        "enable-pid-set-filter",
        false,
        Warn("pid_set filters are always available in vigil"),
    ),
    (
        "filter-environment-variables",
        true,
        Refuse("not implemented; use --redaction-filters"),
    ),
    ("generate-docs", false, Refuse("see vigil's README")),
    ("health-server-interval", true, Warn(GRPC)),
];

/// (takes a value, disposition) of an unimplemented Tetragon flag.
pub fn lookup(flag: &str) -> Option<(bool, Disposition)> {
    UNIMPLEMENTED
        .iter()
        .find(|(n, _, _)| *n == flag)
        .map(|(_, v, d)| (*v, *d))
}
