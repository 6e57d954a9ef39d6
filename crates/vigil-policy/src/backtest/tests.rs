use super::*;
use crate::compile::{Capabilities, compile};

struct NoHost;

impl Host for NoHost {
    fn same_binary(&self, policy_value: &str, recorded: &str) -> Option<bool> {
        (!recorded.ends_with("(deleted)")).then_some(policy_value == recorded)
    }
    fn host_namespace(&self, _: NamespaceKind) -> Option<u64> {
        Some(4026531836)
    }
    fn syscall_number(&self, name: &str) -> Option<i64> {
        match name {
            "sys_dup" => Some(32),
            "sys_dup2" => Some(33),
            _ => None,
        }
    }
}

fn hook(selectors: &str) -> HookPlan {
    let yaml = format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: t\nspec:\n  kprobes:\n  - call: sys_mkdir\n    syscall: true\n    args:\n    - index: 0\n      type: string\n    - index: 1\n      type: int\n{selectors}"
    );
    let policy = crate::parse_policy(&yaml, "t.yaml").expect("policy parses");
    let plan = compile(&policy, &Capabilities::TRACEPOINTS_ONLY);
    assert!(plan.is_loadable(), "{:?}", plan.refusals);
    plan.hooks.into_iter().next().unwrap()
}

fn call(binary: &str, path: &str, mode: i64) -> RecordedCall {
    RecordedCall {
        process: RecordedProcess {
            binary: binary.into(),
            pid: 42,
            exec_id: "e1".into(),
            parent_binary: Some("/usr/bin/bash".into()),
            namespaces: None,
        },
        args: Some(BTreeMap::from([
            (
                0,
                RecordedValue::Text {
                    text: path.into(),
                    exact: true,
                },
            ),
            (1, RecordedValue::Int(mode)),
        ])),
        return_value: None,
    }
}

const KILL_POSTFIX: &str = "    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Postfix\n        values: [\"/forbidden\"]\n      matchActions:\n      - action: Sigkill\n";

#[test]
fn the_first_selector_that_holds_takes_the_call() {
    let h = hook(&format!(
        "{KILL_POSTFIX}    - matchArgs:\n      - index: 1\n        operator: Equal\n        values: [\"0x1ed\"]\n"
    ));
    assert_eq!(
        evaluate(
            &h,
            &call("/usr/bin/mkdir", "/tmp/x/forbidden", 0o755),
            &NoHost
        ),
        Outcome::Taken(0)
    );
    assert_eq!(
        evaluate(
            &h,
            &call("/usr/bin/mkdir", "/tmp/x/allowed", 0o755),
            &NoHost
        ),
        Outcome::Taken(1)
    );
    assert_eq!(
        evaluate(
            &h,
            &call("/usr/bin/mkdir", "/tmp/x/allowed", 0o700),
            &NoHost
        ),
        Outcome::Untouched
    );
    assert_eq!(
        Effects::of(&h.selectors[0].actions),
        Effects {
            post: true,
            sigkill: true,
            ..Effects::default()
        }
    );
}

#[test]
fn a_hook_without_selectors_posts_every_call() {
    let h = hook("");
    assert_eq!(
        evaluate(&h, &call("/x", "/a", 0), &NoHost),
        Outcome::Taken(0)
    );
}

#[test]
fn strings_compare_as_the_engine_does() {
    let long = "a".repeat(STR_MATCH + 1);
    let v = |s: &str| vec![s.to_string()];
    // Equal never holds past STR_MATCH bytes, even on the same string.
    assert_eq!(
        string_filter(Operator::Equal, &v(&long), long.as_bytes(), true),
        Verdict::Fails
    );
    assert_eq!(
        string_filter(Operator::Prefix, &v("/etc/"), b"/etc/passwd", true),
        Verdict::Holds
    );
    assert_eq!(
        string_filter(Operator::NotPrefix, &v("/etc/"), b"/etc/passwd", true),
        Verdict::Fails
    );
    // Postfix compares the last STR_MATCH bytes only.
    let path = format!("/{}/forbidden", "d".repeat(300));
    assert_eq!(
        string_filter(Operator::Postfix, &v("/forbidden"), path.as_bytes(), true),
        Verdict::Holds
    );
    assert!(matches!(
        string_filter(Operator::Postfix, &v("/forbidden"), path.as_bytes(), false),
        Verdict::CannotJudge(_)
    ));
    assert!(matches!(
        string_filter(Operator::Equal, &v("/tmp"), b"/tm", false),
        Verdict::CannotJudge(_)
    ));
}

