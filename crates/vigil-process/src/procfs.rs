//! The start-up scan: every process already running when the agent starts, read from
//! procfs (`--procfs`, default `/proc`), reported as Tetragon does (flag `procFS`).

use std::fs;
use std::path::{Path, PathBuf};

use crate::model::{Credentials, NamespaceIds};
use crate::text::{split_nul, valid_utf8};

/// What the scan learns about one process.
#[derive(Debug, Clone, Default)]
pub struct ScannedProcess {
    pub pid: u32,
    pub ppid: u32,
    /// Start time on the boot clock, in ns (procfs gives clock ticks).
    pub start_ktime: u64,
    pub binary: String,
    pub argv: Vec<Vec<u8>>,
    pub cwd: String,
    pub creds: Credentials,
    pub namespaces: NamespaceIds,
    pub nspid: u32,
    pub auid: u32,
    pub cgroup_leaf: String,
    /// Container id from the full cgroup paths (empty on the host).
    pub container_id: String,
    pub kernel_thread: bool,
    /// Identity of the executed file (inode, kernel-encoded device), 0 when unknown.
    pub exe_ino: u64,
    pub exe_dev: u64,
    /// Size and ctime (ns) of the executed file when scanned (the exec hash's cache key).
    pub exe_size: u64,
    pub exe_ctime_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot list processes in {path}: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Scans `procfs`, parents before children (sorted by start time, then pid). Processes that
/// vanish during the scan are skipped.
pub fn scan(procfs: &Path) -> Result<Vec<ScannedProcess>, ScanError> {
    let dir = fs::read_dir(procfs).map_err(|source| ScanError::List {
        path: procfs.to_path_buf(),
        source,
    })?;
    let ticks = clock_ticks();
    let mut out: Vec<ScannedProcess> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| read_process(&procfs.join(pid.to_string()), pid, ticks))
        .collect();
    out.sort_by_key(|p| (p.start_ktime, p.pid));
    Ok(out)
}

/// What the scan takes from /proc/<pid>/stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub ppid: u32,
    pub kernel_thread: bool,
    /// Since boot, in clock ticks.
    pub start_ticks: u64,
}

