//! The Grafana dashboard (install/grafana/vigil-dashboard.json) against a real Prometheus
//! (Debian's `prometheus`, scripts/install-deps --test) scraping a real agent: every panel's
//! query returns data, and names only metrics the agent exports. Also how the dashboard
//! ships: the Helm chart's ConfigMap for Grafana's sidecar and the Debian package.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DASHBOARD: &str = "install/grafana/vigil-dashboard.json";
const CHART_DASHBOARD: &str = "install/kubernetes/vigil/dashboards/vigil-dashboard.json";
const CHART_TEMPLATE: &str = "install/kubernetes/vigil/templates/grafana-dashboard.yaml";
const WAIT: Duration = Duration::from_secs(30);

/// What Grafana puts for its built-in interval variables: `$__rate_interval` is at least
/// four scrape intervals (1 s here), `$__range` the dashboard's time range.
const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "10s"),
    ("__interval", "2s"),
    ("__range", "5m"),
];

fn dashboard() -> Value {
    let path = format!("{ROOT}/{DASHBOARD}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("dashboard without panels") {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// (panel title, refId, expr) of every query target.
fn targets(dash: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            out.push((
                title,
                t["refId"].as_str().unwrap_or("?").into(),
                expr.into(),
            ));
        }
    }
    out
}

/// The expression as Grafana sends it when every variable is "All".
fn substitute(dash: &Value, expr: &str) -> String {
    let mut values: Vec<(String, String)> = BUILTINS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap().to_string();
        if var["type"] == "query" {
            let all = var["allValue"]
                .as_str()
                .unwrap_or_else(|| panic!("variable {name}: no allValue"));
            values.push((name, all.to_string()));
        }
    }
    let mut out = expr.to_string();
    for (name, value) in &values {
        for form in [
            format!("${{{name}}}"),
            format!("[[{name}]]"),
            format!("${name}"),
        ] {
            out = out.replace(&form, value);
        }
    }
    assert!(
        !out.contains('$') && !out.contains("[["),
        "unknown variable left in {out:?} (from {expr:?})"
    );
    out
}

