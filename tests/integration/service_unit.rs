//! The systemd unit's confinement, reproduced by hand: PID 1 here is not systemd, so the
//! tests read `install/systemd/vigil.service` and apply what its `[Service]` section asks
//! (capability bounding set, no_new_privs, read-only and private mounts) to a process in a
//! mount namespace of its own. Every `[Service]` key is either reproduced or listed as not
//! confining; any other key fails the test, so the tests always follow the unit.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/install/systemd/vigil.service");

/// Keys that start, stop or describe the service without confining it.
const NOT_CONFINING: &[&str] = &[
    "Type",
    "ExecStart",
    "Restart",
    "RestartSec",
    "TimeoutStopSec",
    "RuntimeDirectoryMode",
    "RuntimeDirectoryPreserve",
    "StateDirectoryMode",
    "LogsDirectoryMode",
];

/// Capability names in bit order (linux/capability.h).
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `(section, key, value)` of every setting of a unit file, in order.
pub fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "{UNIT}:{}: continuation lines are not parsed by this test",
            n + 1
        );
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{UNIT}:{}: not key=value: {line}", n + 1));
        out.push((
            section.clone(),
            key.trim().to_string(),
            value.trim().to_string(),
        ));
    }
    out
}

/// The unit's `[Service]` values of `key` (a key may repeat).
pub fn service_values(unit: &[(String, String, String)], key: &str) -> Vec<String> {
    unit.iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v.clone())
        .collect()
}

fn yes(value: &str) -> bool {
    matches!(value, "yes" | "true" | "on" | "1")
}

/// What the unit asks, ready to apply in a child between fork and exec.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// Capabilities kept in the bounding set, by number.
    pub capabilities: Vec<u32>,
    pub no_new_privs: bool,
    /// Mount steps in order (later ones override earlier ones, as systemd's deeper paths).
    steps: Vec<Step>,
    /// Directories systemd would create before the start (RuntimeDirectory= & co.).
    pub created_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
enum Step {
    /// Make this mount read-only (not its submounts).
    ReadOnlyMount(CString),
    /// Bind the path onto itself, then set (true) or clear (false) read-only, recursively.
    BindReadOnly(CString, bool),
    /// An empty tmpfs over the path, with these mount options.
    Tmpfs(CString, CString),
}

impl Confinement {
    pub fn from_unit(unit: &[(String, String, String)]) -> Confinement {
        let mut c = Confinement {
            capabilities: (0..CAPABILITIES.len() as u32).collect(),
            no_new_privs: false,
            steps: Vec::new(),
            created_dirs: Vec::new(),
        };
        let mut writable = Vec::new();
        let mut private_tmp = false;
        for (section, key, value) in unit {
            if section != "Service" || NOT_CONFINING.contains(&key.as_str()) {
                continue;
            }
            match key.as_str() {
                "CapabilityBoundingSet" => c.capabilities = capabilities(value),
                "NoNewPrivileges" => c.no_new_privs = yes(value),
                "ProtectSystem" => c.protect_system(value),
                "ProtectHome" => c.protect_home(value),
                "ProtectKernelModules" => {
                    if yes(value) {
                        c.capabilities
                            .retain(|&n| CAPABILITIES[n as usize] != "CAP_SYS_MODULE");
                        for dir in ["/usr/lib/modules", "/lib/modules"] {
                            c.tmpfs_if_present(dir, "mode=000");
                        }
                    }
                }
                "ProtectControlGroups" => {
                    if yes(value) {
                        c.bind("/sys/fs/cgroup", true);
                    }
                }
                "ProtectKernelTunables" => {
                    if yes(value) {
                        for p in ["/proc/sys", "/proc/sysrq-trigger", "/sys"] {
                            c.bind(p, true);
                        }
                    }
                }
                "PrivateTmp" => private_tmp = yes(value),
                "ReadWritePaths" => writable.extend(value.split_whitespace().map(PathBuf::from)),
                "RuntimeDirectory" | "StateDirectory" | "LogsDirectory" => {
                    let base = match key.as_str() {
                        "RuntimeDirectory" => "/run",
                        "StateDirectory" => "/var/lib",
                        _ => "/var/log",
                    };
                    for name in value.split_whitespace() {
                        let dir = Path::new(base).join(name);
                        c.created_dirs.push(dir.clone());
                        writable.push(dir);
                    }
                }
                _ => panic!(
                    "{UNIT}: [Service] {key}={value} is not reproduced by the confinement test \
                     (tests/integration/service_unit.rs): teach it, or the test proves nothing"
                ),
            }
        }
        if private_tmp {
            c.tmpfs_if_present("/tmp", "mode=1777");
            c.tmpfs_if_present("/var/tmp", "mode=1777");
        }
        // Writable paths last: systemd applies deeper paths over shallower ones.
        for dir in writable {
            c.bind(dir.to_str().unwrap(), false);
        }
        c
    }

