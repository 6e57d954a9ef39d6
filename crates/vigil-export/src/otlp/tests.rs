use super::*;

fn none() -> OtlpTlsFiles {
    OtlpTlsFiles::default()
}

#[test]
fn endpoint_forms_choose_tls_or_plaintext() {
    let plain = OtlpConfig::new("http://127.0.0.1:4317", false, &none()).unwrap();
    assert_eq!(plain.endpoint.uri().scheme_str(), Some("http"));
    let bare = OtlpConfig::new("collector.example:4317", true, &none()).unwrap();
    assert_eq!(bare.endpoint.uri().scheme_str(), Some("http"));
    let tls = OtlpConfig::new("collector.example:4317", false, &none()).unwrap();
    assert_eq!(tls.endpoint.uri().scheme_str(), Some("https"));
    let v6 = OtlpConfig::new("https://[::1]:4317/", false, &none()).unwrap();
    assert_eq!(v6.endpoint.uri().host(), Some("[::1]"));
}

#[test]
fn bad_endpoints_name_the_flag() {
    for bad in [
        "",
        "localhost",
        "http://",
        "http://host:notaport",
        "host:0",
        "grpc://host:4317",
        "http://host:4317/v1/logs",
        "ho st:4317",
    ] {
        let e = OtlpConfig::new(bad, false, &none())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--export-otlp-endpoint"), "{bad:?}: {e}");
    }
}

#[test]
fn contradictory_tls_settings_are_refused() {
    let ca = OtlpTlsFiles {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..Default::default()
    };
    let e = OtlpConfig::new("http://h:1", false, &ca).unwrap_err();
    assert!(e.to_string().contains("http:// is plaintext"), "{e}");
    let e = OtlpConfig::new("https://h:1", true, &none()).unwrap_err();
    assert!(e.to_string().contains("--export-otlp-insecure"), "{e}");
    let e = OtlpConfig::new("h:1", false, &ca).unwrap_err();
    assert!(
        e.to_string()
            .contains("--export-otlp-ca-file /nonexistent/ca.pem"),
        "{e}"
    );
    let key_only = OtlpTlsFiles {
        key_file: Some("/nonexistent/key.pem".into()),
        ..Default::default()
    };
    let e = OtlpConfig::new("h:1", false, &key_only).unwrap_err();
    assert!(matches!(e, OtlpError::KeyWithoutCert), "{e}");
}

fn exec_event(pid: u32) -> Event {
    use vigil_proto::tetragon::{GetEventsResponse, Process, ProcessExec, get_events_response};
    Arc::new(GetEventsResponse {
        event: Some(get_events_response::Event::ProcessExec(ProcessExec {
            process: Some(Process {
                pid: Some(pid.into()),
                binary: "/usr/bin/true".into(),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    })
}

/// A port nothing listens on: every attempt fails at once.
fn dead_endpoint() -> OtlpConfig {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = OtlpConfig::new(&format!("http://127.0.0.1:{port}"), false, &none()).unwrap();
    cfg.batch_delay = Duration::from_millis(10);
    cfg.max_retry = Duration::from_millis(300);
    cfg
}

#[test]
fn unreachable_receiver_counts_every_event_lost() {
    let mut sink = OtlpSink::start(dead_endpoint(), AllowDeny::default(), None, "n").unwrap();
    for pid in 1..=100 {
        sink.publish(&exec_event(pid));
    }
    sink.close();
    let c = sink.counters();
    assert_eq!(c.exported.load(Ordering::Relaxed), 0);
    assert_eq!(sink.lost(), 100);
    assert_eq!(c.queue_bytes.load(Ordering::Relaxed), 0);
}

#[test]
fn the_queue_is_bounded_in_bytes_and_drops_are_counted() {
    let mut cfg = dead_endpoint();
    let size = exec_event(1).encoded_len() as u64;
    // Room for two events; they stay charged while their batch is retried.
    cfg.queue_bytes = size * 2 + size / 2;
    let mut sink = OtlpSink::start(cfg, AllowDeny::default(), None, "n").unwrap();
    for pid in 1..=10 {
        sink.publish(&exec_event(pid));
    }
    let c = sink.counters();
    assert_eq!(c.lost_queue_full.load(Ordering::Relaxed), 8);
    sink.close();
    assert_eq!(c.lost_send_failed.load(Ordering::Relaxed), 2);
    assert_eq!(sink.lost(), 10);
}
