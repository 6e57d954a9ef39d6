//! protojson rules Tetragon's export relies on, beyond the exec sample.

use pbjson_types::{BoolValue, Duration, UInt32Value};
use prost::Message;
use serde_json::{Value, json};
use vigil_proto::tetragon::{
    AggregationOptions, BinaryLocation, Capabilities, CapabilitiesType, EventType, EventsLost,
    Filter, GetEventsRequest, GetEventsResponse, KprobeAction, KprobeArgument, KprobeFile,
    LossStage, Process, ProcessExit, ProcessKprobe, ProcessThrottle, StackTraceEntry, ThrottleType,
    get_events_response::Event, kprobe_argument::Arg,
};
use vigil_proto::wkt::Timestamp;

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

/// Tetragon's documented process_kprobe sample (filename-access use case),
/// reduced to the kprobe-specific part; expected JSON written by hand.
#[test]
fn kprobe_args_oneof_zero_and_enum_names() {
    let ev = GetEventsResponse {
        event: Some(Event::ProcessKprobe(ProcessKprobe {
            function_name: "security_file_permission".into(),
            args: vec![
                KprobeArgument {
                    arg: Some(Arg::FileArg(KprobeFile {
                        path: "/etc/passwd".into(),
                        permission: "-rw-r--r--".into(),
                        ..Default::default()
                    })),
                    label: String::new(),
                },
                KprobeArgument {
                    arg: Some(Arg::IntArg(2)),
                    label: String::new(),
                },
            ],
            r#return: Some(KprobeArgument {
                arg: Some(Arg::IntArg(0)),
                label: String::new(),
            }),
            action: KprobeAction::Post as i32,
            policy_name: "file-monitoring".into(),
            return_action: KprobeAction::Post as i32,
            ..Default::default()
        })),
        node_name: "tetragon-dev-control-plane".into(),
        time: Some(Timestamp::new(1_713_061_094, 376_304_204)),
        ..Default::default()
    };
    let line = serde_json::to_string(&ev).unwrap();
    assert_eq!(
        line,
        concat!(
            r#"{"process_kprobe":{"function_name":"security_file_permission","#,
            r#""args":[{"file_arg":{"path":"/etc/passwd","permission":"-rw-r--r--"}},{"int_arg":2}],"#,
            r#""return":{"int_arg":0},"action":"KPROBE_ACTION_POST","policy_name":"file-monitoring","#,
            r#""return_action":"KPROBE_ACTION_POST"},"#,
            r#""node_name":"tetragon-dev-control-plane","time":"2024-04-14T02:18:14.376304204Z"}"#
        )
    );
    let back: GetEventsResponse = serde_json::from_str(&line).unwrap();
    assert_eq!(back, ev);
}

#[test]
fn oneof_comes_before_label_like_tetragon() {
    let arg = KprobeArgument {
        arg: Some(Arg::SizeArg(4096)),
        label: "count".into(),
    };
    assert_eq!(
        serde_json::to_string(&arg).unwrap(),
        r#"{"size_arg":"4096","label":"count"}"#
    );
}