#[test]
fn integers_compare_as_the_engine_does() {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        int_filter(Operator::Equal, &v(&["1", "0x10"]), 16),
        Verdict::Holds
    );
    assert_eq!(
        int_filter(Operator::NotEqual, &v(&["1", "2"]), 2),
        Verdict::Fails
    );
    assert_eq!(
        int_filter(Operator::Mask, &v(&["0x40"]), 0x41),
        Verdict::Holds
    );
    assert_eq!(
        int_filter(Operator::GreaterThan, &v(&["5"]), 5),
        Verdict::Fails
    );
    assert!(matches!(
        int_filter(Operator::Equal, &v(&["sys_dup"]), 32),
        Verdict::CannotJudge(_)
    ));
}

#[test]
fn what_the_record_lacks_is_named_and_stops_later_selectors() {
    let h = hook(
        "    selectors:\n    - matchCapabilities:\n      - type: Effective\n        operator: In\n        values: [\"CAP_SYS_ADMIN\"]\n    - matchArgs:\n      - index: 0\n        operator: Prefix\n        values: [\"/\"]\n",
    );
    match evaluate(&h, &call("/usr/bin/mkdir", "/tmp/a", 0), &NoHost) {
        Outcome::CannotJudge { at: 0, reason } => assert!(reason.contains("matchCapabilities")),
        other => panic!("{other:?}"),
    }
    // A filter that fails decides the AND even next to one that cannot be judged.
    let h = hook(
        "    selectors:\n    - matchBinaries:\n      - operator: In\n        values: [\"/usr/bin/touch\"]\n      matchCapabilities:\n      - type: Effective\n        operator: In\n        values: [\"CAP_SYS_ADMIN\"]\n",
    );
    assert_eq!(
        evaluate(&h, &call("/usr/bin/mkdir", "/tmp/a", 0), &NoHost),
        Outcome::Untouched
    );
    // Arguments of a recording whose layout is unknown.
    let h = hook(KILL_POSTFIX);
    let mut c = call("/usr/bin/mkdir", "/tmp/a", 0);
    c.args = None;
    assert!(matches!(
        evaluate(&h, &c, &NoHost),
        Outcome::CannotJudge { at: 0, .. }
    ));
}

#[test]
fn unreadable_arguments_fail_closed_only_when_enforcing() {
    let mut c = call("/usr/bin/mkdir", "", 0);
    c.args
        .as_mut()
        .unwrap()
        .insert(0, RecordedValue::Unreadable);
    assert_eq!(
        evaluate(&hook(KILL_POSTFIX), &c, &NoHost),
        Outcome::Taken(0)
    );
    let post = KILL_POSTFIX.replace("Sigkill", "Post");
    assert_eq!(evaluate(&hook(&post), &c, &NoHost), Outcome::Untouched);
}

#[test]
fn binaries_and_pids_name_the_state_they_would_need() {
    let h = hook(
        "    selectors:\n    - matchBinaries:\n      - operator: In\n        values: [\"/usr/bin/mkdir\"]\n        followChildren: true\n",
    );
    assert_eq!(
        evaluate(&h, &call("/usr/bin/mkdir", "/a", 0), &NoHost),
        Outcome::Taken(0)
    );
    assert!(matches!(
        evaluate(&h, &call("/usr/bin/env", "/a", 0), &NoHost),
        Outcome::CannotJudge { .. }
    ));
    let h =
        hook("    selectors:\n    - matchPIDs:\n      - operator: NotIn\n        values: [42]\n");
    assert_eq!(
        evaluate(&h, &call("/usr/bin/mkdir", "/a", 0), &NoHost),
        Outcome::Untouched
    );
    assert!(matches!(
        evaluate(&h, &call("/usr/bin/mkdir (deleted)", "/a", 0), &NoHost),
        Outcome::Untouched
    ));
}

#[test]
fn in_map_names_system_calls_by_number_as_the_runtime_rewrites_them() {
    let yaml = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: t\nspec:\n  lists:\n  - name: dups\n    type: syscalls\n    values: [\"sys_dup\", \"sys_dup2\"]\n  tracepoints:\n  - subsystem: raw_syscalls\n    event: sys_enter\n    args:\n    - index: 4\n      type: uint64\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: InMap\n        values: [\"list:dups\"]\n";
    let policy = crate::parse_policy(yaml, "t.yaml").expect("policy parses");
    let hook = compile(&policy, &Capabilities::TRACEPOINTS_ONLY)
        .hooks
        .remove(0);
    let mut c = call("/usr/bin/sh", "", 0);
    // The selector's index 0 is the first reader (field 4), as the runtime resolves it.
    for (nr, outcome) in [
        (32, Outcome::Taken(0)),
        (33, Outcome::Taken(0)),
        (34, Outcome::Untouched),
    ] {
        c.args = Some(BTreeMap::from([(4, RecordedValue::Int(nr))]));
        assert_eq!(evaluate(&hook, &c, &NoHost), outcome, "syscall {nr}");
    }
}
