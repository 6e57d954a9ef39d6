//! `vigil debug` (tetra's `debug`/`dump`) and `vigil loglevel`: the agent's eBPF programs
//! and maps, its process cache, its log level.
//!
//! Programs and maps are those the agent holds open: the agent is found as the peer of its
//! unix socket (SO_PEERCRED), its `/proc/<pid>/fdinfo` lists the ids, and the kernel's
//! object info gives names and run counters. Run counters only move while BPF statistics
//! are on (`kernel.bpf_stats_enabled`, or `--stats D`, which turns them on for D). Names
//! are the kernel's (15 characters at most; bpftool completes longer ones from BTF).

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use vigil_proto::tetragon::*;

use clap::Subcommand;

use super::flags::ClientFlags;
use crate::agent::parse_duration;

/// The pid of the process serving the unix socket of `address`.
pub(crate) fn agent_pid(address: &str) -> Result<u32> {
    let addr = if address.is_empty() {
        vigil_api::client::DEFAULT_SERVER_ADDRESS
    } else {
        address
    };
    let Some(vigil_api::server::Address::Unix(path)) = vigil_api::server::Address::parse(addr)
    else {
        bail!("{addr}: programs and maps are read on the agent's host: give its unix socket");
    };
    let s = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        anyhow!("no agent at {addr} ({e}); start one with `vigil agent --server-address {addr}`")
    })?;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 || cred.pid <= 0 {
        bail!(
            "cannot tell which process serves {addr}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(cred.pid as u32)
}

/// Ids of the BPF programs and maps `pid` holds open, from its fdinfo.
pub(crate) fn held_ids(pid: u32) -> Result<(BTreeSet<u32>, BTreeSet<u32>)> {
    let dir = format!("/proc/{pid}/fdinfo");
    let (mut progs, mut maps) = (BTreeSet::new(), BTreeSet::new());
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else {
            continue; // closed meanwhile
        };
        for line in text.lines() {
            let id = |p: &str| line.strip_prefix(p).and_then(|v| v.trim().parse().ok());
            if let Some(i) = id("prog_id:") {
                progs.insert(i);
            } else if let Some(i) = id("map_id:") {
                maps.insert(i);
            }
        }
    }
    Ok((progs, maps))
}

/// Holds BPF run-time statistics on while alive (BPF_ENABLE_STATS).
struct Stats(i32);

