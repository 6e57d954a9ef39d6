//! A YAML document turned into a tree of nodes that remember where they came from.
//!
//! The policy decoder needs line:column for every value it complains about, and it must keep
//! going after the first fault, so it walks this tree by hand instead of deserialising
//! through serde (which stops at the first error and forgets positions).
//!
//! Documents come from users and from the gRPC API, so building the tree has a budget: the
//! nodes after alias expansion ([`MAX_YAML_NODES`]) and the nesting depth ([`MAX_YAML_DEPTH`]),
//! both checked before the node that would exceed them is built.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::limits::{Limit, MAX_YAML_DEPTH, MAX_YAML_NODES};

/// A 1-based line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One YAML node with its position (for a mapping: the position of its first key, which is
/// where a reader's eye goes when told "this mapping lacks a field").
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: NodeValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    /// `plain` is false for quoted and block scalars: `"true"` is text, `true` is a boolean.
    Scalar {
        text: String,
        plain: bool,
    },
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

impl Node {
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            NodeValue::Scalar { .. } if self.is_null() => "null",
            NodeValue::Scalar { .. } => "a scalar",
            NodeValue::Sequence(_) => "a list",
            NodeValue::Mapping(_) => "a mapping",
        }
    }

    /// YAML 1.2 core-schema null (`~`, `null`, or nothing at all), unquoted only.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, NodeValue::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }
}

/// A YAML syntax error, or a document over budget, with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
    /// Dotted YAML path of the collection being read when a limit was exceeded; empty for
    /// syntax errors.
    pub path: String,
    /// The limit exceeded, if that is the fault.
    pub limit: Option<Limit>,
}

impl SyntaxError {
    fn syntax(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            pos,
            message: message.into(),
            path: String::new(),
            limit: None,
        }
    }
}

fn pos_of(span: &Span) -> Pos {
    let to_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    Pos {
        line: to_u32(span.start.line()),
        column: to_u32(span.start.col()).saturating_add(1),
    }
}

enum Open {
    Sequence {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
        /// Collections nested in the items, at most (0 for scalars only).
        height: usize,
    },
    Mapping {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        height: usize,
    },
}

/// The dotted path (`spec.kprobes[0].args`) of where the parser is, from the open collections.
fn path_of(stack: &[Open]) -> String {
    let mut path = String::new();
    for open in stack {
        match open {
            Open::Sequence { items, .. } => path.push_str(&format!("[{}]", items.len())),
            Open::Mapping {
                pending_key:
                    Some(Node {
                        value: NodeValue::Scalar { text, .. },
                        ..
                    }),
                ..
            } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(text);
            }
            // A key being read, or a key that is itself a collection: the path ends here.
            Open::Mapping { .. } => break,
        }
    }
    path
}

/// What a finished node costs the budget: its nodes and its collection height.
#[derive(Clone, Copy)]
struct Cost {
    nodes: usize,
    height: usize,
}

fn over_budget(stack: &[Open], pos: Pos, limit: Limit, what: &str) -> SyntaxError {
    SyntaxError {
        pos,
        message: format!("{what} ({} is {})", limit.name, limit.max),
        path: path_of(stack),
        limit: Some(limit),
    }
}

