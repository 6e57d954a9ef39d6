//! `CelExpr` matchArgs (Tetragon 1.7): the integer subset becomes the engine's comparisons
//! at compile; the rest is refused at parse, with the YAML position, so that `validate`,
//! `add` and `--tracing-policy` (all through `parse_policy`) agree.

use vigil_policy::compile::{Capabilities, Filter, compile};
use vigil_policy::parse_policy;
use vigil_policy::types::Operator;

fn policy(expr: &str, args: &str) -> String {
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: cel
spec:
  kprobes:
  - call: "sys_lseek"
    syscall: true
    args:
    - index: 0
      type: "int"
    - index: 1
      type: "long"
    - index: 2
      type: "int"
    selectors:
    - matchArgs:
      - args: {args}
        operator: "CelExpr"
        values:
        - "{expr}"
"#
    )
}

#[test]
fn an_integer_conjunction_compiles_to_comparisons() {
    let p = parse_policy(
        &policy("arg0 >= 100 && arg0 < 200 && arg1 != 2", "[1, 2]"),
        "c.yaml",
    )
    .unwrap();
    let plan = compile(&p, &Capabilities::TRACEPOINTS_ONLY);
    assert!(plan.is_loadable(), "{:?}", plan.refusals);
    let filters: Vec<(Vec<u32>, Operator, Vec<String>)> = plan.hooks[0].selectors[0]
        .filters
        .iter()
        .filter_map(|f| match f {
            Filter::Arg {
                positions,
                operator,
                values,
                ..
            } => Some((positions.clone(), *operator, values.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        filters,
        vec![
            (vec![1], Operator::GreaterThan, vec!["99".to_string()]),
            (vec![1], Operator::LessThan, vec!["200".to_string()]),
            (vec![2], Operator::NotEqual, vec!["2".to_string()]),
        ]
    );
}

#[test]
fn the_rest_is_refused_by_name_at_its_position() {
    let refusal = |expr: &str, args: &str| {
        parse_policy(&policy(expr, args), "c.yaml")
            .unwrap_err()
            .to_string()
    };
    let e = refusal("arg0 > 5 || arg0 < 2", "[1]");
    assert!(
        e.contains("c.yaml:21:11:")
            && e.contains("spec.kprobes[0].selectors[0].matchArgs[0].values[0]")
            && e.contains(
                "CelExpr: only comparisons of integer arguments with constants joined by && \
                 are supported; `||` is not"
            ),
        "{e}"
    );
    let e = refusal("arg1 > 5", "[1]");
    assert!(e.contains("`arg1` is not declared"), "{e}");
    // a string argument: CelExpr filters integers only (as the other integer operators)
    let text = policy("arg0 > 5", "[1]").replace("type: \"long\"", "type: \"string\"");
    let e = parse_policy(&text, "c.yaml").unwrap_err().to_string();
    assert!(
        e.contains("operator CelExpr cannot filter an argument of type string"),
        "{e}"
    );
    // too many comparisons for one selector
    let e = refusal(
        "arg0 > 1 && arg0 > 2 && arg0 > 3 && arg0 > 4 && arg0 > 5 && arg0 > 6",
        "[1]",
    );
    assert!(e.contains("6 argument filters, more than 5"), "{e}");
}