impl Stats {
    fn enable() -> Result<Self> {
        // SAFETY: plain bpf(2) wrapper; the fd it returns is closed in Drop.
        let fd = unsafe {
            libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME)
        };
        if fd < 0 {
            bail!(
                "cannot enable BPF statistics: {}",
                std::io::Error::from_raw_os_error(-fd)
            );
        }
        Ok(Self(fd))
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        // SAFETY: our own fd.
        unsafe { libc::close(self.0) };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

fn print_table(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

/// (id, name, type, run count, run time) of the programs among `ids`.
pub(crate) fn prog_rows(ids: &BTreeSet<u32>) -> Vec<(u32, String, String, u64, u64)> {
    libbpf_rs::query::ProgInfoIter::default()
        .filter(|p| ids.contains(&p.id))
        .map(|p| {
            (
                p.id,
                p.name.to_string_lossy().into_owned(),
                format!("{:?}", p.ty).to_lowercase(),
                p.run_cnt,
                p.run_time_ns,
            )
        })
        .collect()
}

/// (id, name, type, max entries, memlock) of the maps among `ids`, which `pid` holds.
pub(crate) fn map_rows(pid: u32, ids: &BTreeSet<u32>) -> Vec<(u32, String, String, u32, u64)> {
    libbpf_rs::query::MapInfoIter::default()
        .filter(|m| ids.contains(&m.id))
        .map(|m| {
            (
                m.id,
                m.name.to_string_lossy().into_owned(),
                format!("{:?}", m.ty).to_lowercase(),
                m.max_entries,
                memlock(pid, m.id).unwrap_or(0),
            )
        })
        .collect()
}

/// `vigil debug progs`.
pub fn progs(client: &ClientFlags, stats: Option<&str>, format: Format) -> Result<()> {
    let pid = agent_pid(&client.server_address)?;
    let (ids, _) = held_ids(pid)?;
    let snapshot = || prog_rows(&ids);
    let progs = match stats {
        Some(d) => {
            let d = parse_duration("stats", d)?;
            let _on = Stats::enable()?;
            let before = snapshot();
            std::thread::sleep(d);
            snapshot()
                .into_iter()
                .map(|(id, n, t, c, ns)| {
                    let b = before.iter().find(|b| b.0 == id);
                    let (bc, bns) = b.map_or((0, 0), |b| (b.3, b.4));
                    (id, n, t, c.saturating_sub(bc), ns.saturating_sub(bns))
                })
                .collect()
        }
        None => snapshot(),
    };
    match format {
        Format::Json => {
            for (id, name, ty, cnt, ns) in progs {
                println!(
                    "{}",
                    serde_json::json!({"id": id, "name": name, "type": ty,
                        "run_cnt": cnt, "run_time_ns": ns, "agent_pid": pid})
                );
            }
        }
        Format::Text => {
            let mut rows = vec![
                ["ID", "NAME", "TYPE", "RUNCOUNT", "RUNTIME(ns)", "AVG(ns)"]
                    .map(String::from)
                    .to_vec(),
            ];
            for (id, name, ty, cnt, ns) in progs {
                let avg = ns.checked_div(cnt).unwrap_or(0);
                rows.push(vec![
                    id.to_string(),
                    name,
                    ty,
                    cnt.to_string(),
                    ns.to_string(),
                    avg.to_string(),
                ]);
            }
            print_table(&rows);
        }
    }
    Ok(())
}

fn memlock(pid: u32, map_id: u32) -> Option<u64> {
    // The agent's fdinfo of that map carries its memlock.
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()? {
        let text = std::fs::read_to_string(entry.ok()?.path()).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.strip_prefix("map_id:").map(str::trim) == Some(&map_id.to_string()))
        {
            return text
                .lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse().ok());
        }
    }
    None
}

/// `vigil debug maps`.
pub fn maps(client: &ClientFlags, format: Format) -> Result<()> {
    let pid = agent_pid(&client.server_address)?;
    let (_, ids) = held_ids(pid)?;
    let maps = map_rows(pid, &ids);
    match format {
        Format::Json => {
            for (id, name, ty, max, mem) in maps {
                println!(
                    "{}",
                    serde_json::json!({"id": id, "name": name, "type": ty,
                        "max_entries": max, "memlock": mem, "agent_pid": pid})
                );
            }
        }
        Format::Text => {
            let mut rows = vec![
                ["ID", "NAME", "TYPE", "MAXENTRIES", "MEMLOCK"]
                    .map(String::from)
                    .to_vec(),
            ];
            let total: u64 = maps.iter().map(|m| m.4).sum();
            for (id, name, ty, max, mem) in maps {
                rows.push(vec![
                    id.to_string(),
                    name,
                    ty,
                    max.to_string(),
                    vigil_api::table::humanize_bytes(mem),
                ]);
            }
            print_table(&rows);
            println!("total memlock: {}", vigil_api::table::humanize_bytes(total));
        }
    }
    Ok(())
}

