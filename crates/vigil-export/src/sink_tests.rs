use vigil_proto::tetragon::{Process, ProcessExec, get_events_response::Event as Payload};

use super::*;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("vigil-export-{}-{name}", std::process::id()))
}

fn exec(binary: &str) -> GetEventsResponse {
    GetEventsResponse {
        event: Some(Payload::ProcessExec(ProcessExec {
            process: Some(Process {
                binary: binary.into(),
                ..Default::default()
            }),
            ..Default::default()
        })),
        node_name: "n".into(),
        ..Default::default()
    }
}

#[test]
fn full_device_counts_loss_and_keeps_going() {
    // /dev/full fails every write with ENOSPC.
    let mut sink = JsonLinesSink::file(Path::new("/dev/full"), 0o600).unwrap();
    for i in 0..100_000u32 {
        sink.write(&serde_json::json!({ "n": i, "pad": "x".repeat(64) }));
    }
    sink.flush();
    // Every line is lost: the 100,000 and the loss reports numbered between them.
    assert!(sink.seq() > 100_000);
    assert_eq!(sink.lost(), sink.seq(), "every line to /dev/full is lost");
    assert_eq!(
        sink.counters().write_lost.load(Ordering::Relaxed),
        sink.seq()
    );
}

#[test]
fn lines_are_one_json_object_each() {
    let path = tmp("lines");
    let mut sink = JsonLinesSink::file(&path, 0o600).unwrap();
    sink.write(&serde_json::json!({"a": 1}));
    sink.write(&serde_json::json!({"b": "x\ny"}));
    sink.flush();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let id = seq::instance();
    assert_eq!(
        text,
        format!(
            "{{\"a\":1,\"vigil_seq\":\"1\",\"vigil_instance\":\"{id}\"}}\n\
             {{\"b\":\"x\\ny\",\"vigil_seq\":\"2\",\"vigil_instance\":\"{id}\"}}\n"
        )
    );
}

fn lines_of(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn seq_of(v: &serde_json::Value) -> u64 {
    v["vigil_seq"].as_str().unwrap().parse().unwrap()
}

#[test]
fn lines_are_numbered_after_the_filters() {
    let path = tmp("seq");
    let cfg = ExportConfig {
        filters: AllowDeny {
            allow: FilterList::parse("a", r#"{"binary_regex":["keep"]}"#).unwrap(),
            deny: FilterList::default(),
        },
        ..Default::default()
    };
    let mut sink = JsonLinesSink::file(&path, 0o600).unwrap().with_config(cfg);
    for i in 0..10 {
        sink.export(&mut exec(if i % 3 == 0 { "/keep" } else { "/drop" }));
    }
    sink.flush();
    let lines = lines_of(&path);
    std::fs::remove_file(&path).unwrap();
    let seqs: Vec<u64> = lines.iter().map(seq_of).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(sink.seq(), 4);
}

#[test]
fn lines_lost_to_a_failed_write_are_explained_before_the_next_line() {
    let path = tmp("gap");
    // /dev/full fails every write: the first lines are numbered and lost.
    let mut sink = JsonLinesSink::file(Path::new("/dev/full"), 0o600).unwrap();
    for _ in 0..5 {
        sink.export(&mut exec("/a"));
    }
    sink.flush();
    assert_eq!(sink.lost(), 5);
    // The destination works again.
    sink.dest = Destination::File(LogFile::open(&path, Rotation::default()).unwrap());
    for _ in 0..3 {
        sink.export(&mut exec("/b"));
    }
    sink.flush();
    let lines = lines_of(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let report = &lines[0]["events_lost"];
    assert_eq!(report["stage"], "LOSS_STAGE_STREAM");
    assert_eq!(report["count"], "5");
    // seq 1..5 lost, the report is 6 (= 5 skipped + 1), then 7, 8, 9.
    let seqs: Vec<u64> = lines.iter().map(seq_of).collect();
    assert_eq!(seqs, vec![6, 7, 8, 9]);
    assert_eq!(lines[1]["process_exec"]["process"]["binary"], "/b");
}

#[test]
fn rate_limit_drops_are_reported_before_the_next_line() {
    let path = tmp("ratelost");
    let mut sink = JsonLinesSink::file(&path, 0o600)
        .unwrap()
        .with_config(ExportConfig {
            rate_limit: Some(60),
            ..Default::default()
        });
    let t0 = Instant::now();
    sink.limiter = Some(RateLimiter::new(60, t0));
    for _ in 0..62 {
        sink.export(&mut exec("/a"));
    }
    // Tokens come back, one a second (this takes one, and leaves one for /b).
    sink.limiter = sink.limiter.take().map(|mut l| {
        assert!(l.allow(t0 + std::time::Duration::from_secs(3)));
        l
    });
    sink.export(&mut exec("/b"));
    sink.flush();
    let lines = lines_of(&path);
    std::fs::remove_file(&path).unwrap();
    let n = lines.len();
    assert_eq!(n, 62, "60 + report + /b: {:?}", &lines[58..]);
    assert_eq!(lines[60]["events_lost"]["stage"], "LOSS_STAGE_RATE_LIMIT");
    assert_eq!(lines[60]["events_lost"]["count"], "2");
    assert_eq!(lines[61]["process_exec"]["process"]["binary"], "/b");
    let seqs: Vec<u64> = lines.iter().map(seq_of).collect();
    assert_eq!(seqs, (1..=62).collect::<Vec<_>>());
}

#[test]
fn filters_rate_limit_and_rate_limit_info() {
    let path = tmp("ratelimit");
    let cfg = ExportConfig {
        filters: AllowDeny {
            allow: FilterList::parse("a", r#"{"binary_regex":["keep"]}"#).unwrap(),
            deny: FilterList::default(),
        },
        fields: FieldFilters::parse("f", r#"{"fields":"process.binary","action":"INCLUDE"}"#)
            .unwrap(),
        rate_limit: Some(3),
        node_name: "node1".into(),
    };
    let mut sink = JsonLinesSink::file(&path, 0o600).unwrap().with_config(cfg);
    for i in 0..10 {
        sink.export(&mut exec(if i % 2 == 0 { "/keep" } else { "/drop" }));
    }
    Sink::close(&mut sink);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(
        lines[0]["process_exec"],
        serde_json::json!({"process": {"binary": "/keep"}})
    );
    assert_eq!(
        lines[3]["rate_limit_info"]["number_of_dropped_process_events"],
        "2"
    );
    assert_eq!(lines[3]["node_name"], "node1");
    let c = sink.counters();
    assert_eq!(c.ratelimit_dropped.load(Ordering::Relaxed), 2);
    assert_eq!(c.exported.load(Ordering::Relaxed), 4);
}

/// The bus renders each event's line once for its sinks: every sink that asks gets the line
/// of the event being published, equal to serde_json's, and the event is left as it was.
#[test]
fn each_event_gets_its_own_line_equal_to_serde_json() {
    let mut line = crate::EventLine::default();
    for binary in ["/a", "/b", "/a"] {
        let mut ev = exec(binary);
        line.next_event();
        let want = serde_json::to_vec(&ev).unwrap();
        assert_eq!(line.get(&mut ev).unwrap(), want.as_slice());
        assert_eq!(line.get(&mut ev).unwrap(), want.as_slice());
        assert_eq!(serde_json::to_vec(&ev).unwrap(), want);
    }
}
