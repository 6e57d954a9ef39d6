use std::collections::BTreeMap;

use vigil_proto::tetragon::{
    Capabilities, CapabilitiesType, Container, GetEventsResponse, Pod, Process, ProcessExec,
    ProcessExit, ProcessKprobe, get_events_response::Event,
};

use super::*;

fn proc(binary: &str, pid: u32, args: &str) -> Process {
    Process {
        binary: binary.into(),
        pid: Some(pid.into()),
        arguments: args.into(),
        ..Default::default()
    }
}

fn exec(p: Process, parent: Option<Process>) -> GetEventsResponse {
    GetEventsResponse {
        event: Some(Event::ProcessExec(ProcessExec {
            process: Some(p),
            parent,
            ancestors: vec![],
        })),
        ..Default::default()
    }
}

fn with_pod(
    mut p: Process,
    ns: &str,
    name: &str,
    container: &str,
    labels: &[(&str, &str)],
) -> Process {
    p.pod = Some(Pod {
        namespace: ns.into(),
        name: name.into(),
        container: Some(Container {
            name: container.into(),
            maybe_exec_probe: container == "probe",
            ..Default::default()
        }),
        pod_labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    });
    p
}

/// For each field: a filter, an event that matches and one that does not.
#[test]
fn every_field_selects_exactly_the_matching_event() {
    let base = || proc("/usr/bin/curl", 10, "-s http://x");
    let other = || proc("/bin/ls", 20, "-l");
    let mut caps = base();
    caps.cap = Some(Capabilities {
        permitted: vec![CapabilitiesType::CapSysAdmin as i32],
        effective: vec![CapabilitiesType::CapSysAdmin as i32],
        inheritable: vec![],
    });
    let mut docker = base();
    docker.docker = "abc123".into();
    let mut init = base();
    init.in_init_tree = Some(true.into());
    let mut with_anc = exec(base(), None);
    if let Some(Event::ProcessExec(e)) = &mut with_anc.event {
        e.ancestors = vec![proc("/usr/bin/bash", 1, "")];
    }
    let kprobe = |policy: &str| GetEventsResponse {
        event: Some(Event::ProcessKprobe(ProcessKprobe {
            process: Some(base()),
            policy_name: policy.into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    let exit = GetEventsResponse {
        event: Some(Event::ProcessExit(ProcessExit {
            process: Some(base()),
            ..Default::default()
        })),
        ..Default::default()
    };
    let cases: Vec<(&str, GetEventsResponse, GetEventsResponse)> = vec![
        (
            r#"{"binary_regex":["curl$"]}"#,
            exec(base(), None),
            exec(other(), None),
        ),
        (r#"{"pid":[10]}"#, exec(base(), None), exec(other(), None)),
        (
            r#"{"arguments_regex":["http://"]}"#,
            exec(base(), None),
            exec(other(), None),
        ),
        (
            r#"{"event_set":["PROCESS_EXIT"]}"#,
            exit,
            exec(base(), None),
        ),
        (
            r#"{"namespace":["prod"]}"#,
            exec(with_pod(base(), "prod", "p", "c", &[]), None),
            exec(base(), None),
        ),
        (
            r#"{"namespace":[""]}"#,
            exec(base(), None),
            exec(with_pod(base(), "prod", "p", "c", &[]), None),
        ),
        (
            r#"{"namespace_regex":["^pr"]}"#,
            exec(with_pod(base(), "prod", "p", "c", &[]), None),
            exec(with_pod(base(), "dev", "p", "c", &[]), None),
        ),
        (
            r#"{"pod_regex":["^web-"]}"#,
            exec(with_pod(base(), "n", "web-1", "c", &[]), None),
            exec(with_pod(base(), "n", "db-1", "c", &[]), None),
        ),
        (
            r#"{"container_name_regex":["^nginx$"]}"#,
            exec(with_pod(base(), "n", "p", "nginx", &[]), None),
            exec(with_pod(base(), "n", "p", "redis", &[]), None),
        ),
        (
            r#"{"labels":["app=web"]}"#,
            exec(with_pod(base(), "n", "p", "c", &[("app", "web")]), None),
            exec(with_pod(base(), "n", "p", "c", &[("app", "db")]), None),
        ),
        (
            r#"{"health_check":true}"#,
            exec(with_pod(base(), "n", "p", "probe", &[]), None),
            exec(with_pod(base(), "n", "p", "c", &[]), None),
        ),
        (r#"{"policy_names":["p1"]}"#, kprobe("p1"), kprobe("p2")),
        (
            r#"{"capabilities":{"effective":{"any":["CAP_SYS_ADMIN"]}}}"#,
            exec(caps.clone(), None),
            exec(base(), None),
        ),
        (
            r#"{"capabilities":{"permitted":{"none":["CAP_SYS_ADMIN"]}}}"#,
            exec(
                Process {
                    cap: Some(Capabilities::default()),
                    ..base()
                },
                None,
            ),
            exec(caps, None),
        ),
        (
            r#"{"parent_binary_regex":["bash"]}"#,
            exec(base(), Some(proc("/bin/bash", 1, "-c x"))),
            exec(base(), Some(proc("/bin/sh", 1, ""))),
        ),
        (
            r#"{"parent_arguments_regex":["-c"]}"#,
            exec(base(), Some(proc("/bin/bash", 1, "-c x"))),
            exec(base(), Some(proc("/bin/bash", 1, ""))),
        ),
        (
            r#"{"container_id":["^abc"]}"#,
            exec(docker, None),
            exec(base(), None),
        ),
        (
            r#"{"in_init_tree":true}"#,
            exec(init, None),
            exec(base(), None),
        ),
        (
            r#"{"ancestor_binary_regex":["bash$"]}"#,
            with_anc,
            exec(base(), None),
        ),
        (
            r#"{"pid_set":[1]}"#,
            exec(base(), Some(proc("/sbin/init", 1, ""))),
            exec(other(), Some(proc("/bin/sh", 2, ""))),
        ),
    ];
    for (json, yes, no) in cases {
        let allow = FilterList::parse("--export-allowlist", json).unwrap();
        let f = AllowDeny {
            allow,
            deny: FilterList::default(),
        };
        assert!(f.passes(&yes), "{json} must pass {yes:?}");
        assert!(!f.passes(&no), "{json} must not pass {no:?}");
        let deny = AllowDeny {
            allow: FilterList::default(),
            deny: FilterList::parse("--export-denylist", json).unwrap(),
        };
        assert!(!deny.passes(&yes) && deny.passes(&no), "deny {json}");
    }
}

#[test]
fn lines_or_fields_and_deny_wins() {
    let allow = FilterList::parse(
        "--export-allowlist",
        "{\"binary_regex\":[\"curl\"],\"pid\":[10]}\n\n{\"pid\":[30]}\n",
    )
    .unwrap();
    let deny = FilterList::parse("--export-denylist", r#"{"arguments_regex":["secret"]}"#).unwrap();
    let f = AllowDeny { allow, deny };
    assert!(f.passes(&exec(proc("/usr/bin/curl", 10, ""), None)));
    assert!(
        !f.passes(&exec(proc("/usr/bin/curl", 11, ""), None)),
        "AND inside a line"
    );
    assert!(
        f.passes(&exec(proc("/bin/x", 30, ""), None)),
        "OR between lines"
    );
    assert!(
        !f.passes(&exec(proc("/usr/bin/curl", 10, "secret"), None)),
        "deny wins"
    );
    assert!(AllowDeny::default().passes(&exec(proc("/x", 1, ""), None)));
}

#[test]
fn errors_name_flag_line_and_field() {
    let e = FilterList::parse("--export-allowlist", "{}\n{\"binary_regex\":[\"(\"]}").unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("--export-allowlist: line 2: binary_regex"),
        "{s}"
    );
    let e = FilterList::parse(
        "--export-denylist",
        "{}\n{\"cel_expression\":[\"true\", \"process_exec.process.binry == 'x'\"]}",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "--export-denylist: line 2: cel_expression[1] \"process_exec.process.binry == 'x'\": \
         column 22: tetragon.Process has no field 'binry'"
    );
    let e = FilterList::parse("--export-denylist", r#"{"bogus":1}"#).unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
}

/// `cel_expression` is ANDed with the other fields of its filter; its expressions are ORed.
#[test]
fn cel_expressions_combine_with_the_other_fields() {
    let allow = FilterList::parse(
        "--export-allowlist",
        r#"{"binary_regex":["curl"],"cel_expression":["process_exec.process.pid == uint(10)","process_exec.process.arguments.contains('-v')"]}"#,
    )
    .unwrap();
    assert!(allow.any(&exec(proc("/usr/bin/curl", 10, "-s"), None)));
    assert!(allow.any(&exec(proc("/usr/bin/curl", 11, "-v"), None)));
    assert!(!allow.any(&exec(proc("/usr/bin/curl", 11, "-s"), None)));
    assert!(!allow.any(&exec(proc("/bin/ls", 10, "-v"), None)));
    let deny = AllowDeny {
        allow: FilterList::default(),
        deny: FilterList::parse(
            "--export-denylist",
            r#"{"cel_expression":["process_exec.process.binary == '/bin/ls'"]}"#,
        )
        .unwrap(),
    };
    assert!(!deny.passes(&exec(proc("/bin/ls", 1, ""), None)));
    assert!(deny.passes(&exec(proc("/bin/cat", 1, ""), None)));
}
