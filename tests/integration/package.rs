//! Packaging for hosts without Kubernetes: the systemd unit (install/systemd/vigil.service)
//! run under its confinement reproduced by hand (service_unit.rs), and the Debian package
//! cargo-deb builds from the root Cargo.toml, installed into a chroot (never into this host).

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::*;
use crate::service_unit::{Confinement, UNIT, capsh_decode, parse_unit, service_values};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PRERM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/install/debian/prerm");

/// The signal that ended `bin FILE`, if any.
fn open_signal(bin: &Path, file: &Path) -> Option<i32> {
    Command::new(bin)
        .arg(file)
        .output()
        .unwrap()
        .status
        .signal()
}

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// Directories systemd would have created for the unit, removed at the end if this test
/// created them.
struct HostDirs(Vec<PathBuf>);

impl HostDirs {
    fn create(dirs: &[PathBuf]) -> HostDirs {
        let mut created = Vec::new();
        for d in dirs {
            if !d.exists() {
                std::fs::create_dir_all(d).unwrap();
                created.push(d.clone());
            }
        }
        HostDirs(created)
    }
}

impl Drop for HostDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Runs the package's own removal step (prerm's `rm -rf` of what --keep-sensors-on-exit
/// pinned), so that a failed test leaves nothing enforcing and the step itself is tested.
struct ReleaseKept;

impl ReleaseKept {
    fn command() -> Command {
        let prerm = std::fs::read_to_string(PRERM).unwrap();
        let rm = prerm
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("rm -rf") && l.contains("/sys/fs/bpf/"))
            .unwrap_or_else(|| panic!("{PRERM}: no `rm -rf` of the kept pins"))
            .to_string();
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(rm);
        c
    }

    fn run() {
        check(
            "prerm's release of the kept pins",
            Self::command().output().unwrap(),
        );
    }
}

impl Drop for ReleaseKept {
    fn drop(&mut self) {
        let _ = Self::command().output();
    }
}

fn kill_policy_for_binary(name: &str, binary: &Path, target: &Path) -> String {
    OpenatPolicy::new(name)
        .dirfd()
        .path("Equal", &[&target.display().to_string()])
        .binary(&binary.display().to_string())
        .action("Sigkill", &[])
        .yaml()
}

fn stack_policy(name: &str, target: &Path) -> String {
    OpenatPolicy::new(name)
        .path("Equal", &[&target.display().to_string()])
        .action("Post", &["userStackTrace: true", "kernelStackTrace: true"])
        .yaml()
}

const WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The agent as the unit starts it (ExecStart's flags, /etc/vigil mapped to the package's
/// sources), confined as the unit says: it enforces a Sigkill policy whose binary lives in
/// /tmp (a private /tmp or a hidden home would make matchBinaries name nothing), and a
/// restart hands enforcement over without a gap (--keep-sensors-on-exit, as an upgrade).
#[test]
fn service_unit_confinement_enforces_and_hands_over_on_restart() {
    let _g = serial();
    let unit = parse_unit(&std::fs::read_to_string(UNIT).unwrap());
    let confinement = Confinement::from_unit(&unit);
    let _dirs = HostDirs::create(&confinement.created_dirs);
    let exec = service_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1, "{UNIT}: one ExecStart");
    let argv: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(&argv[..2], ["/usr/bin/vigil", "agent"], "{UNIT}: ExecStart");
    let etc = format!("{ROOT}/install/debian/");
    let mut unit_args: Vec<String> = argv[2..]
        .iter()
        .map(|a| a.replace("/etc/vigil/", &etc))
        .collect();
    assert!(
        unit_args.iter().any(|a| a == "--keep-sensors-on-exit"),
        "{UNIT}: an upgrade keeps enforcement only with --keep-sensors-on-exit"
    );

    let logs = service_values(&unit, "LogsDirectory");
    let logs_dir = Path::new("/var/log").join(
        logs.first()
            .unwrap_or_else(|| panic!("{UNIT}: no LogsDirectory for the export")),
    );
    let agent_dir = |n: &str| {
        let d = logs_dir.join(format!("it-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    };

    // The reproduction is real: / is read-only, the unit's writable paths are not, the
    // bounding set is the unit's.
    let probe_dir = agent_dir("probe");
    let mut probe = Command::new("/bin/sh");
    probe.arg("-c").arg(format!(
        "touch /usr/.vigil-ro-probe 2>/dev/null; echo usr=$?; touch {}/probe; echo logs=$?; \
         grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status",
        probe_dir.display()
    ));
    confinement.apply(&mut probe);
    let out = String::from_utf8(probe.output().unwrap().stdout).unwrap();
    let mask = confinement.capability_mask();
    let ours = u64::from_str_radix(&status_field(std::process::id(), "CapBnd"), 16).unwrap();
    assert_eq!(
        mask & !ours,
        0,
        "the unit keeps capabilities this test process does not have ({}): cannot test them",
        capsh_decode(mask & !ours)
    );
    assert!(out.contains("usr=1") && out.contains("logs=0"), "{out}");
    assert!(out.contains(&format!("CapBnd:\t{mask:016x}")), "{out}");
    assert_eq!(
        out.contains("NoNewPrivs:\t1"),
        confinement.no_new_privs,
        "{out}"
    );
    std::fs::remove_dir_all(&probe_dir).unwrap();

    let scratch = scratch_dir("confined-files");
    let guarded = scratch.join("guarded.txt");
    std::fs::write(&guarded, "guarded\n").unwrap();
    let cat_copy = scratch.join("cat-copy");
    std::fs::copy("/usr/bin/cat", &cat_copy).unwrap();
    let policy = write_policy(
        &scratch,
        "confined-kill",
        &kill_policy_for_binary("confined-kill", &cat_copy, &guarded),
    );
    // Stack traces need capabilities a plain Sigkill does not: CAP_SYS_ADMIN and
    // CAP_DAC_READ_SEARCH (another user's /proc/PID/map_files, for the user frames' symbols),
    // CAP_SYSLOG (kernel symbols).
    let stacked = scratch.join("stacked");
    std::fs::write(&stacked, "x").unwrap();
    let stack_policy = write_policy(
        &scratch,
        "confined-stack",
        &stack_policy("confined-stack", &stacked),
    );
    unit_args.extend([
        "--tracing-policy".into(),
        policy,
        "--tracing-policy".into(),
        stack_policy,
    ]);
    // Started before the agent, with every capability: the start-up scan reads its
    // /proc/PID/exe only with CAP_SYS_PTRACE.
    let mut early = Command::new("/usr/bin/sleep").arg("30").spawn().unwrap();
    let early_pid = early.id();
    let args: Vec<&str> = unit_args.iter().map(String::as_str).collect();
    let _release = ReleaseKept;

    let first_dir = agent_dir("first");
    let agent = Agent::start_in(&first_dir, &args, |c| confinement.apply(c));
    let eff: u64 = u64::from_str_radix(&status_field(agent.pid(), "CapEff"), 16).unwrap();
    assert_eq!(
        eff,
        mask,
        "the agent runs with the unit's capabilities: {} (unit) vs {} (agent)",
        capsh_decode(mask),
        capsh_decode(eff)
    );
    assert_eq!(
        open_signal(&cat_copy, &guarded),
        Some(libc::SIGKILL),
        "enforced under the confinement"
    );
    assert_eq!(
        open_signal(Path::new("/usr/bin/cat"), &guarded),
        None,
        "matchBinaries selects the copy only"
    );
    // As another user: its /proc/PID/map_files is searchable only with CAP_DAC_READ_SEARCH.
    let helper = scratch.join("helper");
    std::fs::copy(helper_bin(), &helper).unwrap();
    let events = agent.wait_for("the Sigkill event and the scan's", WAIT, |ev| {
        !kprobes(ev, "confined-kill").is_empty() && !execs_of_pid(ev, early_pid).is_empty()
    });
    let _ = early.kill();
    let _ = early.wait();
    assert_eq!(
        kprobes(&events, "confined-kill")[0]["action"],
        "KPROBE_ACTION_SIGKILL"
    );
    let scanned = execs_of_pid(&events, early_pid)[0];
    assert_eq!(scanned["process"]["binary"], "/usr/bin/sleep", "{scanned}");
    // The agent reads a binary's symbols within a deadline (100 ms) that a machine with cold
    // caches can miss (after the package test, say), and then leaves that path alone for a
    // minute while the read completes into its cache: up to three processes, each through
    // a hard link of its own to the same file. Without the capabilities every one misses.
    let mut stack = serde_json::Value::Null;
    for attempt in 0..3 {
        let link = scratch.join(format!("helper-{attempt}"));
        std::fs::hard_link(&helper, &link).unwrap();
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        // Alive until its event is out: the agent reads its maps after the event.
        let mut stacker = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&link)
            .args(["stack-open", stacked.to_str().unwrap(), "30000"])
            .spawn()
            .unwrap();
        let stacker_pid = u64::from(stacker.id());
        let of_stacker = |ev: &[serde_json::Value]| {
            kprobes(ev, "confined-stack")
                .into_iter()
                .find(|e| pid_of(e) == stacker_pid)
                .cloned()
        };
        let events = agent.wait_for("the stack-trace event", WAIT, |ev| of_stacker(ev).is_some());
        let _ = stacker.kill();
        let _ = stacker.wait();
        stack = of_stacker(&events).unwrap();
        if stack["user_stack_trace"][0]["symbol"] == "vigil_stack_open" {
            break;
        }
    }
    assert_eq!(
        stack["user_stack_trace"][0]["symbol"],
        "vigil_stack_open",
        "{stack}\nagent log:\n{}",
        std::fs::read_to_string(&agent.stderr_path).unwrap_or_default()
    );
    let kframes = stack["kernel_stack_trace"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        kframes.iter().any(|f| f["symbol"] == "do_syscall_64"),
        "kernel frames symbolised: {kframes:?}"
    );

    // systemctl restart: SIGTERM, then a new agent; enforcement holds in between.
    let (_, log) = agent.stop();
    assert!(log.contains("policies stay attached"), "{log}");
    assert_eq!(
        open_signal(&cat_copy, &guarded),
        Some(libc::SIGKILL),
        "enforced while no agent runs"
    );
    let second_dir = agent_dir("second");
    let agent = Agent::start_in(&second_dir, &args, |c| confinement.apply(c));
    assert_eq!(open_signal(&cat_copy, &guarded), Some(libc::SIGKILL));
    let (_, log) = agent.stop();
    assert!(log.contains("adopted"), "{log}");

    // Package removal: prerm releases what the stopped agent kept; enforcement ends.
    ReleaseKept::run();
    assert_eq!(open_signal(&cat_copy, &guarded), None, "released by prerm");
    for d in [first_dir, second_dir, scratch] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// The standard output of a command that must have succeeded.
fn check(what: &str, out: Output) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = out;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    assert!(
        status.success(),
        "{what}: {status}\n{stdout}\n{}",
        String::from_utf8_lossy(&stderr)
    );
    stdout
}

/// Every path under `root` (relative), the dpkg database and the stubs' call log excepted.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            if rel.starts_with("var/lib/dpkg") || rel == Path::new("calls.log") {
                continue;
            }
            out.insert(rel);
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// A root dpkg can install into: busybox for the maintainer scripts, the binary's shared
/// libraries, a status database holding the packages the .deb depends on (as this host has
/// them), and stubs of the systemd helpers that log their calls to /calls.log.
fn seed_chroot(root: &Path, deb: &Path) {
    for d in [
        "bin",
        "usr/bin",
        "dev",
        "tmp",
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/available"), "").unwrap();
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox missing (busybox-static; scripts/install-deps --test)"
    );
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for tool in ["sh", "rm", "mkdir", "cat", "echo", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
    let null = std::ffi::CString::new(root.join("dev/null").into_os_string().into_encoded_bytes())
        .unwrap();
    // SAFETY: mknod(2) of a character device at a path we own.
    let rc = unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(rc, 0, "mknod {null:?}: {}", std::io::Error::last_os_error());
    let ldd = check(
        "ldd",
        Command::new("ldd").arg(vigil_bin()).output().unwrap(),
    );
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let dest = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(lib, dest).unwrap();
    }
    let depends = check(
        "dpkg-deb -f",
        Command::new("dpkg-deb")
            .arg("-f")
            .arg(deb)
            .arg("Depends")
            .output()
            .unwrap(),
    );
    let mut status = String::new();
    for dep in depends.split(',') {
        let name = dep.split_whitespace().next().unwrap();
        status += &check(
            "dpkg-query",
            Command::new("dpkg-query")
                .arg("-W")
                .arg(
                    "-f=Package: ${Package}\\nStatus: install ok installed\\n\
                     Architecture: ${Architecture}\\nMulti-Arch: ${Multi-Arch}\\n\
                     Version: ${Version}\\nMaintainer: ${Maintainer}\\n\
                     Description: ${binary:Summary}\\n\\n",
                )
                .arg(format!("{name}:amd64"))
                .output()
                .unwrap(),
        );
        std::fs::write(
            root.join(format!("var/lib/dpkg/info/{name}:amd64.list")),
            "",
        )
        .unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), status).unwrap();
    for stub in ["deb-systemd-helper", "deb-systemd-invoke", "systemctl"] {
        let path = root.join("usr/bin").join(stub);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"{stub} $*\" >> /calls.log\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
}

/// Checks that every relative link (`](target)`, anchors aside) of every Markdown page under
/// `doc` names a file under `doc`; returns the number of pages.
fn doc_links_resolve(doc: &Path) -> usize {
    let readme = doc.join("README.md");
    assert!(readme.exists(), "{} missing", readme.display());
    let pages: Vec<PathBuf> = tree(doc)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| doc.join(p))
        .collect();
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for (at, _) in text.match_indices("](") {
            let rest = &text[at + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.contains(char::is_whitespace) {
                continue;
            }
            let mut resolved = page.parent().unwrap().to_path_buf();
            for part in Path::new(target).components() {
                match part {
                    std::path::Component::ParentDir => {
                        resolved.pop();
                    }
                    std::path::Component::Normal(p) => resolved.push(p),
                    _ => {}
                }
            }
            if !resolved.starts_with(doc) || !resolved.exists() {
                broken.push(format!("{}: {target}", page.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links that do not resolve in {}:\n{}",
        doc.display(),
        broken.join("\n")
    );
    pages.len()
}

fn dpkg(root: &Path, args: &[&str]) -> String {
    check(
        &format!("dpkg {args:?}"),
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(args)
            .output()
            .unwrap(),
    )
}

fn take_calls(root: &Path) -> String {
    let calls = std::fs::read_to_string(root.join("calls.log")).unwrap_or_default();
    let _ = std::fs::remove_file(root.join("calls.log"));
    calls
}

/// cargo-deb packs the binary these tests built; dpkg installs it into a chroot: the files,
/// the conffiles, `vigil version` and the default configuration from the installed paths,
/// `systemd-analyze verify` of the installed unit; the maintainer scripts start the service
/// only where systemd runs and restart it on an upgrade; `dpkg -r` leaves the conffiles
/// only, `dpkg -P` nothing.
#[test]
fn debian_package_installs_verifies_and_removes_in_a_chroot() {
    // Packing and unpacking a 100 MB debug binary loads this 2-core machine: not beside an
    // agent test whose agent works to deadlines.
    let _g = serial();
    let dir = scratch_dir("deb");
    let out_dir = dir.join("out");
    let bin = vigil_bin();
    let target_dir = bin.parent().unwrap().parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // --no-build: the binary under test, as built; the dev profile (cargo-deb warns).
    let build = Command::new(&cargo)
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
            "--no-strip",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(format!("{ROOT}/Cargo.toml"))
        .arg("-o")
        .arg(&out_dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .expect("cargo");
    check("cargo deb (cargo-deb: scripts/install-deps --test)", build);
    let deb = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");

    let root = dir.join("root");
    seed_chroot(&root, &deb);
    let before = tree(&root);
    let listing = check(
        "dpkg-deb -c",
        Command::new("dpkg-deb")
            .arg("-c")
            .arg(&deb)
            .output()
            .unwrap(),
    );
    dpkg(&root, &["-i", deb.to_str().unwrap()]);

    // Every file of the package is in place; the binary is the one built.
    for path in listing.lines().filter_map(|l| l.split_whitespace().last()) {
        let p = root.join(path.trim_start_matches("./"));
        assert!(p.exists(), "{} missing after dpkg -i", p.display());
    }
    assert!(
        std::fs::read(root.join("usr/bin/vigil")).unwrap() == std::fs::read(&bin).unwrap(),
        "/usr/bin/vigil is not {}",
        bin.display()
    );
    let conffiles: BTreeSet<PathBuf> =
        std::fs::read_to_string(root.join("var/lib/dpkg/info/vigil.conffiles"))
            .unwrap()
            .lines()
            .map(|l| PathBuf::from(l.trim_start_matches('/')))
            .collect();
    for f in std::fs::read_dir(format!("{ROOT}/install/debian/vigil.conf.d")).unwrap() {
        let f = f.unwrap();
        let installed = Path::new("etc/vigil/vigil.conf.d").join(f.file_name());
        assert!(
            conffiles.contains(&installed),
            "{installed:?} is a conffile"
        );
        assert_eq!(
            std::fs::read(root.join(&installed)).unwrap(),
            std::fs::read(f.path()).unwrap()
        );
    }

    // The documentation: every relative link of every installed page names an installed file.
    let doc = root.join("usr/share/doc/vigil");
    let pages = doc_links_resolve(&doc);
    assert!(
        pages > 20 && doc.join("docs/guides/install-service.md").exists(),
        "{pages} pages in {}",
        doc.display()
    );

    let version = check(
        "vigil version in the chroot",
        Command::new("chroot")
            .arg(&root)
            .args(["/usr/bin/vigil", "version"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        version.trim(),
        format!("vigil {}", env!("CARGO_PKG_VERSION"))
    );
    // The default configuration, as the installed unit passes it, is valid.
    let unit_text =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/vigil.service")).unwrap();
    let exec = service_values(&parse_unit(&unit_text), "ExecStart");
    let config = check(
        "the unit's ExecStart --check-config in the chroot",
        Command::new("chroot")
            .arg(&root)
            .args(exec[0].split_whitespace())
            .arg("--check-config")
            .output()
            .unwrap(),
    );
    assert!(config.contains("configuration OK"), "{config}");

    // systemd-analyze verify: the unit's syntax (it prints what it ignores, and still
    // exits 0), and that ExecStart names the installed executable.
    let verified = dir.join("vigil.service");
    let installed_bin = root.join("usr/bin/vigil");
    std::fs::write(
        &verified,
        unit_text.replace("/usr/bin/vigil", installed_bin.to_str().unwrap()),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&verified)
        .output()
        .expect("systemd-analyze (systemd; scripts/install-deps --test)");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {}\n{complaints}",
        verify.status
    );

    // No systemd running (this chroot): enabled, never started.
    let calls = take_calls(&root);
    assert!(
        calls.contains("deb-systemd-helper enable vigil.service"),
        "{calls}"
    );
    assert!(!calls.contains("deb-systemd-invoke"), "{calls}");
    // Where systemd runs: a reinstall is an upgrade, restarted in one step (the old agent
    // keeps its programs pinned until the new one attached its own), never stopped first.
    std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
    dpkg(&root, &["-i", deb.to_str().unwrap()]);
    let calls = take_calls(&root);
    assert!(
        calls.contains("deb-systemd-invoke restart vigil.service"),
        "{calls}"
    );
    assert!(!calls.contains("stop"), "{calls}");
    dpkg(&root, &["-r", "vigil"]);
    let calls = take_calls(&root);
    assert!(
        calls.contains("deb-systemd-invoke stop vigil.service"),
        "{calls}"
    );
    std::fs::remove_dir_all(root.join("run")).unwrap();

    // dpkg -r: the conffiles (and their directories) only.
    let after_remove: BTreeSet<PathBuf> = tree(&root).difference(&before).cloned().collect();
    let mut expected = conffiles.clone();
    for f in &conffiles {
        expected.extend(
            f.ancestors()
                .skip(1)
                .filter(|a| !a.as_os_str().is_empty())
                .map(Path::to_path_buf),
        );
    }
    assert_eq!(after_remove, expected, "left by dpkg -r");
    dpkg(&root, &["-P", "vigil"]);
    assert_eq!(tree(&root), before, "dpkg -P leaves nothing");
    let _ = std::fs::remove_dir_all(&dir);
}
