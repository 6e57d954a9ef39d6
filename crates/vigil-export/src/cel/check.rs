//! A type check of parsed expressions against the event schema, standing in for cel-go's
//! checker: what it refuses is what Tetragon refuses when it builds the filter.
//! Types it cannot know (results of functions, map values) are `Dyn` and pass.

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, SourceInfo, operators};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use super::value::PRESENCE_SUFFIX;
use super::{CompileError, MAX_COMPREHENSION_NESTING, Schema};

#[derive(Debug, Clone)]
enum Ty {
    Message(MessageDescriptor),
    List(Box<Ty>),
    Map(Box<Ty>),
    Scalar(&'static str),
    Dyn,
}

impl Ty {
    fn name(&self) -> String {
        match self {
            Ty::Message(m) => m.full_name().to_owned(),
            Ty::List(t) => format!("list({})", t.name()),
            Ty::Map(t) => format!("map(_, {})", t.name()),
            Ty::Scalar(s) => (*s).to_owned(),
            Ty::Dyn => "dyn".to_owned(),
        }
    }
}

/// Functions of CEL's standard library (cel-spec), besides operators and macros.
const FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
    "timestamp",
    "duration",
    "getFullYear",
    "getMonth",
    "getDayOfYear",
    "getDayOfMonth",
    "getDate",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
];

/// Type names usable as identifiers (`type(x) == string`).
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

const BOOLEAN_OPERATORS: &[&str] = &[
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::LOGICAL_NOT,
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::GREATER,
    operators::GREATER_EQUALS,
    operators::LESS,
    operators::LESS_EQUALS,
    operators::IN,
    operators::NOT_STRICTLY_FALSE,
    "contains",
    "startsWith",
    "endsWith",
    "matches",
];

struct Checker<'a> {
    schema: &'a Schema,
    info: &'a SourceInfo,
    /// Comprehension variables in scope, innermost last.
    scope: Vec<(String, Ty)>,
    comprehension_depth: usize,
    /// Field numbers of the event variables read.
    events: Vec<u32>,
}

/// Checks `ast`, marks its presence tests on messages (see [`PRESENCE_SUFFIX`]) and returns
/// the event variables it reads.
pub(super) fn check(
    schema: &Schema,
    ast: &mut IdedExpr,
    info: &SourceInfo,
) -> Result<Vec<u32>, CompileError> {
    let mut c = Checker {
        schema,
        info,
        scope: Vec::new(),
        comprehension_depth: 0,
        events: Vec::new(),
    };
    let ty = c.expr(ast)?;
    match ty {
        Ty::Scalar("bool") | Ty::Dyn => Ok(c.events),
        // the whole expression is at fault: its first column
        other => Err(CompileError {
            column: 1,
            reason: format!(
                "the expression is of type {}, a filter needs bool",
                other.name()
            ),
        }),
    }
}

