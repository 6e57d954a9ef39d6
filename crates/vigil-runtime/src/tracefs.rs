//! Tracepoint `format` files (tracefs `events/<subsystem>/<event>/format`): every field with
//! its offset, size and signedness, and how a TracingPolicy argument of a given type is read
//! from it. Pure: the text comes from the caller.
//!
//! Field indices are Tetragon's: they count every field of the format, the four `common_*`
//! ones included, so the first field of an event is index 4.

use vigil_policy::types::ArgType;

/// One field of a tracepoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The C declaration as written in the format file (`const char * filename`).
    pub declaration: String,
    pub name: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

impl Field {
    /// `__data_loc char[] name`: a u32 locating a string inside the record.
    pub fn is_data_loc(&self) -> bool {
        self.declaration.starts_with("__data_loc ")
    }

    /// `__rel_loc`: like data_loc, but relative to the end of the field.
    pub fn is_rel_loc(&self) -> bool {
        self.declaration.starts_with("__rel_loc ")
    }

    pub fn is_pointer(&self) -> bool {
        self.declaration.contains('*')
    }

    /// A fixed array inside the record (`char comm[16]`).
    pub fn is_array(&self) -> bool {
        !self.is_data_loc() && !self.is_rel_loc() && self.declaration.ends_with(']')
    }

    fn is_char_array(&self) -> bool {
        self.is_array() && self.declaration.split_whitespace().any(|w| w == "char")
    }
}

/// A format file that does not parse, with the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct FormatError {
    pub line: usize,
    pub reason: String,
}

/// Parses a format file into all its fields, `common_*` included, in order.
pub fn parse_format(text: &str) -> Result<Vec<Field>, FormatError> {
    let mut fields = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with("print fmt:") {
            break;
        }
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let err = |reason: &str| FormatError {
            line: n + 1,
            reason: reason.to_string(),
        };
        let mut parts = rest.split(';').map(str::trim);
        let declaration = parts.next().unwrap_or_default().to_string();
        let mut num = |key: &str| -> Result<u32, FormatError> {
            let part = parts.next().ok_or_else(|| err(&format!("no {key}")))?;
            part.strip_prefix(key)
                .and_then(|v| v.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| err(&format!("bad {key}: {part:?}")))
        };
        let offset = num("offset")?;
        let size = num("size")?;
        let signed = num("signed")? != 0;
        let name = declaration
            .rsplit([' ', '*'])
            .next()
            .and_then(|n| n.split('[').next())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err("no field name"))?
            .to_string();
        fields.push(Field {
            declaration,
            name,
            offset,
            size,
            signed,
        });
    }
    if fields.is_empty() {
        return Err(FormatError {
            line: 0,
            reason: "no fields".into(),
        });
    }
    Ok(fields)
}

/// Where the kernel finds an argument's value in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An integer (or pointer) of `size` bytes at `offset`.
    Value { offset: u32, size: u32 },
    /// The record's own bytes at `offset` (a char array): a kernel string.
    Inline { offset: u32 },
    /// A data_loc (or rel_loc) u32 at `offset` locating a string in the record.
    DataLoc { offset: u32, relative: bool },
}

/// How an argument is read and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader {
    pub source: Source,
    /// The type the value is reported as (`auto` resolved).
    pub arg_type: ArgType,
    /// A string living in kernel memory (the record), not in user memory.
    pub kernel_string: bool,
}

