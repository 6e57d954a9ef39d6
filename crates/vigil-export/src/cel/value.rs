//! Protobuf messages as CEL values, read lazily: a field is converted only when an
//! expression selects it, so an expression that reads `process_exec.process.binary` costs
//! three field look-ups, not a copy of the whole event.
//!
//! Semantics follow cel-go on proto3 messages (what Tetragon evaluates): fields under their
//! proto names; an unset message field reads as the empty message; wrapper types
//! (`google.protobuf.UInt32Value`, ...) read as their value or `null` when unset;
//! `Timestamp` and `Duration` as CEL timestamps and durations; enums as `int`; `has(m.f)`
//! is true when `f` is set (non-default scalar, set message, non-empty list or map).

use std::borrow::Cow;
use std::collections::HashMap;

use cel::ExecutionError;
use cel::common::traits::Indexer;
use cel::common::types::{
    CelBool, CelBytes, CelDouble, CelDuration, CelInt, CelList, CelMap, CelMapKey, CelNull,
    CelString, CelTimestamp, CelUInt, Type,
};
use cel::common::value::{CowVal, Val};
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, ReflectMessage, Value};

/// Suffix the compiler appends to the field of a `has(m.f)` on a message, so that
/// [`Message::get`] answers presence rather than the field's (default) value.
pub(super) const PRESENCE_SUFFIX: &str = "\0has";

static MESSAGE_TYPE: Type = Type::new_struct_type("tetragon.Message");

/// A message, borrowed from the decoded event or owned (the default of an unset field).
#[derive(Debug, Clone)]
pub(super) struct Message<'v>(pub(super) Cow<'v, DynamicMessage>);

impl Val for Message<'_> {
    fn get_type(&self) -> &Type {
        &MESSAGE_TYPE
    }

    fn cel_type() -> &'static Type
    where
        Self: Sized,
    {
        &MESSAGE_TYPE
    }

    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn equals(&self, other: &dyn Val) -> bool {
        // Messages compare by content, as in cel-go; `Message` is not `'static`, so the
        // other side is recognised by its type and debug form rather than downcast.
        other.get_type() == &MESSAGE_TYPE && format!("{self:?}") == format!("{other:?}")
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }
}

impl<'a> Indexer for Message<'a> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let Some(name) = idx.downcast_ref::<CelString<'_>>() else {
            return Err(ExecutionError::UnexpectedType {
                got: idx.get_type().name().to_owned(),
                want: "string".to_owned(),
            });
        };
        let name = name.inner();
        let (name, presence) = match name.strip_suffix(PRESENCE_SUFFIX) {
            Some(n) => (n, true),
            None => (name, false),
        };
        let Some(field) = self.0.descriptor().get_field_by_name(name) else {
            return Err(ExecutionError::no_such_key(name));
        };
        if presence {
            return if self.0.has_field(&field) {
                Ok(CowVal::owned(CelBool::from(true)))
            } else {
                Err(ExecutionError::no_such_key(name))
            };
        }
        let value: Box<dyn Val + 'v> = match &self.0 {
            Cow::Borrowed(m) => {
                let m: &'v DynamicMessage = m;
                field_value(m, &field)
            }
            Cow::Owned(m) => field_value_owned(m, &field),
        };
        Ok(CowVal::Owned(value))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// Wrapper types (`google.protobuf.BoolValue`, ...): their value, or null when unset.
fn is_wrapper(name: &str) -> bool {
    name.strip_prefix("google.protobuf.")
        .is_some_and(|n| n.ends_with("Value") && n != "Value" && n != "ListValue")
}

fn field_value<'v>(m: &'v DynamicMessage, field: &FieldDescriptor) -> Box<dyn Val + 'v> {
    if let Kind::Message(d) = field.kind()
        && is_wrapper(d.full_name())
        && !field.is_list()
        && !m.has_field(field)
    {
        return Box::new(CelNull);
    }
    convert(m.get_field(field), &field.kind())
}

/// As [`field_value`] on a message the value does not borrow from (a default).
fn field_value_owned<'v>(m: &DynamicMessage, field: &FieldDescriptor) -> Box<dyn Val + 'v> {
    if let Kind::Message(d) = field.kind()
        && is_wrapper(d.full_name())
        && !field.is_list()
        && !m.has_field(field)
    {
        return Box::new(CelNull);
    }
    convert(Cow::Owned(m.get_field(field).into_owned()), &field.kind())
}

fn convert<'v>(v: Cow<'v, Value>, kind: &Kind) -> Box<dyn Val + 'v> {
    match v {
        Cow::Borrowed(v) => convert_ref(v, kind),
        Cow::Owned(v) => convert_owned(v, kind),
    }
}

