//! Checks that need the kernel: does the function, syscall or tracepoint exist, do argument
//! indices and types fit its parameters. Behind [`KernelInfo`] so tests and other kernels
//! (a `--btf FILE`) can stand in for the running one; whatever cannot be answered is listed
//! as skipped, never silently passed.

use std::collections::HashSet;
use std::path::Path;

use crate::TracingPolicy;
pub use crate::btf::{Btf, BtfError, Param, ParamShape};
use crate::error::{ErrorCode, PolicyError};
use crate::model::ArgSpec;
use crate::types::{ArgType, ListType};

/// An answer that may be unavailable on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    Yes(T),
    No,
    /// Cannot tell; the text says why (e.g. "tracefs is not mounted").
    Unknown(String),
}

/// One field of a tracepoint format file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracepointField {
    pub declaration: String,
    pub name: String,
    pub is_pointer: bool,
}

/// What the kernel checks ask of a kernel.
pub trait KernelInfo {
    /// A kernel function and its parameters.
    fn function(&self, name: &str) -> Answer<Vec<Param>>;
    /// Whether `name` (without `sys_` prefix, e.g. `linkat`) is a system call.
    fn syscall(&self, name: &str) -> Answer<()>;
    /// The fields of tracepoint `subsystem/event` (common_* fields left out).
    fn tracepoint(&self, subsystem: &str, event: &str) -> Answer<Vec<TracepointField>>;
    /// One line saying which kernel data is used.
    fn describe(&self) -> String;
    /// What Tetragon's `imaHash` needs (BPF LSM programs, IMA active): `Err` names what
    /// this kernel lacks.
    fn lsm_ima(&self) -> Result<(), String> {
        Err("BPF LSM and IMA are not known for this kernel description".into())
    }
}

/// The refusal of `imaHash` on a kernel that lacks `why`.
pub fn ima_hash_absent(why: &str) -> String {
    format!("imaHash: needs LSM BPF hooks and IMA, absent on this kernel: {why}")
}

const SECURITYFS: &str = "/sys/kernel/security";

/// BPF LSM and IMA as securityfs shows them.
fn lsm_ima_facts(securityfs: &Path) -> Result<(), String> {
    if !securityfs.join("lsm").exists() && !securityfs.join("ima").exists() {
        return Err(format!(
            "securityfs is not mounted at {} (BPF LSM and IMA cannot be seen)",
            securityfs.display()
        ));
    }
    let mut absent = Vec::new();
    match std::fs::read_to_string(securityfs.join("lsm")) {
        Ok(list) if list.split(',').any(|m| m.trim() == "bpf") => {}
        Ok(list) => absent.push(format!("`bpf` is not an active LSM ({})", list.trim())),
        Err(e) => absent.push(format!(
            "the active LSMs are unknown ({}/lsm: {e})",
            securityfs.display()
        )),
    }
    let lockdown = std::fs::read_to_string(securityfs.join("lockdown")).unwrap_or_default();
    for mode in ["[integrity]", "[confidentiality]"] {
        if lockdown.contains(mode) {
            absent.push(format!(
                "lockdown={} refuses BPF LSM programs",
                mode.trim_matches(['[', ']'])
            ));
        }
    }
    let ima = [securityfs.join("ima"), securityfs.join("integrity/ima")];
    if !ima.iter().any(|p| p.is_dir()) {
        absent.push(format!(
            "IMA is not active (no {}/ima or {}/integrity/ima)",
            securityfs.display(),
            securityfs.display()
        ));
    }
    if absent.is_empty() {
        Ok(())
    } else {
        Err(absent.join("; "))
    }
}

/// The running kernel (or a BTF file given with `--btf`). BTF and kallsyms are read on
/// first use: checking a policy of syscalls and tracepoints needs only tracefs, and the
/// agent checks every policy it loads (tens of MB and a tenth of a second saved there).
#[derive(Debug)]
pub struct SystemKernel {
    btf_origin: String,
    btf: std::sync::OnceLock<Result<Btf, String>>,
    tracefs: Option<std::path::PathBuf>,
    kallsyms: std::sync::OnceLock<Option<HashSet<String>>>,
}

