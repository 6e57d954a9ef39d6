#!/usr/bin/env python3
"""vigil benchmark suite: vigil side by side with bpftrace and auditd (issue 10).

Run through bench/run (which installs the peers, mounts tracefs and builds vigil).
Method: every subject runs every workload in interleaved rounds (the subject order
rotates each round); ops/s are medians over rounds, the ratio to `none` is the median of
the per-round ratios; raw samples are kept in latest.json. In-kernel cost comes from a
separate pass with kernel.bpf_stats_enabled=1. See bench/README.md.
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, "results")
WORK = "/tmp/vigil-bench"
WL = os.path.join(WORK, "wl")
TRUE = os.path.join(WORK, "vbtrue")          # a copy of /usr/bin/true with a unique name
WATCHED = os.path.join(WORK, "watched", "f")   # "matching" open path
OTHER = "/etc/hostname"                        # "not matching" open path
NA_POLICY = "not available: the policy runtime (issue 4) is not implemented yet"

BT_SCRIPTS = {
    # exactly the probes of issue 10; the print variants add nsecs (kernel monotonic
    # time) so the time from the kernel event to the line in the file can be measured.
    "bpftrace-lifecycle-print": (
        'tracepoint:sched:sched_process_exec { printf("%d %s %s %llu\\n", pid, comm, str(args->filename), nsecs); }\n'
        'tracepoint:sched:sched_process_exit { printf("%d %s %llu\\n", pid, comm, nsecs); }\n'),
    "bpftrace-lifecycle-count": (
        'tracepoint:sched:sched_process_exec { @exec = count(); }\n'
        'tracepoint:sched:sched_process_exit { @exit = count(); }\n'),
    "bpftrace-open-print": (
        'tracepoint:syscalls:sys_enter_openat { printf("%d %s\\n", pid, str(args->filename)); }\n'),
    "bpftrace-open-count": (
        'tracepoint:syscalls:sys_enter_openat { @open = count(); }\n'),
    # The floor of the mechanism (issue 18): a program on the same tracepoint that decides
    # "no" with one helper call and a compare, as a perfect in-kernel filter would. What it
    # costs, no openat policy can avoid on a kernel whose only syscall hooks are tracepoints.
    "bpftrace-open-floor": (
        'tracepoint:syscalls:sys_enter_openat /pid == 0/ { @open = count(); }\n'),
}
AUDIT_RULES = {
    "auditd-lifecycle": ["-a", "always,exit", "-F", "arch=b64", "-S", "execve,execveat"],
    "auditd-open": ["-a", "always,exit", "-F", "arch=b64", "-S", "openat"],
}
# Which workload kinds a subject produces events for ("exec" or "open").
OBSERVES = {
    "vigil-lifecycle": "exec", "vigil-openat-nomatch": "exec", "vigil-openat-all": "exec+open",
    "vigil-enforce": "exec", "vigil-history": "exec+open",
    "bpftrace-lifecycle-print": "exec", "bpftrace-lifecycle-count": "exec",
    "bpftrace-open-print": "open", "bpftrace-open-count": "open", "bpftrace-open-floor": "open",
    "auditd-lifecycle": "exec", "auditd-open": "open",
}
VIGIL_POLICY = {
    "vigil-openat-nomatch": "openat-nomatch.yaml",
    "vigil-openat-all": "openat-all.yaml",
    "vigil-enforce": "enforce.yaml",
    "vigil-history": "openat-all.yaml",
}
# Extra agent flags of a subject ({work}: the bench's scratch directory). vigil-history is
# vigil-openat-all with the flight recorder on (issue 21: CPU per event at most 2 µs above).
VIGIL_FLAGS = {
    "vigil-history": ["--history-dir", "{work}/history-{name}"],
}
SUBJECTS = ["none", "vigil-lifecycle", "vigil-openat-nomatch", "vigil-openat-all", "vigil-enforce",
            "vigil-history",
            "bpftrace-lifecycle-print", "bpftrace-lifecycle-count", "bpftrace-open-print",
            "bpftrace-open-count", "bpftrace-open-floor", "auditd-lifecycle", "auditd-open"]
# `--baseline-bin B` adds `vigil-X@base` beside each `vigil-X`: the same subject run by another
# vigil binary, interleaved in the same rounds, so two builds compare under one machine state.
BASE = "@base"


def role(name):
    """The subject's kind, whichever binary runs it (vigil-lifecycle@base -> vigil-lifecycle)."""
    return name[:-len(BASE)] if name.endswith(BASE) else name


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def sh(cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------- /proc helpers
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """utime+stime of a process in seconds, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / CLK_TCK
    except (OSError, IndexError):
        return None


def sched_ns(pid):
    """On-CPU ns of all threads of a process (/proc/<pid>/task/*/schedstat), ns resolution."""
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        return None
    return total


def sched_ns_by_thread(pid):
    """On-CPU ns of each live thread of a process: {tid: ns}."""
    out = {}
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    out[t] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        return None
    return out


def rest_cpu_pct(pids, seconds):
    """CPU % of processes over `seconds`, by thread: a thread that ends meanwhile (the agent's
    policy loader) must not take its earlier time out of the sum."""
    t0 = [sched_ns_by_thread(p) for p in pids]
    time.sleep(seconds)
    t1 = [sched_ns_by_thread(p) for p in pids]
    if t0[0] is None or t1[0] is None:
        return None
    return sum(ns - (a or {}).get(t, 0) for a, b in zip(t0, t1) for t, ns in (b or {}).items()) \
        / (seconds * 1e9) * 100


def mem_mb(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0]) / 1024
    except OSError:
        pass
    return out.get("VmRSS"), out.get("VmHWM")


def rss_anon_mb(pid):
    """RssAnon: the process's own memory (heap, stacks), without its mapped files and the
    BPF ring buffers it maps."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def kthread_pid(comm):
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/comm") as f:
                    if f.read().strip() == comm:
                        return int(p)
            except OSError:
                pass
    return None


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ---------------------------------------------------------------- subjects
class SubjectError(Exception):
    pass


class Subject:
    """A started observer. pids: processes whose CPU is the agent's cost."""
    name = "none"
    out_path = None
    pid = None

    def __init__(self, name):
        self.name = name
        self.startup_s = None
        self.ready_ms = None
        self.extra_cpu_pids = []

    def start(self):
        pass

    def stop(self):
        pass

    def cpu(self):
        if self.pid is None:
            return None
        total = 0.0
        for p in [self.pid] + self.extra_cpu_pids:
            c = cpu_s(p)
            if c is None and p == self.pid:
                return None
            total += c or 0.0
        return total

    def cpu_sched(self):
        if self.pid is None:
            return None
        vals = [sched_ns(p) for p in [self.pid] + self.extra_cpu_pids]
        return None if vals[0] is None else sum(v or 0 for v in vals) / 1e9

    def mem(self):
        return mem_mb(self.pid) if self.pid else (None, None)

    def offset(self):
        try:
            return os.path.getsize(self.out_path) if self.out_path else 0
        except OSError:
            return 0

    def read_from(self, off):
        if not self.out_path:
            return ""
        with open(self.out_path, "rb") as f:
            f.seek(off)
            return f.read().decode("utf-8", "replace")

    def count(self, text, kind):
        """(received, lost) for the workload's events in output text; None if unknown."""
        return None, None

    def lost_total(self):
        return None


class Vigil(Subject):
    def __init__(self, name, binary, policy=None, flags=()):
        super().__init__(name)
        self.binary = binary
        self.policy = policy
        self.flags = [f.format(work=WORK, name=name) for f in flags]
        self.out_path = os.path.join(WORK, f"{name}.jsonl")

    def start(self):
        if os.path.exists(self.out_path):
            os.unlink(self.out_path)
        # No rotation during a run (the default rotates at 10 MB): every line stays in one file.
        cmd = [self.binary, "agent", "--export-filename", self.out_path,
               "--export-file-max-size-mb=100000", "--health-server-address=",
               f"--server-address=unix://{WORK}/{self.name}.sock"]
        if self.policy:
            cmd += ["--tracing-policy", os.path.join(BENCH, "policies", self.policy)]
        if self.flags:
            # A fresh recorder per start: what an earlier round recorded is not this one's.
            for f in self.flags:
                if f.startswith(WORK) and os.path.isdir(f):
                    shutil.rmtree(f)
            cmd += self.flags
        self.errlog = open(os.path.join(WORK, f"{self.name}.stderr"), "w+")
        # Agents with --io-uring load its default policy beside the start, after ready: the
        # subject is settled (its RSS at rest measurable) once that decision is logged too.
        help_text = subprocess.run([self.binary, "agent", "--help"], capture_output=True,
                                   text=True).stdout
        uring_pending = "--io-uring" in help_text
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        deadline = t0 + 30
        while True:
            line = self.proc.stderr.readline()
            if not line:
                raise SubjectError(f"vigil agent exited ({self.proc.wait()}) before ready")
            self.errlog.write(line)
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            if "tracing policy not loaded" in line:
                # The agent runs on without it: measuring would be measuring another subject.
                self.proc.terminate()
                self.proc.wait()
                raise SubjectError("policy refused by the agent: " + line.split("not loaded:", 1)[-1].strip())
            if "io_uring: " in line:
                uring_pending = False
            if "vigil agent ready" in line:
                self.startup_s = time.monotonic() - t0
                m = re.search(r"ready_ms=(\d+)", line)
                self.ready_ms = int(m.group(1)) if m else None
            if self.startup_s is not None and not uring_pending:
                break
            if time.monotonic() > deadline:
                raise SubjectError("vigil agent not ready after 30 s")
        # keep draining stderr so the agent never blocks on a full pipe
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.errlog.write(line)
            self.errlog.flush()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def count(self, text, kind):
        rec, lost = 0, 0
        for line in text.splitlines():
            if line.startswith('{"events_lost"'):
                try:
                    lost += int(json.loads(line)["events_lost"].get("count", 0))
                except (ValueError, KeyError):
                    pass
            elif kind == "exec" and TRUE in line and (line.startswith('{"process_exec"')
                                                      or line.startswith('{"process_exit"')):
                rec += 1
            elif kind == "open" and WL in line and line.startswith('{"process_kprobe"'):
                rec += 1  # the open policies hook sys_openat as a syscall kprobe
        return rec, lost


class Bpftrace(Subject):
    def __init__(self, name):
        super().__init__(name)
        self.script = BT_SCRIPTS[name]
        self.out_path = os.path.join(WORK, f"{name}.out")
        self.printing = name.endswith("-print")

    def start(self):
        if os.path.exists(self.out_path):
            os.unlink(self.out_path)
        t0 = time.monotonic()
        self.err = open(os.path.join(WORK, f"{self.name}.stderr"), "w")
        self.proc = subprocess.Popen(["bpftrace", "-B", "none", "-o", self.out_path, "-e", self.script],
                                     stdout=subprocess.DEVNULL, stderr=self.err)
        self.pid = self.proc.pid
        while time.monotonic() - t0 < 30:
            if self.proc.poll() is not None:
                raise SubjectError(f"bpftrace exited {self.proc.returncode}: "
                                   + open(self.err.name).read().strip()[-300:])
            try:
                with open(self.out_path) as f:
                    if "Attaching" in f.readline():
                        break
            except OSError:
                pass
            time.sleep(0.005)
        else:
            raise SubjectError("bpftrace did not attach within 30 s")
        # the banner is printed just before attaching; wait for the programs to be loaded
        for _ in range(200):
            if bpf_progs_of(self.pid):
                break
            time.sleep(0.01)
        self.startup_s = time.monotonic() - t0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def count(self, text, kind):
        lost = sum(int(m) for m in re.findall(r"Lost (\d+) events", text))
        if not self.printing:
            return None, lost
        rec = 0
        for line in text.splitlines():
            f = line.split()
            if kind == "exec" and len(f) in (3, 4) and f[1] == "vbtrue":
                rec += 1
            elif kind == "open" and len(f) == 2 and f[1] in (WATCHED, OTHER):
                rec += 1
        return rec, lost


class Auditd(Subject):
    def __init__(self, name):
        super().__init__(name)
        self.rule = AUDIT_RULES[name]
        self.dir = os.path.join(WORK, "audit")
        self.out_path = os.path.join(self.dir, "audit.log")

    def start(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "plugins.d"))
        with open(os.path.join(self.dir, "auditd.conf"), "w") as f:
            f.write(f"""local_events = yes
write_logs = yes
log_file = {self.out_path}
log_format = ENRICHED
log_group = root
priority_boost = 4
flush = INCREMENTAL_ASYNC
freq = 50
num_logs = 1
max_log_file = 4096
max_log_file_action = IGNORE
space_left = 2
space_left_action = IGNORE
admin_space_left = 1
admin_space_left_action = IGNORE
disk_full_action = IGNORE
disk_error_action = IGNORE
q_depth = 2000
overflow_action = SYSLOG
plugin_dir = {self.dir}/plugins.d
end_of_event_timeout = 2
""")
        audit_reset()
        t0 = time.monotonic()
        self.err = open(os.path.join(WORK, f"{self.name}.stderr"), "w")
        self.proc = subprocess.Popen(["auditd", "-n", "-c", self.dir], stdout=self.err, stderr=self.err)
        self.pid = self.proc.pid
        while time.monotonic() - t0 < 15:
            if self.proc.poll() is not None:
                raise SubjectError(f"auditd exited {self.proc.returncode}: "
                                   + open(self.err.name).read().strip()[-300:])
            if audit_status().get("pid") == self.pid:
                break
            time.sleep(0.01)
        else:
            raise SubjectError("auditd did not register within 15 s")
        sh(["auditctl", "-b", "8192"])
        sh(["auditctl"] + self.rule)
        sh(["auditctl", "-e", "1"])
        self.startup_s = time.monotonic() - t0
        k = kthread_pid("kauditd")
        self.extra_cpu_pids = [k] if k else []

    def stop(self):
        audit_reset()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def count(self, text, kind):
        rec = 0
        for line in text.splitlines():
            if not line.startswith("type=SYSCALL"):
                continue
            if kind == "exec" and "syscall=59 " in line and f'exe="{TRUE}"' in line:
                rec += 1
            elif kind == "open" and "syscall=257 " in line and f'exe="{WL}"' in line:
                rec += 1
        return rec, None

    def lost_total(self):
        return audit_status().get("lost")


AUDIT_ORIG = {}


def audit_status():
    try:
        out = sh(["auditctl", "-s"], check=False).stdout
    except FileNotFoundError:
        return {}
    st = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and f[1].lstrip("-").isdigit():
            st[f[0]] = int(f[1])
    return st


def audit_reset():
    """Audit disabled, rules removed, backlog settings as found. Safe to call any time."""
    if not shutil.which("auditctl"):
        return
    sh(["auditctl", "-D"], check=False)
    sh(["auditctl", "-e", "0"], check=False)
    if AUDIT_ORIG:
        sh(["auditctl", "-b", str(AUDIT_ORIG.get("backlog_limit", 64))], check=False)


# ---------------------------------------------------------------- bpf stats
def bpftool_progs():
    out = sh(["bpftool", "prog", "show", "--json"], check=False).stdout
    try:
        return json.loads(out or "[]")
    except ValueError:
        return []


def bpf_prog_ids_of(pid):
    """Program ids held by a process (prog and link fds show `prog_id:` in fdinfo)."""
    ids = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fdinfo"):
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    for line in f:
                        if line.startswith("prog_id:"):
                            ids.add(int(line.split()[1]))
            except (OSError, ValueError):
                pass
    except OSError:
        pass
    return ids


def bpf_progs_of(pid):
    ids = bpf_prog_ids_of(pid)
    return [p for p in bpftool_progs() if p["id"] in ids] if ids else []


def prog_op_kind(prog_name, subject):
    """Which workload kind a program runs for, once per operation. bpftrace truncates
    program names (sched_process_e), so its programs take the subject's kind."""
    n = prog_name.lower()
    if n.startswith("vigil_") and n[6:] in ("exec", "fork", "exit"):
        return "exec"
    if "open" in n:
        return "open"
    return OBSERVES.get(role(subject))


# ---------------------------------------------------------------- workloads
def run_wl(args, timeout=600):
    """1-worker workloads run pinned to the last CPU (no cross-CPU wakeups of an idle vCPU,
    which on a VM dominate fork+wait); 2-worker workloads are not pinned."""
    pin = ["taskset", "-c", str(os.cpu_count() - 1)] if str(args[2]) == "1" and shutil.which("taskset") else []
    r = sh(pin + [WL] + [str(a) for a in args], timeout=timeout)
    return json.loads(r.stdout.strip().splitlines()[-1])


def workloads(quick):
    s = 1 if quick else 3
    return [  # name, kind, argv
        ("exec-1w", "exec", ["exec", 150 * s, 1, TRUE]),
        ("exec-2w", "exec", ["exec", 80 * s, 2, TRUE]),
        ("open-match", "open", ["open", 10000 * s, 1, WATCHED]),
        ("open-nomatch", "open", ["open", 10000 * s, 1, OTHER]),
        ("connect", "connect", ["connect", 2000 * s, 1]),
        ("syscall", "syscall", ["syscall", 200000 * s, 1]),
    ]


def expected_events(subject, kind, ops):
    obs = OBSERVES.get(role(subject), "")
    if kind == "exec" and "exec" in obs:
        # auditd's rule is on execve only: one record per exec; the others see exec + exit
        return ops if subject.startswith("auditd") else 2 * ops
    if kind == "open" and "open" in obs:
        return ops
    return None


def wait_drain(subj, off, kind, expected, timeout=10.0):
    """Wait until the subject's output holds the expected events or stops growing."""
    if expected is None or not subj.out_path:
        return
    t0, last, last_change = time.monotonic(), -1, time.monotonic()
    quiet = 3.0 if isinstance(subj, Bpftrace) else 1.5  # bpftrace writes lines up to ~1 s late
    while time.monotonic() - t0 < timeout:
        size = subj.offset()
        if size != last:
            last, last_change = size, time.monotonic()
            rec, _ = subj.count(subj.read_from(off), kind)
            if rec is not None and rec >= expected:
                return
            if rec is None:
                return
        elif time.monotonic() - last_change > quiet:
            return
        time.sleep(0.05)


class GrowthWatch(threading.Thread):
    """The monotonic time of the last growth of the subject's output (size polled every 10 ms:
    cheap, unlike parsing it)."""

    def __init__(self, subj):
        super().__init__(daemon=True)
        self.subj, self.stop_ev = subj, threading.Event()
        self.size, self.last = subj.offset(), time.monotonic()
        self.start()

    def run(self):
        while not self.stop_ev.wait(0.01):
            size = self.subj.offset()
            if size != self.size:
                self.size, self.last = size, time.monotonic()

    def stop(self):
        self.stop_ev.set()
        self.join()
        return self.last


def measure(subj, wl_name, kind, argv):
    """One sample: run the workload under the started subject."""
    off = subj.offset()
    lost0 = subj.lost_total()
    c0, s0 = subj.cpu(), subj.cpu_sched()
    growth = GrowthWatch(subj)
    t0 = time.monotonic()
    res = run_wl(argv)
    ops = res["ops"]
    exp = expected_events(subj.name, kind, ops)
    wait_drain(subj, off, kind, exp)
    # Workload start to the output's last growth (10 ms polling of its size): what the
    # subject delivered per second, not what the workload produced.
    delivered_s = growth.stop() - t0
    c1, s1 = subj.cpu(), subj.cpu_sched()
    rec, lost = subj.count(subj.read_from(off), kind) if subj.out_path else (None, None)
    lost1 = subj.lost_total()
    if lost1 is not None and lost0 is not None:
        lost = (lost or 0) + lost1 - lost0
    if exp is None:
        rec = None
    cpu = (c1 - c0) if (c0 is not None and c1 is not None) else None
    return {"ops": ops, "elapsed_ns": res["elapsed_ns"], "errors": res["errors"],
            "ops_per_sec": ops / (res["elapsed_ns"] / 1e9),
            "events_expected": exp, "events_received": rec, "events_lost": lost,
            "agent_cpu_s": cpu,
            "delivered_s": delivered_s if (exp and rec is not None and rec >= exp) else None,
            "agent_cpu_s_schedstat": (s1 - s0) if (s0 is not None and s1 is not None) else None}


# ---------------------------------------------------------------- latency
class Tailer(threading.Thread):
    """Stamps each complete line of a growing file with its arrival time (1 ms polling)."""

    def __init__(self, path, off):
        super().__init__(daemon=True)
        self.path, self.off, self.lines, self.stop_ev = path, off, [], threading.Event()

    def run(self):
        buf = b""
        with open(self.path, "rb") as f:
            f.seek(self.off)
            while not self.stop_ev.is_set():
                chunk = f.read()
                if chunk:
                    rt, mono = time.time_ns(), time.monotonic_ns()
                    buf += chunk
                    *done, buf = buf.split(b"\n")
                    self.lines += [(rt, mono, l.decode("utf-8", "replace")) for l in done]
                else:
                    time.sleep(0.001)


def parse_rfc3339_ns(s):
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", s)
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    frac = (m.group(2) or "0").ljust(9, "0")[:9]
    return int(base.timestamp()) * 10**9 + int(frac)


def latencies(subj, lines):
    out = []
    for rt, mono, line in lines:
        if isinstance(subj, Vigil):
            if TRUE in line and line.startswith(('{"process_exec"', '{"process_exit"')):
                try:
                    out.append((rt - parse_rfc3339_ns(json.loads(line)["time"])) / 1e6)
                except (ValueError, KeyError, AttributeError):
                    pass
        elif isinstance(subj, Bpftrace):
            f = line.split()
            if len(f) in (3, 4) and f[1] == "vbtrue":
                out.append((mono - int(f[-1])) / 1e6)
        elif isinstance(subj, Auditd):
            m = re.search(r"msg=audit\((\d+)\.(\d+):", line)
            if m and line.startswith("type=SYSCALL") and f'exe="{TRUE}"' in line:
                out.append((rt - (int(m.group(1)) * 10**9 + int(m.group(2)) * 10**6)) / 1e6)
    return out


# ---------------------------------------------------------------- main
def make_subject(name, vigil_bin, base_bin=None):
    if name == "none":
        return Subject("none")
    if name.startswith("vigil"):
        return Vigil(name, base_bin if name.endswith(BASE) else vigil_bin, VIGIL_POLICY.get(role(name)),
                     VIGIL_FLAGS.get(role(name), ()))
    if name.startswith("bpftrace"):
        return Bpftrace(name)
    return Auditd(name)


def availability(vigil_bin, base_bin=None):
    """name -> None if runnable, else the reason."""
    av = {}
    helps = {}
    for b in (vigil_bin, base_bin):
        if b and os.access(b, os.X_OK):
            helps[b] = sh([b, "agent", "--help"], check=False).stdout
    for s in SUBJECTS:
        reason = None
        if s.startswith("vigil"):
            binary = base_bin if s.endswith(BASE) else vigil_bin
            help_text = helps.get(binary, "")
            if not help_text:
                reason = f"vigil binary not runnable: {binary}"
            elif role(s) in VIGIL_POLICY and "--tracing-policy" not in help_text:
                reason = NA_POLICY
            elif any(f.startswith("--") and f not in help_text for f in VIGIL_FLAGS.get(role(s), [])):
                reason = "this vigil binary lacks " + " ".join(VIGIL_FLAGS[role(s)][::2])
        elif s.startswith("bpftrace") and not shutil.which("bpftrace"):
            reason = "bpftrace is not installed (apt-get install bpftrace failed?)"
        elif s.startswith("auditd") and not (shutil.which("auditd") and shutil.which("auditctl")):
            reason = "auditd is not installed (apt-get install auditd failed?)"
        av[s] = reason
    return av


def git(*a):
    return sh(["git", "-C", REPO] + list(a), check=False).stdout.strip()


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def setup(vigil_bin):
    os.makedirs(os.path.dirname(WATCHED), exist_ok=True)
    with open(WATCHED, "w") as f:
        f.write("x\n")
    shutil.copy("/usr/bin/true", TRUE)
    r = sh(["gcc", "-O2", "-static", "-o", WL, os.path.join(BENCH, "wl.c")], check=False)
    if r.returncode != 0:  # static libc missing: dynamic, still identical for every subject
        sh(["gcc", "-O2", "-o", WL, os.path.join(BENCH, "wl.c")])
    AUDIT_ORIG.update(audit_status())


def session(subj, wls, rows_raw, round_no, sessions):
    """Start subject, take RSS at rest, run each workload once, stop."""
    subj.start()
    cpu_rest = rest_cpu_pct([subj.pid] + subj.extra_cpu_pids, 0.5) if subj.pid else (time.sleep(0.5) or None)
    rest, _ = subj.mem()
    sess = {"subject": subj.name, "round": round_no, "startup_s": subj.startup_s,
            "ready_ms": subj.ready_ms, "rss_mb_rest": rest,
            "rss_anon_mb_rest": rss_anon_mb(subj.pid) if subj.pid else None,
            "cpu_pct_rest": cpu_rest}
    try:
        for name, kind, argv in wls:
            s = measure(subj, name, kind, argv)
            s.update(subject=subj.name, workload=name, round=round_no)
            rows_raw.append(s)
        sess["rss_mb_peak"] = subj.mem()[1]
    finally:
        subj.stop()
    sessions.append(sess)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--vigil-bin", default=os.environ.get("VIGIL_BIN"))
    ap.add_argument("--baseline-bin", default=os.environ.get("VIGIL_BASELINE_BIN"),
                    help="a second vigil binary: adds vigil-X@base beside each vigil-X subject")
    ap.add_argument("--only", help="comma-separated subjects (plus none); vigil-X also selects vigil-X@base")
    a = ap.parse_args()
    global SUBJECTS
    if a.baseline_bin:
        SUBJECTS = [x for s in SUBJECTS for x in ([s, s + BASE] if s.startswith("vigil") else [s])]
    rounds = a.rounds or (3 if a.quick else 5)
    t_start = time.monotonic()
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    setup(a.vigil_bin)
    avail = availability(a.vigil_bin, a.baseline_bin)
    if a.only:
        keep = set(a.only.split(",")) | {"none"}
        avail = {k: (v if role(k) in keep or k in keep else "excluded by --only") for k, v in avail.items()}
    failed = {}
    raw, sessions, bpf, bursts, lat = [], [], [], [], []
    wls = workloads(a.quick)
    bpf_stats_orig = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()

    def cleanup(*_):
        audit_reset()
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write(bpf_stats_orig)

    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(143)))
    try:
        runnable = [s for s in SUBJECTS if avail[s] is None]
        log(f"subjects: {runnable}; not run: { {k: v for k, v in avail.items() if v} }")
        # warm-up (page cache, binaries)
        for name, kind, argv in wls:
            run_wl(argv)
        for r in range(rounds):
            order = runnable[r % len(runnable):] + runnable[:r % len(runnable)]
            for name in order:
                if name in failed:
                    continue
                subj = make_subject(name, a.vigil_bin, a.baseline_bin)
                try:
                    session(subj, wls, raw, r, sessions)
                except (SubjectError, subprocess.SubprocessError, OSError, ValueError) as e:
                    failed[name] = f"failed: {e}"
                    log(f"{name}: {failed[name]}")
                    try:
                        subj.stop()
                    except Exception:
                        pass
            log(f"round {r + 1}/{rounds} done ({time.monotonic() - t_start:.0f} s)")

        # ---- bursts: 5,000 execs from two parallel loops; 100,000 opens
        burst_wls = [("burst-exec-5000", "exec", ["exec", 2500, 2, TRUE]),
                     ("burst-open-100000", "open", ["open", 100000, 1, OTHER])]
        for name in runnable:
            if name in failed or name == "none":
                continue
            for wname, kind, argv in burst_wls:
                if kind not in OBSERVES.get(role(name), ""):
                    continue
                if a.quick and not name.startswith("vigil") and kind == "exec":
                    continue  # quick: the exec burst only where it is an acceptance check
                if a.quick and name.startswith("auditd"):
                    continue
                subj = make_subject(name, a.vigil_bin, a.baseline_bin)
                try:
                    subj.start()
                    s = measure(subj, wname, kind, argv)
                    s.update(subject=name, workload=wname, round=0, rss_mb_peak=subj.mem()[1])
                    bursts.append(s)
                except (SubjectError, subprocess.SubprocessError, OSError) as e:
                    bursts.append({"subject": name, "workload": wname, "status": f"failed: {e}"})
                finally:
                    subj.stop()
        log(f"bursts done ({time.monotonic() - t_start:.0f} s)")

        # ---- latency: paced execs, lines stamped on arrival
        rate, secs = (100, 2) if a.quick else (200, 5)
        for name in ["vigil-lifecycle", "vigil-lifecycle" + BASE, "bpftrace-lifecycle-print",
                     "auditd-lifecycle"]:
            if name not in avail:
                continue
            if avail.get(name) or name in failed:
                continue
            subj = make_subject(name, a.vigil_bin, a.baseline_bin)
            try:
                subj.start()
                time.sleep(0.3)
                t = Tailer(subj.out_path, subj.offset())
                t.start()
                res = run_wl(["exec", rate * secs, 1, TRUE, rate])
                time.sleep(1.0 if name.startswith("vigil") else 3.0)
                t.stop_ev.set()
                t.join()
                ls = latencies(subj, t.lines)
                lat.append({"subject": name, "workload": f"exec-paced-{rate}/s", "ops": res["ops"],
                            "ops_per_sec": res["ops"] / (res["elapsed_ns"] / 1e9),
                            "latency_ms": ls,
                            "latency_p50_ms": pct(ls, 0.5), "latency_p99_ms": pct(ls, 0.99),
                            "events_expected": expected_events(name, "exec", res["ops"]),
                            "events_received": len(ls)})
            except (SubjectError, subprocess.SubprocessError, OSError) as e:
                lat.append({"subject": name, "workload": f"exec-paced-{rate}/s", "status": f"failed: {e}"})
            finally:
                subj.stop()
        log(f"latency done ({time.monotonic() - t_start:.0f} s)")

        # ---- in-kernel cost: separate pass with bpf_stats_enabled=1
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write("1")
        n_exec, n_open = (300, 50000) if a.quick else (1000, 200000)
        for name in runnable:
            if name in failed or not (name.startswith("vigil") or name.startswith("bpftrace")):
                continue
            subj = make_subject(name, a.vigil_bin, a.baseline_bin)
            try:
                subj.start()
                progs = bpf_progs_of(subj.pid)
                ids = {p["id"] for p in progs}
                for wname, kind, argv in [("exec-1w", "exec", ["exec", n_exec, 1, TRUE]),
                                          ("open-nomatch", "open", ["open", n_open, 1, OTHER])]:
                    before = {p["id"]: p for p in bpftool_progs() if p["id"] in ids}
                    res = run_wl(argv)
                    after = {p["id"]: p for p in bpftool_progs() if p["id"] in ids}
                    per = []
                    for i, p in after.items():
                        b = before.get(i, {})
                        dn = p.get("run_time_ns", 0) - b.get("run_time_ns", 0)
                        dc = p.get("run_cnt", 0) - b.get("run_cnt", 0)
                        per.append({"prog": p.get("name"), "id": i, "run_cnt": dc, "run_time_ns": dn,
                                    "ns_per_run": dn / dc if dc else None,
                                    "runs_per_op": 1 if prog_op_kind(p.get("name", ""), name) == kind else 0})
                    tot_n = sum(x["run_time_ns"] for x in per)
                    tot_c = sum(x["run_cnt"] for x in per)
                    per_op = sum(x["ns_per_run"] * x["runs_per_op"] for x in per if x["ns_per_run"])
                    bpf.append({"subject": name, "workload": wname, "ops": res["ops"],
                                "ops_per_sec": res["ops"] / (res["elapsed_ns"] / 1e9),
                                "programs": per,
                                "bpf_ns_per_run": tot_n / tot_c if tot_c else None,
                                "bpf_ns_per_op": per_op if any(x["runs_per_op"] for x in per) else 0.0,
                                "bpf_ns_total_per_op": tot_n / res["ops"]})
            except (SubjectError, subprocess.SubprocessError, OSError) as e:
                bpf.append({"subject": name, "workload": "bpf-stats", "status": f"failed: {e}"})
            finally:
                subj.stop()
        log(f"bpf stats pass done ({time.monotonic() - t_start:.0f} s)")
    finally:
        cleanup()
        for s in ("vigil", "bpftrace", "auditd"):
            pass

    doc = summarise(a, rounds, avail, failed, raw, sessions, bursts, lat, bpf, wls,
                    time.monotonic() - t_start)
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump(doc, f, indent=1)
    import report
    report.write(doc, RESULTS)
    log(f"done in {time.monotonic() - t_start:.0f} s: {RESULTS}/latest.{{json,md}}")


def spread(xs):
    return {"min": min(xs), "p25": pct(xs, 0.25), "median": statistics.median(xs),
            "p75": pct(xs, 0.75), "max": max(xs), "n": len(xs)} if xs else None


def summarise(a, rounds, avail, failed, raw, sessions, bursts, lat, bpf, wls, dur):
    rows = []
    none_by_round = {(s["workload"], s["round"]): s["ops_per_sec"] for s in raw if s["subject"] == "none"}
    bpf_by = {(b["subject"], b["workload"]): b for b in bpf if "status" not in b}

    def bpf_for(subject, wname, kind):
        own = "exec-1w" if "exec" in OBSERVES.get(role(subject), "") else "open-nomatch"
        b = bpf_by.get((subject, own))
        if b is None:
            return None, None
        # ns/run: the subject's programs on the workload they hook; ns/op: 0 when none of
        # its programs fires once per operation of this workload (e.g. lifecycle vs connect)
        op = b["bpf_ns_per_op"] if kind in OBSERVES.get(role(subject), "") else 0.0
        return b["bpf_ns_per_run"], op

    lat_by = {l["subject"]: l for l in lat if "status" not in l}
    for subject in SUBJECTS:
        reason = avail.get(subject) or failed.get(subject)
        sess = [s for s in sessions if s["subject"] == subject]
        for wname, kind, _ in wls + [("burst-exec-5000", "exec", None), ("burst-open-100000", "open", None)]:
            is_burst = wname.startswith("burst")
            base = {"case": f"{subject}/{wname}", "subject": subject, "workload": wname,
                    "status": "ok", "ops_per_sec": None, "ratio_vs_none": None, "ratio_spread": None,
                    "ops_per_sec_spread": None, "bpf_ns_per_run": None, "bpf_ns_per_op": None,
                    "agent_cpu_us_per_event": None, "agent_rss_mb_rest": None, "agent_rss_mb_peak": None,
                    "events_expected": None, "events_received": None, "events_lost": None,
                    "latency_p50_ms": None, "latency_p99_ms": None, "startup_s": None,
                    "ready_ms": None, "samples": []}
            if reason:
                if not is_burst or kind in OBSERVES.get(role(subject), ""):
                    rows.append(dict(base, status=reason))
                continue
            src = bursts if is_burst else raw
            smp = [s for s in src if s["subject"] == subject and s["workload"] == wname]
            if not smp:
                continue
            if any("status" in s for s in smp):
                rows.append(dict(base, status=smp[0]["status"]))
                continue
            ops = [s["ops_per_sec"] for s in smp]
            row = dict(base, samples=smp, ops_per_sec=statistics.median(ops), ops_per_sec_spread=spread(ops))
            if not is_burst:
                ratios = [s["ops_per_sec"] / none_by_round[(wname, s["round"])]
                          for s in smp if (wname, s["round"]) in none_by_round]
                if ratios:
                    row["ratio_vs_none"] = statistics.median(ratios)
                    row["ratio_spread"] = spread(ratios)
                # Time the subject adds to one operation, against `none` in the same round.
                added = [1e9 / s["ops_per_sec"] - 1e9 / none_by_round[(wname, s["round"])]
                         for s in smp if (wname, s["round"]) in none_by_round]
                row["ns_added_per_op"] = statistics.median(added) if added else None
            if subject != "none":
                row["bpf_ns_per_run"], row["bpf_ns_per_op"] = bpf_for(subject, wname, kind) \
                    if subject.startswith(("vigil", "bpftrace")) else (None, None)
                exp = [s["events_expected"] for s in smp]
                rec = [s["events_received"] for s in smp]
                lost = [s["events_lost"] for s in smp]
                row["events_expected"] = sum(exp) if all(e is not None for e in exp) else None
                row["events_received"] = sum(rec) if all(e is not None for e in rec) else None
                row["events_lost"] = sum(lost) if all(e is not None for e in lost) else None
                cpu = [s["agent_cpu_s"] for s in smp if s["agent_cpu_s"] is not None]
                denom = row["events_received"] if row["events_received"] is not None else row["events_expected"]
                if cpu and denom:
                    row["agent_cpu_us_per_event"] = sum(cpu) / denom * 1e6
                row["agent_cpu_s_total"] = sum(cpu) if cpu else None
                dl = [s.get("delivered_s") for s in smp]
                row["events_per_sec_delivered"] = (row["events_expected"] / sum(dl)) \
                    if (dl and all(d for d in dl) and row["events_expected"]) else None
                sc = [s["agent_cpu_s_schedstat"] for s in smp if s.get("agent_cpu_s_schedstat") is not None]
                row["agent_cpu_us_per_event_schedstat"] = sum(sc) / denom * 1e6 if (sc and denom) else None
                if sess:
                    rest = [s["rss_mb_rest"] for s in sess if s.get("rss_mb_rest") is not None]
                    peak = [s.get("rss_mb_peak") for s in sess if s.get("rss_mb_peak") is not None]
                    peak += [s.get("rss_mb_peak") for s in smp if s.get("rss_mb_peak") is not None]
                    row["agent_rss_mb_rest"] = statistics.median(rest) if rest else None
                    anon = [s["rss_anon_mb_rest"] for s in sess if s.get("rss_anon_mb_rest") is not None]
                    row["agent_rss_anon_mb_rest"] = statistics.median(anon) if anon else None
                    row["agent_rss_mb_peak"] = max(peak) if peak else None
                    st = [s["startup_s"] for s in sess if s["startup_s"] is not None]
                    row["startup_s"] = statistics.median(st) if st else None
                    cr = [s["cpu_pct_rest"] for s in sess if s.get("cpu_pct_rest") is not None]
                    row["agent_cpu_pct_rest"] = statistics.median(cr) if cr else None
                    rm = [s["ready_ms"] for s in sess if s.get("ready_ms") is not None]
                    row["ready_ms"] = statistics.median(rm) if rm else None
                if kind == "exec" and subject in lat_by and wname == "exec-1w":
                    row["latency_p50_ms"] = lat_by[subject]["latency_p50_ms"]
                    row["latency_p99_ms"] = lat_by[subject]["latency_p99_ms"]
            rows.append(row)
    return {
        "run": {"commit": git("rev-parse", "HEAD"), "commit_subject": git("log", "-1", "--format=%s"),
                "kernel": platform.release(), "cpu": cpu_model(), "ncpu": os.cpu_count(),
                "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "mode": "quick" if a.quick else "full", "rounds": rounds, "duration_s": round(dur, 1),
                "vigil_bin": a.vigil_bin, "baseline_bin": a.baseline_bin, "loadavg_end": open("/proc/loadavg").read().split()[:3],
                "bpftrace": sh(["bpftrace", "--version"], check=False).stdout.strip() if shutil.which("bpftrace") else None,
                "auditd": "auditd (Debian bookworm)" if shutil.which("auditd") else None,
                "workloads": [{"name": n, "kind": k, "argv": [str(x) for x in v]} for n, k, v in wls]},
        "subjects": {s: (avail.get(s) or failed.get(s) or "ok") for s in SUBJECTS},
        "results": rows,
        "sessions": sessions,
        "latency": lat,
        "bpf_stats": bpf,
    }


if __name__ == "__main__":
    sys.path.insert(0, BENCH)
    main()