/// Parses a single-document YAML text into a [`Node`] tree. An empty document is `None`.
pub fn parse_document(source: &str) -> Result<Option<Node>, SyntaxError> {
    let mut stack: Vec<Open> = Vec::new();
    // Node counts of the collections being built, beside `stack`.
    let mut counts: Vec<usize> = Vec::new();
    let mut anchors: HashMap<usize, (Node, Cost)> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut nodes = 0usize;
    for item in Parser::new_from_str(source) {
        let (event, span) = item.map_err(|e| {
            let pos = Pos {
                line: u32::try_from(e.marker().line()).unwrap_or(u32::MAX),
                column: u32::try_from(e.marker().col().saturating_add(1)).unwrap_or(u32::MAX),
            };
            // saphyr refuses flow collections nested past 255 levels itself, and its scanner
            // reads that far ahead before our depth check sees the 65th: the same limit.
            if e.info() == "recursion limit exceeded" {
                return over_budget(&stack, pos, MAX_YAML_DEPTH, "the document nests too deeply");
            }
            SyntaxError::syntax(pos, e.info())
        })?;
        let pos = pos_of(&span);
        // A node about to be added: within the budget, else the error that names it.
        let mut admit = |stack: &[Open], cost: Cost| {
            nodes = nodes.saturating_add(cost.nodes);
            if nodes > MAX_YAML_NODES.max {
                return Err(over_budget(
                    stack,
                    pos,
                    MAX_YAML_NODES,
                    "the document has too many nodes once aliases are expanded",
                ));
            }
            if stack.len().saturating_add(cost.height) > MAX_YAML_DEPTH.max {
                return Err(over_budget(
                    stack,
                    pos,
                    MAX_YAML_DEPTH,
                    "the document nests too deeply",
                ));
            }
            Ok(())
        };
        let finished = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError::syntax(
                        pos,
                        "a policy file holds one YAML document; found a second",
                    ));
                }
                None
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let cost = Cost {
                    nodes: 1,
                    height: 0,
                };
                admit(&stack, cost)?;
                let node = Node {
                    pos,
                    value: NodeValue::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                };
                if anchor > 0 {
                    anchors.insert(anchor, (node.clone(), cost));
                }
                Some((node, cost))
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((node, cost)) => {
                    admit(&stack, *cost)?;
                    Some((node.clone(), *cost))
                }
                None => {
                    return Err(SyntaxError::syntax(pos, "alias to an unknown anchor"));
                }
            },
            Event::SequenceStart(anchor, _) => {
                admit(
                    &stack,
                    Cost {
                        nodes: 1,
                        height: 1,
                    },
                )?;
                stack.push(Open::Sequence {
                    pos,
                    anchor,
                    items: Vec::new(),
                    height: 0,
                });
                counts.push(1);
                None
            }
            Event::MappingStart(anchor, _) => {
                admit(
                    &stack,
                    Cost {
                        nodes: 1,
                        height: 1,
                    },
                )?;
                stack.push(Open::Mapping {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                    height: 0,
                });
                counts.push(1);
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let subtree = counts.pop().unwrap_or(1);
                let (node, anchor, height) = match stack.pop() {
                    Some(Open::Sequence {
                        pos,
                        anchor,
                        items,
                        height,
                    }) => (
                        Node {
                            pos,
                            value: NodeValue::Sequence(items),
                        },
                        anchor,
                        height,
                    ),
                    Some(Open::Mapping {
                        pos,
                        anchor,
                        entries,
                        height,
                        ..
                    }) => {
                        let pos = entries.first().map_or(pos, |(key, _)| key.pos);
                        (
                            Node {
                                pos,
                                value: NodeValue::Mapping(entries),
                            },
                            anchor,
                            height,
                        )
                    }
                    None => {
                        return Err(SyntaxError::syntax(pos, "unbalanced collection"));
                    }
                };
                let cost = Cost {
                    nodes: subtree,
                    height: height + 1,
                };
                if anchor > 0 {
                    anchors.insert(anchor, (node.clone(), cost));
                }
                Some((node, cost))
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => None,
        };
        if let Some((node, cost)) = finished {
            if let Some(count) = counts.last_mut() {
                *count = count.saturating_add(cost.nodes);
            }
            match stack.last_mut() {
                Some(Open::Sequence { items, height, .. }) => {
                    *height = (*height).max(cost.height);
                    items.push(node);
                }
                Some(Open::Mapping {
                    entries,
                    pending_key,
                    height,
                    ..
                }) => {
                    *height = (*height).max(cost.height);
                    match pending_key.take() {
                        Some(key) => entries.push((key, node)),
                        None => *pending_key = Some(node),
                    }
                }
                None => root = Some(node),
            }
        }
    }
    Ok(root)
}