impl SystemKernel {
    /// The running kernel: `/sys/kernel/btf/vmlinux`, tracefs, and `/proc/kallsyms` if the
    /// addresses are visible. Nothing here needs root except what the kernel restricts.
    pub fn running() -> Self {
        Self::with_btf_path("/sys/kernel/btf/vmlinux")
    }

    /// Uses the given BTF file (`--btf FILE`) instead of the running kernel's; tracefs and
    /// kallsyms are still read from this machine.
    pub fn with_btf_path(path: &str) -> Self {
        let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.join("events").is_dir());
        Self {
            btf_origin: path.to_string(),
            btf: std::sync::OnceLock::new(),
            tracefs,
            kallsyms: std::sync::OnceLock::new(),
        }
    }

    fn btf(&self) -> Option<&Btf> {
        self.btf
            .get_or_init(|| Btf::from_file(&self.btf_origin).map_err(|e| e.to_string()))
            .as_ref()
            .ok()
    }

    fn btf_error(&self) -> Option<String> {
        self.btf().is_none().then(|| {
            self.btf
                .get()
                .and_then(|r| r.as_ref().err().cloned())
                .unwrap_or_default()
        })
    }

    fn kallsyms(&self) -> Option<&HashSet<String>> {
        self.kallsyms
            .get_or_init(|| {
                let text = std::fs::read_to_string("/proc/kallsyms").ok()?;
                let symbols: HashSet<String> = text
                    .lines()
                    .filter_map(|line| {
                        let mut parts = line.split_whitespace();
                        let _addr = parts.next()?;
                        let _kind = parts.next()?;
                        parts.next().map(str::to_string)
                    })
                    .collect();
                (!symbols.is_empty()).then_some(symbols)
            })
            .as_ref()
    }

    fn symbol_known(&self, name: &str) -> Option<bool> {
        let btf = self.btf().map(|b| b.has_function(name));
        if btf == Some(true) {
            return Some(true);
        }
        let kallsyms = self.kallsyms().map(|k| k.contains(name));
        match (btf, kallsyms) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (None, None) => None,
            _ => Some(false),
        }
    }
}

impl KernelInfo for SystemKernel {
    fn function(&self, name: &str) -> Answer<Vec<Param>> {
        if let Some(params) = self.btf().and_then(|b| b.function_params(name)) {
            return Answer::Yes(params);
        }
        match self.symbol_known(name) {
            // In kallsyms but not BTF: exists, parameters unknown.
            Some(true) => Answer::Unknown(format!(
                "`{name}` exists but BTF does not describe its parameters"
            )),
            Some(false) => Answer::No,
            None => Answer::Unknown(
                self.btf_error()
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "no BTF and no kallsyms".into()),
            ),
        }
    }

    fn syscall(&self, name: &str) -> Answer<()> {
        if let Some(root) = &self.tracefs
            && root
                .join(format!("events/syscalls/sys_enter_{name}"))
                .is_dir()
        {
            return Answer::Yes(());
        }
        let candidates = [
            format!("__x64_sys_{name}"),
            format!("__arm64_sys_{name}"),
            format!("__se_sys_{name}"),
            format!("sys_{name}"),
        ];
        let known: Vec<Option<bool>> = candidates.iter().map(|c| self.symbol_known(c)).collect();
        if known.contains(&Some(true)) {
            Answer::Yes(())
        } else if known.iter().all(Option::is_none) {
            Answer::Unknown("no BTF, kallsyms or tracefs to list system calls".into())
        } else {
            Answer::No
        }
    }

    fn tracepoint(&self, subsystem: &str, event: &str) -> Answer<Vec<TracepointField>> {
        let Some(root) = &self.tracefs else {
            return Answer::Unknown("tracefs is not mounted (/sys/kernel/tracing)".into());
        };
        let dir = root.join(format!("events/{subsystem}/{event}"));
        match std::fs::read_to_string(dir.join("format")) {
            Ok(text) => Answer::Yes(parse_format(&text)),
            Err(_) if !dir.exists() => Answer::No,
            Err(e) => Answer::Unknown(format!("cannot read {}: {e}", dir.display())),
        }
    }

    fn describe(&self) -> String {
        let btf = match (self.btf(), self.btf_error()) {
            (Some(b), _) => format!("BTF {} ({} functions)", self.btf_origin, b.function_count()),
            (None, Some(e)) => format!("no BTF ({e})"),
            (None, None) => "no BTF".into(),
        };
        let tracefs = self
            .tracefs
            .as_ref()
            .map_or("tracefs not mounted".to_string(), |p| {
                format!("tracefs {}", p.display())
            });
        let kallsyms = if self.kallsyms().is_some() {
            "kallsyms readable"
        } else {
            "kallsyms unreadable"
        };
        format!("{btf}; {tracefs}; {kallsyms}")
    }

    fn lsm_ima(&self) -> Result<(), String> {
        lsm_ima_facts(Path::new(SECURITYFS))
    }
}

