"""Writes latest.md and the PNG plots from the latest.json document (see bench.py)."""
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def f(v, fmt="{:.3g}"):
    if v is None:
        return "–"
    if isinstance(v, float):
        return fmt.format(v)
    return str(v)


def spread_txt(sp, scale=1.0, fmt="{:.3f}"):
    if not sp:
        return "–"
    return f"{fmt.format(sp['min'] * scale)}–{fmt.format(sp['max'] * scale)} (n={sp['n']})"


BASE = "@base"
PER_WORKLOAD = [("ratio_vs_none", "ratio vs none", "{:.3f}"), ("ns_added_per_op", "ns added per op", "{:.0f}"),
                ("agent_cpu_us_per_event_schedstat", "agent CPU µs/event (schedstat)", "{:.2f}"),
                ("events_per_sec_delivered", "events/s delivered", "{:.0f}")]
PER_SUBJECT = [("agent_rss_mb_rest", "RSS rest MB", "{:.1f}"), ("agent_rss_anon_mb_rest", "RssAnon rest MB", "{:.1f}"), ("agent_rss_mb_peak", "RSS peak MB", "{:.1f}"),
               ("ready_ms", "ready ms", "{:.0f}")]


def baseline_table(doc):
    """vigil-X (this build) against vigil-X@base (--baseline-bin), measured in the same rounds."""
    run, rows = doc["run"], doc["results"]
    L = ["## This build against the baseline binary\n",
         f"`vigil-X` = `{run['vigil_bin']}`, `vigil-X@base` = `{run['baseline_bin']}`, interleaved in the "
         "same rounds. new/base: for ratio vs none and events/s higher is better; for the others lower is.\n",
         "| subject | workload | figure | base | new | new/base |", "|---|---|---|---|---|---|"]

    def line(subject, wl, label, fmt, b, n):
        if b is not None and n is not None:
            L.append(f"| {subject} | {wl} | {label} | {f(float(b), fmt)} | {f(float(n), fmt)} "
                     f"| {f(n / b, '{:.3f}') if b else '–'} |")

    by = {(r["subject"], r["workload"]): r for r in rows if r["status"] == "ok"}
    bpf = {(b["subject"], b["workload"]): b for b in doc["bpf_stats"] if "status" not in b}
    subjects = sorted({s[:-len(BASE)] for s, _ in by if s.endswith(BASE)})
    for s in subjects:
        for (subject, wl), base in by.items():
            if subject == s + BASE and (s, wl) in by:
                for key, label, fmt in PER_WORKLOAD:
                    line(s, wl, label, fmt, base.get(key), by[(s, wl)].get(key))
        first = next(((b, by[(s, w)]) for (x, w), b in by.items() if x == s + BASE and (s, w) in by), None)
        if first:
            for key, label, fmt in PER_SUBJECT:
                line(s, "(subject)", label, fmt, first[0].get(key), first[1].get(key))
        for wl in ("exec-1w", "open-nomatch"):
            b, n = bpf.get((s + BASE, wl)), bpf.get((s, wl))
            if b and n:
                line(s, wl, "in-kernel ns/op (bpf_stats pass)", "{:.0f}", b["bpf_ns_per_op"], n["bpf_ns_per_op"])
                line(s, wl, "in-kernel ns/op, all its programs", "{:.0f}", b["bpf_ns_total_per_op"],
                     n["bpf_ns_total_per_op"])
    L.append("")
    return L


