#!/usr/bin/env python3
"""gRPC API benchmark (issue 6): what GetEvents clients cost the JSON file sink.

Scenarios, run side by side in one invocation and interleaved (the order rotates each
round; each scenario gets a fresh agent):

  file-only         the agent exports to a file, no gRPC client
  file+1-stream     plus one `vigil getevents -o json` client receiving every event
  file+10-filtered  plus ten clients whose filter (--process) matches none of the burst
  file+10-matching  plus ten clients whose filter matches every event of the burst

The burst: `wl open N 1 PATH` (bench/wl.c), N open+close of one file that an openat policy
posts (one process_kprobe event per open). Throughput of a sink = events it received /
(arrival of its last burst event - burst start), files followed every 5 ms. The ring buffer is large and
each client's queue holds the whole burst, so no sink drops by design; lost events and
client disconnects are still counted and reported.

usage: sudo bench/run-api [--events N] [--rounds R]   (VIGIL_BIN: the agent binary)
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
WORK = "/tmp/vigil-bench-api"
WL = os.path.join(WORK, "wl")
WATCHED = os.path.join(WORK, "watched")
SCENARIOS = ["file-only", "file+1-stream", "file+10-filtered", "file+10-matching"]
MARK = b'"policy_name":"bench-api"'

POLICY = """apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: bench-api
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: "string"
    selectors:
    - matchArgs:
      - index: 1
        operator: "Equal"
        values: ["%s"]
