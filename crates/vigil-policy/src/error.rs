//! Policy errors: every fault names the file, the YAML path, the position and a reason.

use std::fmt;

use crate::yaml::Pos;

/// A stable, machine-readable reason keyword for a policy fault (tests and tools match on it;
/// the human text lives in [`PolicyError::message`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    YamlSyntax,
    ApiVersion,
    Kind,
    UnknownField,
    MissingField,
    DuplicateKey,
    WrongType,
    InvalidBool,
    InvalidNumber,
    InvalidValue,
    UnknownArgType,
    TypeNotAllowed,
    UnknownOperator,
    OperatorNotAllowed,
    UnknownAction,
    ActionNotAllowed,
    MissingEnforcer,
    IndexOutOfRange,
    Duplicate,
    Conflict,
    UnknownMacro,
    MacroConflict,
    UnknownList,
    UnknownOption,
    Limit,
    /// Found by a kernel check (function, syscall or tracepoint absent, type mismatch).
    Kernel,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::YamlSyntax => "yaml-syntax",
            Self::ApiVersion => "api-version",
            Self::Kind => "kind",
            Self::UnknownField => "unknown-field",
            Self::MissingField => "missing-field",
            Self::DuplicateKey => "duplicate-key",
            Self::WrongType => "wrong-type",
            Self::InvalidBool => "invalid-bool",
            Self::InvalidNumber => "invalid-number",
            Self::InvalidValue => "invalid-value",
            Self::UnknownArgType => "unknown-arg-type",
            Self::TypeNotAllowed => "type-not-allowed",
            Self::UnknownOperator => "unknown-operator",
            Self::OperatorNotAllowed => "operator-not-allowed",
            Self::UnknownAction => "unknown-action",
            Self::ActionNotAllowed => "action-not-allowed",
            Self::MissingEnforcer => "missing-enforcer",
            Self::IndexOutOfRange => "index-out-of-range",
            Self::Duplicate => "duplicate",
            Self::Conflict => "conflict",
            Self::UnknownMacro => "unknown-macro",
            Self::MacroConflict => "macro-conflict",
            Self::UnknownList => "unknown-list",
            Self::UnknownOption => "unknown-option",
            Self::Limit => "limit",
            Self::Kernel => "kernel",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One fault in one policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{pos}: {}: {message} [{code}]", if path.is_empty() { "(document)" } else { path.as_str() })]
pub struct PolicyError {
    pub file: String,
    /// Dotted YAML path such as `spec.kprobes[0].selectors[1].matchArgs[0].operator`;
    /// empty for faults of the document as a whole.
    pub path: String,
    pub pos: Pos,
    pub code: ErrorCode,
    pub message: String,
}

/// Every fault found in one file, in source order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.0))]
pub struct PolicyErrors(pub Vec<PolicyError>);

fn render(errors: &[PolicyError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl PolicyErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, PolicyError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Collects faults while decoding and validating, so one pass reports them all.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    pub file: String,
    pub errors: Vec<PolicyError>,
}

impl Collector {
    pub fn new(file: &str) -> Self {
        Self {
            file: file.to_string(),
            errors: Vec::new(),
        }
    }

    pub fn push(&mut self, path: &str, pos: Pos, code: ErrorCode, message: impl Into<String>) {
        self.errors.push(PolicyError {
            file: self.file.clone(),
            path: path.to_string(),
            pos,
            code,
            message: message.into(),
        });
    }

    pub fn finish(mut self) -> Result<(), PolicyErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors
            .sort_by(|a, b| a.pos.cmp(&b.pos).then_with(|| a.path.cmp(&b.path)));
        self.errors.dedup();
        Err(PolicyErrors(self.errors))
    }
}