    fn protect_system(&mut self, value: &str) {
        let paths: &[&str] = match value {
            "strict" => {
                // Every mount read-only except the API file systems (/dev, /proc, /sys).
                let api = |p: &str| {
                    ["/dev", "/proc", "/sys"]
                        .iter()
                        .any(|a| p == *a || p.starts_with(&format!("{a}/")))
                };
                for mount in mount_points() {
                    if !api(&mount) {
                        self.steps
                            .push(Step::ReadOnlyMount(CString::new(mount).unwrap()));
                    }
                }
                return;
            }
            "full" => &["/usr", "/boot", "/efi", "/etc"],
            "yes" | "true" => &["/usr", "/boot", "/efi"],
            "no" | "false" => &[],
            other => panic!("{UNIT}: ProtectSystem={other} is not a value this test knows"),
        };
        for p in paths {
            if Path::new(p).exists() {
                self.bind(p, true);
            }
        }
    }

    fn protect_home(&mut self, value: &str) {
        for dir in ["/home", "/root", "/run/user"] {
            match value {
                "read-only" => {
                    if Path::new(dir).exists() {
                        self.bind(dir, true);
                    }
                }
                "yes" | "true" => self.tmpfs_if_present(dir, "mode=000,ro"),
                "tmpfs" => self.tmpfs_if_present(dir, "mode=755,ro"),
                "no" | "false" => {}
                other => panic!("{UNIT}: ProtectHome={other} is not a value this test knows"),
            }
        }
    }

    fn bind(&mut self, path: &str, read_only: bool) {
        self.steps
            .push(Step::BindReadOnly(CString::new(path).unwrap(), read_only));
    }

    fn tmpfs_if_present(&mut self, path: &str, options: &str) {
        if Path::new(path).exists() {
            self.steps.push(Step::Tmpfs(
                CString::new(path).unwrap(),
                CString::new(options).unwrap(),
            ));
        }
    }

    /// The bounding set as /proc/PID/status prints it (CapBnd, CapEff of a root process).
    pub fn capability_mask(&self) -> u64 {
        self.capabilities.iter().fold(0, |m, &n| m | 1 << n)
    }

    /// Applies the confinement to `command`'s child (after fork, before exec).
    pub fn apply(&self, command: &mut Command) {
        let this = self.clone();
        let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: the closure makes system calls only (no allocation, no locks): unshare,
        // mount, mount_setattr, prctl, on data prepared before the fork.
        unsafe {
            command.pre_exec(move || this.enter(last_cap));
        }
    }

    fn enter(&self, last_cap: u32) -> std::io::Result<()> {
        let check = |rc: libc::c_long| {
            if rc < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        // SAFETY: plain system calls on NUL-terminated strings owned by `self`.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS) as _)?;
            // Host mounts (bpffs, a container's) still propagate in; ours stay here.
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ) as _)?;
            for step in &self.steps {
                match step {
                    Step::ReadOnlyMount(path) => check(set_read_only(path, false, true))?,
                    Step::BindReadOnly(path, read_only) => {
                        check(libc::mount(
                            path.as_ptr(),
                            path.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND | libc::MS_REC,
                            std::ptr::null(),
                        ) as _)?;
                        check(set_read_only(path, true, *read_only))?;
                    }
                    Step::Tmpfs(path, options) => check(libc::mount(
                        c"tmpfs".as_ptr(),
                        path.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        options.as_ptr().cast(),
                    ) as _)?,
                }
            }
            for cap in 0..=last_cap {
                if !self.capabilities.contains(&cap) {
                    check(libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) as _)?;
                }
            }
            if self.no_new_privs {
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as _)?;
            }
        }
        Ok(())
    }
}

/// mount_setattr(2)'s argument (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// Sets or clears read-only on the mount at `path` (and its submounts if `recursive`).
unsafe fn set_read_only(path: &CString, recursive: bool, read_only: bool) -> libc::c_long {
    let attr = MountAttr {
        attr_set: if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: if read_only { 0 } else { MOUNT_ATTR_RDONLY },
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: a valid path and a mount_attr of the size passed.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    }
}

/// Every mount point of this mount namespace (/proc/self/mountinfo, octal escapes decoded).
fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_octal)
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `CapabilityBoundingSet=` names to numbers; an unknown name fails (systemd only warns).
fn capabilities(value: &str) -> Vec<u32> {
    assert!(
        !value.starts_with('~'),
        "{UNIT}: an inverted CapabilityBoundingSet is not parsed by this test"
    );
    value
        .split_whitespace()
        .map(|name| {
            CAPABILITIES
                .iter()
                .position(|c| c.eq_ignore_ascii_case(name))
                .unwrap_or_else(|| panic!("{UNIT}: CapabilityBoundingSet: unknown {name}"))
                as u32
        })
        .collect()
}

/// Capability names of a mask, as capsh decodes it (an independent reading of the kernel's
/// /proc/PID/status).
pub fn capsh_decode(mask: u64) -> String {
    let out = Command::new("capsh")
        .arg(format!("--decode={mask:x}"))
        .output()
        .expect("capsh (libcap2-bin; scripts/install-deps --test installs it)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
