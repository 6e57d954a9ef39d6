//! The agent's API, export and metrics surfaces against hostile clients (issue 17):
//! policy names that are paths, policies of other domains, header floods and silent
//! connections, a symlink at the export path, and a health service that answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

fn open_policy(name: &str, path: &str) -> String {
    OpenatPolicy::new(name)
        .dirfd()
        .path("Equal", &[path])
        .yaml()
}

fn namespaced(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicyNamespaced\nmetadata:\n  name: {name:?}\n  namespace: {ns:?}\nspec: {{}}\n"
    )
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn adversarial_api_persisted_policy_names_cannot_escape_the_directory() {
    let _g = serial();
    let dir = scratch_dir("adv-api-persist");
    let persist = dir.join("a/b/persist");
    let agent = Agent::start(
        "adv-api-persist-agent",
        &[
            "--persist-grpc-policies",
            "--persist-grpc-policies-dir",
            persist.to_str().unwrap(),
        ],
    );
    // `persist/../../tmp/x.<name>.yaml` would land in `dir/a/tmp`; `/tmp/x` is absolute.
    for (ns, name, field) in [
        ("../../tmp/x", "tp", "metadata.namespace"),
        ("/tmp/x", "tp", "metadata.namespace"),
        ("ns", "../../../escape", "metadata.name"),
    ] {
        let file = dir.join("bad.yaml");
        std::fs::write(&file, namespaced(ns, name)).unwrap();
        let (code, _, err) = agent.cli(&["tracingpolicy", "add", file.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("InvalidArgument") && err.contains(field),
            "{ns} {name}: {err}"
        );
    }
    let (code, _, err) = agent.cli(&["tracingpolicy", "delete", "tp", "-n", "../../tmp/x"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("InvalidArgument") && err.contains("namespace"),
        "{err}"
    );
    let outside: Vec<_> = files_under(&dir)
        .into_iter()
        .filter(|p| !p.starts_with(&persist) && p.file_name().unwrap() != "bad.yaml")
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
    assert!(!Path::new("/tmp/x.tp.yaml").exists());

    // A valid one is persisted, root-only.
    let good = dir.join("good.yaml");
    std::fs::write(&good, namespaced("team-a", "tp")).unwrap();
    let (code, _, err) = agent.cli(&["tracingpolicy", "add", good.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let f = persist.join("team-a.tp.yaml");
    let mode = std::fs::symlink_metadata(&f).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "{}", f.display());
    agent.stop();
}

#[test]
fn adversarial_api_static_policies_change_only_through_their_file() {
    let _g = serial();
    let dir = scratch_dir("adv-api-static");
    let watched = dir.join("watched.txt");
    std::fs::write(&watched, "w\n").unwrap();
    let policy = write_policy(
        &dir,
        "watch",
        &open_policy("watch-static", watched.to_str().unwrap()),
    );
    let agent = Agent::start("adv-api-static-agent", &["--tracing-policy", &policy]);
    for args in [
        &["tracingpolicy", "delete", "watch-static"][..],
        &[
            "tracingpolicy",
            "delete",
            "watch-static",
            "--domain",
            "static",
        ],
        &[
            "tracingpolicy",
            "disable",
            "watch-static",
            "--domain",
            "static",
        ],
        &[
            "tracingpolicy",
            "set-mode",
            "watch-static",
            "monitor",
            "--domain",
            "static",
        ],
    ] {
        let (code, _, err) = agent.cli(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains("FailedPrecondition")
                && err.contains("belongs to domain static")
                && err.contains("edit its file and restart"),
            "{args:?}: {err}"
        );
    }
    // Still listed, enabled, and enforcing what it says.
    let (code, out, err) = agent.cli(&["tracingpolicy", "list", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let p = list["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "watch-static")
        .unwrap_or_else(|| panic!("not listed: {out}"));
    assert_eq!(p["state"], "TP_STATE_ENABLED", "{p}");
    assert_eq!(p["domain"], "static", "{p}");
    std::fs::read_to_string(&watched).unwrap();
    agent.wait_for("the policy's event", Duration::from_secs(15), |ev| {
        !kprobes(ev, "watch-static").is_empty()
    });
    agent.stop();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn scrape(port: u16) -> (String, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out, t.elapsed())
}

#[test]
fn adversarial_api_metrics_survive_header_floods_and_silent_clients() {
    let _g = serial();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start("adv-api-metrics", &["--metrics-server", &addr]);
    let (out, _) = scrape(port);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let before = rss_kib(agent.pid());
    // Four clients, each sending 1 MiB of header without a newline.
    let chunk = vec![b'A'; 64 << 10];
    for _ in 0..4 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut sent = 0;
        while sent < 1 << 20 {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(agent.pid());
    let growth = after.saturating_sub(before);
    eprintln!("metrics header flood: RSS {before} KiB -> {after} KiB (+{growth} KiB)");
    assert!(growth < 4 << 10, "RSS grew by {growth} KiB");

    // Twenty clients that connect and never send anything.
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let (out, took) = scrape(port);
    eprintln!("scrape with 20 idle connections: {took:?}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("tetragon_"), "{out}");
    assert!(took < Duration::from_secs(1), "scrape took {took:?}");
    drop(idle);
    agent.stop();
}

#[test]
fn adversarial_api_health_serving_despite_silent_connections() {
    let _g = serial();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start("adv-api-health", &["--health-server-address", &addr]);
    // More silent connections than the health server keeps.
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    let status = rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .unwrap();
        tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "liveness".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
    });
    let took = t.elapsed();
    eprintln!("health check with 40 idle connections: {took:?}");
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    drop(idle);
    agent.stop();
}

#[test]
fn adversarial_api_export_symlink_is_refused() {
    let _g = serial();
    let dir = scratch_dir("adv-api-export");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let link = dir.join("events.json");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let log = dir.join("agent.log");
    let mut child = Command::new(vigil_bin())
        .args(["agent", "--export-filename"])
        .arg(&link)
        .arg("--state-dir")
        .arg(&dir)
        .args(["--server-address=", "--health-server-address="])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // An agent that followed the link would run on: give it a deadline, not a hang.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(
        err.contains(&link.display().to_string()) && err.contains("symbolic link"),
        "{err}"
    );
}

#[test]
fn adversarial_api_existing_export_file_gets_the_configured_mode() {
    let _g = serial();
    let dir = scratch_dir("adv-api-export-mode");
    let path = dir.join("events.json");
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let log = dir.join("agent.log");
    let mut child = Command::new(vigil_bin())
        .args(["agent", "--export-filename"])
        .arg(&path)
        .args(["--export-file-perm", "640", "--state-dir"])
        .arg(&dir)
        .args(["--server-address=", "--health-server-address="])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("vigil agent ready")
    {
        assert!(child.try_wait().unwrap().is_none(), "agent exited");
        assert!(Instant::now() < deadline, "agent not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert_eq!(
        mode, 0o640,
        "an existing 0666 export file keeps leaking events"
    );
}

/// grpc.health.v1 `liveness` of the health server at `addr`.
fn liveness(rt: &tokio::runtime::Runtime, addr: &str) -> i32 {
    rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .unwrap();
        tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "liveness".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
    })
}

/// A pipeline blocked on its sink (the export file is a FIFO nobody reads any more) while
/// events keep coming: health liveness turns NOT_SERVING after the stall threshold, and
/// SERVING again once the sink drains.
#[test]
fn adversarial_api_liveness_follows_a_stalled_pipeline() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tonic_health::pb::health_check_response::ServingStatus;

    let _g = serial();
    let dir = scratch_dir("adv-api-stall");
    let fifo = dir.join("events.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // The read end first, so the agent's open does not block.
    let mut rd = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap()
    };
    let paused = Arc::new(AtomicBool::new(false));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = dir.join("agent.log");
    let mut child = Command::new(vigil_bin())
        .args(["agent", "--export-filename"])
        .arg(&fifo)
        .arg("--state-dir")
        .arg(&dir)
        .args(["--server-address=", "--health-server-address", &addr])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let p = Arc::clone(&paused);
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut writer_seen = false;
        loop {
            if p.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            match rd.read(&mut buf) {
                Ok(0) if writer_seen => return,
                Ok(0) => std::thread::sleep(Duration::from_millis(20)),
                Ok(_) => writer_seen = true,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("vigil agent ready")
    {
        assert!(child.try_wait().unwrap().is_none(), "agent exited");
        assert!(Instant::now() < deadline, "agent not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(liveness(&rt, &addr), ServingStatus::Serving as i32);

    // Stop reading and keep the events coming until liveness says NOT_SERVING.
    paused.store(true, Ordering::Relaxed);
    let stalled_at = Instant::now();
    let mut not_serving = None;
    while stalled_at.elapsed() < Duration::from_secs(30) {
        for _ in 0..20 {
            Command::new("/usr/bin/true").status().unwrap();
        }
        if liveness(&rt, &addr) == ServingStatus::NotServing as i32 {
            not_serving = Some(stalled_at.elapsed());
            break;
        }
    }
    let took = not_serving.expect("liveness still SERVING 30 s into a stall");
    eprintln!("stalled pipeline: NOT_SERVING after {took:?}");
    assert!(took >= Duration::from_secs(9), "{took:?}: too early");

    // The sink drains: SERVING again.
    paused.store(false, Ordering::Relaxed);
    let resumed = Instant::now();
    while liveness(&rt, &addr) != ServingStatus::Serving as i32 {
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "liveness not SERVING 10 s after the pipeline resumed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("recovered: SERVING after {:?}", resumed.elapsed());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("event pipeline stalled"), "{text}");
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    drain.join().unwrap();
}
