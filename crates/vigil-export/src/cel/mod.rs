//! CEL expressions over events (`Filter.cel_expression`), evaluated as Tetragon does: every
//! event type of `GetEventsResponse` is a variable named after its field of the `event`
//! oneof (`process_exec`, `process_kprobe`, ...). The event's own type holds its message;
//! the others hold an empty message, as Tetragon binds them (the getter of an unset oneof
//! field is a nil message, which cel-go reads as all defaults): on an exec event,
//! `process_kprobe.function_name` is `""`. Fields are read under their proto names
//! (`process_exec.process.binary`). The expression must be boolean; several expressions in
//! one filter match when any of them does.
//!
//! cel-go type-checks expressions against the protobuf schema before running them; the Rust
//! CEL crate only parses, so [`check`] walks the parsed expression against the descriptors
//! of `vigil-proto` and refuses, with the column, what cel-go would refuse: unknown
//! variables, fields and functions, and results that are not boolean.
//!
//! Bounds: expressions come from the operator (or a gRPC client), events from workloads. An
//! expression is at most [`MAX_EXPRESSION_LEN`] bytes, nested at most 96 deep (the parser's
//! limit) and holds comprehensions (`all`, `exists`, `map`, ...) at most
//! [`MAX_COMPREHENSION_NESTING`] deep, so evaluating one is bounded by the expression's
//! size times the square of the event's largest list. Evaluation does not panic on any
//! event; an evaluation error is a no-match, counted and logged once.

mod check;
mod value;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use cel::common::ast::IdedExpr;
use cel::common::types::CelBool;
use cel::{Context, Env, Value as CelValue};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};
use vigil_proto::tetragon::GetEventsResponse;

use crate::event::event_type;
use value::Message;

/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4096;
/// Deepest nesting of comprehensions (one inside another's body) accepted.
pub const MAX_COMPREHENSION_NESTING: usize = 2;

/// Why an expression was refused, and where (1-based column of the fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {reason}")]
pub struct CompileError {
    pub column: usize,
    pub reason: String,
}

/// The protobuf schema the expressions are checked and evaluated against.
struct Schema {
    env: Arc<Env>,
    response: MessageDescriptor,
    /// The `event` oneof: field number, variable name, message type.
    events: Vec<(u32, String, MessageDescriptor)>,
    /// An empty message of each event type, in the order of `events`.
    empty: Vec<DynamicMessage>,
}

static SCHEMA: LazyLock<Result<Schema, String>> = LazyLock::new(|| {
    let pool = DescriptorPool::decode(vigil_proto::FILE_DESCRIPTOR_SET)
        .map_err(|e| format!("vigil's protobuf descriptors do not decode: {e}"))?;
    let response = pool
        .get_message_by_name("tetragon.GetEventsResponse")
        .ok_or("tetragon.GetEventsResponse missing from vigil's descriptors")?;
    let events = response
        .oneofs()
        .find(|o| o.name() == "event")
        .ok_or("GetEventsResponse has no `event` oneof")?
        .fields()
        .filter_map(|f| match f.kind() {
            prost_reflect::Kind::Message(m) => Some((f.number(), f.name().to_owned(), m)),
            _ => None,
        })
        .collect::<Vec<_>>();
    let empty = events
        .iter()
        .map(|(_, _, m)| DynamicMessage::new(m.clone()))
        .collect();
    Ok(Schema {
        env: Arc::new(Env::stdlib()),
        response,
        events,
        empty,
    })
});

fn schema() -> Result<&'static Schema, CompileError> {
    SCHEMA.as_ref().map_err(|e| CompileError {
        column: 1,
        reason: e.clone(),
    })
}

/// One expression, checked.
#[derive(Debug)]
struct Expression {
    source: String,
    ast: IdedExpr,
}

/// The `cel_expression` list of one filter: matches when any expression is true.
#[derive(Debug, Default)]
pub struct CelFilter {
    expressions: Vec<Expression>,
    /// Field numbers of the event variables the expressions read.
    events: Vec<u32>,
    errors: AtomicU64,
}

impl CelFilter {
    /// Compiles `sources`; the error names the index of the expression at fault.
    pub fn compile(sources: &[String]) -> Result<Self, (usize, CompileError)> {
        let mut expressions = Vec::with_capacity(sources.len());
        let mut events = Vec::new();
        for (i, source) in sources.iter().enumerate() {
            let (expression, read) = compile_one(source).map_err(|e| (i, e))?;
            expressions.push(expression);
            for n in read {
                if !events.contains(&n) {
                    events.push(n);
                }
            }
        }
        Ok(Self {
            expressions,
            events,
            errors: AtomicU64::new(0),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.expressions.is_empty()
    }

    /// Evaluation errors so far (each one a no-match).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// True when one of the expressions evaluates to true on `ev`.
    pub fn matches(&self, ev: &GetEventsResponse) -> bool {
        if self.expressions.is_empty() {
            return false;
        }
        let Ok(schema) = schema() else { return false };
        // The oneof field numbers are the EventType numbers (events.proto keeps them in
        // sync): the event is decoded only when an expression reads its type.
        let number = event_type(ev) as i32 as u32;
        let response = if self.events.contains(&number) {
            let bytes = ev.encode_to_vec();
            match DynamicMessage::decode(schema.response.clone(), bytes.as_slice()) {
                Ok(r) => Some(r),
                Err(e) => {
                    self.failed(&format_args!("the event does not decode: {e}"), "");
                    return false;
                }
            }
        } else {
            None
        };
        let mut ctx = Context::with_env(Arc::clone(&schema.env));
        for ((n, name, _), empty) in schema.events.iter().zip(&schema.empty) {
            if !self.events.contains(n) {
                continue;
            }
            let message = match response.as_ref().map(|r| r.get_field_by_number(*n)) {
                Some(Some(Cow::Borrowed(Value::Message(m)))) if *n == number => m,
                _ => empty,
            };
            ctx.add_variable_as_val(name.as_str(), Box::new(Message(Cow::Borrowed(message))));
        }
        self.expressions
            .iter()
            .any(|e| match CelValue::resolve_val(&e.ast, &ctx) {
                Ok(v) => v.downcast_ref::<CelBool>().is_some_and(|b| *b.inner()),
                Err(err) => {
                    self.failed(&err, &e.source);
                    false
                }
            })
    }

    /// Counts an evaluation error; only the first is logged, so `reason` is formatted once.
    fn failed(&self, reason: &dyn std::fmt::Display, source: &str) {
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                expression = source,
                "CEL evaluation failed (the event does not match; later failures are only counted): {reason}"
            );
        }
    }
}

/// The expression and the field numbers of the event variables it reads.
fn compile_one(source: &str) -> Result<(Expression, Vec<u32>), CompileError> {
    if source.len() > MAX_EXPRESSION_LEN {
        return Err(CompileError {
            column: MAX_EXPRESSION_LEN + 1,
            reason: format!(
                "expression is {} bytes, longer than the {MAX_EXPRESSION_LEN} accepted",
                source.len()
            ),
        });
    }
    let schema = schema()?;
    let (mut ast, info) = schema
        .env
        .parser()
        .parse_with_source_info(source)
        .map_err(|errs| {
            let first = errs.errors.first();
            CompileError {
                // the parser counts columns from 1
                column: first.map_or(1, |e| usize::try_from(e.pos.1).unwrap_or(1).max(1)),
                reason: first.map_or_else(|| "does not parse".to_owned(), |e| e.msg.clone()),
            }
        })?;
    let events = check::check(schema, &mut ast, &info)?;
    Ok((
        Expression {
            source: source.to_owned(),
            ast,
        },
        events,
    ))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
