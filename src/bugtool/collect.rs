//! The parts of the archive. Each collector returns its text or why it has none; a failed
//! part is a line in `summary.txt`, never the end of the run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use vigil_proto::tetragon::*;

use super::redact::Redactor;
use super::{BugtoolArgs, Part};
use crate::kernel_probe;
use crate::remote::debug::{agent_pid, held_ids, map_rows, prog_rows};

/// Bytes read from the end of a log file.
const LOG_TAIL_BYTES: u64 = 1 << 20;
const MAX_LOG_LINES: usize = 10_000;
/// Entries listed under the pin directory.
const MAX_PINNED: usize = 2_000;
const PIN_DIR: &str = "/sys/fs/bpf/vigil";
/// Binaries named in the process-cache summary.
const TOP_BINARIES: usize = 25;

/// What the running agent told us, when one answered.
struct AgentView {
    pid: Option<u32>,
    flags: Vec<(String, String)>,
}

pub fn all(args: &BugtoolArgs) -> Vec<Part> {
    let address = if args.client.server_address.is_empty() {
        vigil_api::client::DEFAULT_SERVER_ADDRESS.to_string()
    } else {
        args.client.server_address.clone()
    };
    let pid = agent_pid(&address);
    let mut environments = vec![std::fs::read("/proc/self/environ").unwrap_or_default()];
    if let Ok(pid) = &pid {
        // Read only to scrub its values from the archive, never written.
        environments.push(std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default());
    }
    let redactor = Redactor::new(&environments);
    let mut summary = format!(
        "vigil bugtool {} at unix time {}\nagent address: {address}\n",
        env!("CARGO_PKG_VERSION"),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    let header_len = summary.len();
    let mut parts = Vec::new();
    let mut add = |name: &'static str, text: Result<String>, summary: &mut String| match text {
        Ok(t) => {
            let _ = writeln!(summary, "{name}: collected");
            parts.push(Part {
                name,
                text: redactor.apply(&t),
            });
        }
        Err(e) => {
            let _ = writeln!(
                summary,
                "{name}: not collected: {}",
                redactor.apply(&format!("{e:#}"))
            );
        }
    };

    // The agent's parts go first in the summary, after the line saying whether it runs.
    let agent = match crate::remote::runtime().and_then(|rt| {
        rt.block_on(from_agent(
            args,
            pid.as_ref().ok().copied(),
            &mut |n, t, s| add(n, t, s),
            &mut summary,
        ))
    }) {
        Ok(view) => {
            let pid = view.pid.map_or("unknown".into(), |p| p.to_string());
            summary.insert_str(header_len, &format!("agent: running, pid {pid}\n"));
            Some(view)
        }
        Err(e) => {
            let why = match &pid {
                Err(p) => format!("{e:#}; {p:#}"),
                Ok(_) => format!("{e:#}"),
            };
            summary.insert_str(
                header_len,
                &format!(
                    "agent: NOT RUNNING or not answering at {address}: {}\n\
                     (agent flags, policies and process cache are missing; the rest was collected)\n",
                    redactor.apply(&why)
                ),
            );
            None
        }
    };
    add("version.txt", Ok(version()), &mut summary);
    add("kernel.txt", Ok(kernel()), &mut summary);
    let facts = kernel_probe::KernelFacts::read();
    let features = kernel_probe::probe_all(&facts);
    add(
        "probe.txt",
        Ok(kernel_probe::report_text(&facts, &features)),
        &mut summary,
    );
    add(
        "probe.json",
        serde_json::to_string_pretty(&kernel_probe::report_json(&facts, &features))
            .map_err(Into::into),
        &mut summary,
    );
    let agent_pid = agent.as_ref().and_then(|a| a.pid);
    add("bpf.txt", bpf_objects(agent_pid), &mut summary);
    let lines = args.log_lines.min(MAX_LOG_LINES);
    add(
        "agent-log.txt",
        agent_log(agent.as_ref(), lines),
        &mut summary,
    );
    parts.insert(
        0,
        Part {
            name: "summary.txt",
            text: redactor.apply(&summary),
        },
    );
    parts
}