/// `common_type`, `common_flags`, `common_preempt_count`, `common_pid`.
const COMMON_FIELDS: usize = 4;

/// Parses a tracepoint `format` file into its non-common fields, in order.
pub fn parse_format(text: &str) -> Vec<TracepointField> {
    text.lines()
        .filter_map(|line| {
            let decl = line
                .trim()
                .strip_prefix("field:")?
                .split(';')
                .next()?
                .trim()
                .to_string();
            let name = decl
                .rsplit([' ', '*'])
                .next()?
                .split('[')
                .next()?
                .to_string();
            (!name.starts_with("common_")).then(|| TracepointField {
                is_pointer: decl.contains('*'),
                declaration: decl,
                name,
            })
        })
        .collect()
}

/// The outcome of the kernel checks on one policy.
#[derive(Debug, Clone, Default)]
pub struct KernelReport {
    pub errors: Vec<PolicyError>,
    /// Checks that could not run, with the reason.
    pub skipped: Vec<String>,
}

/// Strips the `sys_` / arch prefixes Tetragon accepts on syscall names.
pub fn syscall_name(call: &str) -> &str {
    let call = call.split_once('/').map_or(call, |(_, rest)| rest);
    for prefix in [
        "__x64_sys_",
        "__ia32_sys_",
        "__arm64_sys_",
        "__se_sys_",
        "sys_",
    ] {
        if let Some(rest) = call.strip_prefix(prefix) {
            return rest;
        }
    }
    call
}

struct Ctx<'a> {
    policy: &'a TracingPolicy,
    kernel: &'a dyn KernelInfo,
    report: KernelReport,
}