def write(doc, outdir):
    run = doc["run"]
    rows = doc["results"]
    L = []
    L.append(f"# vigil benchmark results ({run['mode']} run)\n")
    L.append(f"- date: {run['date']}; commit `{run['commit'][:12]}` ({run['commit_subject']})")
    L.append(f"- machine: {run['cpu']}, {run['ncpu']} CPUs, {run['mem_gb']} GiB, kernel {run['kernel']}; "
             f"load average at the end {' '.join(run['loadavg_end'])}")
    L.append(f"- peers: {run['bpftrace']}; {run['auditd']}")
    L.append(f"- {run['rounds']} interleaved rounds (subject order rotated each round), run took {run['duration_s']} s")
    L.append("- workloads: " + "; ".join(f"`{w['name']}` = wl {' '.join(w['argv'])}" for w in run["workloads"]))
    L.append("")
    L.append("## Subjects\n")
    L.append("| subject | status |\n|---|---|")
    for s, st in doc["subjects"].items():
        L.append(f"| {s} | {st} |")
    L.append("")

    if run.get("baseline_bin"):
        L += baseline_table(doc)
    L.append("## Throughput and overhead (interleaved rounds)\n")
    L.append("ratio = median over rounds of (ops/s with the subject) / (ops/s of `none` in the same round); "
             "spread = min–max of those per-round ratios. Higher is better; 1.00 = no slowdown.\n")
    wls = [w["name"] for w in run["workloads"]]
    for w in wls:
        L.append(f"### {w}\n")
        L.append("| subject | ops/s (median) | ratio vs none | ratio spread | ns added/op | in-kernel ns/run | in-kernel ns/op "
                 "| agent CPU µs/event (stat) | (schedstat) | events exp/recv/lost |\n|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            if r["workload"] != w:
                continue
            if r["status"] != "ok":
                L.append(f"| {r['subject']} | {r['status']} | | | | | | | | |")
                continue
            ev = "/".join(f(r[k]) for k in ("events_expected", "events_received", "events_lost"))
            L.append(f"| {r['subject']} | {f(r['ops_per_sec'], '{:.0f}')} | {f(r['ratio_vs_none'], '{:.3f}')} "
                     f"| {spread_txt(r['ratio_spread'])} | {f(r.get('ns_added_per_op'), '{:.0f}')} "
                     f"| {f(r['bpf_ns_per_run'], '{:.0f}')} "
                     f"| {f(r['bpf_ns_per_op'], '{:.0f}')} | {f(r['agent_cpu_us_per_event'], '{:.2f}')} "
                     f"| {f(r.get('agent_cpu_us_per_event_schedstat'), '{:.2f}')} | {ev} |")
        L.append("")

    L.append("## Agent footprint\n")
    L.append("RSS at rest = VmRSS 0.5 s after ready (median of sessions); CPU at rest = schedstat over those 0.5 s; peak = highest VmHWM seen. "
             "Startup = wall time from spawn to ready (vigil: the `ready` log line; bpftrace: its programs loaded; "
             "auditd: daemon registered and rules loaded). auditd CPU includes the kauditd kernel thread.\n")
    L.append("| subject | RSS rest MB | RssAnon rest MB | RSS peak MB | CPU % at rest | startup s | vigil ready_ms |\n|---|---|---|---|---|---|---|")
    for r in rows:
        if r["workload"] == wls[0] and r["subject"] != "none" and r["status"] == "ok":
            L.append(f"| {r['subject']} | {f(r['agent_rss_mb_rest'], '{:.1f}')} "
                     f"| {f(r.get('agent_rss_anon_mb_rest'), '{:.1f}')} | {f(r['agent_rss_mb_peak'], '{:.1f}')} "
                     f"| {f(r.get('agent_cpu_pct_rest'), '{:.2f}')} | {f(r['startup_s'], '{:.3f}')} | {f(r['ready_ms'])} |")
    L.append("")

    L.append("## Bursts\n")
    L.append("events/s delivered = expected events / (workload start to the last growth of the output file, 10 ms polling), counted only when every expected event arrived.\n")
    L.append("| subject | burst | ops/s | events expected | received | lost | events/s delivered | agent CPU µs/event (stat) | (schedstat) | RSS peak MB |\n"
             "|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["workload"].startswith("burst"):
            if r["status"] != "ok":
                L.append(f"| {r['subject']} | {r['workload']} | {r['status']} | | | | | | |")
            else:
                L.append(f"| {r['subject']} | {r['workload']} | {f(r['ops_per_sec'], '{:.0f}')} | {f(r['events_expected'])} "
                         f"| {f(r['events_received'])} | {f(r['events_lost'])} | {f(r.get('events_per_sec_delivered'), '{:.0f}')} "
                         f"| {f(r['agent_cpu_us_per_event'], '{:.2f}')} "
                         f"| {f(r.get('agent_cpu_us_per_event_schedstat'), '{:.2f}')} | {f(r['agent_rss_mb_peak'], '{:.1f}')} |")
    L.append("")

    L.append("## Time from the kernel event to the line in the output file\n")
    L.append("Paced execs; each line is stamped when a 1 ms polling reader sees it (so ~1 ms resolution). "
             "vigil: event `time` (kernel boot time converted to wall clock) vs arrival; bpftrace: `nsecs` vs "
             "CLOCK_MONOTONIC at arrival; auditd: record time (ms) vs arrival.\n")
    L.append("| subject | workload | events exp/recv | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|")
    for l in doc["latency"]:
        if "status" in l:
            L.append(f"| {l['subject']} | {l['workload']} | {l['status']} | | | |")
        else:
            mx = max(l["latency_ms"]) if l["latency_ms"] else None
            L.append(f"| {l['subject']} | {l['workload']} | {f(l['events_expected'])}/{f(l['events_received'])} "
                     f"| {f(l['latency_p50_ms'], '{:.2f}')} | {f(l['latency_p99_ms'], '{:.2f}')} | {f(mx, '{:.2f}')} |")
    L.append("")

    L.append("## In-kernel cost per program (separate pass, kernel.bpf_stats_enabled=1)\n")
    L.append("ns/run = Δrun_time_ns / Δrun_cnt of each program over the workload (all processes on the host "
             "count, so run_cnt can exceed ops). ns/op = Σ ns/run of the programs that fire once per operation "
             "(exec workload: exec+fork+exit; open workload: openat).\n")
    L.append("| subject | workload | program | runs | ns/run | ns/op (subject) |\n|---|---|---|---|---|---|")
    for b in doc["bpf_stats"]:
        if "status" in b:
            L.append(f"| {b['subject']} | | {b['status']} | | | |")
            continue
        for p in b["programs"]:
            L.append(f"| {b['subject']} | {b['workload']} | {p['prog']} | {p['run_cnt']} "
                     f"| {f(p['ns_per_run'], '{:.0f}')} | {f(b['bpf_ns_per_op'], '{:.0f}')} |")
    L.append("")
    L.append("Plots: `ratio.png` (slowdown per workload), `cpu_per_event.png`, `rss.png`, `bpf_ns.png`.\n")
    with open(os.path.join(outdir, "latest.md"), "w") as fh:
        fh.write("\n".join(L))
    plots(doc, outdir)


def colours(subjects):
    cmap = plt.get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(subjects)}


def plots(doc, outdir):
    rows = [r for r in doc["results"] if r["status"] == "ok"]
    subjects = [s for s in doc["subjects"] if any(r["subject"] == s for r in rows)]
    col = colours(subjects)
    wls = [w["name"] for w in doc["run"]["workloads"]]
    title = f"{doc['run']['cpu']}, {doc['run']['ncpu']} CPUs, kernel {doc['run']['kernel']} ({doc['run']['mode']})"

    # 1. ratio vs none, grouped bars with min-max whiskers
    fig, ax = plt.subplots(figsize=(12, 5.5))
    width = 0.8 / max(1, len(subjects))
    for i, s in enumerate(subjects):
        xs, ys, lo, hi = [], [], [], []
        for j, w in enumerate(wls):
            r = next((r for r in rows if r["subject"] == s and r["workload"] == w), None)
            if r and r["ratio_vs_none"] is not None:
                xs.append(j + (i - len(subjects) / 2 + 0.5) * width)
                ys.append(r["ratio_vs_none"])
                lo.append(r["ratio_vs_none"] - r["ratio_spread"]["min"])
                hi.append(r["ratio_spread"]["max"] - r["ratio_vs_none"])
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, color=col[s], label=s)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(range(len(wls)), wls)
    ax.set_xlabel("workload")
    ax.set_ylabel("throughput relative to no observer (ratio, 1 = no slowdown)")
    ax.set_title("Workload throughput under each subject (median, whiskers min–max)\n" + title, fontsize=10)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "ratio.png"), dpi=110)
    plt.close(fig)

    # 2. agent CPU per event (log)
    fig, ax = plt.subplots(figsize=(10, 5))
    names, vals, cs = [], [], []
    for r in rows:
        if r["subject"] != "none" and r["agent_cpu_us_per_event"] and r["events_expected"]:
            names.append(f"{r['subject']}\n{r['workload']}")
            vals.append(r["agent_cpu_us_per_event"])
            cs.append(col[r["subject"]])
    ax.barh(names, vals, color=cs)
    ax.set_xscale("log")
    ax.set_xlabel("agent user+system CPU per event (µs, log scale)")
    ax.set_ylabel("subject / workload")
    ax.set_title("Observer CPU per event (/proc/<pid>/stat utime+stime)\n" + title, fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "cpu_per_event.png"), dpi=110)
    plt.close(fig)

    # 3. RSS rest / peak
    fig, ax = plt.subplots(figsize=(10, 4.5))
    subs = [s for s in subjects if s != "none"]
    for i, s in enumerate(subs):
        r = next((r for r in rows if r["subject"] == s and r["workload"] == wls[0]), None)
        if not r:
            continue
        ax.bar(i - 0.2, r["agent_rss_mb_rest"] or 0, 0.4, color=col[s], label=s)
        ax.bar(i + 0.2, r["agent_rss_mb_peak"] or 0, 0.4, color=col[s], alpha=0.5, hatch="//")
    ax.set_xticks(range(len(subs)), subs, rotation=20, fontsize=8)
    ax.set_xlabel("subject (solid: at rest, hatched: peak VmHWM)")
    ax.set_ylabel("resident memory (MB)")
    ax.set_title("Observer memory\n" + title, fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "rss.png"), dpi=110)
    plt.close(fig)

    # 4. in-kernel ns per op
    fig, ax = plt.subplots(figsize=(10, 4.5))
    bs = [b for b in doc["bpf_stats"] if "status" not in b]
    labels = [f"{b['subject']}\n{b['workload']}" for b in bs]
    ax.barh(labels, [b["bpf_ns_per_op"] or 0 for b in bs], color=[col.get(b["subject"], "grey") for b in bs])
    ax.set_xlabel("in-kernel BPF time per operation (ns; exec op = exec+fork+exit programs)")
    ax.set_ylabel("subject / workload")
    ax.set_title("In-kernel cost (kernel.bpf_stats_enabled)\n" + title, fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "bpf_ns.png"), dpi=110)
    plt.close(fig)