fn metric_names(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\b(?:tetragon|vigil)_[a-z_]+\b").unwrap();
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GET over HTTP/1.0 (so the body is not chunked): (status, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Prometheus started by the test; killed (and its storage removed) on drop, pass or fail.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, scrape_port: u16) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n- job_name: vigil\n  static_configs:\n  \
                 - targets: ['127.0.0.1:{scrape_port}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/install-deps --test)");
        let prometheus = Prometheus {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        prometheus.wait("ready", |p| {
            matches!(http_get(p.port, "/-/ready"), Ok((200, _)))
        });
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    fn wait(&self, what: &str, ok: impl Fn(&Prometheus) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !ok(self) {
            assert!(
                Instant::now() < deadline,
                "prometheus: not {what} after {WAIT:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `data` of a successful API answer.
    fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = http_get(self.port, path).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("HTTP {status}: {body}"));
        }
        Ok(v["data"].clone())
    }

    /// The result series of an instant query.
    fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", percent_encode(promql)))?;
        match data["resultType"].as_str() {
            Some("vector" | "matrix") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            other => Err(format!("result type {other:?}, not a series")),
        }
    }

    fn value(&self, promql: &str) -> f64 {
        self.query(promql)
            .ok()
            .and_then(|r| r.first().cloned())
            .and_then(|s| s["value"][1].as_str()?.parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn open_policy(name: &str, binary: &Path, file: &Path, action: &str) -> String {
    OpenatPolicy::new(name)
        .path("Equal", &[&file.display().to_string()])
        .binary(&binary.display().to_string())
        .action(action, &[])
        .yaml()
}

/// The sum of the agent's series of `name` (from its /metrics) whose labels hold every one
/// of `labels` (`key="value"`).
fn agent_metric(port: u16, name: &str, labels: &[&str]) -> f64 {
    let (_, text) = http_get(port, "/metrics").unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
                && labels.iter().all(|kv| l.contains(kv))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_until(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A real agent (a posting and a Sigkill policy, its export on a full file system for a
/// while so that loss is counted), scraped every second by a real Prometheus: each panel's
/// query, with Grafana's variables substituted, returns series, and every metric it names
/// is one the agent exports.
#[test]
fn dashboard_every_panel_query_returns_data_from_a_real_prometheus() {
    let _g = serial();
    let dash = dashboard();
    let targets = targets(&dash);
    assert!(targets.len() >= 10, "{} targets", targets.len());

    let dir = scratch_dir("dashboard");
    let mnt = dir.join("full");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "vigil-dash-full"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    let _unmount = Unmount(mnt.clone());
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    drop(f);

    let reader = dir.join("dash-reader");
    let victim = dir.join("dash-victim");
    std::fs::copy("/bin/cat", &reader).unwrap();
    std::fs::copy("/bin/cat", &victim).unwrap();
    let watched = dir.join("watched");
    let forbidden = dir.join("forbidden");
    std::fs::write(&watched, "w\n").unwrap();
    std::fs::write(&forbidden, "f\n").unwrap();
    let post = write_policy(
        &dir,
        "dash-post",
        &open_policy("dash-post", &reader, &watched, "Post"),
    );
    let kill = write_policy(
        &dir,
        "dash-kill",
        &open_policy("dash-kill", &victim, &forbidden, "Sigkill"),
    );

    let metrics_port = free_port();
    let export = mnt.join("events.json");
    let agent = Agent::start(
        "dashboard-agent",
        &[
            "--export-filename",
            export.to_str().unwrap(),
            "--metrics-server",
            &format!("127.0.0.1:{metrics_port}"),
            "--tracing-policy",
            &post,
            "--tracing-policy",
            &kill,
        ],
    );
    let prom = Prometheus::start(&scratch_dir("dashboard-prometheus"), metrics_port);
    prom.wait("scraping the agent", |p| {
        p.value("up{job=\"vigil\"}") == 1.0
    });

    // A posting policy's event, an enforced kill, execs; the export file system is full.
    let reader_label = format!("binary=\"{}\"", reader.display());
    wait_until("the posting policy's event", || {
        run(Command::new(&reader).arg(&watched));
        let labels = [reader_label.as_str(), "type=\"PROCESS_KPROBE\""];
        agent_metric(metrics_port, "tetragon_events_total", &labels) > 0.0
    });
    let status = Command::new(&victim)
        .arg(&forbidden)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "victim: {status}");
    wait_until("sink loss on the full file system", || {
        run(&mut Command::new("/bin/true"));
        agent_metric(metrics_port, "vigil_events_lost_total", &[]) > 0.0
    });
    // Space again: the export resumes.
    std::fs::remove_file(&filler).unwrap();
    wait_until("the export to resume", || {
        run(&mut Command::new("/bin/true"));
        agent_metric(metrics_port, "tetragon_events_exported_total", &[]) > 0.0
    });
    // Prometheus has the new series in a few scrapes; rates need two of them.
    prom.wait("the agent's loss and export series", |p| {
        p.value("count_over_time(tetragon_events_exported_total[10s]) > 2") > 0.0
            && p.value("count_over_time(vigil_events_lost_total[10s]) > 2") > 0.0
    });

    let exported: BTreeSet<String> = prom
        .api("/api/v1/label/__name__/values")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let mut failures = Vec::new();
    for (title, ref_id, expr) in &targets {
        let promql = substitute(&dash, expr);
        let names = metric_names(&promql);
        if names.is_empty() {
            failures.push(format!("{title} {ref_id}: names no agent metric: {promql}"));
        }
        for name in names.iter().filter(|n| !exported.contains(*n)) {
            failures.push(format!(
                "{title} {ref_id}: {name} is not exported by the agent"
            ));
        }
        match prom.query(&promql) {
            Ok(r) if r.is_empty() => failures.push(format!("{title} {ref_id}: no data: {promql}")),
            Ok(_) => {}
            Err(e) => failures.push(format!("{title} {ref_id}: {e}: {promql}")),
        }
    }
    // The agent picker's query (label_values(tetragon_build_info, instance)).
    let instances = prom
        .api(&format!(
            "/api/v1/label/instance/values?match[]={}",
            percent_encode("tetragon_build_info")
        ))
        .unwrap();
    assert_eq!(
        instances,
        serde_json::json!([format!("127.0.0.1:{metrics_port}")]),
        "instance variable"
    );
    assert!(
        failures.is_empty(),
        "{} of {} panel queries failed:\n{}",
        failures.len(),
        targets.len(),
        failures.join("\n")
    );
    drop(prom);
    agent.stop();
}

/// The query checks above are only worth something if an unexported name makes them fail.
#[test]
fn dashboard_query_check_names_metrics_and_variables() {
    let dash = dashboard();
    assert_eq!(
        metric_names("sum(rate(tetragon_policy_events_total{a=\"vigil_x\"}[1m])) / up"),
        ["tetragon_policy_events_total", "vigil_x"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert_eq!(
        substitute(
            &dash,
            "rate(x{instance=~\"$instance\"}[$__rate_interval]) + y[${__range}]"
        ),
        "rate(x{instance=~\".*\"}[10s]) + y[5m]"
    );
    assert!(std::panic::catch_unwind(|| substitute(&dash, "x{a=\"$nope\"}")).is_err());
}

/// Grafana finds the data source itself: every panel and query uses the `datasource`
/// variable, and the agent picker is a query on it.
#[test]
fn dashboard_imports_anywhere() {
    let dash = dashboard();
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("no datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let uid = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"], uid, "variable {}", v["name"]);
    }
    let mut ids = BTreeSet::new();
    for p in panels(&dash) {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        if p["type"] == "row" || p["type"] == "text" {
            continue;
        }
        assert_eq!(p["datasource"], uid, "panel {}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"], uid, "panel {}", p["title"]);
        }
    }
    assert!(
        dash.get("__inputs").is_none(),
        "__inputs would make Grafana's provisioning leave ${{DS_...}} unresolved"
    );
}

/// The chart ships the same dashboard in a ConfigMap Grafana's sidecar picks up, and the
/// Debian package installs it under /usr/share/vigil/grafana.
#[test]
fn dashboard_ships_with_the_chart_and_the_package() {
    let canonical = std::fs::read(format!("{ROOT}/{DASHBOARD}")).unwrap();
    let in_chart = std::fs::read(format!("{ROOT}/{CHART_DASHBOARD}")).unwrap();
    assert!(
        canonical == in_chart,
        "{CHART_DASHBOARD} differs from {DASHBOARD}: copy it"
    );
    // helm cannot run here: the template's two expressions are rendered as helm would.
    let template = std::fs::read_to_string(format!("{ROOT}/{CHART_TEMPLATE}")).unwrap();
    let files_get = "{{ .Files.Get \"dashboards/vigil-dashboard.json\" | indent 4 }}";
    let indented: String = String::from_utf8(in_chart)
        .unwrap()
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let template = template.replace("{{ .Release.Namespace }}", "monitoring");
    assert!(
        template.contains(&format!("\n{files_get}\n")),
        "{CHART_TEMPLATE}"
    );
    assert!(
        !template.replace(files_get, "").contains("{{"),
        "{CHART_TEMPLATE}: an expression this check does not render"
    );
    // The file's own `{{label}}` legends are data to helm (.Files.Get does not template).
    let rendered = template.replace(&format!("{files_get}\n"), &indented);
    let cm: k8s_openapi::api::core::v1::ConfigMap =
        serde_saphyr::from_str(&rendered).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
    assert_eq!(
        cm.metadata.labels.unwrap().get("grafana_dashboard"),
        Some(&"1".to_string())
    );
    let data = cm.data.unwrap();
    let json: Value = serde_json::from_str(&data["vigil-dashboard.json"]).unwrap();
    assert_eq!(json, dashboard());

    let cargo = std::fs::read_to_string(format!("{ROOT}/Cargo.toml")).unwrap();
    let asset = format!("[\"{DASHBOARD}\", \"usr/share/vigil/grafana/\", \"644\"]");
    let deb = &cargo[cargo.find("[package.metadata.deb]").unwrap()..];
    assert!(
        deb.contains(&asset),
        "Cargo.toml [package.metadata.deb] assets: no {asset}"
    );
}
