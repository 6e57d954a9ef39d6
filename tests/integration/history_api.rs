//! `vigil.history.v1.History` on the agent's gRPC socket: each query's answer against
//! `vigil history ... --output json` for the same query over the same files, and the status
//! of an agent that records no history.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_api::client::{ClientTls, connect_channel};
use vigil_proto::vigil::history::v1::history_client::HistoryClient;
use vigil_proto::vigil::history::v1::{EventsRequest, TreeRequest};
use vigil_proto::wkt::Timestamp;

use crate::harness::{Agent, of_kind, serial, vigil_bin};

/// `vigil history ARGS --history-dir DIR -o json`: the lines it prints.
fn cli_lines(dir: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new(vigil_bin())
        .arg("history")
        .args(args)
        .arg("--history-dir")
        .arg(dir)
        .args(["-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vigil history {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn history_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-it-{}-{name}-history", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

async fn client(agent: &Agent) -> HistoryClient<tonic::transport::Channel> {
    let sock = agent.events_path.with_file_name("vigil.sock");
    let ch = connect_channel(
        &format!("unix://{}", sock.display()),
        &ClientTls::default(),
        Duration::from_secs(5),
        None,
    )
    .await
    .unwrap();
    HistoryClient::new(ch)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An event's `time` as a protobuf timestamp.
fn time_of(event: &Value) -> Timestamp {
    let t = chrono::DateTime::parse_from_rfc3339(event["time"].as_str().unwrap()).unwrap();
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

#[test]
fn history_grpc_answers_as_the_cli_does() {
    let _g = serial();
    let dir = history_dir("grpc");
    let agent = Agent::start("history-grpc", &["--history-dir", dir.to_str().unwrap()]);
    // A binary of this test's own: other tests running beside it start /usr/bin/true too.
    let own_true = std::env::temp_dir().join(format!("vigil-it-{}-grpc-true", std::process::id()));
    std::fs::copy("/usr/bin/true", &own_true).unwrap();
    let own = own_true.to_str().unwrap().to_string();
    let own = own.as_str();
    let status = Command::new("sh")
        .args(["-c", "sh -c \"cat /etc/hostname | wc -c\""])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..20 {
        // ETXTBSY while another test's fork still holds the copy's descriptor, briefly.
        for attempt in 0.. {
            match Command::new(own).status() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 100 => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                r => {
                    r.unwrap();
                    break;
                }
            }
        }
    }
    let true_exits = |evs: &[Value]| {
        of_kind(evs, "process_exit")
            .iter()
            .filter(|e| e["process"]["binary"] == own)
            .count()
    };
    let events = agent.wait_for("the 20 exits", Duration::from_secs(10), |evs| {
        true_exits(evs) >= 20
    });
    // The recorder writes on its own thread: wait until it holds the 40 events.
    let deadline = Instant::now() + Duration::from_secs(15);
    while cli_lines(&dir, &["events", "--binary", own]).len() < 40 {
        assert!(Instant::now() < deadline, "the recorder did not catch up");
        std::thread::sleep(Duration::from_millis(200));
    }
    let me = u64::from(std::process::id());
    let outer = of_kind(&events, "process_exec")
        .into_iter()
        .find(|e| {
            e["parent"]["pid"].as_u64() == Some(me)
                && e["process"]["arguments"]
                    .as_str()
                    .is_some_and(|a| a.contains("cat /etc/hostname"))
        })
        .expect("the outer sh's exec");
    let outer_id = outer["process"]["exec_id"].as_str().unwrap().to_string();
    // The tree is asked of the inner sh: a tree holds the root's siblings, and the outer sh's
    // siblings are this test's children, which the queries below keep adding (each `vigil
    // history` run is one), so two answers a moment apart could differ there.
    let inner = of_kind(&events, "process_exec")
        .into_iter()
        .find(|e| e["process"]["parent_exec_id"] == outer_id.as_str())
        .expect("the inner sh's exec");
    let inner_id = inner["process"]["exec_id"].as_str().unwrap().to_string();
    let true_execs: Vec<&Value> = events
        .iter()
        .filter(|e| e["process_exec"]["process"]["binary"] == own)
        .collect();
    assert_eq!(true_execs.len(), 20);
    let (from, to) = (true_execs[4], true_execs[14]);
    let (since, until) = (
        from["time"].as_str().unwrap().to_string(),
        to["time"].as_str().unwrap().to_string(),
    );

    rt().block_on(async {
        let mut c = client(&agent).await;
        let json = |events: &[vigil_proto::vigil::history::v1::RecordedEvent]| -> Vec<String> {
            events.iter().map(|e| e.json.clone()).collect()
        };

        // By binary: all 40 events, each also decoded.
        let r = c
            .events(EventsRequest {
                binary: own.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let cli = cli_lines(&dir, &["events", "--binary", own]);
        assert_eq!(cli.len(), 40);
        assert_eq!(json(&r.events), cli);
        assert!(!r.truncated);
        for e in &r.events {
            let decoded = serde_json::to_value(e.event.as_ref().unwrap()).unwrap();
            let line: Value = serde_json::from_str(&e.json).unwrap();
            assert_eq!(decoded, line, "the decoded event is the line");
        }

        // A time range and a type: the 5th to the 15th exec, both ends inclusive.
        let r = c
            .events(EventsRequest {
                since: Some(time_of(from)),
                until: Some(time_of(to)),
                binary: own.into(),
                event_type: "exec".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let cli = cli_lines(
            &dir,
            &[
                "events", "--since", &since, "--until", &until, "--binary", own, "--type", "exec",
            ],
        );
        assert_eq!(cli.len(), 11, "{cli:#?}");
        assert_eq!(json(&r.events), cli);

        // A limit: the oldest 3, and the answer says more matched.
        let r = c
            .events(EventsRequest {
                binary: own.into(),
                limit: 3,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let cli = cli_lines(&dir, &["events", "--binary", own, "--limit", "3"]);
        assert_eq!(json(&r.events), cli);
        assert_eq!(r.events.len(), 3);
        assert!(r.truncated);

        // A process tree.
        let r = c
            .tree(TreeRequest {
                exec_id: inner_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let cli = cli_lines(&dir, &["tree", "--exec-id", &inner_id]);
        assert!(cli.len() >= 8, "outer sh, inner sh, cat, wc: {cli:#?}");
        assert_eq!(json(&r.events), cli);
        assert_eq!(r.root_exec_id, inner_id);
        let binaries: Vec<&str> = r.processes.iter().map(|p| p.binary.as_str()).collect();
        assert!(
            binaries.iter().any(|b| b.ends_with("/cat"))
                && binaries.iter().any(|b| b.ends_with("/wc")),
            "{binaries:?}"
        );

        // Bad requests: the code and a message naming the problem.
        let e = c
            .events(EventsRequest {
                pod: "web".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("namespace/name"), "{e}");
        let e = c
            .tree(TreeRequest {
                exec_id: "bm9wZQ==".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert!(e.message().contains("bm9wZQ=="), "{e}");
    });
    agent.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn history_grpc_without_history_dir_is_failed_precondition() {
    let _g = serial();
    let agent = Agent::start("history-grpc-off", &[]);
    rt().block_on(async {
        let mut c = client(&agent).await;
        let e = c.events(EventsRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
        assert!(e.message().contains("--history-dir"), "{e}");
        let e = c.tree(TreeRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    });
    agent.stop();
}
