//! A YAML document turned into a tree of nodes that remember where they came from.
//!
//! The policy decoder needs line:column for every value it complains about, and it must keep
//! going after the first fault, so it walks this tree by hand instead of deserialising
//! through serde (which stops at the first error and forgets positions).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

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

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
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
    },
    Mapping {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

/// Parses a single-document YAML text into a [`Node`] tree. An empty document is `None`.
pub fn parse_document(source: &str) -> Result<Option<Node>, SyntaxError> {
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    for item in Parser::new_from_str(source) {
        let (event, span) = item.map_err(|e| SyntaxError {
            pos: Pos {
                line: u32::try_from(e.marker().line()).unwrap_or(u32::MAX),
                column: u32::try_from(e.marker().col() + 1).unwrap_or(u32::MAX),
            },
            message: e.info().to_string(),
        })?;
        let pos = pos_of(&span);
        let finished = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        pos,
                        message: "a policy file holds one YAML document; found a second".into(),
                    });
                }
                None
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let node = Node {
                    pos,
                    value: NodeValue::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => Some(node.clone()),
                None => {
                    return Err(SyntaxError {
                        pos,
                        message: "alias to an unknown anchor".into(),
                    });
                }
            },
            Event::SequenceStart(anchor, _) => {
                stack.push(Open::Sequence {
                    pos,
                    anchor,
                    items: Vec::new(),
                });
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Open::Mapping {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match stack.pop() {
                    Some(Open::Sequence { pos, anchor, items }) => (
                        Node {
                            pos,
                            value: NodeValue::Sequence(items),
                        },
                        anchor,
                    ),
                    Some(Open::Mapping {
                        pos,
                        anchor,
                        entries,
                        ..
                    }) => {
                        let pos = entries.first().map_or(pos, |(key, _)| key.pos);
                        (
                            Node {
                                pos,
                                value: NodeValue::Mapping(entries),
                            },
                            anchor,
                        )
                    }
                    None => {
                        return Err(SyntaxError {
                            pos,
                            message: "unbalanced collection".into(),
                        });
                    }
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => None,
        };
        if let Some(node) = finished {
            match stack.last_mut() {
                Some(Open::Sequence { items, .. }) => items.push(node),
                Some(Open::Mapping {
                    entries,
                    pending_key,
                    ..
                }) => match pending_key.take() {
                    Some(key) => entries.push((key, node)),
                    None => *pending_key = Some(node),
                },
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
