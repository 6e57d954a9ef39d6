#!/usr/bin/env python3
"""Prints each performance goal of the issues, the measured figure and pass/fail, and
sanity-checks the data (informative, not a CI gate).   usage: bench/goals.py [latest.json]"""
import json
import os
import sys

path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                           "results", "latest.json")
doc = json.load(open(path))
rows = {(r["subject"], r["workload"]): r for r in doc["results"]}
lat = {l["subject"]: l for l in doc["latency"] if "status" not in l}


def get(subject, workload, key):
    r = rows.get((subject, workload))
    return None if r is None or r["status"] != "ok" else r.get(key)


V = "vigil-lifecycle"
goals = [
    # (issue, goal, figure, unit, limit, higher_is_better)
    ("#2", "fork+exec+wait wall time ratio (1 worker), with/without agent",
     (lambda x: None if x is None else 1 / x)(get(V, "exec-1w", "ratio_vs_none")), "x", 1.03, False),
    ("#2", "fork+exec+wait wall time ratio (2 workers)",
     (lambda x: None if x is None else 1 / x)(get(V, "exec-2w", "ratio_vs_none")), "x", 1.03, False),
    ("#2", "in-kernel exec+fork+exit per process", (lambda x: None if x is None else x / 1000)(
        get(V, "exec-1w", "bpf_ns_per_op")), "µs", 5.0, False),
    ("#2", "agent CPU per exec event (exec-1w)", get(V, "exec-1w", "agent_cpu_us_per_event"), "µs", 20.0, False),
    ("#2", "agent CPU per event in the 5,000-exec burst", get(V, "burst-exec-5000", "agent_cpu_us_per_event"),
     "µs", 20.0, False),
    ("#2", "resting RSS", get(V, "exec-1w", "agent_rss_mb_rest"), "MB", 30.0, False),
    ("#2", "start-to-ready (wall, spawn to ready line)", get(V, "exec-1w", "startup_s"), "s", 0.5, False),
    ("#2", "5,000-exec burst: events lost", get(V, "burst-exec-5000", "events_lost"), "", 0, False),
    ("#2", "5,000-exec burst: exec+exit events missing",
     (lambda r: None if r is None or r["status"] != "ok" or r["events_received"] is None else
      max(0, r["events_expected"] - r["events_received"]))(rows.get((V, "burst-exec-5000"))), "", 0, False),
    ("perf.md §10", "time to event p99 at 100-200 exec/s", lat.get(V, {}).get("latency_p99_ms"), "ms", 10.0, False),
    ("perf.md §10", "time to event p50", lat.get(V, {}).get("latency_p50_ms"), "ms", 1.0, False),
    ("perf.md §10", "peak RSS", get(V, "exec-1w", "agent_rss_mb_peak"), "MB", 64.0, False),
    ("perf.md §10", "open+close, openat policy matching nothing: slowdown",
     (lambda x: None if x is None else 1 / x)(get("vigil-openat-nomatch", "open-nomatch", "ratio_vs_none")),
     "x", 1.03, False),
    ("perf.md §10", "open+close, every open posted: slowdown",
     (lambda x: None if x is None else 1 / x)(get("vigil-openat-all", "open-nomatch", "ratio_vs_none")),
     "x", 1.25, False),
]
print(f"run: {doc['run']['date']} commit {doc['run']['commit'][:12]} ({doc['run']['mode']}, "
      f"{doc['run']['rounds']} rounds) on {doc['run']['cpu']}, {doc['run']['ncpu']} CPUs, kernel {doc['run']['kernel']}")
print(f"{'source':<12} {'goal':<62} {'figure':>10} {'limit':>8}  result")
for src, name, val, unit, limit, _ in goals:
    if val is None:
        res, vs = "n/a", "–"
    else:
        res = "PASS" if val <= limit else "FAIL"
        vs = f"{val:.3f}{unit}" if isinstance(val, float) else f"{val}{unit}"
    print(f"{src:<12} {name:<62} {vs:>10} {str(limit) + unit:>8}  {res}")

print("\nsanity checks:")
problems = 0


def check(ok, msg):
    global problems
    problems += 0 if ok else 1
    print(f"  {'ok  ' if ok else 'FAIL'} {msg}")


for r in doc["results"]:
    if r["subject"] == "none" and r["status"] == "ok" and r["ratio_vs_none"] is not None:
        check(abs(r["ratio_vs_none"] - 1) < 1e-9, f"none/{r['workload']} ratio is 1 ({r['ratio_vs_none']})")
for r in doc["results"]:
    if r["subject"].startswith("vigil") and r["status"] == "ok" and r["events_expected"] is not None:
        check(r["events_received"] is not None and r["events_received"] >= r["events_expected"],
              f"{r['case']}: received {r['events_received']} >= expected {r['events_expected']}")
for r in doc["results"]:
    if r["subject"].startswith(("vigil", "bpftrace")) and r["status"] == "ok" and \
            r["workload"] in ("exec-1w", "open-nomatch"):
        check(r["bpf_ns_per_run"] is not None and r["bpf_ns_per_op"] is not None,
              f"{r['case']}: kernel cost present ({r['bpf_ns_per_run']} ns/run, {r['bpf_ns_per_op']} ns/op)")
na = [s for s, st in doc["subjects"].items() if st != "ok"]
for s in na:
    print(f"  note {s}: {doc['subjects'][s]}")
print(f"\n{problems} sanity problem(s)")