""" % WATCHED


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_agent(vigil, tag):
    d = os.path.join(WORK, tag)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    sock = os.path.join(d, "vigil.sock")
    log = open(os.path.join(d, "agent.log"), "w")
    p = subprocess.Popen(
        [vigil, "agent", "--export-filename", os.path.join(d, "events.json"),
         "--export-file-max-size-mb=100000", "--state-dir", d,
         f"--server-address=unix://{sock}", "--health-server-address=",
         "--rb-size-total", "256M", "--grpc-client-buffer", "10000000",
         "--tracing-policy", os.path.join(WORK, "policy.yaml")],
        stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 30
    while "vigil agent ready" not in open(log.name).read():
        if p.poll() is not None or time.time() > deadline:
            sys.exit("agent did not start:\n" + open(log.name).read())
        time.sleep(0.05)
    return p, d, sock


def start_clients(vigil, d, sock, scenario):
    n, regex = {"file-only": (0, None), "file+1-stream": (1, None),
                "file+10-filtered": (10, "no-such-binary$"),
                "file+10-matching": (10, "/wl$")}[scenario]
    clients = []
    for i in range(n):
        out = os.path.join(d, f"client{i}.json")
        args = [vigil, "getevents", "-o", "json", "--server-address", f"unix://{sock}"]
        if regex:
            args += ["--process", regex]
        clients.append((subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=open(out, "wb"),
                                         stderr=open(out + ".err", "wb")), out))
    time.sleep(1.0)  # connected and subscribed
    return clients


class Tail:
    """Counts the burst's events in a growing file, reading only what was appended since the
    last poll (the file also gets every other process event of the host, so its size alone
    does not say when the burst's last event arrived)."""

    def __init__(self, path):
        self.path, self.offset, self.count, self.carry = path, 0, 0, b""

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                new = f.read()
        except FileNotFoundError:
            return False
        if not new:
            return False
        self.offset += len(new)
        # whole lines only: a line still being written is counted with the next read
        data = self.carry + new
        cut = data.rfind(b"\n") + 1
        self.count += data[:cut].count(MARK)
        self.carry = data[cut:]
        return True


def wait_sinks(paths, t0, burst, expected, quiet=2.0):
    """Follows each file while the burst runs and until each holds `expected` burst events
    or, after the burst, has had none for `quiet` s. Returns (count, seconds from t0 to the
    arrival of its last burst event) per path."""
    tails = {p: Tail(p) for p in paths}
    last = {p: (0, t0) for p in paths}
    while True:
        now = time.time()
        for p, t in tails.items():
            if t.count < expected and t.poll() and t.count != last[p][0]:
                last[p] = (t.count, now)
        if burst.poll() is not None and all(
                c >= expected or now - at >= quiet for c, at in last.values()):
            return {p: (c, at - t0) for p, (c, at) in last.items()}
        time.sleep(0.005)


def run_one(vigil, scenario, n, rnd):
    agent, d, sock = start_agent(vigil, f"{scenario}-{rnd}")
    clients = start_clients(vigil, d, sock, scenario)
    cpu0 = cpu_seconds(agent.pid)
    t0 = time.time()
    wl = subprocess.Popen([WL, "open", str(n), "1", WATCHED], stdout=subprocess.PIPE, text=True)
    paths = [os.path.join(d, "events.json")]
    if scenario in ("file+1-stream", "file+10-matching"):
        paths += [c[1] for c in clients]
    got = wait_sinks(paths, t0, wl, n)
    wl_res = json.loads(wl.stdout.read())
    cpu = cpu_seconds(agent.pid) - cpu0
    dropped = 0
    for c, out in clients:
        if c.poll() is not None:
            dropped += 1
        c.send_signal(signal.SIGTERM)
        c.wait()
    agent.send_signal(signal.SIGTERM)
    agent.wait()
    file_n, file_s = got[paths[0]]
    lost = 0
    with open(paths[0], "rb") as f:
        for line in f:
            if b'"events_lost"' in line:
                lost += int(json.loads(line)["events_lost"].get("count", 0))
    row = {"scenario": scenario, "round": rnd, "events": n,
           "burst_s": wl_res["elapsed_ns"] / 1e9,
           "file_received": file_n, "file_events_per_s": file_n / file_s if file_s else 0,
           "agent_cpu_s": cpu, "agent_cpu_us_per_event": cpu / n * 1e6,
           "clients_disconnected": dropped, "events_lost": lost}
    shutil.rmtree(d, ignore_errors=True)
    streams = [got[p] for p in paths[1:]]
    if streams:
        row["stream_received_min"] = min(c for c, _ in streams)
        row["stream_events_per_s_min"] = min(c / s if s else 0 for c, s in streams)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    vigil = os.environ.get("VIGIL_BIN") or sys.exit("VIGIL_BIN not set")
    os.makedirs(WORK, exist_ok=True)
    with open(os.path.join(WORK, "policy.yaml"), "w") as f:
        f.write(POLICY)
    with open(WATCHED, "w") as f:
        f.write("x\n")
    subprocess.run(["gcc", "-O2", "-o", WL, os.path.join(BENCH, "wl.c")], check=True)
    rows = []
    for rnd in range(a.rounds):
        order = SCENARIOS[rnd % len(SCENARIOS):] + SCENARIOS[:rnd % len(SCENARIOS)]
        for s in order:
            r = run_one(vigil, s, a.events, rnd)
            print(json.dumps(r), flush=True)
            rows.append(r)
    res = os.path.join(BENCH, "results")
    os.makedirs(res, exist_ok=True)
    with open(os.path.join(res, "api.json"), "w") as f:
        json.dump(rows, f, indent=1)
    base = statistics.median(r["file_events_per_s"] for r in rows if r["scenario"] == "file-only")
    cpu_base = statistics.median(r["agent_cpu_us_per_event"] for r in rows
                                 if r["scenario"] == "file-only")
    lines = ["| scenario | file events/s (median) | vs file-only | slowest stream events/s "
             "(median) | received file / slowest stream | agent CPU µs/event (median) "
             "| vs file-only | clients dropped |",
             "|---|---|---|---|---|---|---|---|"]
    for s in SCENARIOS:
        rs = [r for r in rows if r["scenario"] == s]
        fe = statistics.median(r["file_events_per_s"] for r in rs)
        se = [r["stream_events_per_s_min"] for r in rs if "stream_events_per_s_min" in r]
        recv = f'{min(r["file_received"] for r in rs)}'
        if se:
            recv += f' / {min(r["stream_received_min"] for r in rs)}'
        lines.append(
            f'| {s} | {fe:,.0f} | {fe / base:.3f}x | '
            f'{f"{statistics.median(se):,.0f}" if se else "-"} | {recv} of {a.events} | '
            f'{statistics.median(r["agent_cpu_us_per_event"] for r in rs):.1f} | '
            f'{statistics.median(r["agent_cpu_us_per_event"] for r in rs) / cpu_base:.2f}x | '
            f'{sum(r["clients_disconnected"] for r in rs)} |')
    table = "\n".join(lines)
    with open(os.path.join(res, "api.md"), "w") as f:
        f.write(f"# gRPC API benchmark ({a.rounds} rounds, {a.events} events per burst)\n\n"
                + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