/// How argument `field` is read when the policy says `arg_type`.
pub fn reader(field: &Field, arg_type: ArgType) -> Result<Reader, String> {
    let value = Source::Value {
        offset: field.offset,
        size: field.size,
    };
    let loc = |relative| Source::DataLoc {
        offset: field.offset,
        relative,
    };
    let string_source = || {
        if field.is_data_loc() {
            Some((loc(false), true))
        } else if field.is_rel_loc() {
            Some((loc(true), true))
        } else if field.is_char_array() {
            Some((
                Source::Inline {
                    offset: field.offset,
                },
                true,
            ))
        } else if field.is_pointer() && field.size == 8 {
            Some((value, false))
        } else {
            None
        }
    };
    let int_ok = !field.is_array() && !field.is_data_loc() && !field.is_rel_loc();
    let int_size = matches!(field.size, 1 | 2 | 4 | 8);
    let reader = |source, arg_type, kernel_string| Reader {
        source,
        arg_type,
        kernel_string,
    };
    match arg_type {
        ArgType::Auto => {
            if let Some((source, kernel)) = string_source().filter(|_| !field.is_pointer()) {
                return Ok(reader(source, ArgType::String, kernel));
            }
            if field.is_pointer() {
                return Err(format!(
                    "field `{}` is a pointer; type auto cannot tell a string from a buffer (say type: string)",
                    field.declaration
                ));
            }
            if !int_ok || !int_size {
                return Err(format!(
                    "field `{}` ({} bytes) has no automatic type",
                    field.declaration, field.size
                ));
            }
            let t = match (field.size, field.signed) {
                (8, true) => ArgType::Int64,
                (8, false) => ArgType::Uint64,
                (4 | 2 | 1, true) => ArgType::Int32,
                (_, false) => ArgType::Uint32,
                _ => unreachable!(),
            };
            Ok(reader(value, t, false))
        }
        ArgType::String | ArgType::DataLoc | ArgType::Filename => string_source()
            .map(|(s, k)| reader(s, ArgType::String, k))
            .ok_or_else(|| {
                format!(
                    "field `{}` holds no string (neither data_loc, char array nor pointer)",
                    field.declaration
                )
            }),
        ArgType::Syscall64 if int_ok && field.size == 8 => Ok(reader(value, arg_type, false)),
        t if t.integer_width().is_some() || t == ArgType::Fd => {
            if int_ok && int_size {
                Ok(reader(value, t, false))
            } else if field.is_array() {
                // Tetragon reads an integer at the field's offset: an array's first element.
                Ok(reader(value, t, false))
            } else {
                Err(format!(
                    "field `{}` ({} bytes) is not an integer",
                    field.declaration, field.size
                ))
            }
        }
        t => Err(format!(
            "type {t} is not supported on tracepoint fields yet (field `{}`)",
            field.declaration
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW_SYS_ENTER: &str = include_str!("../testdata/tracefs/raw_syscalls_sys_enter.format");
    const EXEC: &str = include_str!("../testdata/tracefs/sched_sched_process_exec.format");
    const OPENAT: &str = include_str!("../testdata/tracefs/syscalls_sys_enter_openat.format");
    const SIGNAL: &str = include_str!("../testdata/tracefs/signal_signal_generate.format");
    const RENAME: &str = include_str!("../testdata/tracefs/task_task_rename.format");

    #[test]
    fn indices_count_the_common_fields() {
        let f = parse_format(RAW_SYS_ENTER).unwrap();
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "common_type",
                "common_flags",
                "common_preempt_count",
                "common_pid",
                "id",
                "args"
            ]
        );
        assert_eq!((f[4].offset, f[4].size, f[4].signed), (8, 8, true));
        assert_eq!((f[5].offset, f[5].size, f[5].signed), (16, 48, false));
        assert!(f[5].is_array());
    }

    #[test]
    fn auto_types_follow_size_and_sign() {
        let f = parse_format(RAW_SYS_ENTER).unwrap();
        let id = reader(&f[4], ArgType::Auto).unwrap();
        assert_eq!(id.arg_type, ArgType::Int64);
        assert_eq!(id.source, Source::Value { offset: 8, size: 8 });
        assert!(
            reader(&f[5], ArgType::Auto).is_err(),
            "arrays have no auto type"
        );
        let sig = parse_format(SIGNAL).unwrap();
        assert_eq!(sig[4].name, "sig");
        assert_eq!(
            reader(&sig[4], ArgType::Auto).unwrap().arg_type,
            ArgType::Int32
        );
        let rename = parse_format(RENAME).unwrap();
        let oom = rename.iter().find(|f| f.name == "oom_score_adj").unwrap();
        assert_eq!((oom.offset, oom.size), (44, 2));
        assert_eq!(reader(oom, ArgType::Auto).unwrap().arg_type, ArgType::Int32);
    }

    #[test]
    fn strings_from_data_loc_char_arrays_and_user_pointers() {
        let exec = parse_format(EXEC).unwrap();
        assert_eq!(exec[4].name, "filename");
        assert!(exec[4].is_data_loc());
        for t in [ArgType::Auto, ArgType::DataLoc, ArgType::String] {
            let r = reader(&exec[4], t).unwrap();
            assert_eq!(
                r.source,
                Source::DataLoc {
                    offset: 8,
                    relative: false
                }
            );
            assert!(r.kernel_string);
            assert_eq!(r.arg_type, ArgType::String);
        }
        let rename = parse_format(RENAME).unwrap();
        let newcomm = rename.iter().find(|f| f.name == "newcomm").unwrap();
        let r = reader(newcomm, ArgType::Auto).unwrap();
        assert_eq!(r.source, Source::Inline { offset: 28 });
        assert!(r.kernel_string);
        let openat = parse_format(OPENAT).unwrap();
        let filename = &openat[6];
        assert_eq!(filename.name, "filename");
        let r = reader(filename, ArgType::String).unwrap();
        assert_eq!(
            r.source,
            Source::Value {
                offset: 24,
                size: 8
            }
        );
        assert!(!r.kernel_string, "a syscall's char * is user memory");
        let err = reader(filename, ArgType::Auto).unwrap_err();
        assert!(err.contains("type: string"), "{err}");
    }

    #[test]
    fn explicit_types_are_checked_against_the_field() {
        let exec = parse_format(EXEC).unwrap();
        assert_eq!(exec[5].name, "pid");
        assert_eq!(
            reader(&exec[5], ArgType::Int32).unwrap().source,
            Source::Value {
                offset: 12,
                size: 4
            }
        );
        assert!(reader(&exec[5], ArgType::String).is_err());
        assert!(reader(&exec[4], ArgType::Int64).is_err());
        let raw = parse_format(RAW_SYS_ENTER).unwrap();
        assert_eq!(
            reader(&raw[4], ArgType::Syscall64).unwrap().arg_type,
            ArgType::Syscall64
        );
        assert!(reader(&raw[4], ArgType::Sockaddr).is_err());
        // `args[6]` as uint64: its first element (raw_syscalls.yaml's index 5).
        assert_eq!(
            reader(&raw[5], ArgType::Uint64).unwrap().source,
            Source::Value {
                offset: 16,
                size: 48
            }
        );
    }

    #[test]
    fn broken_formats_name_the_line() {
        let err =
            parse_format("name: x\nformat:\n\tfield:int a;\toffset:zz;\tsize:4;\tsigned:1;\n")
                .unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("offset"), "{err}");
        assert!(parse_format("name: x\n").is_err());
    }
}
