use std::task::Waker;

use vigil_proto::tetragon::get_events_response::Event as Payload;

use super::*;

fn ev(n: &str) -> Event {
    Arc::new(GetEventsResponse {
        node_name: n.into(),
        ..Default::default()
    })
}

fn next(s: &mut EventStream) -> Poll<Option<Result<GetEventsResponse, Status>>> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(s).poll_next(&mut cx)
}

fn sub(hub: &Arc<Hub>) -> EventStream {
    hub.subscribe(FilterList::default(), FieldFilters::default())
        .unwrap()
}

/// The loss report then the status that end a cut stream.
fn cut_end(s: &mut EventStream) -> (GetEventsResponse, Status) {
    let report = match next(s) {
        Poll::Ready(Some(Ok(e))) => e,
        other => panic!("no loss report: {other:?}"),
    };
    let status = match next(s) {
        Poll::Ready(Some(Err(st))) => st,
        other => panic!("no status: {other:?}"),
    };
    assert!(matches!(next(s), Poll::Ready(None)));
    (report, status)
}

fn lost_count(e: &GetEventsResponse) -> u64 {
    match &e.event {
        Some(Payload::EventsLost(l)) => {
            assert_eq!(l.stage, LossStage::Stream as i32);
            l.count
        }
        other => panic!("not a loss report: {other:?}"),
    }
}

#[test]
fn slow_client_is_dropped_others_continue() {
    let hub = Hub::new(2);
    let mut sink = GrpcSink::new(hub.clone());
    let mut slow = sub(&hub);
    let mut fast = sub(&hub);
    for i in 0..5u64 {
        sink.publish(&ev(&i.to_string()));
        if let Poll::Ready(Some(Ok(e))) = next(&mut fast) {
            assert_eq!(e.node_name, i.to_string());
            assert_eq!(e.vigil_seq, i + 1);
            assert_eq!(e.vigil_instance, seq::instance());
        } else {
            panic!("fast client got nothing");
        }
    }
    assert_eq!(hub.slow_disconnects(), 1);
    assert_eq!(hub.clients(), 1);
    // Cut at its third event (seq 3), before reading any: 3 numbers skipped, report is 4.
    let (report, status) = cut_end(&mut slow);
    assert_eq!(lost_count(&report), 3);
    assert_eq!(report.vigil_seq, 4);
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status.message().contains("too slow"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("--grpc-client-buffer"),
        "{}",
        status.message()
    );
    assert_eq!(hub.queued_bytes(), 0, "the backlog was freed at the cut");
}

#[test]
fn a_client_is_cut_by_bytes_and_its_seq_explains_the_hole() {
    let one = ev("n").encoded_len();
    let hub = Hub::with_limits(Limits {
        client_bytes: 3 * one,
        ..Limits::default()
    });
    let mut sink = GrpcSink::new(hub.clone());
    let mut c = sub(&hub);
    sink.publish(&ev("n"));
    let first = match next(&mut c) {
        Poll::Ready(Some(Ok(e))) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.vigil_seq, 1);
    for _ in 0..4 {
        sink.publish(&ev("n"));
    }
    // Seq 2..4 queued (3 events fill the budget), 5 overflows: 2..=5 never delivered.
    assert_eq!(hub.slow_disconnects(), 1);
    let (report, status) = cut_end(&mut c);
    assert_eq!(lost_count(&report), 4);
    assert_eq!(report.vigil_seq, 6);
    assert!(status.message().contains("bytes"), "{}", status.message());
}

#[test]
fn the_shared_budget_cuts_the_largest_queue_first() {
    let one = ev("n").encoded_len();
    let hub = Hub::with_limits(Limits {
        total_bytes: 10 * one,
        ..Limits::default()
    });
    let mut sink = GrpcSink::new(hub.clone());
    let mut idle = sub(&hub);
    let mut reader = sub(&hub);
    for i in 0..20 {
        sink.publish(&ev("n"));
        match next(&mut reader) {
            Poll::Ready(Some(Ok(e))) => assert_eq!(e.vigil_seq, i + 1),
            other => panic!("reader cut at {i}: {other:?}"),
        }
        assert!(hub.queued_bytes() <= 10 * one);
    }
    assert_eq!(hub.slow_disconnects(), 1);
    assert_eq!(hub.clients(), 1);
    let (_, status) = cut_end(&mut idle);
    assert!(
        status.message().contains("--grpc-buffer-bytes"),
        "{}",
        status.message()
    );
}

#[test]
fn streams_are_capped() {
    let hub = Hub::with_limits(Limits {
        max_clients: 2,
        ..Limits::default()
    });
    let a = sub(&hub);
    let _b = sub(&hub);
    let Err(err) = hub.subscribe(FilterList::default(), FieldFilters::default()) else {
        panic!("third accepted");
    };
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.message().contains("limit is 2"), "{}", err.message());
    // A client that left frees its place.
    drop(a);
    let _c = sub(&hub);
}

#[test]
fn numbering_follows_the_clients_filters() {
    let hub = Hub::new(16);
    let mut sink = GrpcSink::new(hub.clone());
    let filters = FilterList::new(
        &[vigil_proto::tetragon::Filter {
            event_set: vec![vigil_proto::tetragon::EventType::EventsLost as i32],
            ..Default::default()
        }],
        &[],
    )
    .unwrap();
    let mut only_lost = hub.subscribe(filters, FieldFilters::default()).unwrap();
    for i in 0..6u64 {
        if i % 2 == 0 {
            sink.publish(&Arc::new(seq::loss_report(LossStage::Sink, i, i, "n")));
        } else {
            sink.publish(&ev("n"));
        }
    }
    for want in 1..=3 {
        match next(&mut only_lost) {
            Poll::Ready(Some(Ok(e))) => assert_eq!(e.vigil_seq, want),
            other => panic!("{other:?}"),
        }
    }
    assert!(next(&mut only_lost).is_pending());
}

#[test]
fn closed_clients_leave() {
    let hub = Hub::new(4);
    let mut sink = GrpcSink::new(hub.clone());
    drop(sub(&hub));
    sink.publish(&ev("x"));
    assert_eq!(hub.clients(), 0);
    assert_eq!(hub.slow_disconnects(), 0);
}
