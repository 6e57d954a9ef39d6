use std::collections::BTreeMap;
use std::time::Instant;

use vigil_proto::tetragon::kprobe_argument::Arg;
use vigil_proto::tetragon::{
    Container, KprobeArgument, Pod, Process, ProcessExec, ProcessExit, ProcessKprobe,
    get_events_response::Event,
};

use super::*;

fn proc(binary: &str, pid: u32) -> Process {
    Process {
        binary: binary.into(),
        pid: Some(pid.into()),
        arguments: "-l /tmp".into(),
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

fn kprobe(function: &str, args: Vec<Arg>) -> GetEventsResponse {
    GetEventsResponse {
        event: Some(Event::ProcessKprobe(ProcessKprobe {
            process: Some(proc("/usr/bin/cat", 7)),
            function_name: function.into(),
            args: args
                .into_iter()
                .map(|a| KprobeArgument {
                    arg: Some(a),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn filter(exprs: &[&str]) -> CelFilter {
    let exprs: Vec<String> = exprs.iter().map(|s| s.to_string()).collect();
    CelFilter::compile(&exprs).unwrap_or_else(|(i, e)| panic!("expression {i}: {e}"))
}

fn refused(expr: &str) -> CompileError {
    match CelFilter::compile(&[expr.to_string()]) {
        Ok(_) => panic!("{expr:?} compiled"),
        Err((0, e)) => e,
        Err((i, e)) => panic!("error on expression {i}: {e}"),
    }
}

#[test]
fn compile_errors_name_the_column_of_the_fault() {
    // (expression, column of the fault counted from 1, words the reason must hold)
    let cases: &[(&str, usize, &str)] = &[
        // `bad_field` starts at column 22 ("process_exec.process." is 21 characters)
        (
            "process_exec.process.bad_field == 'x'",
            22,
            "tetragon.Process has no field 'bad_field'",
        ),
        ("proces_exec.process.binary == 'x'", 1, "'proces_exec'"),
        ("process_exec.process.binary == ", 32, ""),
        ("process_exec.process.binary === 'x'", 31, ""),
        (
            "process_exec.process.binary",
            1,
            "type string, a filter needs bool",
        ),
        (
            "process_exec.process.pid + 1 > 2 && frob(1)",
            41,
            "undeclared function 'frob'",
        ),
        (
            "process_exec.process.binary.size() > 0 && process_exec.process.binary.nope == 1",
            71,
            "string has no fields",
        ),
    ];
    for (expr, column, words) in cases {
        let e = refused(expr);
        assert_eq!(e.column, *column, "{expr:?}: {e}");
        assert!(e.reason.contains(words), "{expr:?}: {e}");
    }
}

#[test]
fn bounds_on_expressions_are_refused_by_name() {
    let long = format!("process_exec.process.binary == '{}'", "a".repeat(5000));
    assert!(refused(&long).reason.contains("4096"));
    let nested = "[1].all(a, [2].all(b, [3].all(c, a < b)))";
    assert!(refused(nested).reason.contains("nest at most 2"));
    // two levels are fine
    let f = filter(&["[1].all(a, [2].all(b, a < b))"]);
    assert!(f.matches(&exec(proc("/x", 1), None)));
    // beyond the parser's depth: an error, not a stack overflow
    let deep = format!("{}true{}", "(".repeat(500), ")".repeat(500));
    assert!(CelFilter::compile(&[deep]).is_err());
}

#[test]
fn exec_fields_under_their_proto_names() {
    let f = filter(&["process_exec.process.binary == '/bin/ls'"]);
    assert!(f.matches(&exec(proc("/bin/ls", 1), None)));
    assert!(!f.matches(&exec(proc("/bin/cat", 1), None)));
    // wrapper fields read as their value; uint compares with uint
    let f = filter(&["process_exec.process.pid > uint(100)"]);
    assert!(f.matches(&exec(proc("/x", 101), None)));
    assert!(!f.matches(&exec(proc("/x", 100), None)));
    // string functions and regular expressions
    let f = filter(&[
        "process_exec.process.binary.endsWith('sh') && process_exec.process.arguments.matches('^-l')",
    ]);
    assert!(f.matches(&exec(proc("/bin/bash", 1), None)));
    assert!(!f.matches(&exec(proc("/bin/ls", 1), None)));
    assert_eq!(f.errors(), 0);
}

#[test]
fn unset_messages_read_as_defaults_and_has_tests_presence() {
    // no parent: its binary is "" (cel-go reads an unset message as the empty one)
    let f = filter(&["process_exec.parent.binary != '/bin/bash'"]);
    assert!(f.matches(&exec(proc("/x", 1), None)));
    assert!(!f.matches(&exec(proc("/x", 1), Some(proc("/bin/bash", 2)))));
    let f = filter(&["has(process_exec.parent)"]);
    assert!(!f.matches(&exec(proc("/x", 1), None)));
    assert!(f.matches(&exec(proc("/x", 1), Some(proc("/bin/bash", 2)))));
    // an unset wrapper is null
    let f = filter(&["process_exec.process.uid == null"]);
    assert!(f.matches(&exec(proc("/x", 1), None)));
    // maps
    let mut p = proc("/x", 1);
    p.pod = Some(Pod {
        namespace: "web".into(),
        container: Some(Container {
            name: "nginx".into(),
            ..Default::default()
        }),
        pod_labels: BTreeMap::from([("app".to_string(), "shop".to_string())]),
        ..Default::default()
    });
    let f = filter(&[
        "process_exec.process.pod.pod_labels['app'] == 'shop' && process_exec.process.pod.container.name == 'nginx'",
    ]);
    assert!(f.matches(&exec(p.clone(), None)));
    let f = filter(&["has(process_exec.process.pod.pod_labels.app)"]);
    assert!(f.matches(&exec(p, None)));
    assert_eq!(f.errors(), 0);
}

#[test]
fn kprobe_arguments_and_comprehensions() {
    let f = filter(&[
        "process_kprobe.function_name == '__x64_sys_write' && process_kprobe.args[0].int_arg == 1",
    ]);
    assert!(f.matches(&kprobe("__x64_sys_write", vec![Arg::IntArg(1)])));
    assert!(!f.matches(&kprobe("__x64_sys_write", vec![Arg::IntArg(2)])));
    // index out of range: an evaluation error, hence no match, counted
    assert!(!f.matches(&kprobe("__x64_sys_write", vec![])));
    assert_eq!(f.errors(), 1);
    let f = filter(&["process_kprobe.args.exists(a, a.string_arg.startsWith('/etc/'))"]);
    assert!(f.matches(&kprobe(
        "fd_install",
        vec![Arg::IntArg(3), Arg::StringArg("/etc/passwd".into())]
    )));
    assert!(!f.matches(&kprobe("fd_install", vec![Arg::StringArg("/tmp/x".into())])));
}

/// As in Tetragon, the variables of the other event types are empty messages.
#[test]
fn other_event_types_read_as_empty_messages() {
    let f = filter(&["process_kprobe.function_name == 'x'"]);
    assert!(!f.matches(&exec(proc("/x", 1), None)));
    let f = filter(&["process_kprobe.function_name == ''"]);
    assert!(f.matches(&exec(proc("/x", 1), None)));
    assert!(!f.matches(&kprobe("x", vec![])));
    // a negation holds on the other types: Tetragon's footgun, kept
    let f = filter(&["process_exec.process.binary != '/bin/ls'"]);
    assert!(f.matches(&kprobe("x", vec![])));
    let f = filter(&["has(process_exec.process) && process_exec.process.binary != '/bin/ls'"]);
    assert!(!f.matches(&kprobe("x", vec![])));
    assert!(f.matches(&exec(proc("/x", 1), None)));
    let f = filter(&["process_kprobe.function_name == 'x' || process_exec.process.binary == '/x'"]);
    assert!(f.matches(&exec(proc("/x", 1), None)));
    assert!(!f.matches(&exec(proc("/y", 1), None)));
    assert!(f.matches(&kprobe("x", vec![])));
    let exit = GetEventsResponse {
        event: Some(Event::ProcessExit(ProcessExit::default())),
        ..Default::default()
    };
    assert!(!f.matches(&exit));
    assert_eq!(f.errors(), 0);
    // the empty message's wrapper fields are null: comparing them is an error, a no-match
    let f = filter(&["process_exec.process.pid > uint(1)"]);
    assert!(!f.matches(&kprobe("x", vec![])));
    assert_eq!(f.errors(), 1);
}

#[test]
fn any_expression_of_a_list_matches() {
    let f = filter(&[
        "process_exec.process.binary == '/a'",
        "process_kprobe.function_name == 'k'",
    ]);
    assert!(f.matches(&exec(proc("/a", 1), None)));
    assert!(f.matches(&kprobe("k", vec![])));
    assert!(!f.matches(&exec(proc("/b", 1), None)));
    // an expression that reads no event variable applies to every event
    let f = filter(&["1 + 1 == 2"]);
    assert!(f.matches(&kprobe("k", vec![])));
}

#[test]
fn runtime_errors_are_no_match_and_counted() {
    let f = filter(&["process_exec.process.pid / uint(0) == uint(1)"]);
    for _ in 0..3 {
        assert!(!f.matches(&exec(proc("/x", 1), None)));
    }
    assert_eq!(f.errors(), 3);
}

/// Not an assertion: prints what one typical expression costs per event, for docs/reference/export.md.
#[test]
fn cost_per_event_printout() {
    let f = filter(&[
        "process_exec.process.binary.endsWith('/curl') && process_exec.process.pid > uint(1)",
    ]);
    let mut p = proc("/usr/bin/curl", 4242);
    p.arguments = "-s https://example.invalid/some/path --retry 3".into();
    p.cwd = "/home/user".into();
    let ev = exec(p, Some(proc("/bin/bash", 4000)));
    let n = 20_000;
    let start = Instant::now();
    let mut hits = 0;
    for _ in 0..n {
        hits += usize::from(f.matches(&ev));
    }
    let per = start.elapsed() / n;
    let skip = kprobe("x", vec![]);
    let start = Instant::now();
    for _ in 0..n {
        hits += usize::from(f.matches(&skip));
    }
    let per_other = start.elapsed() / n;
    assert_eq!(hits, n as usize);
    println!(
        "CEL cost per event (debug build unless --release): exec event {per:?}, event of another type {per_other:?}"
    );
}
