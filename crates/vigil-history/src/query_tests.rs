use std::sync::Arc;
use std::time::Duration;

use vigil_proto::tetragon::{
    KprobeAction, Pod, Process, ProcessExec, ProcessExit, ProcessKprobe,
    get_events_response::Event as Payload,
};

use super::*;
use crate::slices::Budget;
use crate::{HistoryConfig, HistorySink};

#[test]
fn no_filter_reads_every_batch_in_order() {
    let (sql, params) = batch_query(&EventFilter::default());
    assert_eq!(
        sql,
        "SELECT b.id, b.codec, b.raw_bytes, b.data FROM batches b ORDER BY b.id"
    );
    assert!(params.is_empty());
}

#[test]
fn every_filter_becomes_a_clause_with_its_parameters_in_order() {
    let f = EventFilter {
        since_ns: Some(10),
        until_ns: Some(20),
        binary: Some("/bin/cat".into()),
        pod: Some(("ns".into(), "web".into())),
        policy: Some("opens".into()),
        action: Some("KPROBE_ACTION_POST".into()),
        ..Default::default()
    };
    let (sql, params) = batch_query(&f);
    assert_eq!(
        sql,
        "SELECT b.id, b.codec, b.raw_bytes, b.data FROM batches b WHERE b.last_ns >= ? \
         AND b.first_ns <= ? AND b.id IN (SELECT batch_id FROM batch_policies WHERE 1 \
         AND policy = ? AND action = ?) AND b.id IN (SELECT x.batch_id FROM processes p \
         JOIN batch_processes x ON x.exec_id = p.exec_id WHERE 1 AND p.binary = ? \
         AND p.pod_namespace = ? AND p.pod_name = ?) ORDER BY b.id"
    );
    let text = |s: &str| Value::Text(s.into());
    assert_eq!(
        params,
        vec![
            Value::Integer(10),
            Value::Integer(20),
            text("opens"),
            text("KPROBE_ACTION_POST"),
            text("/bin/cat"),
            text("ns"),
            text("web"),
        ]
    );
}

fn ts(ns: i64) -> Option<vigil_proto::wkt::Timestamp> {
    Some(vigil_proto::wkt::Timestamp {
        seconds: ns / 1_000_000_000,
        nanos: (ns % 1_000_000_000) as i32,
    })
}

