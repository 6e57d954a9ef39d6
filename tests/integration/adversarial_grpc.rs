//! Stock gRPC clients under load, and the sequence numbers that let a consumer prove it
//! missed nothing.
//!
//! The load test is the acceptance of the gRPC memory bounds: 50 concurrent GetEvents
//! clients, 10 of which never read, for 60 s of a 5,000-exec burst (paced evenly). The 40
//! readers get every process_exec of the burst with seq contiguous, the 10 idle ones are cut
//! (RESOURCE_EXHAUSTED, counted in the log), the agent's RSS stays under [`RSS_BUDGET_MIB`],
//! and a new client is served afterwards.

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_api::client::{ClientTls, connect, connect_channel};
use vigil_proto::tetragon::fine_guidance_sensors_client::FineGuidanceSensorsClient;
use vigil_proto::tetragon::{
    EventType, Filter, GetEventsRequest, GetEventsResponse, LossStage, get_events_response::Event,
};

use crate::harness::{Agent, read_events, run, scratch_dir, serial};

/// The agent's RSS budget during the 50-client run (docs/reference/cli.md, "Slow clients").
const RSS_BUDGET_MIB: u64 = 192;
const BURST: usize = 5_000;
const BURST_SECS: u64 = 60;
const READERS: usize = 40;
const IDLE: usize = 10;

