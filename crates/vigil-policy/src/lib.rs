//! The TracingPolicy language of vigil (Tetragon's `cilium.io/v1alpha1` policies): parse,
//! validate, explain and compile, without touching the kernel.
//!
//! # Public API
//!
//! - [`parse_policy`]`(source, file_name) -> Result<TracingPolicy, PolicyErrors>`: YAML to a
//!   checked policy. Runs every schema and semantic check that needs no kernel and reports
//!   all faults, each with file, YAML path, line:column and a reason keyword ([`ErrorCode`]).
//! - [`kernel`]: the [`KernelInfo`] trait (does a function / syscall / tracepoint exist,
//!   parameter and field types) and [`SystemKernel`], which reads the running kernel's BTF
//!   (`/sys/kernel/btf/vmlinux` or a `--btf FILE`), tracefs formats and `/proc/kallsyms`.
//!   [`kernel::check_policy`] applies it and says which checks were skipped.
//! - [`compile`]`(&TracingPolicy, &dyn KernelCapabilities) -> Plan`: a kernel-independent
//!   plan (per hook: attach mechanism, argument readers, selector tables, actions) or, per
//!   hook, a refusal naming the reason.
//! - [`cli::validate`] and [`cli::explain`]: the `vigil tracingpolicy validate|explain`
//!   commands, returning text and an exit status.
//! - [`aliases`]: syscall families a policy hooks only in part (`openat` but not `openat2`),
//!   the warnings `validate` and `explain` print.
//! - [`serialize::to_yaml`]: a policy back to YAML (same meaning when parsed again).
//! - [`state`]: policy identity (domain, namespace, name), mode and states.
//! - [`limits`]: every limit of the language in one place.
//! - [`backtest`]: a compiled hook's selector tables run over recorded calls, with the
//!   engine's semantics (`vigil tracingpolicy backtest`).
//! - [`celexpr`]: the `CelExpr` operator's integer subset, as the engine's comparisons.

pub mod aliases;
pub mod backtest;
pub mod btf;
pub mod celexpr;
pub mod cli;
pub mod compile;
mod decode;
mod decode_hooks;
mod decode_selector;
pub mod error;
pub mod kernel;
pub mod limits;
pub mod model;
pub mod netfallback;
pub mod serialize;
pub mod source;
pub mod state;
pub mod types;
mod validate;
mod values;
pub mod yaml;

pub use compile::{KernelCapabilities, Plan, compile};
pub use error::{ErrorCode, PolicyError, PolicyErrors};
pub use kernel::{KernelInfo, SystemKernel};
pub use model::{PolicyKind, Spec};
pub use source::SourceMap;
pub use values::parse_rate_limit;

use error::Collector;

/// A parsed and checked policy.
#[derive(Debug, Clone)]
pub struct TracingPolicy {
    pub kind: PolicyKind,
    pub metadata: model::Metadata,
    pub spec: Spec,
    /// Positions of every field, for later (kernel) checks.
    pub source: SourceMap,
}

impl TracingPolicy {
    /// Whether two policies mean the same (positions and spellings of aliases aside).
    pub fn same_meaning(&self, other: &TracingPolicy) -> bool {
        self.kind == other.kind && self.metadata == other.metadata && self.spec == other.spec
    }

    /// The policy's identity in the given domain.
    pub fn id(&self, domain: state::Domain) -> state::PolicyId {
        state::PolicyId {
            domain,
            namespace: self.metadata.namespace.clone().unwrap_or_default(),
            name: self.metadata.name.clone(),
        }
    }
}

/// Parses and checks one policy file. `file_name` is used only in error messages.
pub fn parse_policy(source: &str, file_name: &str) -> Result<TracingPolicy, PolicyErrors> {
    let mut errors = Collector::new(file_name);
    let root = match yaml::parse_document(source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            errors.push(
                "",
                yaml::Pos { line: 1, column: 1 },
                ErrorCode::MissingField,
                "the file holds no policy",
            );
            return Err(errors.finish().expect_err("an error was pushed"));
        }
        Err(e) => {
            let code = match e.limit {
                Some(_) => ErrorCode::Limit,
                None => ErrorCode::YamlSyntax,
            };
            errors.push(&e.path, e.pos, code, e.message);
            return Err(errors.finish().expect_err("an error was pushed"));
        }
    };
    let mut decoder = decode::Decoder::new(&mut errors, file_name);
    let decoded = decode::decode_policy(&mut decoder, &root);
    let source_map = decoder.source;
    let policy = decoded.map(|(kind, metadata, spec)| {
        validate::validate(kind, &spec, &source_map, &mut errors);
        TracingPolicy {
            kind,
            metadata,
            spec,
            source: source_map,
        }
    });
    errors.finish()?;
    policy.ok_or_else(|| PolicyErrors(Vec::new()))
}
