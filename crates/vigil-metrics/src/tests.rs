use std::io::{Read, Write};

use vigil_proto::tetragon::{EventsLost, GetEventsResponse, Pod, Process, ProcessExec};

use super::*;

fn opts(labels: &[&str]) -> MetricsOptions {
    MetricsOptions {
        event_metrics: true,
        labels: labels.iter().map(|s| s.to_string()).collect(),
        node_name: "n1".into(),
        version: "0.1.0".into(),
    }
}

fn exec(binary: &str) -> Event {
    Arc::new(GetEventsResponse {
        event: Some(Payload::ProcessExec(ProcessExec {
            process: Some(Process {
                binary: binary.into(),
                flags: "execve rootcwd".into(),
                pod: Some(Pod {
                    namespace: "ns".into(),
                    name: "p".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    })
}

#[test]
fn events_flags_and_losses_use_tetragon_names() {
    let m = Metrics::new(opts(&["namespace", "workload", "pod", "binary"]));
    let mut sink = m.sink();
    for _ in 0..3 {
        sink.publish(&exec("/bin/true"));
    }
    sink.publish(&Arc::new(GetEventsResponse {
        event: Some(Payload::EventsLost(EventsLost {
            stage: LossStage::RingBuffer as i32,
            event_type: "PROCESS_EXEC".into(),
            count: 7,
            total: 7,
        })),
        ..Default::default()
    }));
    m.set_process_cache(12, 65536);
    let c = Arc::new(ExportCounters::default());
    c.exported.store(5, Ordering::Relaxed);
    c.ratelimit_dropped.store(2, Ordering::Relaxed);
    m.add_export(c);
    let text = m.encode();
    for needle in [
        r#"tetragon_events_total{binary="/bin/true",namespace="ns",node_name="n1",pod="p",type="PROCESS_EXEC",workload=""} 3"#,
        r#"tetragon_flags_total{type="execve"} 3"#,
        "tetragon_observer_ringbuf_events_lost_total 7",
        r#"tetragon_bpf_missed_events_total{error="ENOSPC",msg_op="5"} 7"#,
        r#"vigil_events_lost_total{event_type="PROCESS_EXEC",stage="LOSS_STAGE_RING_BUFFER"} 7"#,
        "tetragon_process_cache_size 12",
        "tetragon_process_cache_capacity 65536",
        "tetragon_events_exported_total 5",
        "tetragon_export_ratelimit_events_dropped_total 2",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

/// Binary names are the workload's choice: a process exec'ing 10,000 differently named
/// binaries must not create 10,000 series (memory, and every scrape).
#[test]
fn event_series_are_capped_and_the_rest_counted_as_other() {
    let m = Metrics::new(opts(&["binary"]));
    let n = MAX_EVENT_SERIES + 500;
    for i in 0..n {
        m.sink().publish(&exec(&format!("/tmp/b{i}")));
    }
    let text = m.encode();
    let series = text
        .lines()
        .filter(|l| l.starts_with("tetragon_events_total{"))
        .count();
    assert_eq!(
        series,
        MAX_EVENT_SERIES + 1,
        "the cap plus one series for the rest"
    );
    assert!(
        text.contains(&format!(
            r#"tetragon_events_total{{binary="{OTHER}",node_name="n1",type="PROCESS_EXEC"}} 500"#
        )),
        "the rest counted"
    );
    // Known series keep counting.
    m.sink().publish(&exec("/tmp/b0"));
    assert!(m.encode().contains(
        r#"tetragon_events_total{binary="/tmp/b0",node_name="n1",type="PROCESS_EXEC"} 2"#
    ));
}

#[test]
fn label_filter_and_event_metrics_switch() {
    let m = Metrics::new(opts(&["binary"]));
    m.sink().publish(&exec("/bin/x"));
    let text = m.encode();
    assert!(
        text.contains(
            r#"tetragon_events_total{binary="/bin/x",node_name="n1",type="PROCESS_EXEC"} 1"#
        ),
        "{text}"
    );
    let mut o = opts(&[]);
    o.event_metrics = false;
    let m = Metrics::new(o);
    m.sink().publish(&exec("/bin/x"));
    assert!(!m.encode().contains("tetragon_events_total"));
}

#[test]
fn http_serves_metrics_and_healthz() {
    let m = Metrics::new(opts(&[]));
    m.sink().publish(&exec("/bin/x"));
    let addr = serve(m, "127.0.0.1:0").unwrap();
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let metrics = get("/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("tetragon_events_total{"), "{metrics}");
    assert!(get("/healthz").ends_with("ok\n"));
    assert!(get("/nope").starts_with("HTTP/1.1 404"));
    assert!(matches!(
        serve(Metrics::new(opts(&[])), "nonsense"),
        Err(MetricsError::Address { .. })
    ));
}
