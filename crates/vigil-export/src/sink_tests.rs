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
    assert_eq!(sink.lost(), 100_000, "every line to /dev/full is lost");
    assert_eq!(sink.counters().write_lost.load(Ordering::Relaxed), 100_000);
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
    assert_eq!(text, "{\"a\":1}\n{\"b\":\"x\\ny\"}\n");
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
        sink.export(&exec(if i % 2 == 0 { "/keep" } else { "/drop" }));
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