/// Writes a node tree as block-style YAML. Every scalar that would not read back as the same
/// text is double-quoted, so `emit` followed by [`parse_document`] gives back the same tree
/// (positions aside).
pub fn emit(node: &Node) -> String {
    let mut out = String::new();
    emit_into(node, 0, &mut out);
    out
}

fn emit_into(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match &node.value {
        NodeValue::Scalar { .. } => {
            out.push_str(&pad);
            out.push_str(&scalar_text(node));
            out.push('\n');
        }
        NodeValue::Sequence(items) => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                emit_child(item, indent + 2, out);
            }
        }
        NodeValue::Mapping(entries) => {
            for (key, value) in entries {
                out.push_str(&pad);
                out.push_str(&scalar_text(key));
                out.push(':');
                emit_child(value, indent + 2, out);
            }
        }
    }
}

fn emit_child(node: &Node, indent: usize, out: &mut String) {
    match &node.value {
        NodeValue::Scalar { .. } => {
            out.push(' ');
            out.push_str(&scalar_text(node));
            out.push('\n');
        }
        NodeValue::Sequence(items) if items.is_empty() => out.push_str(" []\n"),
        NodeValue::Mapping(entries) if entries.is_empty() => out.push_str(" {}\n"),
        _ => {
            out.push('\n');
            emit_into(node, indent, out);
        }
    }
}