impl Checker<'_> {
    fn error(&self, id: u64, reason: String) -> CompileError {
        self.error_after(id, 0, reason)
    }

    /// An error `skip` characters after where node `id` starts (a select starts at its dot,
    /// the fault is the field name after it).
    fn error_after(&self, id: u64, skip: usize, reason: String) -> CompileError {
        // Offsets count characters from the start of the expression, from 0.
        let offset = self
            .info
            .offset_for(id)
            .map_or(0, |(start, _)| start as usize);
        CompileError {
            column: offset + skip + 1,
            reason,
        }
    }

    fn expr(&mut self, e: &mut IdedExpr) -> Result<Ty, CompileError> {
        let id = e.id;
        match &mut e.expr {
            Expr::Unspecified => Ok(Ty::Dyn),
            Expr::Literal(l) => Ok(Ty::Scalar(match l {
                LiteralValue::Boolean(_) => "bool",
                LiteralValue::Bytes(_) => "bytes",
                LiteralValue::Double(_) => "double",
                LiteralValue::Int(_) => "int",
                LiteralValue::Null => "null_type",
                LiteralValue::String(_) => "string",
                LiteralValue::UInt(_) => "uint",
            })),
            Expr::Ident(name) => self.ident(id, name),
            Expr::Select(sel) => {
                let operand = self.expr(&mut sel.operand)?;
                match operand {
                    Ty::Message(m) => {
                        let Some(field) = m.get_field_by_name(&sel.field) else {
                            return Err(self.error_after(
                                id,
                                1,
                                format!("{} has no field '{}'", m.full_name(), sel.field),
                            ));
                        };
                        if sel.test {
                            sel.field.push_str(PRESENCE_SUFFIX);
                            return Ok(Ty::Scalar("bool"));
                        }
                        Ok(field_type(&field))
                    }
                    Ty::Map(_) | Ty::Dyn if sel.test => Ok(Ty::Scalar("bool")),
                    Ty::Map(v) => Ok(*v),
                    Ty::Dyn => Ok(Ty::Dyn),
                    other => Err(self.error_after(
                        id,
                        1,
                        format!("{} has no fields (selecting '{}')", other.name(), sel.field),
                    )),
                }
            }
            Expr::Call(call) => {
                if let Some(t) = &mut call.target {
                    self.expr(t)?;
                }
                let mut args = Vec::with_capacity(call.args.len());
                for a in &mut call.args {
                    args.push(self.expr(a)?);
                }
                let name = call.func_name.as_str();
                if name == operators::INDEX || name == operators::OPT_INDEX {
                    return Ok(match args.first() {
                        Some(Ty::List(t) | Ty::Map(t)) => (**t).clone(),
                        _ => Ty::Dyn,
                    });
                }
                if BOOLEAN_OPERATORS.contains(&name) {
                    return Ok(Ty::Scalar("bool"));
                }
                let operator = name.starts_with('_')
                    || name.starts_with('@')
                    || name == operators::NEGATE
                    || name == operators::LOGICAL_NOT;
                if operator {
                    return Ok(Ty::Dyn);
                }
                if !FUNCTIONS.contains(&name) {
                    return Err(self.error(id, format!("undeclared function '{name}'")));
                }
                Ok(match name {
                    "size" | "int" | "getFullYear" | "getMonth" | "getDayOfYear"
                    | "getDayOfMonth" | "getDate" | "getDayOfWeek" | "getHours" | "getMinutes"
                    | "getSeconds" | "getMilliseconds" => Ty::Scalar("int"),
                    "uint" => Ty::Scalar("uint"),
                    "double" => Ty::Scalar("double"),
                    "string" => Ty::Scalar("string"),
                    "bytes" => Ty::Scalar("bytes"),
                    "bool" => Ty::Scalar("bool"),
                    "timestamp" => Ty::Scalar("google.protobuf.Timestamp"),
                    "duration" => Ty::Scalar("google.protobuf.Duration"),
                    _ => Ty::Dyn,
                })
            }
            Expr::Comprehension(c) => {
                if self.comprehension_depth >= MAX_COMPREHENSION_NESTING {
                    return Err(self.error(
                        id,
                        format!(
                            "comprehensions (all, exists, exists_one, map, filter) nest at \
                             most {MAX_COMPREHENSION_NESTING} deep"
                        ),
                    ));
                }
                let range = self.expr(&mut c.iter_range)?;
                let accu = self.expr(&mut c.accu_init)?;
                let element = match range {
                    Ty::List(t) => *t,
                    _ => Ty::Dyn,
                };
                let depth = self.scope.len();
                self.scope.push((c.accu_var.clone(), accu));
                self.scope.push((c.iter_var.clone(), element));
                if let Some(v2) = &c.iter_var2 {
                    self.scope.push((v2.clone(), Ty::Dyn));
                }
                self.comprehension_depth += 1;
                let body = (|| {
                    self.expr(&mut c.loop_cond)?;
                    self.expr(&mut c.loop_step)?;
                    self.expr(&mut c.result)
                })();
                self.comprehension_depth -= 1;
                self.scope.truncate(depth);
                body
            }
            Expr::List(l) => {
                let mut element = None;
                for e in &mut l.elements {
                    element = Some(self.expr(e)?);
                }
                Ok(Ty::List(Box::new(element.unwrap_or(Ty::Dyn))))
            }
            Expr::Map(m) => {
                for entry in &mut m.entries {
                    if let EntryExpr::MapEntry(me) = &mut entry.expr {
                        self.expr(&mut me.key)?;
                        self.expr(&mut me.value)?;
                    }
                }
                Ok(Ty::Map(Box::new(Ty::Dyn)))
            }
            Expr::Struct(s) => Err(self.error(
                id,
                format!(
                    "building messages ({}{{...}}) is not supported",
                    s.type_name
                ),
            )),
        }
    }

    fn ident(&mut self, id: u64, name: &str) -> Result<Ty, CompileError> {
        if let Some((_, ty)) = self.scope.iter().rev().find(|(n, _)| n == name) {
            return Ok(ty.clone());
        }
        if let Some((number, _, m)) = self.schema.events.iter().find(|(_, n, _)| n == name) {
            if !self.events.contains(number) {
                self.events.push(*number);
            }
            return Ok(Ty::Message(m.clone()));
        }
        if TYPE_NAMES.contains(&name) {
            return Ok(Ty::Dyn);
        }
        let known: Vec<&str> = self
            .schema
            .events
            .iter()
            .map(|(_, n, _)| n.as_str())
            .collect();
        Err(self.error(
            id,
            format!(
                "undeclared reference to '{name}' (the variables are the event types: {})",
                known.join(", ")
            ),
        ))
    }
}

fn field_type(field: &FieldDescriptor) -> Ty {
    if field.is_map() {
        if let Kind::Message(entry) = field.kind() {
            return Ty::Map(Box::new(kind_type(&entry.map_entry_value_field().kind())));
        }
        return Ty::Map(Box::new(Ty::Dyn));
    }
    let ty = kind_type(&field.kind());
    if field.is_list() {
        Ty::List(Box::new(ty))
    } else {
        ty
    }
}

fn kind_type(kind: &Kind) -> Ty {
    match kind {
        Kind::Double | Kind::Float => Ty::Scalar("double"),
        Kind::Int32
        | Kind::Int64
        | Kind::Sint32
        | Kind::Sint64
        | Kind::Sfixed32
        | Kind::Sfixed64 => Ty::Scalar("int"),
        Kind::Uint32 | Kind::Uint64 | Kind::Fixed32 | Kind::Fixed64 => Ty::Scalar("uint"),
        Kind::Bool => Ty::Scalar("bool"),
        Kind::String => Ty::Scalar("string"),
        Kind::Bytes => Ty::Scalar("bytes"),
        Kind::Enum(_) => Ty::Scalar("int"),
        Kind::Message(m) => match m.full_name() {
            "google.protobuf.Timestamp" | "google.protobuf.Duration" => Ty::Dyn,
            // wrappers read as their value or null
            n if n.starts_with("google.protobuf.") => Ty::Dyn,
            _ => Ty::Message(m.clone()),
        },
    }
}
