//! The flight recorder's web explorer (`--web-address`): who may ask (token, Host, Origin,
//! the token file's mode), and the page itself, rendered by a real browser (Debian's
//! `chromium`, headless) after a shell pipeline and a process killed by a Sigkill policy:
//! the DOM must show the tree and the kill that the history database holds.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::history::{history, recorded};

/// One HTTP/1.1 exchange on `port` (the connection closed after it): (status, headers with
/// lower-case names, body).
fn http(port: u16, request: &str) -> (u16, HashMap<String, String>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// A GET of `path` with `extra` header lines.
fn get(
    port: u16,
    path: &str,
    host: &str,
    extra: &[String],
) -> (u16, HashMap<String, String>, String) {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    http(port, &req)
}

/// (token, URL) from the token file, and the URL `vigil history web-url` prints.
fn token_and_url(dir: &Path) -> (String, String) {
    let text = std::fs::read_to_string(dir.join("web-token")).unwrap();
    let token = text.lines().next().unwrap().to_string();
    let (code, out, err) = history(dir, &["web-url"]);
    assert_eq!(code, Some(0), "{err}");
    (token, out.trim().to_string())
}

#[test]
fn web_explorer_requires_the_token_its_own_host_and_origin() {
    let _g = serial();
    let base = scratch_dir("web-security");
    let dir = base.join("history");
    let port = free_port();
    let agent = Agent::start_in(
        &base,
        &[
            "--history-dir",
            dir.to_str().unwrap(),
            "--web-address",
            &format!("127.0.0.1:{port}"),
        ],
        |_| {},
    );
    let mode = std::fs::metadata(dir.join("web-token"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "web-token mode");
    let (token, url) = token_and_url(&dir);
    assert_eq!(token.len(), 64, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    assert_eq!(url, format!("http://127.0.0.1:{port}/?token={token}"));

    let host = format!("127.0.0.1:{port}");
    let bearer = format!("Authorization: Bearer {token}");
    // No token, a wrong one: 401, and nothing of the history.
    let (status, _, body) = get(port, "/api/view", &host, &[]);
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = get(port, "/", &host, &[]);
    assert_eq!(status, 401);
    let wrong = format!("Authorization: Bearer {}", "0".repeat(64));
    let (status, _, _) = get(port, "/api/view", &host, &[wrong]);
    assert_eq!(status, 401);
    // A host name (DNS rebinding) or another port: 421, even with the token.
    let (status, _, body) = get(
        port,
        "/api/view",
        &format!("rebind.example:{port}"),
        std::slice::from_ref(&bearer),
    );
    assert_eq!(status, 421, "{body}");
    let (status, _, _) = get(
        port,
        "/api/view",
        "127.0.0.1:1",
        std::slice::from_ref(&bearer),
    );
    assert_eq!(status, 421);
    // Another site's page: 403, even with the token.
    let (status, _, body) = get(
        port,
        "/api/view",
        &host,
        &[bearer.clone(), "Origin: http://evil.example".into()],
    );
    assert_eq!(status, 403, "{body}");
    // The token, this host: JSON with the page's protections and no CORS.
    let (status, headers, body) = get(
        port,
        "/api/view",
        &host,
        &[bearer.clone(), format!("Origin: http://{host}")],
    );
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    assert!(view["processes"].is_array(), "{body}");
    assert_eq!(headers["content-security-policy"], "default-src 'self'");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(
        !headers.keys().any(|k| k.starts_with("access-control-")),
        "{headers:?}"
    );
    // The page URL's token becomes a strict, script-proof cookie, which is then enough.
    let (status, headers, _) = get(port, &format!("/?token={token}"), &host, &[]);
    assert_eq!(status, 303);
    let cookie = &headers["set-cookie"];
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let (status, headers, body) = get(
        port,
        "/",
        &format!("localhost:{port}"),
        &[format!("Cookie: {pair}")],
    );
    assert_eq!(status, 200);
    assert!(
        headers["content-type"].starts_with("text/html"),
        "{headers:?}"
    );
    assert!(body.contains("/app.js"), "{body}");
    // Read-only; no body; bounded heads.
    let (status, _, _) = http(
        port,
        &format!(
            "POST /api/view HTTP/1.1\r\nHost: {host}\r\n{bearer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 405);
    let (status, _, _) = http(
        port,
        &format!(
            "GET /api/view HTTP/1.1\r\nHost: {host}\r\n{bearer}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        ),
    );
    assert_eq!(status, 413);
    let big = format!("X-Pad: {}", "a".repeat(17 << 10));
    let (status, _, _) = get(port, "/api/view", &host, &[bearer.clone(), big]);
    assert_eq!(status, 431);
    let (status, _, _) = get(port, "/api/process?exec_id=bm9wZQ%3D%3D", &host, &[bearer]);
    assert_eq!(status, 404);
    agent.stop();
}

#[test]
fn web_address_without_history_dir_is_one_clear_error() {
    let base = scratch_dir("web-no-history");
    let out = Command::new(vigil_bin())
        .args(["agent", "--web-address", "127.0.0.1:1"])
        .arg(format!(
            "--server-address=unix://{}/vigil.sock",
            base.display()
        ))
        .arg("--health-server-address=")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--web-address needs --history-dir"), "{err}");
    let (code, _, err) = history(&base, &["web-url"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no web token"), "{err}");
}

/// A tag's attribute value (as the DOM serializer writes it: double quotes, escaped).
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// A process row of the rendered tree: (exec id, pid, binary, depth in the tree).
#[derive(Debug, Clone)]
struct Row {
    exec_id: String,
    pid: String,
    binary: String,
    depth: usize,
    /// The row's whole `<div>`, badges included.
    html: String,
}

/// The tree's process rows in document order, with their nesting depth (`<ul>` levels
/// inside `#tree`).
fn tree_rows(dom: &str) -> Vec<Row> {
    let start = dom.find("id=\"tree\"").expect("no #tree in the page");
    let dom = &dom[start..];
    let mut rows = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(off) = dom[i..].find('<') {
        let at = i + off;
        let rest = &dom[at..];
        if rest.starts_with("<ul") {
            depth += 1;
        } else if rest.starts_with("</ul>") {
            if depth == 0 {
                break; // the end of #tree
            }
            depth -= 1;
        } else if rest.starts_with("<div class=\"proc") {
            let tag_end = rest.find('>').unwrap();
            let tag = &rest[..tag_end];
            let div_end = rest.find("</div>").unwrap_or(rest.len());
            rows.push(Row {
                exec_id: attr(tag, "data-exec-id").unwrap_or("").to_string(),
                pid: attr(tag, "data-pid").unwrap_or("").to_string(),
                binary: attr(tag, "data-binary").unwrap_or("").to_string(),
                depth,
                html: rest[..div_end].to_string(),
            });
        }
        i = at + 1;
    }
    rows
}

/// The rendered tree's parent of each row: the last row before it one level up.
fn parents(rows: &[Row]) -> HashMap<String, String> {
    let mut stack: Vec<&Row> = Vec::new();
    let mut out = HashMap::new();
    for r in rows {
        while stack.last().is_some_and(|top| top.depth >= r.depth) {
            stack.pop();
        }
        if let Some(p) = stack.last() {
            out.insert(r.exec_id.clone(), p.exec_id.clone());
        }
        stack.push(r);
    }
    out
}

fn chromium(args: &[&str]) -> std::process::Output {
    let out = Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("chromium (scripts/install-deps --test installs it): {e}"));
    assert!(
        out.status.success(),
        "chromium {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Polls `vigil history` until `pred` holds on what `args` prints.
fn wait_recorded(
    dir: &Path,
    args: &[&str],
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, out, _) = history(dir, &[args, &["-o", "json"]].concat());
        if code == Some(0) {
            let evs: Vec<Value> = out
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if pred(&evs) {
                return evs;
            }
        }
        assert!(Instant::now() < deadline, "the history never held {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_page_in_a_browser_shows_the_pipeline_tree_and_the_sigkill() {
    let _g = serial();
    let base = scratch_dir("web-browser");
    let dir = base.join("history");
    let target = base.join("forbidden.txt");
    std::fs::write(&target, "secret\n").unwrap();
    let policy_yaml = OpenatPolicy::new("web-kill-forbidden")
        .dirfd()
        .path("Equal", &[target.to_str().unwrap()])
        .action("Sigkill", &[])
        .yaml();
    let policy = write_policy(&base, "kill", &policy_yaml);
    let port = free_port();
    let agent = Agent::start_in(
        &base,
        &[
            "--history-dir",
            dir.to_str().unwrap(),
            "--web-address",
            &format!(":{port}"),
            "--tracing-policy",
            &policy,
        ],
        |_| {},
    );
    // A 3-level pipeline (sh -> sh -> cat | wc), then a cat the policy kills.
    let ok = Command::new("sh")
        .args(["-c", "sh -c \"cat /etc/hostname | wc -c\""])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let killed = Command::new("/usr/bin/cat").arg(&target).output().unwrap();
    assert_eq!(killed.status.signal(), Some(libc::SIGKILL), "cat is killed");

    // What the database holds: the kill, and the pipeline's tree.
    let kills = wait_recorded(
        &dir,
        &["events", "--action", "sigkill"],
        "the Sigkill",
        |e| !e.is_empty(),
    );
    let kill = &kills[0]["process_kprobe"];
    assert_eq!(kill["policy_name"], "web-kill-forbidden");
    let kill_exec_id = kill["process"]["exec_id"].clone();
    wait_recorded(
        &dir,
        &["events", "--type", "exit"],
        "the killed cat's exit",
        |e| {
            e.iter().any(|x| {
                x["process_exit"]["process"]["exec_id"] == kill_exec_id
                    && x["process_exit"]["signal"] == "SIGKILL"
            })
        },
    );
    let me = u64::from(std::process::id());
    let execs = wait_recorded(&dir, &["events", "--type", "exec"], "the pipeline", |e| {
        e.iter()
            .any(|x| x["process_exec"]["process"]["binary"] == "/usr/bin/wc")
    });
    let outer = execs
        .iter()
        .map(|e| &e["process_exec"])
        .find(|e| {
            e["parent"]["pid"].as_u64() == Some(me)
                && e["process"]["arguments"]
                    .as_str()
                    .is_some_and(|a| a.contains("cat /etc/hostname"))
        })
        .expect("the outer sh in the history");
    let outer_id = outer["process"]["exec_id"].as_str().unwrap();
    let tree = recorded(&dir, &["tree", "--exec-id", outer_id]);
    // (exec id, parent exec id, pid, binary) of the pipeline's processes, from the database.
    let mut pipeline: Vec<(String, String, u64, String)> = Vec::new();
    let mut wanted = vec![outer_id.to_string()];
    while let Some(id) = wanted.pop() {
        for e in tree.iter().filter_map(|e| e.get("process_exec")) {
            let p = &e["process"];
            if p["exec_id"] == id.as_str() {
                pipeline.push((
                    id.clone(),
                    p["parent_exec_id"].as_str().unwrap().to_string(),
                    p["pid"].as_u64().unwrap(),
                    p["binary"].as_str().unwrap().to_string(),
                ));
            }
            if e["process"]["parent_exec_id"] == id.as_str() {
                wanted.push(e["process"]["exec_id"].as_str().unwrap().to_string());
            }
        }
    }
    let binaries: Vec<&str> = pipeline.iter().map(|p| p.3.as_str()).collect();
    assert_eq!(
        pipeline.len(),
        4,
        "outer sh, inner sh, cat, wc: {binaries:?}"
    );

    // The page, as a browser renders it (its scripts run; their fetches are answered).
    let (_, url) = token_and_url(&dir);
    let profile = base.join("chromium-profile");
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let out = chromium(&[
        &profile_arg,
        "--virtual-time-budget=5000",
        "--dump-dom",
        &url,
    ]);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    std::fs::write(base.join("page.html"), &dom).unwrap();
    let rows = tree_rows(&dom);
    assert!(
        !rows.is_empty(),
        "the page shows no process (DOM in {})",
        base.join("page.html").display()
    );
    let shown: HashMap<&str, &Row> = rows.iter().map(|r| (r.exec_id.as_str(), r)).collect();
    let rendered_parent = parents(&rows);
    for (id, parent, pid, binary) in &pipeline {
        let row = shown
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{binary} pid {pid} ({id}) is not on the page"));
        assert_eq!(row.pid, pid.to_string(), "{binary}");
        assert_eq!(row.binary, *binary);
        assert!(row.html.contains(binary.as_str()), "{}", row.html);
        if id != outer_id {
            assert_eq!(
                rendered_parent.get(id.as_str()),
                Some(parent),
                "{binary} pid {pid} is not drawn under its parent"
            );
        }
    }
    // The kill: in the enforcement list and on the killed process's row.
    let kill_id = kill["process"]["exec_id"].as_str().unwrap();
    let kill_pid = kill["process"]["pid"].as_u64().unwrap().to_string();
    let listed = dom.split("<li ").any(|li| {
        let tag = format!(" {}", &li[..li.find('>').unwrap_or(li.len())]);
        attr(&tag, "data-exec-id") == Some(kill_id)
            && attr(&tag, "data-pid") == Some(kill_pid.as_str())
            && attr(&tag, "data-action") == Some("KPROBE_ACTION_SIGKILL")
            && attr(&tag, "data-policy") == Some("web-kill-forbidden")
    });
    assert!(
        listed,
        "the Sigkill of pid {kill_pid} is not in the enforcement list"
    );
    let killed_row = shown
        .get(kill_id)
        .unwrap_or_else(|| panic!("the killed cat ({kill_id}) is not in the tree"));
    assert_eq!(killed_row.binary, "/usr/bin/cat");
    assert!(
        killed_row.html.contains("data-action=\"SIGKILL\"")
            && killed_row.html.contains("web-kill-forbidden")
            && killed_row.html.contains("exit SIGKILL"),
        "{}",
        killed_row.html
    );
    // The details pane opened on the newest enforcement: the killed process, from its own
    // endpoint.
    assert!(
        dom.contains(&format!("<dl data-exec-id=\"{kill_id}\">")),
        "the details pane does not show the killed process"
    );

    let shot = base.join("web-explorer.png");
    let shot_arg = format!("--screenshot={}", shot.display());
    chromium(&[
        &profile_arg,
        "--virtual-time-budget=5000",
        "--window-size=1280,900",
        &shot_arg,
        &url,
    ]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{}: {} bytes, not a rendered page",
        shot.display(),
        png.len()
    );
    println!("web explorer screenshot: {}", shot.display());
    eprintln!(
        "web explorer: {} process rows, pipeline {binaries:?}, Sigkill of pid {kill_pid}; screenshot {}",
        rows.len(),
        shot.display()
    );
    agent.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(PathBuf::from(&profile));
}
