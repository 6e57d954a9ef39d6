//! What hook translation asks the machine (tracepoint formats, target files, the kernel's
//! functions), behind a trait so the translation is testable without a kernel.

/// What the translation needs to know about the machine.
pub trait HookEnv {
    /// The text of `events/<subsystem>/<event>/format` in tracefs.
    fn tracepoint_format(&self, subsystem: &str, event: &str) -> Result<String, String>;
    /// The bytes of a target file (uprobe and usdt binaries).
    fn read_file(&self, path: &str) -> Result<Vec<u8>, String>;
    /// Whether kernel function `name` exists (in the kernel's BTF or symbol table).
    fn kernel_function(&self, name: &str) -> bool {
        let _ = name;
        true
    }
    /// The functions of `names` this kernel cannot hook (see SystemEnv).
    fn missing_functions(&self, names: &[String]) -> Vec<String> {
        names
            .iter()
            .filter(|n| !self.kernel_function(n))
            .cloned()
            .collect()
    }
    /// The functions ftrace can trace (`available_filter_functions`), for generated_ftrace
    /// lists.
    fn ftrace_functions(&self) -> Result<Vec<String>, String> {
        Err("no ftrace function list".into())
    }
}

/// The running machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEnv;

impl HookEnv for SystemEnv {
    fn tracepoint_format(&self, subsystem: &str, event: &str) -> Result<String, String> {
        let roots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
        let Some(root) = roots
            .iter()
            .find(|r| std::path::Path::new(r).join("events").is_dir())
        else {
            return Err("tracefs is not mounted (/sys/kernel/tracing)".into());
        };
        let path = format!("{root}/events/{subsystem}/{event}/format");
        std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("tracepoint {subsystem}/{event} does not exist on this kernel")
            }
            _ => format!("cannot read {path}: {e}"),
        })
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
    }

    fn kernel_function(&self, name: &str) -> bool {
        if crate::tables::readers::vmlinux().is_ok_and(|btf| btf.has_function(name)) {
            return true;
        }
        // Functions without BTF (some static ones) can still be probed by name: kallsyms,
        // read as a stream (a set of every symbol would cost megabytes).
        use std::io::BufRead;
        std::fs::File::open("/proc/kallsyms").is_ok_and(|f| {
            std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .any(|l| {
                    let mut cols = l.split_whitespace();
                    let kind = cols.nth(1).unwrap_or("");
                    matches!(kind, "t" | "T") && cols.next() == Some(name)
                })
        })
    }

    /// Where ftrace lists its traceable functions, that list decides (one pass for all
    /// names): a function can be in BTF and kallsyms yet untraceable (Debian 6.1's
    /// dev_queue_xmit, a static copy of an inline function). Elsewhere, BTF or kallsyms.
    fn missing_functions(&self, names: &[String]) -> Vec<String> {
        use std::io::BufRead;
        let roots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
        let Some(file) = roots
            .iter()
            .find_map(|r| std::fs::File::open(format!("{r}/available_filter_functions")).ok())
        else {
            return names
                .iter()
                .filter(|n| !self.kernel_function(n))
                .cloned()
                .collect();
        };
        let mut missing: std::collections::HashSet<&str> =
            names.iter().map(String::as_str).collect();
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            if let Some(f) = line.split_whitespace().next() {
                missing.remove(f);
            }
            if missing.is_empty() {
                break;
            }
        }
        names
            .iter()
            .filter(|n| missing.contains(n.as_str()))
            .cloned()
            .collect()
    }

    fn ftrace_functions(&self) -> Result<Vec<String>, String> {
        let roots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
        let path = roots
            .iter()
            .map(|r| format!("{r}/available_filter_functions"))
            .find(|p| std::path::Path::new(p).exists())
            .ok_or("available_filter_functions is not readable (tracefs not mounted)")?;
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
        // "name" or "name [module]"; a function may be listed more than once.
        let mut names: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}