/// Flags, policies and the process-cache summary, over the agent's gRPC API.
async fn from_agent(
    args: &BugtoolArgs,
    pid: Option<u32>,
    add: &mut dyn FnMut(&'static str, Result<String>, &mut String),
    summary: &mut String,
) -> Result<AgentView> {
    let mut c = crate::remote::client(&args.client).await?;
    let version = c
        .get_version(GetVersionRequest {})
        .await
        .map_err(crate::remote::status_error)?
        .into_inner()
        .version;
    let info = c
        .get_info(GetInfoRequest {})
        .await
        .map_err(crate::remote::status_error)
        .map(tonic::Response::into_inner);
    let flags: Vec<(String, String)> = info
        .as_ref()
        .map(|i| {
            i.conf
                .iter()
                .map(|cv| {
                    let value = cv
                        .value
                        .as_ref()
                        .and_then(|any| {
                            prost::Message::decode(&any.value[..])
                                .ok()
                                .map(|s: vigil_proto::pbjson_types::StringValue| s.value)
                        })
                        .unwrap_or_default();
                    (cv.key.clone(), value)
                })
                .collect()
        })
        .unwrap_or_default();
    let pid_text = pid.map_or("unknown (not on a unix socket)".into(), |p| p.to_string());
    let mut text = format!("agent version: {version}\nagent pid: {pid_text}\n\nflags:\n");
    for (k, v) in &flags {
        let _ = writeln!(text, "  --{k}={v}");
    }
    add(
        "agent.txt",
        info.map(|_| text).map_err(|e| anyhow!("GetInfo: {e:#}")),
        summary,
    );
    let policies = c
        .list_tracing_policies(ListTracingPoliciesRequest {
            domain: String::new(),
        })
        .await
        .map_err(crate::remote::status_error)
        .map(tonic::Response::into_inner);
    let policies = policies.and_then(|r| {
        Ok(format!(
            "{}\n{}\n",
            vigil_api::table::policies(&r.policies),
            serde_json::to_string_pretty(&r)?
        ))
    });
    add("policies.txt", policies, summary);
    let cache = c
        .get_debug(GetDebugRequest {
            flag: ConfigFlag::DumpProcessCache as i32,
            arg: Some(get_debug_request::Arg::Dump(DumpProcessCacheReqArgs {
                skip_zero_refcnt: false,
                exclude_execve_map_processes: false,
            })),
        })
        .await
        .map_err(crate::remote::status_error)
        .and_then(|r| match r.into_inner().arg {
            Some(get_debug_response::Arg::Processes(p)) => Ok(cache_summary(&p.processes)),
            _ => Err(anyhow!("the agent answered without a process list")),
        });
    add("process-cache.txt", cache, summary);
    Ok(AgentView { pid, flags })
}

/// Counts and binaries only: entries carry arguments, which may hold secrets.
fn cache_summary(entries: &[ProcessInternal]) -> String {
    let mut binaries: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut zero_refs, mut in_pods) = (0, 0);
    for e in entries {
        if e.refcnt.as_ref().is_none_or(|r| r.value == 0) {
            zero_refs += 1;
        }
        if let Some(p) = &e.process {
            *binaries.entry(p.binary.as_str()).or_default() += 1;
            if p.pod.is_some() {
                in_pods += 1;
            }
        }
    }
    let mut text = format!(
        "process cache: {} entries, {} with refcount 0, {} in pods, {} distinct binaries\n\
         (arguments are left out: they may hold secrets; `vigil debug dump processcache` \
         prints the full cache)\n\nentries  binary\n",
        entries.len(),
        zero_refs,
        in_pods,
        binaries.len()
    );
    let mut top: Vec<_> = binaries.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (binary, n) in top.into_iter().take(TOP_BINARIES) {
        let _ = writeln!(text, "{n:>7}  {binary}");
    }
    text
}

fn version() -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let exe_meta = std::fs::metadata(&exe)
        .map(|m| format!("{} bytes", m.len()))
        .unwrap_or_default();
    format!(
        "vigil {}\nprofile: {}\ntarget: {}-{}\nbinary: {exe} ({exe_meta})\n",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::env::consts::ARCH,
        std::env::consts::OS,
    )
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|e| format!("({path}: {e})"), |s| s.trim().into())
}

/// The kernel config options that decide what vigil can do.
const CONFIG_PREFIXES: &[&str] = &[
    "CONFIG_BPF",
    "CONFIG_DEBUG_INFO_BTF",
    "CONFIG_KPROBE",
    "CONFIG_UPROBE",
    "CONFIG_FPROBE",
    "CONFIG_FTRACE",
    "CONFIG_FUNCTION_TRACER",
    "CONFIG_DYNAMIC_FTRACE",
    "CONFIG_FUNCTION_ERROR_INJECTION",
    "CONFIG_SECURITY",
    "CONFIG_LSM",
    "CONFIG_CGROUP",
    "CONFIG_IMA",
    "CONFIG_TRACEPOINTS",
    "CONFIG_HAVE_EBPF_JIT",
];

