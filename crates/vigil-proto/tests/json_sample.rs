//! JSON encoding checks against Tetragon's documented process_exec sample
//! (docs concepts/events.md, "Process execution event"); expected JSON
//! written by hand.

use std::collections::BTreeMap;

use pbjson_types::UInt32Value;
use serde_json::{Value, json};
use vigil_proto::tetragon::{
    Container, GetEventsResponse, Image, Pod, Process, ProcessExec, get_events_response::Event,
};
use vigil_proto::wkt::Timestamp;

const NODE: &str = "gke-john-632-default-pool-7041cac0-9s95";
const CONTAINER_ID: &str =
    "containerd://551e161c47d8ff0eb665438a7bcd5b4e3ef5a297282b40a92b7c77d6bd168eb3";
const IMAGE_ID: &str = "docker.io/tgraf/netperf@sha256:8e86f744bfea165fd4ce68caa05abc96500f40130b857773186401926af7e9e6";
const EXEC_ID: &str =
    "Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4Njc0MzIxMzczOjUyNjk5";
const PARENT_EXEC_ID: &str =
    "Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4NjcwODgzMjk5OjUyNjk5";
const GRANDPARENT_EXEC_ID: &str =
    "Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4NjQ1MjQ1ODM5OjUyNjg5";

fn u32v(v: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value: v })
}