fn scalar_text(node: &Node) -> String {
    let NodeValue::Scalar { text, plain } = &node.value else {
        return String::new();
    };
    if *plain {
        return text.clone();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Builders for emitted trees (positions are meaningless there).
pub fn text(value: impl Into<String>) -> Node {
    Node {
        pos: Pos::default(),
        value: NodeValue::Scalar {
            text: value.into(),
            plain: false,
        },
    }
}

/// A plain (unquoted) scalar: numbers and booleans.
pub fn plain<T: ToString + ?Sized>(value: &T) -> Node {
    Node {
        pos: Pos::default(),
        value: NodeValue::Scalar {
            text: value.to_string(),
            plain: true,
        },
    }
}

pub fn sequence(items: Vec<Node>) -> Node {
    Node {
        pos: Pos::default(),
        value: NodeValue::Sequence(items),
    }
}

pub fn mapping(entries: Vec<(&str, Node)>) -> Node {
    Node {
        pos: Pos::default(),
        value: NodeValue::Mapping(entries.into_iter().map(|(k, v)| (text(k), v)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let node = parse_document("a:\n  b: [1, \"x\"]\n").unwrap().unwrap();
        let NodeValue::Mapping(entries) = &node.value else {
            panic!()
        };
        assert_eq!(entries[0].0.pos, Pos { line: 1, column: 1 });
        let NodeValue::Mapping(inner) = &entries[0].1.value else {
            panic!()
        };
        assert_eq!(inner[0].0.pos, Pos { line: 2, column: 3 });
        assert_eq!(entries[0].1.pos, Pos { line: 2, column: 3 });
    }

    #[test]
    fn emit_reads_back_identically() {
        let source = "a:\n- \"1\"\n- 2\n- {}\nb: \"quote \\\" and \\\\\"\nc: []\n";
        let tree = parse_document(source).unwrap().unwrap();
        let again = parse_document(&emit(&tree)).unwrap().unwrap();
        assert_eq!(strip(tree), strip(again));
    }

    /// 9 levels of 9 aliases: 9^9 (387 million) nodes if expanded.
    fn billion_laughs() -> String {
        let mut doc = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let uses = vec![format!("*a{}", i - 1); 9].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{uses}]\n"));
        }
        doc
    }

    /// Runs `f` on a thread with a small stack: a recursion the input controls overflows it.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn billion_laughs_is_refused_fast_by_the_node_budget() {
        let start = std::time::Instant::now();
        let err = on_small_stack(|| parse_document(&billion_laughs())).unwrap_err();
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(err.limit, Some(MAX_YAML_NODES));
        assert!(err.message.contains("MAX_YAML_NODES"), "{}", err.message);
        // Where the budget ran out: inside a5's list, on its line.
        assert!(err.path.starts_with("a5["), "{}", err.path);
        assert_eq!(err.pos.line, 6);
    }

    #[test]
    fn aliases_within_the_budget_are_expanded() {
        let doc = "a: &x [1, 2]\nb: *x\nc: *x\n";
        let node = parse_document(doc).unwrap().unwrap();
        let NodeValue::Mapping(entries) = &node.value else {
            panic!()
        };
        assert_eq!(strip(entries[1].1.clone()), strip(entries[2].1.clone()));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_a_small_stack() {
        let deep = [
            "[".repeat(10_000),
            format!("{}x{}", "[".repeat(10_000), "]".repeat(10_000)),
            "{a: ".repeat(10_000),
            format!("{}x\n", "- ".repeat(10_000)),
            format!("k:\n{}x\n", "- ".repeat(10_000)),
        ];
        for doc in deep {
            let head: String = doc.chars().take(8).collect();
            let err = on_small_stack(move || parse_document(&doc)).unwrap_err();
            // saphyr refuses flow nesting past 255 itself; ours comes first at 64.
            assert_eq!(err.limit, Some(MAX_YAML_DEPTH), "{head}: {err}");
            assert!(err.message.contains("MAX_YAML_DEPTH"), "{}", err.message);
        }
    }

    /// Our depth check sees saphyr's events: saphyr itself must not recurse on what comes
    /// before them. Block nesting is an indentation stack and flow nesting stops at 255 in
    /// its scanner; this keeps that true across upgrades (a 10,000-deep document read to the
    /// end, on a small stack).
    #[test]
    fn saphyr_reads_deep_documents_without_recursing() {
        let count = |doc: String| {
            on_small_stack(move || Parser::new_from_str(&doc).take_while(Result::is_ok).count())
        };
        let block_sequences = format!("{}x\n", "- ".repeat(10_000));
        let block_mappings: String = (0..2_000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        for doc in [block_sequences, block_mappings] {
            let events = count(doc);
            assert!(events > 2_000, "{events}");
        }
        // Flow: an error at level 256, before any deeper event.
        let events = count("[".repeat(10_000));
        assert!(events < 256, "{events}");
    }

    #[test]
    fn depth_through_an_alias_counts() {
        let inner = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        let ok = format!("a: &x {inner}\nb: {}*x{}\n", "[".repeat(20), "]".repeat(20));
        assert!(parse_document(&ok).is_ok());
        let deep = format!("a: &x {inner}\nb: {}*x{}\n", "[".repeat(30), "]".repeat(30));
        let err = parse_document(&deep).unwrap_err();
        assert_eq!(err.limit, Some(MAX_YAML_DEPTH));
        assert!(err.path.starts_with("b[0]"), "{}", err.path);
    }

    #[test]
    fn the_limit_reaches_the_policy_error_located() {
        let errors = crate::parse_policy(&billion_laughs(), "bomb.yaml").unwrap_err();
        assert_eq!(errors.len(), 1);
        let e = &errors.0[0];
        assert_eq!(e.code, crate::ErrorCode::Limit);
        let text = e.to_string();
        assert!(text.starts_with("bomb.yaml:6:"), "{text}");
        assert!(
            text.contains(": a5[") && text.contains("MAX_YAML_NODES"),
            "{text}"
        );
    }

    fn strip(mut node: Node) -> Node {
        node.pos = Pos::default();
        node.value = match node.value {
            NodeValue::Sequence(items) => {
                NodeValue::Sequence(items.into_iter().map(strip).collect())
            }
            NodeValue::Mapping(entries) => NodeValue::Mapping(
                entries
                    .into_iter()
                    .map(|(k, v)| (strip(k), strip(v)))
                    .collect(),
            ),
            scalar => scalar,
        };
        node
    }
}
