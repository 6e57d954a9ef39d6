//! Tetragon daemon flags (tetragon.md §3.2) that vigil does not implement, and what vigil
//! does with each. The table in docs/reference/flags.md is this list.

/// What happens to a Tetragon flag vigil does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Accepted; a warning names the flag and says why it has no effect.
    Warn(&'static str),
    /// Refused at start-up: accepting it would change what is reported or enforced.
    Refuse(&'static str),
}

use Disposition::{Refuse, Warn};

const PROFILING: &str = "Go runtime profiling has no equivalent in vigil";
const K8S: &str = "not implemented (vigil has no CRI client): containers come from cgroup paths, \
     pods from --enable-k8s-api, names and images outside Kubernetes from containerd's own API \
     and Docker's with --enable-container-runtimes";
const CGIDMAP: &str = "vigil has no cgroup-id map fed by the CRI: a process's container comes from \
     its cgroup path, its pod from the Pod objects watched with --enable-k8s-api";
const PARENTS: &str = "matchParentBinaries always works: each process's entry in vigil's kernel \
     process table (sized by --execve-map-entries) keeps its parent's binary, also after the \
     parent exits";
const EVENT_CACHE: &str = "vigil has no retrying event cache: with --enable-k8s-api an event whose \
     pod is not known yet waits up to --k8s-pod-wait (2 s), then goes out without its pod";
const PROGRAM_SIZE: &str = "vigil builds each eBPF program in one form (no small and large \
     variants, which Tetragon has for kernels before 5.3): there is nothing to force";

/// (flag, takes a value, disposition).
pub const UNIMPLEMENTED: &[(&str, bool, Disposition)] = &[
    (
        "bpf-dir",
        true,
        Warn(
            "vigil's bpffs directory is fixed, /sys/fs/bpf/vigil, where it pins only the links \
             --keep-sensors-on-exit keeps",
        ),
    ),
    (
        "bpf-lib",
        true,
        Warn(
            "vigil's eBPF objects are built into its binary: there is no object directory to \
             read (a BTF file is given with --btf)",
        ),
    ),
    ("cpuprofile", true, Warn(PROFILING)),
    ("memprofile", true, Warn(PROFILING)),
    ("gops-address", true, Warn(PROFILING)),
    ("pprof-address", true, Warn(PROFILING)),
    ("cri-endpoint", true, Warn(K8S)),
    ("enable-cri", false, Warn(K8S)),
    ("enable-cgidmap", false, Warn(CGIDMAP)),
    ("enable-cgidmap-debug", false, Warn(CGIDMAP)),
    (
        "enable-cgtrackerid",
        false,
        Warn(
            "Tetragon uses it only with --enable-cgidmap; vigil's container id comes from the \
             cgroup path, whose runtime-owned ancestor already covers nested cgroups",
        ),
    ),
    (
        "enable-pod-info",
        false,
        Warn(
            "vigil reads no PodInfo resources (an operator's): pod data come from the Pod \
             objects watched with --enable-k8s-api",
        ),
    ),
    (
        "k8s-controlplane-retry",
        true,
        Warn(
            "vigil's Kubernetes watches retry with backoff without limit (Tetragon's negative \
             value); a kubeconfig that cannot be loaded is an error at start",
        ),
    ),
    (
        "deleted-pod-cache-size",
        true,
        Warn(
            "a deleted pod stays known for 60 s (bounded by time, not by a count), for its \
             processes' last events",
        ),
    ),
    (
        "enable-policy-filter",
        false,
        Warn(
            "always on with --enable-k8s-api: TracingPolicyNamespaced, podSelector and \
             containerSelector policies are filtered in the kernel by cgroup id (refused \
             without --enable-k8s-api)",
        ),
    ),
    (
        "enable-policy-filter-cgroup-map",
        false,
        Warn(
            "vigil's policy filter is one set of cgroup ids per scoped policy, checked in the \
             kernel; there is no other map layout to choose",
        ),
    ),
    (
        "enable-policy-filter-debug",
        false,
        Warn(
            "no debug log of the policy filter: its in-scope and out-of-scope counts per policy \
             are in the SIGUSR1 counter dump (scope_in_out)",
        ),
    ),
    (
        "enable-tracing-policy-crd",
        false,
        Warn(
            "always on with --enable-k8s-api: TracingPolicy and TracingPolicyNamespaced objects \
             are watched and loaded; they cannot be turned off separately",
        ),
    ),
    (
        "enable-deprecated-tracingpolicy-grpc",
        false,
        Warn(
            "EnableTracingPolicy and DisableTracingPolicy, which Tetragon refuses without this \
             flag, are always served by vigil",
        ),
    ),
    (
        "disable-kprobe-multi",
        false,
        Warn(
            "not a daemon flag in vigil: set the policy option disable-kprobe-multi; without it \
             a policy's several kernel functions share one kprobe.multi where the kernel has it",
        ),
    ),
    ("parents-map-enabled", false, Warn(PARENTS)),
    ("parents-map-entries", true, Warn(PARENTS)),
    ("parents-map-size", true, Warn(PARENTS)),
    (
        "sleepable-preload-size",
        true,
        Warn("vigil loads no sleepable programs, so it has no sleepable preload map to size"),
    ),
    (
        "retprobes-cache-size",
        true,
        Warn(
            "a return probe is paired with its entry in the kernel (per-thread task storage), \
             not in a user-space cache: there is nothing to size",
        ),
    ),
    (
        "data-cache-size",
        true,
        Warn(
            "maxData buffers wait for their event in a store with fixed bounds (4,096 threads, \
             16 MiB); what it drops is counted as LOSS_STAGE_DATA",
        ),
    ),
    ("event-cache-retries", true, Warn(EVENT_CACHE)),
    ("event-cache-retry-delay", true, Warn(EVENT_CACHE)),
    (
        "event-queue-size",
        true,
        Warn(
            "the per-client GetEvents queue is sized by --grpc-client-buffer (events) and \
             --grpc-client-buffer-bytes",
        ),
    ),
    (
        "enable-msg-handling-latency",
        false,
        Warn("vigil does not measure per-message handling latency (tetragon_handling_latency)"),
    ),
    ("force-large-progs", false, Warn(PROGRAM_SIZE)),
    ("force-small-progs", false, Warn(PROGRAM_SIZE)),
    (
        "kernel",
        true,
        Warn(
            "vigil never reads the kernel version: what it uses follows what the running kernel \
             advertises (its BTF, the kprobe PMU, lockdown, the active LSMs)",
        ),
    ),
    (
        "verbose",
        true,
        Warn(
            "no level to choose: when the kernel rejects a program, libbpf prints its verifier \
             log on stderr",
        ),
    ),
    (
        "netns-dir",
        true,
        Warn(
            "Tetragon stores this value and never reads it; vigil reads namespaces from each \
             task in the kernel",
        ),
    ),
    (
        "use-perf-ring-buffer",
        false,
        Refuse(
            "vigil's events leave the kernel through the BPF ring buffer only (Linux 5.8+); it \
             has no perf-buffer path",
        ),
    ),
    (
        "execve-map-size",
        true,
        Refuse("vigil's process table is sized in entries: use --execve-map-entries"),
    ),
    (
        "disable-process-cache",
        false,
        Refuse(
            "vigil's events take their process, parent and ancestors from the process cache, \
             which cannot be turned off",
        ),
    ),
    (
        "enable-pid-set-filter",
        false,
        Warn("pid_set filters (export lists and GetEvents) are always available in vigil"),
    ),
    (
        "filter-environment-variables",
        true,
        Refuse(
            "--enable-process-environment-variables reports every variable; hide values with \
             --redaction-filters (they apply to KEY=VALUE)",
        ),
    ),
    (
        "generate-docs",
        false,
        Refuse(
            "vigil generates no docs: its flags are in docs/reference/flags.md and `vigil agent --help`",
        ),
    ),
    (
        "health-server-interval",
        true,
        Warn(
            "vigil updates health liveness every second (fixed): NOT_SERVING once waiting \
             events see no progress for 10 s",
        ),
    ),
];

/// (takes a value, disposition) of an unimplemented Tetragon flag.
pub fn lookup(flag: &str) -> Option<(bool, Disposition)> {
    UNIMPLEMENTED
        .iter()
        .find(|(n, _, _)| *n == flag)
        .map(|(_, v, d)| (*v, *d))
}