fn pod() -> Pod {
    let pod_labels: BTreeMap<String, String> = [
        ("app.kubernetes.io/name", "xwing"),
        ("class", "xwing"),
        ("org", "alliance"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Pod {
        namespace: "default".into(),
        name: "xwing".into(),
        container: Some(Container {
            id: CONTAINER_ID.into(),
            name: "spaceship".into(),
            image: Some(Image {
                id: IMAGE_ID.into(),
                name: "docker.io/tgraf/netperf:latest".into(),
            }),
            // 2023-10-06T21:52:41Z
            start_time: Some(Timestamp::new(1_696_629_161, 0)),
            pid: u32v(49),
            ..Default::default()
        }),
        pod_labels,
        workload: "xwing".into(),
        ..Default::default()
    }
}

fn sample() -> GetEventsResponse {
    let process = Process {
        exec_id: EXEC_ID.into(),
        pid: u32v(52699),
        uid: u32v(0),
        cwd: "/".into(),
        binary: "/usr/bin/curl".into(),
        arguments: "https://ebpf.io/applications/#tetragon".into(),
        flags: "execve rootcwd".into(),
        // 2023-10-06T22:03:57.700327580Z
        start_time: Some(Timestamp::new(1_696_629_837, 700_327_580)),
        auid: u32v(4_294_967_295),
        pod: Some(pod()),
        docker: "551e161c47d8ff0eb665438a7bcd5b4".into(),
        parent_exec_id: PARENT_EXEC_ID.into(),
        tid: u32v(52699),
        ..Default::default()
    };
    let parent = Process {
        exec_id: PARENT_EXEC_ID.into(),
        pid: u32v(52699),
        uid: u32v(0),
        cwd: "/".into(),
        binary: "/bin/bash".into(),
        arguments: "-c \"curl https://ebpf.io/applications/#tetragon\"".into(),
        flags: "execve rootcwd clone".into(),
        // 2023-10-06T22:03:57.696889812Z
        start_time: Some(Timestamp::new(1_696_629_837, 696_889_812)),
        auid: u32v(4_294_967_295),
        pod: Some(pod()),
        docker: "551e161c47d8ff0eb665438a7bcd5b4".into(),
        parent_exec_id: GRANDPARENT_EXEC_ID.into(),
        tid: u32v(52699),
        ..Default::default()
    };
    GetEventsResponse {
        event: Some(Event::ProcessExec(ProcessExec {
            process: Some(process),
            parent: Some(parent),
            ancestors: vec![],
        })),
        node_name: NODE.into(),
        // 2023-10-06T22:03:57.700326678Z
        time: Some(Timestamp::new(1_696_629_837, 700_326_678)),
        ..Default::default()
    }
}

fn expected_pod() -> Value {
    json!({
        "namespace": "default",
        "name": "xwing",
        "container": {
            "id": CONTAINER_ID,
            "name": "spaceship",
            "image": {
                "id": IMAGE_ID,
                "name": "docker.io/tgraf/netperf:latest"
            },
            "start_time": "2023-10-06T21:52:41Z",
            "pid": 49
        },
        "pod_labels": {
            "app.kubernetes.io/name": "xwing",
            "class": "xwing",
            "org": "alliance"
        },
        "workload": "xwing"
    })
}

fn expected() -> Value {
    json!({
        "process_exec": {
            "process": {
                "exec_id": EXEC_ID,
                "pid": 52699,
                "uid": 0,
                "cwd": "/",
                "binary": "/usr/bin/curl",
                "arguments": "https://ebpf.io/applications/#tetragon",
                "flags": "execve rootcwd",
                "start_time": "2023-10-06T22:03:57.700327580Z",
                "auid": 4294967295u32,
                "pod": expected_pod(),
                "docker": "551e161c47d8ff0eb665438a7bcd5b4",
                "parent_exec_id": PARENT_EXEC_ID,
                "tid": 52699
            },
            "parent": {
                "exec_id": PARENT_EXEC_ID,
                "pid": 52699,
                "uid": 0,
                "cwd": "/",
                "binary": "/bin/bash",
                "arguments": "-c \"curl https://ebpf.io/applications/#tetragon\"",
                "flags": "execve rootcwd clone",
                "start_time": "2023-10-06T22:03:57.696889812Z",
                "auid": 4294967295u32,
                "pod": expected_pod(),
                "docker": "551e161c47d8ff0eb665438a7bcd5b4",
                "parent_exec_id": GRANDPARENT_EXEC_ID,
                "tid": 52699
            }
        },
        "node_name": NODE,
        "time": "2023-10-06T22:03:57.700326678Z"
    })
}

/// The sample as one export line, keys in Tetragon's (declaration) order.
const EXPECTED_LINE: &str = concat!(
    r#"{"process_exec":{"process":{"exec_id":"Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4Njc0MzIxMzczOjUyNjk5","#,
    r#""pid":52699,"uid":0,"cwd":"/","binary":"/usr/bin/curl","arguments":"https://ebpf.io/applications/#tetragon","#,
    r#""flags":"execve rootcwd","start_time":"2023-10-06T22:03:57.700327580Z","auid":4294967295,"#,
    r#""pod":{"namespace":"default","name":"xwing","container":{"id":"containerd://551e161c47d8ff0eb665438a7bcd5b4e3ef5a297282b40a92b7c77d6bd168eb3","#,
    r#""name":"spaceship","image":{"id":"docker.io/tgraf/netperf@sha256:8e86f744bfea165fd4ce68caa05abc96500f40130b857773186401926af7e9e6","#,
    r#""name":"docker.io/tgraf/netperf:latest"},"start_time":"2023-10-06T21:52:41Z","pid":49},"#,
    r#""pod_labels":{"app.kubernetes.io/name":"xwing","class":"xwing","org":"alliance"},"workload":"xwing"},"#,
    r#""docker":"551e161c47d8ff0eb665438a7bcd5b4","#,
    r#""parent_exec_id":"Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4NjcwODgzMjk5OjUyNjk5","tid":52699},"#,
    r#""parent":{"exec_id":"Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4NjcwODgzMjk5OjUyNjk5","#,
    r#""pid":52699,"uid":0,"cwd":"/","binary":"/bin/bash","arguments":"-c \"curl https://ebpf.io/applications/#tetragon\"","#,
    r#""flags":"execve rootcwd clone","start_time":"2023-10-06T22:03:57.696889812Z","auid":4294967295,"#,
    r#""pod":{"namespace":"default","name":"xwing","container":{"id":"containerd://551e161c47d8ff0eb665438a7bcd5b4e3ef5a297282b40a92b7c77d6bd168eb3","#,
    r#""name":"spaceship","image":{"id":"docker.io/tgraf/netperf@sha256:8e86f744bfea165fd4ce68caa05abc96500f40130b857773186401926af7e9e6","#,
    r#""name":"docker.io/tgraf/netperf:latest"},"start_time":"2023-10-06T21:52:41Z","pid":49},"#,
    r#""pod_labels":{"app.kubernetes.io/name":"xwing","class":"xwing","org":"alliance"},"workload":"xwing"},"#,
    r#""docker":"551e161c47d8ff0eb665438a7bcd5b4","#,
    r#""parent_exec_id":"Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4NjQ1MjQ1ODM5OjUyNjg5","tid":52699}},"#,
    r#""node_name":"gke-john-632-default-pool-7041cac0-9s95","time":"2023-10-06T22:03:57.700326678Z"}"#,
);

#[test]
fn process_exec_sample_matches_tetragon() {
    let line = serde_json::to_string(&sample()).unwrap();
    let got: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(got, expected());
}

#[test]
fn process_exec_sample_is_byte_exact() {
    let line = serde_json::to_string(&sample()).unwrap();
    assert_eq!(line, EXPECTED_LINE);
}

#[test]
fn process_exec_sample_round_trips() {
    let back: GetEventsResponse = serde_json::from_str(EXPECTED_LINE).unwrap();
    assert_eq!(back, sample());
}

#[test]
fn wrappers_print_zero_but_plain_zero_scalars_are_omitted() {
    let line = serde_json::to_string(&sample()).unwrap();
    // uid is a UInt32Value set to 0: present.
    assert!(line.contains(r#""uid":0"#), "{line}");
    // refcnt is a plain uint32 left at 0: absent; so are empty strings,
    // unset messages and empty lists.
    for absent in [
        "refcnt",
        "cap",
        "ns",
        "ancestors",
        "workload_kind",
        "uid\":\"",
        "cluster_name",
    ] {
        assert!(!line.contains(&format!("\"{absent}")), "{absent} in {line}");
    }
}