#[test]
fn sixty_four_bit_integers_are_strings() {
    // Documented kernel stack entry shape.
    let entry = StackTraceEntry {
        address: 18_446_744_072_119_856_613,
        offset: 5,
        symbol: "kfree_skb_reason".into(),
        module: String::new(),
    };
    assert_eq!(
        serde_json::to_string(&entry).unwrap(),
        r#"{"address":"18446744072119856613","offset":"5","symbol":"kfree_skb_reason"}"#
    );
    let back: StackTraceEntry =
        serde_json::from_str(r#"{"address":"18446744072119856613","offset":5}"#).unwrap();
    assert_eq!(back.address, 18_446_744_072_119_856_613);
    assert_eq!(back.offset, 5);
}

#[test]
fn enums_serialise_by_name() {
    let throttle = GetEventsResponse {
        event: Some(Event::ProcessThrottle(ProcessThrottle {
            r#type: ThrottleType::ThrottleStart as i32,
            cgroup: "session-429.scope".into(),
        })),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_string(&throttle).unwrap(),
        r#"{"process_throttle":{"type":"THROTTLE_START","cgroup":"session-429.scope"}}"#
    );
    let caps = Capabilities {
        permitted: vec![
            CapabilitiesType::CapChown as i32,
            CapabilitiesType::DacOverride as i32,
        ],
        effective: vec![CapabilitiesType::CapSysAdmin as i32],
        inheritable: vec![],
    };
    assert_eq!(
        to_value(&caps),
        json!({"permitted": ["CAP_CHOWN", "DAC_OVERRIDE"], "effective": ["CAP_SYS_ADMIN"]})
    );
    // Enum fields at their zero value are omitted like other scalars.
    let exit = ProcessExit {
        signal: "SIGKILL".into(),
        ..Default::default()
    };
    assert_eq!(to_value(&exit), json!({"signal": "SIGKILL"}));
}

#[test]
fn timestamps_use_z_and_0_3_6_9_fraction_digits() {
    let cases = [
        (0, "2023-10-06T21:52:41Z"),
        (500_000_000, "2023-10-06T21:52:41.500Z"),
        (123_456_000, "2023-10-06T21:52:41.123456Z"),
        (700_327_580, "2023-10-06T21:52:41.700327580Z"),
        (1, "2023-10-06T21:52:41.000000001Z"),
    ];
    for (nanos, want) in cases {
        let ts = Timestamp::new(1_696_629_161, nanos);
        assert_eq!(serde_json::to_string(&ts).unwrap(), format!("\"{want}\""));
        let back: Timestamp = serde_json::from_str(&format!("\"{want}\"")).unwrap();
        assert_eq!(back, ts);
    }
    // Offsets other than Z are accepted on input and normalised.
    let ts: Timestamp = serde_json::from_str("\"2023-10-06T23:52:41+02:00\"").unwrap();
    assert_eq!(ts, Timestamp::new(1_696_629_161, 0));
}

#[test]
fn wrappers_bool_and_duration() {
    let req = GetEventsRequest {
        allow_list: vec![Filter {
            event_set: vec![EventType::ProcessExec as i32, EventType::EventsLost as i32],
            health_check: Some(BoolValue { value: false }),
            pid: vec![1, 2],
            ..Default::default()
        }],
        aggregation_options: Some(AggregationOptions {
            window_size: Some(Duration {
                seconds: 15,
                nanos: 0,
            }),
            channel_buffer_size: 10_000,
        }),
        ..Default::default()
    };
    assert_eq!(
        to_value(&req),
        json!({
            "allow_list": [{
                "health_check": false,
                "pid": [1, 2],
                "event_set": ["PROCESS_EXEC", "EVENTS_LOST"]
            }],
            "aggregation_options": {"window_size": "15s", "channel_buffer_size": "10000"}
        })
    );
    // Tetragon allow/deny list lines parse.
    let f: Filter = serde_json::from_str(
        r#"{"event_set":["PROCESS_EXEC","PROCESS_EXIT"],"namespace":["", "cilium", "kube-system"],"health_check":true}"#,
    )
    .unwrap();
    assert_eq!(f.namespace.len(), 3);
    assert_eq!(f.health_check, Some(BoolValue { value: true }));
}

#[test]
fn vigil_extensions() {
    let p = Process {
        pid: Some(UInt32Value { value: 0 }),
        argv: vec![b"/bin/sh".to_vec(), b"-c".to_vec(), vec![0xff, 0x00]],
        binary_location: BinaryLocation::Memfd as i32,
        ..Default::default()
    };
    assert_eq!(
        to_value(&p),
        json!({"pid": 0, "argv": ["L2Jpbi9zaA==", "LWM=", "/wA="], "binary_location": "BINARY_LOCATION_MEMFD"})
    );
    let lost = GetEventsResponse {
        event: Some(Event::EventsLost(EventsLost {
            stage: LossStage::RingBuffer as i32,
            event_type: "PROCESS_EXEC".into(),
            count: 3,
            total: 10,
        })),
        node_name: "n1".into(),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_string(&lost).unwrap(),
        r#"{"events_lost":{"stage":"LOSS_STAGE_RING_BUFFER","event_type":"PROCESS_EXEC","count":"3","total":"10"},"node_name":"n1"}"#
    );
    // Wire numbers: Process.argv is field 50000, the oneof member 50000.
    let bytes = Process {
        argv: vec![b"x".to_vec()],
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(bytes, [0x82, 0xb5, 0x18, 0x01, b'x']); // varint((50000 << 3) | 2)
    let env = lost.encode_to_vec();
    assert_eq!(&env[..3], &[0x82, 0xb5, 0x18]);
    assert_eq!(GetEventsResponse::decode(env.as_slice()).unwrap(), lost);
}

#[test]
fn unknown_fields_are_rejected() {
    for bad in [
        r#"{"process_exec":{},"bogus":1}"#,
        r#"{"process_exec":{"process":{"exec_id":"x","no_such_field":true}}}"#,
        r#"{"process_kprobe":{"args":[{"int_arg":1,"extra":2}]}}"#,
    ] {
        assert!(
            serde_json::from_str::<GetEventsResponse>(bad).is_err(),
            "{bad}"
        );
    }
    // Sanity: the same shapes without the unknown key parse.
    serde_json::from_str::<GetEventsResponse>(r#"{"process_exec":{"process":{"exec_id":"x"}}}"#)
        .unwrap();
}

#[test]
fn unknown_enum_names_are_rejected() {
    assert!(serde_json::from_str::<Filter>(r#"{"event_set":["PROCESS_NOPE"]}"#).is_err());
}