fn start(name: &str, extra: &[&str]) -> (Agent, String) {
    let dir = scratch_dir(&format!("{name}-sock"));
    let sock = dir.join("vigil.sock");
    let mut args = vec![format!("--server-address=unix://{}", sock.display())];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    (
        Agent::start(name, &refs),
        format!("unix://{}", sock.display()),
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn exec_pid(ev: &GetEventsResponse) -> Option<u32> {
    match &ev.event {
        Some(Event::ProcessExec(e)) => e.process.as_ref().and_then(|p| p.pid.map(|v| v.value)),
        _ => None,
    }
}

fn stream_loss(ev: &GetEventsResponse) -> Option<u64> {
    match &ev.event {
        Some(Event::EventsLost(l)) if l.stage == LossStage::Stream as i32 => Some(l.count),
        _ => None,
    }
}

/// Execs of `/usr/bin/true` only: what the readers want.
fn true_execs() -> GetEventsRequest {
    GetEventsRequest {
        allow_list: vec![Filter {
            binary_regex: vec!["^/usr/bin/true$".into()],
            event_set: vec![EventType::ProcessExec as i32],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A reader: every message numbered one more than the previous, no loss report; returns
/// the pids of the execs it saw once `want` (set when the burst is over) is covered.
async fn reader(
    addr: String,
    want: Arc<Mutex<Option<HashSet<u32>>>>,
    ready: Arc<AtomicU64>,
) -> (HashSet<u32>, u64) {
    let mut c = connect(&addr, &ClientTls::default(), Duration::from_secs(10))
        .await
        .unwrap();
    let mut s = c.get_events(true_execs()).await.unwrap().into_inner();
    ready.fetch_add(1, Ordering::SeqCst);
    let mut pids = HashSet::new();
    let mut last = 0u64;
    let deadline = Instant::now() + Duration::from_secs(BURST_SECS + 120);
    loop {
        if let Some(w) = want.lock().unwrap().as_ref()
            && w.is_subset(&pids)
        {
            return (pids, last);
        }
        assert!(Instant::now() < deadline, "reader stalled at seq {last}");
        let ev = match tokio::time::timeout(Duration::from_millis(500), s.message()).await {
            Err(_) => continue,
            Ok(Ok(Some(ev))) => ev,
            Ok(other) => panic!("reader cut at seq {last}: {other:?}"),
        };
        assert_eq!(ev.vigil_seq, last + 1, "reader: hole after {last}");
        assert!(stream_loss(&ev).is_none(), "reader lost events: {ev:?}");
        last = ev.vigil_seq;
        if let Some(pid) = exec_pid(&ev) {
            pids.insert(pid);
        }
    }
}

/// Reads an idle client's stream to its end: (messages, the loss report's count, status).
async fn drain_idle(
    s: &mut tonic::Streaming<GetEventsResponse>,
) -> (u64, Option<u64>, tonic::Status) {
    let mut last = 0u64;
    let mut n = 0;
    let mut lost = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), s.message())
            .await
            .expect("idle client never told")
        {
            Ok(Some(ev)) => {
                n += 1;
                match stream_loss(&ev) {
                    // The report explains exactly the numbers skipped before it.
                    Some(count) => {
                        assert_eq!(ev.vigil_seq, last + 1 + count, "report {ev:?}");
                        lost = Some(count);
                    }
                    None => assert_eq!(ev.vigil_seq, last + 1, "idle: hole after {last}"),
                }
                last = ev.vigil_seq;
            }
            Ok(None) => panic!("idle stream ended without a status"),
            Err(st) => return (n, lost, st),
        }
    }
}

/// seq strictly +1 from 1, except just before a LOSS_STAGE_STREAM report of the gap.
fn check_file_seq(events: &[Value]) -> (u64, u64) {
    let mut last = 0u64;
    let mut explained = 0;
    let instance = events.first().map(|e| e["vigil_instance"].clone());
    for e in events {
        let seq: u64 = e["vigil_seq"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("line without vigil_seq: {e}"));
        assert_eq!(Some(e["vigil_instance"].clone()), instance, "{e}");
        let l = &e["events_lost"];
        if seq != last + 1 {
            assert_eq!(
                l["stage"], "LOSS_STAGE_STREAM",
                "unexplained gap {last} -> {seq}: {e}"
            );
            let count: u64 = l["count"].as_str().unwrap().parse().unwrap();
            assert_eq!(seq, last + 1 + count, "report does not match the gap: {e}");
            explained += count;
        }
        last = seq;
    }
    (last, explained)
}

#[test]
fn adversarial_grpc_fifty_clients_under_an_exec_burst() {
    let _g = serial();
    // Cut by bytes, not by count, so that the byte budget is what this test shows.
    let (agent, addr) = start(
        "adv-grpc-load",
        &[
            "--grpc-client-buffer=1000000",
            "--grpc-client-buffer-bytes=4194304",
        ],
    );
    let agent_pid = agent.pid();
    let baseline = rss_kib(agent_pid);
    let rt = rt();
    let want: Arc<Mutex<Option<HashSet<u32>>>> = Arc::default();
    let ready = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let (pids, idle_results, readers, max_rss, burst_time) = rt.block_on(async {
        let readers: Vec<_> = (0..READERS)
            .map(|_| tokio::spawn(reader(addr.clone(), want.clone(), ready.clone())))
            .collect();
        // Idle clients: their own connections with small windows, no filter, never read.
        let mut idle = Vec::new();
        for _ in 0..IDLE {
            let ch = connect_channel(
                &addr,
                &ClientTls::default(),
                Duration::from_secs(10),
                Some(65535),
            )
            .await
            .unwrap();
            let mut c = FineGuidanceSensorsClient::new(ch);
            idle.push(
                c.get_events(GetEventsRequest::default())
                    .await
                    .unwrap()
                    .into_inner(),
            );
        }
        while ready.load(Ordering::SeqCst) < READERS as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // RSS sampled through the burst and the readers' catch-up.
        let done = Arc::new(AtomicBool::new(false));
        let max_rss = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (done, max_rss) = (done.clone(), max_rss.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    max_rss.fetch_max(rss_kib(agent_pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let burst = std::thread::spawn(|| {
            let start = Instant::now();
            let pace = Duration::from_secs(BURST_SECS).as_secs_f64() / BURST as f64;
            let mut pids = HashSet::new();
            for i in 0..BURST {
                let mut child = Command::new("/usr/bin/true").spawn().unwrap();
                pids.insert(child.id());
                child.wait().unwrap();
                let due = start + Duration::from_secs_f64(pace * (i + 1) as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            (pids, start.elapsed())
        });
        let (pids, burst_time) = tokio::task::spawn_blocking(move || burst.join().unwrap())
            .await
            .unwrap();
        *want.lock().unwrap() = Some(pids.clone());
        let mut results = Vec::new();
        for r in readers {
            results.push(r.await.unwrap());
        }
        done.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        let mut idle_results = Vec::new();
        for s in &mut idle {
            idle_results.push(drain_idle(s).await);
        }
        (
            pids,
            idle_results,
            results,
            max_rss.load(Ordering::Relaxed),
            burst_time,
        )
    });
    let elapsed = t0.elapsed();
    assert_eq!(pids.len(), BURST);
    let seqs: BTreeSet<u64> = readers.iter().map(|(_, last)| *last).collect();
    for (got, _) in &readers {
        assert!(pids.is_subset(got), "a reader missed execs of the burst");
    }
    for (n, lost, st) in &idle_results {
        assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
        assert!(st.message().contains("too slow"), "{}", st.message());
        assert!(
            lost.is_some(),
            "no loss report before the status ({n} messages)"
        );
    }
    eprintln!(
        "adversarial_grpc: {READERS} readers got all {BURST} execs of the burst (last seq per \
         reader {seqs:?}); {IDLE} idle clients cut: {:?}; burst {:.1} s, whole run {:.1} s; \
         agent RSS {} MiB before, max {} MiB during (budget {RSS_BUDGET_MIB} MiB)",
        idle_results
            .iter()
            .map(|(n, lost, _)| (*n, lost.unwrap_or(0)))
            .collect::<Vec<_>>(),
        burst_time.as_secs_f64(),
        elapsed.as_secs_f64(),
        baseline / 1024,
        max_rss / 1024,
    );
    eprintln!("idle status: {}", idle_results[0].2.message());
    assert!(
        max_rss / 1024 < RSS_BUDGET_MIB,
        "agent RSS {} MiB over the budget",
        max_rss / 1024
    );
    // The agent still serves a new client.
    rt.block_on(async {
        let mut c = connect(&addr, &ClientTls::default(), Duration::from_secs(10))
            .await
            .unwrap();
        let mut s = c.get_events(true_execs()).await.unwrap().into_inner();
        let pid = run(&mut Command::new("/usr/bin/true"));
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), s.message())
                .await
                .expect("new client served")
                .unwrap()
                .unwrap();
            if exec_pid(&ev) == Some(pid) {
                assert_eq!(ev.vigil_seq, 1);
                break;
            }
        }
    });
    let (events, log) = agent.stop();
    assert_eq!(
        log.matches("gRPC events client too slow").count(),
        IDLE,
        "each idle client cut and logged once, no reader cut:\n{}",
        log.lines()
            .filter(|l| l.contains("too slow"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(log.contains(&format!("slow_clients_total={IDLE}")), "{log}");
    // The export numbered every line, with no gap in a normal run.
    let (last, explained) = check_file_seq(&events);
    assert_eq!(explained, 0);
    assert_eq!(last, events.len() as u64);
}

#[test]
fn adversarial_grpc_streams_over_the_cap_are_refused_by_name() {
    let _g = serial();
    let (agent, addr) = start("adv-grpc-cap", &["--grpc-max-clients=3"]);
    rt().block_on(async {
        let mut c = connect(&addr, &ClientTls::default(), Duration::from_secs(10))
            .await
            .unwrap();
        let mut open = Vec::new();
        for _ in 0..3 {
            open.push(c.get_events(true_execs()).await.unwrap().into_inner());
        }
        let Err(err) = c.get_events(true_execs()).await else {
            panic!("4th stream accepted");
        };
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
        assert!(
            err.message().contains("--grpc-max-clients") && err.message().contains('3'),
            "{}",
            err.message()
        );
        // A stream that ends frees its place.
        drop(open.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match c.get_events(true_execs()).await {
                Ok(s) => {
                    open.push(s.into_inner());
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "place not freed: {e:?}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    agent.stop();
}

fn mount_full_tmpfs(mnt: &Path) -> PathBuf {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "vigil-seq-full"])
        .arg(mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs");
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    filler
}

#[test]
fn adversarial_grpc_export_seq_gap_is_explained_after_a_failed_write() {
    let _g = serial();
    let mnt = scratch_dir("adv-grpc-full-mnt");
    let filler = mount_full_tmpfs(&mnt);
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(mnt.clone());
    let export = mnt.join("events.json");
    let agent = Agent::start(
        "adv-grpc-seq-full",
        &["--export-filename", export.to_str().unwrap()],
    );
    for _ in 0..20 {
        run(&mut Command::new("/usr/bin/true"));
    }
    // The export flushes when idle: the lines of the 20 processes fail and are numbered.
    std::thread::sleep(Duration::from_millis(1200));
    std::fs::remove_file(&filler).unwrap();
    let marker = run(&mut Command::new("/usr/bin/true"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events = read_events(&export);
        if !crate::harness::execs_of_pid(&events, marker).is_empty() {
            break events;
        }
        assert!(Instant::now() < deadline, "writing did not resume");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (last, explained) = check_file_seq(&events);
    eprintln!(
        "adversarial_grpc: export after a full disk: {} lines, last seq {last}, {explained} \
         numbers explained by LOSS_STAGE_STREAM reports",
        events.len()
    );
    assert!(
        explained >= 40,
        "the 20 execs and exits were lost: {explained}"
    );
    assert_eq!(last, events.len() as u64 + explained);
    // The numbered lines and the stream's reports parse as the proto says.
    crate::proto_check::assert_lines_parse_with_protobuf(&events);
    agent.stop();
}