impl Ctx<'_> {
    fn error(&mut self, path: &str, message: String) {
        let pos = self.policy.source.value_pos(path);
        self.report.errors.push(PolicyError {
            file: self.policy.source.file().to_string(),
            path: path.to_string(),
            pos,
            code: ErrorCode::Kernel,
            message,
        });
    }

    fn skip(&mut self, what: String) {
        if !self.report.skipped.contains(&what) {
            self.report.skipped.push(what);
        }
    }

    /// `btf_pointees`: the parameters come from BTF, whose pointer shapes name what they
    /// point to, so a `string` on a pointer to anything but characters is refused (Tetragon's
    /// BTF validation: `string` for `vfs_llseek`'s `struct file *`).
    fn args_against_params(
        &mut self,
        path: &str,
        call: &str,
        args: &[ArgSpec],
        params: &[Param],
        btf_pointees: bool,
    ) {
        for (i, arg) in args.iter().enumerate() {
            let arg_path = format!("{path}.args[{i}]");
            match params.get(arg.index as usize) {
                None => self.error(&format!("{arg_path}.index"), format!("`{call}`{} has {} parameters; index {} is past them", if btf_pointees { " on this kernel" } else { "" }, params.len(), arg.index)),
                Some(param) if arg.arg_type.needs_pointer() && arg.btf_type.is_none() && !param.shape.is_pointer() => self.error(
                    &format!("{arg_path}.type"),
                    format!("type {} reads through a pointer, but parameter {} (`{}`) of `{call}` is {:?}", arg.arg_type, arg.index, param.name, param.shape),
                ),
                Some(Param {
                    name,
                    shape: ParamShape::Pointer(to) | ParamShape::Struct(to),
                }) if btf_pointees
                        && arg.arg_type == ArgType::String
                        && arg.btf_type.is_none()
                        && !is_char_like(to) =>
                {
                    self.error(
                        &format!("{arg_path}.type"),
                        format!(
                            "`{call}` on this kernel takes no string at index {i}: parameter {i} (`{name}`) points to `{to}` (type string reads a NUL-terminated string)",
                            i = arg.index
                        ),
                    )
                }
                Some(_) => {}
            }
        }
    }

    fn syscall_args(&mut self, path: &str, name: &str, args: &[ArgSpec]) {
        if args.is_empty() {
            return;
        }
        match self
            .kernel
            .tracepoint("syscalls", &format!("sys_enter_{name}"))
        {
            Answer::Yes(fields) => {
                // Skip `__syscall_nr`, the first non-common field.
                let params: Vec<Param> = fields
                    .iter()
                    .filter(|f| f.name != "__syscall_nr")
                    .map(|f| Param {
                        name: f.name.clone(),
                        shape: if f.is_pointer {
                            ParamShape::Pointer(f.declaration.clone())
                        } else {
                            ParamShape::Integer { bytes: 8 }
                        },
                    })
                    .collect();
                self.args_against_params(path, &format!("sys_{name}"), args, &params, false);
            }
            Answer::No => {}
            Answer::Unknown(why) => self.skip(format!("syscall argument types ({why})")),
        }
    }

    fn call(
        &mut self,
        path: &str,
        call: &str,
        syscall: bool,
        args: &[ArgSpec],
        ignore_missing: bool,
    ) {
        let call_path = format!("{path}.call");
        if syscall {
            let name = syscall_name(call);
            match self.kernel.syscall(name) {
                Answer::Yes(()) => self.syscall_args(path, name, args),
                Answer::No if ignore_missing => self.skip(format!(
                    "{call_path}: `{call}` is absent; hook skipped (ignore.callNotFound)"
                )),
                Answer::No => {
                    let hint = if matches!(self.kernel.function(call), Answer::Yes(_)) {
                        "; it is a kernel function: set `syscall: false` (the CRD default is true)"
                    } else {
                        ""
                    };
                    self.error(
                        &call_path,
                        format!(
                            "`{call}` is not a system call on this kernel (syscall: true){hint}"
                        ),
                    );
                }
                Answer::Unknown(why) => self.skip(format!("syscall existence ({why})")),
            }
        } else {
            match self.kernel.function(call) {
                Answer::Yes(params) => self.args_against_params(path, call, args, &params, true),
                Answer::No if ignore_missing => self.skip(format!(
                    "{call_path}: `{call}` is absent; hook skipped (ignore.callNotFound)"
                )),
                Answer::No => self.error(
                    &call_path,
                    format!("kernel function `{call}` does not exist on this kernel"),
                ),
                Answer::Unknown(why) => self.skip(format!("function `{call}` ({why})")),
            }
        }
    }
}