/// Parses /proc/<pid>/stat; `None` for a zombie (it already exited, maybe before the agent
/// attached: no exit will come) or a line that does not parse. `comm` is the process's own
/// choice (any bytes but NUL, parentheses and spaces included), so fields are taken after the
/// last `)`.
pub fn parse_stat(stat: &str) -> Option<Stat> {
    let (head, tail) = stat.rsplit_once(')')?;
    let comm = head.split_once('(').map_or("", |(_, c)| c).to_string();
    let fields: Vec<&str> = tail.split_whitespace().take(20).collect();
    if matches!(fields.first(), Some(&"Z" | &"X")) {
        return None;
    }
    let flags: u64 = fields.get(6)?.parse().ok()?;
    const PF_KTHREAD: u64 = 0x0020_0000;
    Some(Stat {
        comm,
        ppid: fields.get(1)?.parse().ok()?,
        kernel_thread: flags & PF_KTHREAD != 0,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

fn read_process(dir: &Path, pid: u32, ticks: u64) -> Option<ScannedProcess> {
    let Stat {
        comm,
        ppid,
        kernel_thread,
        start_ticks,
    } = parse_stat(&fs::read_to_string(dir.join("stat")).ok()?)?;

    let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
    let argv = split_nul(&cmdline);
    let binary = match fs::read_link(dir.join("exe")) {
        Ok(p) => valid_utf8(p.as_os_str().as_encoded_bytes()),
        Err(_) => comm,
    };
    let cwd = fs::read_link(dir.join("cwd"))
        .map(|p| valid_utf8(p.as_os_str().as_encoded_bytes()))
        .unwrap_or_default();
    let status = fs::read_to_string(dir.join("status")).unwrap_or_default();
    let (creds, nspid) = parse_status(&status);
    let auid = fs::read_to_string(dir.join("loginuid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX);
    let cgroup_file = fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
    let cgroup_leaf = cgroup_leaf(&cgroup_file);
    let container_id = crate::container::container_id_in_proc_cgroup(&cgroup_file)
        .unwrap_or_default()
        .to_string();
    let (exe_ino, exe_dev, exe_size, exe_ctime_ns) = fs::metadata(dir.join("exe"))
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            let dev = m.dev();
            (
                m.ino(),
                (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev)),
                m.len(),
                (m.ctime() as u64)
                    .wrapping_mul(1_000_000_000)
                    .wrapping_add(m.ctime_nsec() as u64),
            )
        })
        .unwrap_or((0, 0, 0, 0));
    Some(ScannedProcess {
        exe_ino,
        exe_dev,
        exe_size,
        exe_ctime_ns,
        pid,
        ppid,
        start_ktime: start_ticks.saturating_mul(1_000_000_000 / ticks),
        binary,
        argv,
        cwd,
        creds,
        namespaces: read_namespaces(&dir.join("ns")),
        nspid: if nspid == 0 { pid } else { nspid },
        auid,
        cgroup_leaf,
        container_id,
        kernel_thread,
    })
}

/// Parses the credential, capability and NSpid lines of /proc/<pid>/status.
pub fn parse_status(status: &str) -> (Credentials, u32) {
    let mut c = Credentials::default();
    let mut nspid = 0;
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let nums: Vec<u32> = value
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let hex = || u64::from_str_radix(value.trim(), 16).unwrap_or(0);
        match key {
            "Uid" if nums.len() == 4 => {
                (c.uid, c.euid, c.suid, c.fsuid) = (nums[0], nums[1], nums[2], nums[3])
            }
            "Gid" if nums.len() == 4 => {
                (c.gid, c.egid, c.sgid, c.fsgid) = (nums[0], nums[1], nums[2], nums[3])
            }
            "CapInh" => c.cap_inheritable = hex(),
            "CapPrm" => c.cap_permitted = hex(),
            "CapEff" => c.cap_effective = hex(),
            "NSpid" => nspid = nums.last().copied().unwrap_or(0),
            _ => {}
        }
    }
    (c, nspid)
}

/// The host's namespaces: pid 1's, or this process's when pid 1's cannot be read (some
/// init systems hide them); the agent runs in the host namespaces.
pub fn host_namespaces(procfs: &Path) -> NamespaceIds {
    let init = read_namespaces(&procfs.join("1/ns"));
    if init.pid != 0 && init.mnt != 0 {
        return init;
    }
    read_namespaces(&procfs.join("self/ns"))
}

fn read_namespaces(ns_dir: &Path) -> NamespaceIds {
    let inum = |name: &str| -> u32 {
        fs::read_link(ns_dir.join(name))
            .ok()
            .and_then(|p| {
                let s = p.to_string_lossy().into_owned();
                s.split_once('[')?.1.trim_end_matches(']').parse().ok()
            })
            .unwrap_or(0)
    };
    NamespaceIds {
        uts: inum("uts"),
        ipc: inum("ipc"),
        mnt: inum("mnt"),
        pid: inum("pid"),
        pid_for_children: inum("pid_for_children"),
        net: inum("net"),
        time: inum("time"),
        time_for_children: inum("time_for_children"),
        cgroup: inum("cgroup"),
        user: inum("user"),
    }
}

/// The leaf of the most specific cgroup path in /proc/<pid>/cgroup (the unified hierarchy
/// first, else the first v1 hierarchy that is not the root).
pub fn cgroup_leaf(cgroup_file: &str) -> String {
    let mut best = "";
    for line in cgroup_file.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if path == "/" {
            continue;
        }
        if id == "0" || best.is_empty() {
            best = path;
            if id == "0" {
                break;
            }
        }
    }
    best.rsplit('/').next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_fill_credentials() {
        let s = "Name:\tsudo\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n\
                 CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n\
                 NSpid:\t4242\t7\n";
        let (c, nspid) = parse_status(s);
        assert_eq!((c.uid, c.euid, c.suid, c.fsuid), (1000, 0, 0, 0));
        assert_eq!(c.gid, 1000);
        assert_eq!(c.cap_permitted, 0x1ff_ffff_ffff);
        assert_eq!(nspid, 7);
    }

    #[test]
    fn stat_lines_with_hostile_names() {
        let tail = "S 1 2 3 4 5 4194560 7 8 9 10 11 12 13 14 15 16 1 0 777 99";
        let s = parse_stat(&format!("42 (a) b) (c) {tail}")).unwrap();
        assert_eq!(
            (s.comm.as_str(), s.ppid, s.start_ticks),
            ("a) b) (c", 1, 777)
        );
        assert!(!s.kernel_thread);
        // No '(' at all, a name of nothing but ')', a cut line, a zombie.
        assert_eq!(parse_stat(&format!("42 x) {tail}")).unwrap().comm, "");
        assert_eq!(parse_stat(&format!("42 ()))) {tail}")).unwrap().comm, ")))");
        for bad in [
            "",
            ")",
            "(",
            "42 (x) S 1",
            "42 (x) Z 1 2 3 4 5 0",
            "\u{0})\u{0}",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
        let huge = tail.replace("777", "18446744073709551615");
        assert_eq!(
            parse_stat(&format!("1 (x) {huge}")).unwrap().start_ticks,
            u64::MAX
        );
    }

    #[test]
    fn status_and_cgroup_lines_that_do_not_parse_are_ignored() {
        let (c, nspid) = parse_status("Uid:\nGid:\t1\t2\nCapEff:\tzz\nNSpid:\t-1\n:::\n\u{0}");
        assert_eq!((c.uid, c.gid, c.cap_effective, nspid), (0, 0, 0, 0));
        for text in ["", ":", "::", "0::", "0:::", "\n\n", "1:x:/a/\n0::/b/"] {
            let _ = cgroup_leaf(text);
            let _ = crate::container::container_id_in_proc_cgroup(text);
        }
        assert_eq!(cgroup_leaf("0::/a/b/\n"), "");
    }

    #[test]
    fn cgroup_leaf_prefers_unified_then_v1() {
        assert_eq!(
            cgroup_leaf("0::/system.slice/docker-abc.scope\n"),
            "docker-abc.scope"
        );
        assert_eq!(
            cgroup_leaf("12:pids:/kubepods/pod1/cid\n1:name=systemd:/x\n0::/\n"),
            "cid"
        );
        assert_eq!(cgroup_leaf("0::/\n"), "");
    }

    #[test]
    fn scan_of_this_machine_finds_ourselves_with_a_parent() {
        let me = std::process::id();
        let all = scan(Path::new("/proc")).unwrap();
        let mine = all
            .iter()
            .find(|p| p.pid == me)
            .expect("own process scanned");
        assert_eq!(mine.ppid, std::os::unix::process::parent_id());
        assert!(mine.binary.starts_with('/'), "{}", mine.binary);
        assert!(all.iter().any(|p| p.pid == 1));
    }
}