fn scalar(v: &Value) -> Option<Box<dyn Val + 'static>> {
    Some(match v {
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::I32(n) => Box::new(CelInt::from(i64::from(*n))),
        Value::I64(n) => Box::new(CelInt::from(*n)),
        Value::U32(n) => Box::new(CelUInt::from(u64::from(*n))),
        Value::U64(n) => Box::new(CelUInt::from(*n)),
        Value::F32(f) => Box::new(CelDouble::from(f64::from(*f))),
        Value::F64(f) => Box::new(CelDouble::from(*f)),
        Value::EnumNumber(n) => Box::new(CelInt::from(i64::from(*n))),
        _ => return None,
    })
}

fn convert_ref<'v>(v: &'v Value, kind: &Kind) -> Box<dyn Val + 'v> {
    if let Some(s) = scalar(v) {
        return s;
    }
    match v {
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Bytes(b) => Box::new(CelBytes::from(b.to_vec())),
        Value::Message(m) => message(Cow::Borrowed(m)),
        Value::List(items) => {
            let items: Vec<Box<dyn Val + 'v>> =
                items.iter().map(|i| convert_ref(i, kind)).collect();
            Box::new(CelList::from(items))
        }
        Value::Map(entries) => {
            let value_kind = map_value_kind(kind);
            let map: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = entries
                .iter()
                .map(|(k, v)| (map_key(k), convert_ref(v, &value_kind)))
                .collect();
            Box::new(CelMap::from(map))
        }
        _ => Box::new(CelNull),
    }
}

fn convert_owned<'v>(v: Value, kind: &Kind) -> Box<dyn Val + 'v> {
    if let Some(s) = scalar(&v) {
        return s;
    }
    match v {
        Value::String(s) => Box::new(CelString::from(s)),
        Value::Bytes(b) => Box::new(CelBytes::from(b.to_vec())),
        Value::Message(m) => message(Cow::Owned(m)),
        Value::List(items) => {
            let items: Vec<Box<dyn Val + 'v>> =
                items.into_iter().map(|i| convert_owned(i, kind)).collect();
            Box::new(CelList::from(items))
        }
        Value::Map(entries) => {
            let value_kind = map_value_kind(kind);
            let map: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = entries
                .into_iter()
                .map(|(k, v)| (map_key(&k), convert_owned(v, &value_kind)))
                .collect();
            Box::new(CelMap::from(map))
        }
        _ => Box::new(CelNull),
    }
}

fn map_value_kind(kind: &Kind) -> Kind {
    match kind {
        Kind::Message(entry) => entry.map_entry_value_field().kind(),
        other => other.clone(),
    }
}

fn map_key<'v>(k: &MapKey) -> CelMapKey<'v> {
    match k {
        MapKey::Bool(b) => CelMapKey::Bool(CelBool::from(*b)),
        MapKey::I32(n) => CelMapKey::Int(CelInt::from(i64::from(*n))),
        MapKey::I64(n) => CelMapKey::Int(CelInt::from(*n)),
        MapKey::U32(n) => CelMapKey::UInt(CelUInt::from(u64::from(*n))),
        MapKey::U64(n) => CelMapKey::UInt(CelUInt::from(*n)),
        MapKey::String(s) => CelMapKey::String(CelString::from(s.clone())),
    }
}

/// A message value: well-known types as their CEL counterparts, others lazily.
fn message<'v>(m: Cow<'v, DynamicMessage>) -> Box<dyn Val + 'v> {
    let name = m.descriptor().full_name().to_owned();
    let int_field = |field: &str| -> i64 {
        match m.get_field_by_name(field).as_deref() {
            Some(Value::I64(n)) => *n,
            Some(Value::I32(n)) => i64::from(*n),
            _ => 0,
        }
    };
    match name.as_str() {
        "google.protobuf.Timestamp" => {
            let (secs, nanos) = (int_field("seconds"), int_field("nanos"));
            let nanos = u32::try_from(nanos).unwrap_or(0);
            match chrono::DateTime::from_timestamp(secs, nanos) {
                Some(t) => Box::new(CelTimestamp::from(t.fixed_offset())),
                None => Box::new(CelNull),
            }
        }
        "google.protobuf.Duration" => {
            // try_seconds: a Duration past chrono's range is null, not a panic
            let d = chrono::TimeDelta::try_seconds(int_field("seconds"))
                .and_then(|d| d.checked_add(&chrono::TimeDelta::nanoseconds(int_field("nanos"))));
            match d {
                Some(d) => Box::new(CelDuration::from(d)),
                None => Box::new(CelNull),
            }
        }
        n if is_wrapper(n) => match m {
            Cow::Borrowed(m) => match m.get_field_by_name("value") {
                Some(Cow::Borrowed(v)) => convert_ref(v, &Kind::Bool),
                Some(Cow::Owned(v)) => convert_owned(v, &Kind::Bool),
                None => Box::new(CelNull),
            },
            Cow::Owned(m) => match m.get_field_by_name("value") {
                Some(v) => convert_owned(v.into_owned(), &Kind::Bool),
                None => Box::new(CelNull),
            },
        },
        _ => Box::new(Message(m)),
    }
}