fn kernel_config(release: &str) -> String {
    let boot = format!("/boot/config-{release}");
    let (source, text) = if let Ok(t) = std::fs::read_to_string(&boot) {
        (boot, t)
    } else {
        let mut t = String::new();
        match std::fs::File::open("/proc/config.gz")
            .map(|f| flate2::read::GzDecoder::new(f.take(16 << 20)).read_to_string(&mut t))
        {
            Ok(Ok(_)) => ("/proc/config.gz".to_string(), t),
            _ => {
                return format!(
                    "kernel config: neither {boot} nor /proc/config.gz (CONFIG_IKCONFIG_PROC) is readable\n"
                );
            }
        }
    };
    let mut out = format!("kernel config ({source}), the options vigil depends on:\n");
    for line in text.lines() {
        let name = line.trim_start_matches("# ");
        if CONFIG_PREFIXES.iter().any(|p| name.starts_with(p)) {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

fn kernel() -> String {
    let release = kernel_probe::kernel_release();
    let btf = vigil_bpf::preflight::KERNEL_BTF;
    let btf_state = std::fs::metadata(btf).map_or_else(
        |e| format!("absent ({e})"),
        |m| format!("present, {} bytes", m.len()),
    );
    let mut out = format!(
        "release: {release}\nversion: {}\nmachine: {}\ncmdline: {}\nBTF {btf}: {btf_state}\n\
         lockdown: {}\nLSMs: {}\n",
        read_trim("/proc/sys/kernel/version"),
        std::env::consts::ARCH,
        read_trim("/proc/cmdline"),
        read_trim("/sys/kernel/security/lockdown"),
        read_trim("/sys/kernel/security/lsm"),
    );
    for sysctl in [
        "/proc/sys/kernel/unprivileged_bpf_disabled",
        "/proc/sys/kernel/bpf_stats_enabled",
        "/proc/sys/net/core/bpf_jit_enable",
        "/proc/sys/kernel/perf_event_paranoid",
    ] {
        let _ = writeln!(out, "{sysctl}: {}", read_trim(sysctl));
    }
    out.push('\n');
    out.push_str(&kernel_config(&release));
    out
}

/// The agent's programs and maps (those it holds open) and what vigil left pinned.
fn bpf_objects(pid: Option<u32>) -> Result<String> {
    let mut out = String::new();
    match pid {
        Some(pid) => {
            let (progs, maps) = held_ids(pid)?;
            let _ = writeln!(
                out,
                "programs held by the agent (pid {pid}):\nID\tNAME\tTYPE\tRUNCOUNT\tRUNTIME(ns)"
            );
            for (id, name, ty, cnt, ns) in prog_rows(&progs) {
                let _ = writeln!(out, "{id}\t{name}\t{ty}\t{cnt}\t{ns}");
            }
            let _ = writeln!(
                out,
                "\nmaps held by the agent:\nID\tNAME\tTYPE\tMAXENTRIES\tMEMLOCK"
            );
            for (id, name, ty, max, mem) in map_rows(pid, &maps) {
                let _ = writeln!(out, "{id}\t{name}\t{ty}\t{max}\t{mem}");
            }
        }
        None => out.push_str("no running agent: no programs or maps held by one\n"),
    }
    let _ = writeln!(out, "\npinned under {PIN_DIR}:");
    let mut pinned = Vec::new();
    list_pinned(Path::new(PIN_DIR), 0, &mut pinned);
    if pinned.is_empty() {
        out.push_str("  (nothing)\n");
    }
    for p in pinned {
        let _ = writeln!(out, "  {}", p.display());
    }
    Ok(out)
}

fn list_pinned(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if out.len() >= MAX_PINNED {
            return;
        }
        let path = e.path();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        out.push(path.clone());
        if is_dir && depth < 6 {
            list_pinned(&path, depth + 1, out);
        }
    }
}

/// The last `lines` lines the agent logged: its `--log-file`, else its stderr when that is
/// a file, else the journal when stderr goes there.
fn agent_log(agent: Option<&AgentView>, lines: usize) -> Result<String> {
    let Some(agent) = agent else {
        bail!("no running agent to find the log of");
    };
    let log_file = agent
        .flags
        .iter()
        .find(|(k, _)| k == "log-file")
        .map(|(_, v)| PathBuf::from(v))
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(path) = log_file {
        return tail(&path, lines).map(|t| format!("from --log-file {}:\n{t}", path.display()));
    }
    let pid = agent
        .pid
        .ok_or_else(|| anyhow!("the agent's pid is unknown (not on a unix socket)"))?;
    let stderr = std::fs::read_link(format!("/proc/{pid}/fd/2"))
        .with_context(|| format!("where the agent's stderr (pid {pid}) goes"))?;
    if stderr.is_absolute() && stderr.is_file() {
        return tail(&stderr, lines)
            .map(|t| format!("from the agent's stderr, {}:\n{t}", stderr.display()));
    }
    journal(pid, lines).with_context(|| {
        format!(
            "the agent's stderr is {} (not a file) and the journal has nothing",
            stderr.display()
        )
    })
}

fn tail(path: &Path, lines: usize) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
    let mut buf = Vec::new();
    f.take(LOG_TAIL_BYTES).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n") + "\n")
}

fn journal(pid: u32, lines: usize) -> Result<String> {
    let mut child = std::process::Command::new("journalctl")
        .args(["--no-pager", "-o", "short-iso", "-n"])
        .arg(lines.to_string())
        .arg(format!("_PID={pid}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("journalctl")?;
    let mut stdout = child.stdout.take().context("journalctl stdout")?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stdout).take(4 << 20).read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("journalctl did not answer within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    if out.trim().is_empty() || out.contains("-- No entries --") {
        bail!("journalctl has no lines of pid {pid}");
    }
    Ok(format!("from the journal (_PID={pid}):\n{out}"))
}
