//! Export pipeline, configuration and metrics against the real agent (issue 5).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Agent, free_port, of_kind, read_events, run, scratch_dir, serial, vigil_bin};

const WAIT: Duration = Duration::from_secs(15);

/// A copy of /bin/true with a unique name, so its events are easy to pick out.
fn marker(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy("/bin/true", &p).unwrap();
    p
}

fn execs_of<'a>(events: &'a [Value], binary: &Path) -> Vec<&'a Value> {
    of_kind(events, "process_exec")
        .into_iter()
        .filter(|e| e["process"]["binary"] == binary.to_str().unwrap())
        .collect()
}

fn scrape(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of the metric line starting with `prefix` (0 when absent).
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn backup_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("events-"))
        .collect();
    v.sort();
    v
}

fn is_backup_name(n: &str, ext: &str) -> bool {
    // events-2006-01-02T15-04-05.000.json[.gz]
    let Some(stamp) = n.strip_prefix("events-").and_then(|r| r.strip_suffix(ext)) else {
        return false;
    };
    stamp.len() == 23
        && stamp.chars().enumerate().all(|(i, c)| match i {
            4 | 7 | 13 | 16 => c == '-',
            10 => c == 'T',
            19 => c == '.',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn export_rotation_by_interval_compresses_keeps_backups_and_mode() {
    let _g = serial();
    let agent = Agent::start(
        "rot-interval",
        &[
            "--export-file-rotation-interval=1s",
            "--export-file-compress",
            "--export-file-max-backups=2",
            "--export-file-perm=640",
        ],
    );
    let dir = agent.events_path.parent().unwrap().to_path_buf();
    for _ in 0..9 {
        run(&mut Command::new("/bin/true"));
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, log) = agent.stop();
    let names = backup_names(&dir);
    assert_eq!(names.len(), 2, "max 2 backups: {names:?}\n{log}");
    for n in &names {
        assert!(is_backup_name(n, ".json.gz"), "{n}");
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(dir.join(n)).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.lines().count() > 0 && text.ends_with("}\n"), "{n}");
        for l in text.lines() {
            serde_json::from_str::<Value>(l).unwrap();
        }
    }
    let mode = std::fs::metadata(dir.join("events.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn export_rotation_by_size_keeps_whole_lines() {
    let _g = serial();
    let agent = Agent::start(
        "rot-size",
        &[
            "--export-file-max-size-mb=1",
            "--export-file-max-backups=0",
            "--enable-process-environment-variables",
        ],
    );
    let dir = agent.events_path.parent().unwrap().to_path_buf();
    run(Command::new("sh").args(["-c", "for i in $(seq 1500); do /bin/true; done"]));
    std::thread::sleep(Duration::from_secs(1));
    agent.stop();
    let names = backup_names(&dir);
    assert!(!names.is_empty(), "no size rotation");
    for n in &names {
        assert!(is_backup_name(n, ".json"), "{n}");
        let text = std::fs::read_to_string(dir.join(n)).unwrap();
        assert!(
            text.len() <= 1 << 20 && text.len() > 900 << 10,
            "{n}: {}",
            text.len()
        );
        assert!(text.ends_with("}\n"));
        for l in text.lines() {
            serde_json::from_str::<Value>(l).unwrap();
        }
    }
}

#[test]
fn export_allow_and_deny_by_binary_regex_pid_and_event_set() {
    let _g = serial();
    let mut a = Command::new("sleep").arg("1.5").spawn().unwrap();
    let mut b = Command::new("sleep").arg("1.5").spawn().unwrap();
    let allow = "{\"binary_regex\":[\"/sleep$\"],\"event_set\":[\"PROCESS_EXIT\"]}\n{\"binary_regex\":[\"vigil-allow-yes$\"]}";
    let deny = format!("{{\"pid\":[{}]}}", a.id());
    let agent = Agent::start(
        "allow-deny",
        &["--export-allowlist", allow, "--export-denylist", &deny],
    );
    let dir = agent.events_path.parent().unwrap().to_path_buf();
    let yes = marker(&dir, "vigil-allow-yes");
    let no = marker(&dir, "vigil-allow-no");
    run(&mut Command::new(&yes));
    run(&mut Command::new(&no));
    a.wait().unwrap();
    b.wait().unwrap();
    agent.wait_for("exit of the second sleep", WAIT, |ev| {
        crate::harness::exits_of_pid(ev, b.id()).len() == 1
    });
    let (events, _) = agent.stop();
    assert_eq!(execs_of(&events, &yes).len(), 1);
    assert!(execs_of(&events, &no).is_empty());
    assert!(
        crate::harness::exits_of_pid(&events, a.id()).is_empty(),
        "denied pid"
    );
    assert!(
        crate::harness::execs_of_pid(&events, b.id()).is_empty(),
        "exits only"
    );
    for e in &events {
        let p = e
            .as_object()
            .unwrap()
            .iter()
            .find_map(|(_, v)| v.get("process"))
            .unwrap_or_else(|| panic!("only process events pass: {e}"));
        let bin = p["binary"].as_str().unwrap();
        assert!(
            bin.ends_with("/sleep") || bin.ends_with("vigil-allow-yes"),
            "{bin}"
        );
    }
}

#[test]
fn export_field_filters_and_redaction_of_arguments() {
    let _g = serial();
    let agent = Agent::start(
        "fields-redact",
        &[
            "--field-filters",
            r#"{"fields":"process.binary,process.arguments,process.pid","action":"INCLUDE","event_set":["PROCESS_EXEC"]}"#,
            "--redaction-filters",
            r#"{"redact":["--password[= ](\\S+)"]}"#,
        ],
    );
    let dir = agent.events_path.parent().unwrap().to_path_buf();
    let bin = marker(&dir, "vigil-redact");
    let pid = run(Command::new(&bin).args(["--password", "hunter2", "x"]));
    let events = agent.wait_for("exit of the marker", WAIT, |ev| {
        !crate::harness::exits_of_pid(ev, pid).is_empty()
    });
    agent.stop();
    let exec = execs_of(&events, &bin)[0];
    let keys: Vec<&String> = exec["process"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["arguments", "binary", "pid"], "{exec}");
    assert!(exec.get("parent").is_none());
    assert_eq!(exec["process"]["arguments"], "--password ***** x");
    let exit = crate::harness::exits_of_pid(&events, pid)[0];
    assert_eq!(
        exit["process"]["arguments"], "--password ***** x",
        "exits are not field-filtered"
    );
    assert!(exit.get("parent").is_some());
    let text = std::fs::read_to_string(dir.join("events.json")).unwrap();
    assert!(
        !text.contains("hunter2") && !text.contains("aHVudGVyMg"),
        "secret leaked"
    );
}

#[test]
fn export_rate_limit_emits_rate_limit_info() {
    let _g = serial();
    let agent = Agent::start("ratelimit", &["--export-rate-limit=5"]);
    for _ in 0..30 {
        run(&mut Command::new("/bin/true"));
    }
    let (events, _) = agent.stop();
    let infos = of_kind(&events, "rate_limit_info");
    assert_eq!(
        infos.len(),
        1,
        "one report at shutdown (less than a minute ran)"
    );
    let dropped: u64 = infos[0]["number_of_dropped_process_events"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped >= 30, "dropped {dropped}");
    assert!(events.len() <= 5 + 2, "{} events exported", events.len());
}

#[test]
fn export_metrics_endpoint_counts_real_events() {
    let _g = serial();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start("metrics", &["--metrics-server", &addr]);
    let dir = agent.events_path.parent().unwrap().to_path_buf();
    let bin = marker(&dir, "vigil-metrics-marker");
    let series = format!(
        "tetragon_events_total{{binary=\"{}\",namespace=\"\",node_name=",
        bin.display()
    );
    const N: usize = 7;
    for _ in 0..N {
        run(&mut Command::new(&bin));
    }
    agent.wait_for("the marker's execs", WAIT, |ev| {
        execs_of(ev, &bin).len() == N
    });
    std::thread::sleep(Duration::from_millis(700));
    let text = scrape(port, "/metrics");
    let execs: f64 = text
        .lines()
        .filter(|l| l.starts_with(&series) && l.contains("type=\"PROCESS_EXEC\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(execs, N as f64, "{text}");
    assert!(metric(&text, "tetragon_events_exported_total") >= N as f64);
    assert!(metric(&text, "tetragon_process_cache_size") > 0.0, "{text}");
    assert!(metric(&text, "tetragon_flags_total{type=\"execve\"}") >= N as f64);
    assert!(text.contains("tetragon_observer_ringbuf_events_lost_total 0"));
    assert!(scrape(port, "/healthz").ends_with("ok\n"));
    agent.stop();
}

fn config_run(name: &str, args: &[&str], setup: impl FnOnce(&Path)) -> (Vec<Value>, PathBuf) {
    let cfg = scratch_dir(&format!("{name}-cfg"));
    setup(&cfg);
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{cfg}", cfg.to_str().unwrap()))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start(name, &args);
    let dir = agent.events_path.parent().unwrap().to_path_buf();
    let yes = marker(&dir, "cfg-yes");
    let no = marker(&dir, "cfg-no");
    run(&mut Command::new(&yes));
    run(&mut Command::new(&no));
    agent.wait_for("cfg-yes", WAIT, |ev| !execs_of(ev, &yes).is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let (events, log) = agent.stop();
    assert!(
        execs_of(&events, &no).is_empty(),
        "{name}: cfg-no must be denied"
    );
    assert!(
        log.contains("--bpf-lib") && log.contains("accepted but ignored"),
        "{log}"
    );
    (events, dir)
}

#[test]
fn export_config_dir_and_file_equal_flags_and_cli_wins() {
    let _g = serial();
    let deny = r#"{"binary_regex":["cfg-no$"]}"#;
    // Flags.
    config_run(
        "cfg-flags",
        &["--export-denylist", deny, "--bpf-lib", "/x"],
        |_| {},
    );
    // Config directory: one file per flag; the command line overrides the rate limit.
    config_run(
        "cfg-dir",
        &["--config-dir", "{cfg}", "--export-rate-limit=-1"],
        |d| {
            std::fs::write(d.join("export-denylist"), deny).unwrap();
            std::fs::write(d.join("export-rate-limit"), "0\n").unwrap();
            std::fs::write(d.join("bpf-lib"), "/x").unwrap();
        },
    );
    // YAML file.
    config_run("cfg-yaml", &["--config-file", "{cfg}/vigil.yaml"], |d| {
        std::fs::write(
            d.join("vigil.yaml"),
            format!("export-denylist: '{deny}'\nbpf-lib: /x\nenable-ancestors: [base]\n"),
        )
        .unwrap();
    });
}

#[test]
fn export_check_config_exit_codes() {
    let check = |args: &[&str]| {
        let out = Command::new(vigil_bin())
            .args(["agent", "--check-config"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(check(&[]).0, Some(0));
    let (code, err) = check(&["--field-filters", "{\"fields\":3}"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--field-filters: line 1"), "{err}");
    let d = scratch_dir("check-config");
    std::fs::write(d.join("export-allowlist"), r#"{"cel_expression":["1 +"]}"#).unwrap();
    let (code, err) = check(&["--config-dir", d.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--export-allowlist: line 1: cel_expression[0] \"1 +\": column 4:"),
        "{err}"
    );
    std::fs::write(d.join("export-allowlist"), "").unwrap();
    std::fs::write(d.join("no-such-flag"), "1").unwrap();
    let (code, err) = check(&["--config-dir", d.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown flag --no-such-flag"), "{err}");
}

#[test]
fn export_full_disk_is_counted_and_writing_resumes() {
    let _g = serial();
    let mnt = scratch_dir("fulldisk-mnt");
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "vigil-full",
            mnt.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(mnt.clone());
    // Fill the file system.
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    drop(f);
    let export = mnt.join("events.json");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start(
        "fulldisk",
        &[
            "--export-filename",
            export.to_str().unwrap(),
            "--metrics-server",
            &addr,
        ],
    );
    for _ in 0..20 {
        run(&mut Command::new("/bin/true"));
    }
    std::thread::sleep(Duration::from_millis(1200));
    let text = scrape(port, "/metrics");
    let lost = metric(
        &text,
        "vigil_events_lost_total{event_type=\"ANY\",stage=\"LOSS_STAGE_SINK\"}",
    );
    assert!(lost > 0.0, "{text}");
    assert!(agent.pid() > 0);
    // Free space: writing resumes, and the loss is reported in the file.
    std::fs::remove_file(&filler).unwrap();
    let dir = scratch_dir("fulldisk-marker");
    let bin = marker(&dir, "vigil-after-full");
    run(&mut Command::new(&bin));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let events = read_events(&export);
        let sink_losses = crate::harness::lost(&events, "LOSS_STAGE_SINK", "ANY");
        if !execs_of(&events, &bin).is_empty() && sink_losses > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "writing did not resume"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, log) = agent.stop();
    assert_eq!(
        log.matches("export write failed").count(),
        1,
        "one log line per burst:\n{log}"
    );
    assert!(log.contains("export writes resumed"), "{log}");
}