/// `vigil debug dump processcache`: one JSON object per cache entry (GetDebug).
pub async fn dump_processcache(
    client: ClientFlags,
    skip_zero_refcnt: bool,
    exclude_execve_map_processes: bool,
) -> Result<()> {
    let mut c = super::client(&client).await?;
    let r = c
        .get_debug(GetDebugRequest {
            flag: ConfigFlag::DumpProcessCache as i32,
            arg: Some(get_debug_request::Arg::Dump(DumpProcessCacheReqArgs {
                skip_zero_refcnt,
                exclude_execve_map_processes,
            })),
        })
        .await
        .map_err(super::status_error)?
        .into_inner();
    let Some(get_debug_response::Arg::Processes(p)) = r.arg else {
        bail!("the agent answered without a process list");
    };
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for proc in p.processes {
        serde_json::to_writer(&mut out, &proc)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

fn level_name(l: i32) -> String {
    LogLevel::try_from(l)
        .map(|l| {
            l.as_str_name()
                .trim_start_matches("LOG_LEVEL_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| l.to_string())
}

/// `vigil loglevel get`.
pub async fn loglevel_get(client: ClientFlags) -> Result<()> {
    let mut c = super::client(&client).await?;
    let r = c
        .get_debug(GetDebugRequest {
            flag: ConfigFlag::LogLevel as i32,
            arg: None,
        })
        .await
        .map_err(super::status_error)?
        .into_inner();
    let Some(get_debug_response::Arg::Level(l)) = r.arg else {
        bail!("the agent answered without a log level");
    };
    println!("Current log level: {}", level_name(l));
    Ok(())
}

/// `vigil loglevel set LEVEL`.
pub async fn loglevel_set(client: ClientFlags, level: String) -> Result<()> {
    let l = LogLevel::from_str_name(&format!("LOG_LEVEL_{}", level.to_uppercase())).ok_or_else(
        || anyhow!("log level {level:?}: one of trace, debug, info, warn, error, fatal, panic"),
    )?;
    let mut c = super::client(&client).await?;
    let r = c
        .set_debug(SetDebugRequest {
            flag: ConfigFlag::LogLevel as i32,
            arg: Some(set_debug_request::Arg::Level(l as i32)),
        })
        .await
        .map_err(super::status_error)?
        .into_inner();
    let Some(set_debug_response::Arg::Level(now)) = r.arg else {
        bail!("the agent answered without a log level");
    };
    println!("Log level set to: {}", level_name(now));
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// The agent's eBPF programs: id, name, type, run count and time.
    Progs {
        /// Turn BPF statistics on for this long and report the runs in that window.
        #[arg(long)]
        stats: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Format,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// The agent's eBPF maps: id, name, type, entries, memlock.
    Maps {
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Format,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Dump agent state: `processcache` (the user-space process cache, JSON lines).
    #[command(subcommand)]
    Dump(DumpCommand),
}

#[derive(Debug, Subcommand)]
pub enum DumpCommand {
    Processcache {
        /// Leave out entries nothing refers to any more.
        #[arg(long)]
        skip_zero_refcnt: bool,
        /// Accepted as tetra's (vigil's cache has no separate execve map entries).
        #[arg(long)]
        exclude_execve_map_processes: bool,
        #[command(flatten)]
        client: ClientFlags,
    },
}

#[derive(Debug, Subcommand)]
pub enum LoglevelCommand {
    /// Print the agent's log level.
    Get(ClientFlags),
    /// Change the agent's log level (trace, debug, info, warn, error).
    Set {
        level: String,
        #[command(flatten)]
        client: ClientFlags,
    },
}

pub fn run(cmd: DebugCommand) -> ExitCode {
    let done = |r: Result<()>| match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "vigil debug: error: {}",
                format!("{e:#}").replace('\n', "; ")
            );
            ExitCode::FAILURE
        }
    };
    match cmd {
        DebugCommand::Progs {
            stats,
            output,
            client,
        } => done(progs(&client, stats.as_deref(), output)),
        DebugCommand::Maps { output, client } => done(maps(&client, output)),
        DebugCommand::Dump(DumpCommand::Processcache {
            skip_zero_refcnt,
            exclude_execve_map_processes,
            client,
        }) => super::run(
            "debug",
            dump_processcache(client, skip_zero_refcnt, exclude_execve_map_processes),
        ),
    }
}

pub fn run_loglevel(cmd: LoglevelCommand) -> ExitCode {
    match cmd {
        LoglevelCommand::Get(client) => super::run("loglevel", loglevel_get(client)),
        LoglevelCommand::Set { level, client } => {
            super::run("loglevel", loglevel_set(client, level))
        }
    }
}