/// Runs every kernel check on a parsed policy.
pub fn check_policy(policy: &TracingPolicy, kernel: &dyn KernelInfo) -> KernelReport {
    let mut c = Ctx {
        policy,
        kernel,
        report: KernelReport::default(),
    };
    let spec = &policy.spec;
    for (field, hooks) in [("kprobes", &spec.kprobes), ("fentries", &spec.fentries)] {
        for (i, k) in hooks.iter().enumerate() {
            let path = policy.source.hook_path(field, i);
            if let Some(list_name) = k.call.strip_prefix("list:") {
                let Some(list) = spec.lists.iter().find(|l| l.name == list_name) else {
                    continue;
                };
                match list.list_type {
                    Some(ListType::GeneratedSyscalls | ListType::GeneratedFtrace) => {}
                    Some(ListType::Syscalls) => {
                        for value in &list.values {
                            c.call(&path, value, true, &[], k.ignore.call_not_found);
                        }
                    }
                    None => {
                        for value in &list.values {
                            c.call(&path, value, k.syscall, &[], k.ignore.call_not_found);
                        }
                    }
                }
                continue;
            }
            c.call(&path, &k.call, k.syscall, &k.args, k.ignore.call_not_found);
        }
    }
    for (i, t) in spec.tracepoints.iter().enumerate() {
        let path = policy.source.hook_path("tracepoints", i);
        if t.raw {
            c.skip("raw tracepoint existence (not listed in BTF by name)".into());
            continue;
        }
        match kernel.tracepoint(&t.subsystem, &t.event) {
            Answer::Yes(fields) => {
                // Tetragon's indices count the four `common_*` fields too (the first
                // field of an event is index 4); `fields` leaves them out.
                let total = fields.len() + COMMON_FIELDS;
                for (j, arg) in t.args.iter().enumerate() {
                    if arg.index as usize >= total {
                        c.error(
                            &format!("{path}.args[{j}].index"),
                            format!(
                                "tracepoint {}/{} has {} fields; index {} is past them",
                                t.subsystem, t.event, total, arg.index
                            ),
                        );
                    }
                }
            }
            Answer::No => c.error(
                &format!("{path}.event"),
                format!(
                    "tracepoint {}/{} does not exist on this kernel",
                    t.subsystem, t.event
                ),
            ),
            Answer::Unknown(why) => {
                let syscall_event = t.subsystem == "syscalls";
                let inferred = syscall_event.then(|| {
                    let name = t
                        .event
                        .trim_start_matches("sys_enter_")
                        .trim_start_matches("sys_exit_");
                    kernel.syscall(name)
                });
                match inferred {
                    Some(Answer::No) => c.error(
                        &format!("{path}.event"),
                        format!(
                            "tracepoint {}/{}: no such system call on this kernel",
                            t.subsystem, t.event
                        ),
                    ),
                    _ => c.skip(format!("tracepoint formats ({why})")),
                }
            }
        }
    }
    for (i, l) in spec.lsmhooks.iter().enumerate() {
        let path = policy.source.hook_path("lsmhooks", i);
        match kernel.function(&format!("security_{}", l.hook)) {
            Answer::No => {
                if !matches!(
                    kernel.function(&format!("bpf_lsm_{}", l.hook)),
                    Answer::Yes(_)
                ) {
                    c.error(
                        &format!("{path}.hook"),
                        format!("LSM hook `{}` does not exist on this kernel", l.hook),
                    );
                }
            }
            Answer::Yes(_) => {}
            Answer::Unknown(why) => c.skip(format!("LSM hook existence ({why})")),
        }
        for (s, selector) in l.selectors.iter().enumerate() {
            for (a, action) in selector.match_actions.iter().enumerate() {
                if !action.ima_hash {
                    continue;
                }
                // Not an error here: whether the hook can load is the compiler's call
                // (refused by name where the kernel lacks BPF LSM or IMA). Hooks where
                // imaHash cannot work at all are refused by the parser.
                if let Err(why) = kernel.lsm_ima() {
                    c.skip(format!(
                        "{path}.selectors[{s}].matchActions[{a}].imaHash: {}",
                        ima_hash_absent(&why)
                    ));
                }
            }
        }
    }
    for (i, u) in spec.uprobes.iter().enumerate() {
        if !Path::new(&u.path).exists() {
            let path = format!("{}.path", policy.source.hook_path("uprobes", i));
            c.skip(format!(
                "{path}: target {} does not exist on this machine",
                u.path
            ));
        }
    }
    c.report
}

/// Whether a pointee type name is a character type a string can be read from (`void`
/// pointers too: their meaning is the caller's).
fn is_char_like(name: &str) -> bool {
    matches!(
        name,
        "" | "void" | "char" | "unsigned char" | "signed char" | "u8" | "__u8" | "s8" | "__s8"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsm_and_ima_facts_name_what_is_absent() {
        let dir = std::env::temp_dir().join(format!("vigil-securityfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let e = lsm_ima_facts(&dir).unwrap_err();
        assert!(e.starts_with("securityfs is not mounted"), "{e}");
        std::fs::write(
            dir.join("lsm"),
            "lockdown,capability,landlock,yama,apparmor",
        )
        .unwrap();
        std::fs::write(dir.join("lockdown"), "none [integrity] confidentiality\n").unwrap();
        let e = lsm_ima_facts(&dir).unwrap_err();
        assert!(e.contains("`bpf` is not an active LSM"), "{e}");
        assert!(e.contains("lockdown=integrity"), "{e}");
        assert!(e.contains("IMA is not active"), "{e}");
        std::fs::write(dir.join("lsm"), "capability,bpf,ima").unwrap();
        std::fs::write(dir.join("lockdown"), "[none] integrity confidentiality\n").unwrap();
        std::fs::create_dir_all(dir.join("integrity/ima")).unwrap();
        assert_eq!(lsm_ima_facts(&dir), Ok(()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