fn process(id: &str, parent: &str, pid: u32, binary: &str) -> Process {
    Process {
        exec_id: id.into(),
        parent_exec_id: parent.into(),
        pid: Some(pid.into()),
        binary: binary.into(),
        start_time: ts(1_000_000_000 * i64::from(pid)),
        pod: (binary == "/bin/cat").then(|| Pod {
            namespace: "ns".into(),
            name: "web".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn exec(p: &Process, parent: Option<&Process>, t: i64) -> GetEventsResponse {
    GetEventsResponse {
        event: Some(Payload::ProcessExec(ProcessExec {
            process: Some(p.clone()),
            parent: parent.cloned(),
            ..Default::default()
        })),
        time: ts(t),
        node_name: "n".into(),
        ..Default::default()
    }
}

fn exit(p: &Process, t: i64) -> GetEventsResponse {
    GetEventsResponse {
        event: Some(Payload::ProcessExit(ProcessExit {
            process: Some(p.clone()),
            ..Default::default()
        })),
        time: ts(t),
        ..Default::default()
    }
}

fn kprobe(p: &Process, policy: &str, action: KprobeAction, t: i64) -> GetEventsResponse {
    GetEventsResponse {
        event: Some(Payload::ProcessKprobe(ProcessKprobe {
            process: Some(p.clone()),
            policy_name: policy.into(),
            action: action as i32,
            ..Default::default()
        })),
        time: ts(t),
        ..Default::default()
    }
}

fn record(dir: &Path, max_bytes: u64, events: &[GetEventsResponse]) -> Arc<crate::HistoryCounters> {
    let sink = HistorySink::start(HistoryConfig {
        dir: dir.to_path_buf(),
        budget: Budget {
            max_bytes,
            max_age: Duration::from_secs(86400),
        },
        queue_bytes: 1 << 30,
        node: "n".into(),
    })
    .unwrap();
    let counters = sink.counters();
    // As the agent publishes: through a bus, which renders each line once for its sinks.
    let mut bus = vigil_export::Bus::new();
    bus.add(Box::new(sink));
    for e in events {
        bus.publish(e.clone());
    }
    bus.close();
    counters
}

/// init -> sh(a) -> {sh(b) -> cat(c), sleep(d)}; other(e) elsewhere under init.
#[test]
fn a_tree_has_ancestors_siblings_descendants_and_their_events_only() {
    let dir = tempfile::tempdir().unwrap();
    let init = process("init", "", 1, "/sbin/init");
    let a = process("a", "init", 10, "/bin/sh");
    let b = process("b", "a", 11, "/bin/sh");
    let c = process("c", "b", 12, "/bin/cat");
    let d = process("d", "a", 13, "/bin/sleep");
    let e = process("e", "init", 14, "/bin/other");
    let t = 1_700_000_000_000_000_000;
    let events = vec![
        exec(&a, Some(&init), t),
        exec(&e, Some(&init), t + 1),
        exec(&b, Some(&a), t + 2),
        exec(&d, Some(&a), t + 3),
        exec(&c, Some(&b), t + 4),
        kprobe(&c, "opens", KprobeAction::Post, t + 5),
        kprobe(&e, "opens", KprobeAction::Post, t + 6),
        exit(&c, t + 7),
        exit(&b, t + 8),
    ];
    let counters = record(dir.path(), 64 << 20, &events);
    assert_eq!(counters.lost(), 0);
    let h = History::open(dir.path()).unwrap();
    // From b: ancestors a, init; sibling d; descendant c. e is a's sibling: not in.
    let tree = h.tree("b").unwrap();
    let ids: Vec<&str> = tree.processes.keys().map(String::as_str).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "init"]);
    let lines: Vec<String> = tree.events.iter().map(|e| e.line.clone()).collect();
    let expected: Vec<String> = [0, 2, 3, 4, 5, 7, 8]
        .iter()
        .map(|&i| serde_json::to_string(&events[i]).unwrap())
        .collect();
    assert_eq!(lines, expected);
    assert_eq!(tree.processes["c"].exit_ns, Some(t + 7));
    assert_eq!(h.newest_with_pid(12).unwrap().unwrap().exec_id, "c");
    assert!(matches!(h.tree("zz"), Err(HistoryError::UnknownExecId(_))));
}

#[test]
fn event_filters_select_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let a = process("a", "", 10, "/bin/sh");
    let c = process("c", "a", 12, "/bin/cat");
    let t = 1_700_000_000_000_000_000;
    let events = vec![
        exec(&c, Some(&a), t),
        kprobe(&c, "opens", KprobeAction::Post, t + 10),
        kprobe(&a, "opens", KprobeAction::Sigkill, t + 20),
        kprobe(&a, "other", KprobeAction::Post, t + 30),
    ];
    record(dir.path(), 64 << 20, &events);
    let h = History::open(dir.path()).unwrap();
    let count = |f: EventFilter| h.events(&f).unwrap().len();
    assert_eq!(count(EventFilter::default()), 4);
    let by_policy = EventFilter {
        policy: Some("opens".into()),
        ..Default::default()
    };
    assert_eq!(count(by_policy.clone()), 2);
    assert_eq!(
        count(EventFilter {
            action: Some("KPROBE_ACTION_SIGKILL".into()),
            ..by_policy
        }),
        1
    );
    assert_eq!(
        count(EventFilter {
            binary: Some("/bin/cat".into()),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        count(EventFilter {
            pod: Some(("ns".into(), "web".into())),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        count(EventFilter {
            since_ns: Some(t + 10),
            until_ns: Some(t + 20),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        count(EventFilter {
            event_type: Some("PROCESS_EXEC".into()),
            ..Default::default()
        }),
        1
    );
}

#[test]
fn retention_keeps_the_files_within_the_budget_and_the_newest_events() {
    let dir = tempfile::tempdir().unwrap();
    let budget = crate::slices::MIN_BUDGET;
    // Varied arguments so that compression cannot make 60,000 events fit in 4 MiB.
    let t = 1_700_000_000_000_000_000_i64;
    let events: Vec<GetEventsResponse> = (0..60_000u32)
        .map(|i| {
            let mut p = process(&format!("id-{i}"), "init", 100 + i, "/bin/true");
            p.arguments = format!("{:x}", u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            exec(&p, None, t + i64::from(i))
        })
        .collect();
    let counters = record(dir.path(), budget, &events);
    let total: u64 = crate::slices::list(dir.path())
        .unwrap()
        .iter()
        .map(|(_, p)| crate::slices::bytes_of(p))
        .sum();
    assert!(total <= budget, "{total} bytes > budget {budget}");
    assert!(
        counters
            .slices_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    let h = History::open(dir.path()).unwrap();
    let kept = h.events(&EventFilter::default()).unwrap();
    let last = serde_json::to_string(events.last().unwrap()).unwrap();
    assert_eq!(kept.last().unwrap().line, last);
    assert!(kept.len() < events.len());
    for (_, path) in crate::slices::list(dir.path()).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
}

/// A writer that cannot keep up (held still here) fills the queue: the pipeline does not
/// wait, later events are counted lost, and what got into the queue is recorded.
#[test]
fn a_writer_behind_drops_and_counts_instead_of_stalling_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let sink = HistorySink::start(HistoryConfig {
        dir: dir.path().to_path_buf(),
        budget: Budget {
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(86400),
        },
        queue_bytes: 1 << 16,
        node: "n".into(),
    })
    .unwrap();
    let hold = sink.hold_writer();
    let counters = sink.counters();
    let mut bus = vigil_export::Bus::new();
    bus.add(Box::new(sink));
    let t = 1_700_000_000_000_000_000_i64;
    let events: Vec<GetEventsResponse> = (0..2000u32)
        .map(|i| {
            exec(
                &process(&format!("id-{i}"), "init", 100 + i, "/bin/true"),
                None,
                t + i64::from(i),
            )
        })
        .collect();
    let started = std::time::Instant::now();
    for (i, e) in events.iter().enumerate() {
        bus.publish(e.clone());
        if i % 10 == 9 {
            // The pipeline going idle: the pending group goes to the queue.
            bus.flush();
        }
    }
    let publishing = started.elapsed();
    let lost = counters
        .lost_queue_full
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        lost > 1000,
        "only {lost} of 2000 dropped with the writer held"
    );
    assert!(
        publishing < Duration::from_secs(2),
        "publishing took {publishing:?}"
    );
    // The writer resumes; closing writes what was queued.
    hold.store(false, std::sync::atomic::Ordering::Relaxed);
    bus.close();
    let recorded = counters.recorded.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(recorded + counters.lost(), 2000);
    assert_eq!(counters.lost(), lost, "only queue-full losses");
    // What was recorded is the first events, in order: the queue dropped only later ones.
    let stored = History::open(dir.path())
        .unwrap()
        .events(&EventFilter::default())
        .unwrap();
    let times: Vec<i64> = stored
        .iter()
        .map(|s| keys::event_time_ns(&s.event).unwrap())
        .collect();
    let want: Vec<i64> = (0..recorded as i64).map(|i| t + i).collect();
    assert_eq!(times, want);
}
