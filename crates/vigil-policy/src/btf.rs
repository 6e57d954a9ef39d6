//! A small reader for the BPF Type Format: enough to list kernel functions and describe
//! their parameters (name and whether each is a pointer, an integer, ...).

use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a BTF blob: {0}")]
    Format(&'static str),
}

/// How a parameter looks once typedefs and qualifiers are peeled off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamShape {
    Pointer(String),
    Integer { bytes: u32 },
    Enum,
    Struct(String),
    Other(&'static str),
}

impl ParamShape {
    pub fn is_pointer(&self) -> bool {
        matches!(self, ParamShape::Pointer(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub shape: ParamShape,
}

struct TypeEntry {
    kind: u32,
    name_off: u32,
    size_or_type: u32,
    vlen: u32,
    /// Byte offset of the kind-specific data that follows the common header.
    extra: usize,
}

/// A parsed BTF blob (vmlinux or a module's).
pub struct Btf {
    data: Vec<u8>,
    strings: usize,
    strings_len: usize,
    types: Vec<TypeEntry>,
    functions: HashMap<String, u32>,
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Btf({} types, {} functions)",
            self.types.len(),
            self.functions.len()
        )
    }
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

impl Btf {
    pub fn from_file(path: &str) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.to_string(),
            source,
        })?;
        Self::parse(data)
    }

    pub fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        let u32_at = |d: &[u8], off: usize| -> Result<u32, BtfError> {
            d.get(off..off + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(BtfError::Format("truncated"))
        };
        if data.get(0..2) != Some(&[0x9f, 0xeb]) {
            return Err(BtfError::Format(
                "bad magic (only little-endian BTF is read)",
            ));
        }
        let hdr_len = u32_at(&data, 4)? as usize;
        let type_off = u32_at(&data, 8)? as usize;
        let type_len = u32_at(&data, 12)? as usize;
        let str_off = u32_at(&data, 16)? as usize;
        let str_len = u32_at(&data, 20)? as usize;
        let types_start = hdr_len + type_off;
        let types_end = types_start + type_len;
        let strings = hdr_len + str_off;
        if types_end > data.len() || strings + str_len > data.len() {
            return Err(BtfError::Format("sections past the end"));
        }
        let mut types = vec![TypeEntry {
            kind: 0,
            name_off: 0,
            size_or_type: 0,
            vlen: 0,
            extra: 0,
        }];
        let mut off = types_start;
        while off < types_end {
            let name_off = u32_at(&data, off)?;
            let info = u32_at(&data, off + 4)?;
            let size_or_type = u32_at(&data, off + 8)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = info & 0xffff;
            let extra = off + 12;
            let extra_len = match kind {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => 12 * vlen as usize,
                6 | 13 => 8 * vlen as usize,
                2 | 7..=12 | 16 | 18 => 0,
                _ => return Err(BtfError::Format("unknown type kind")),
            };
            types.push(TypeEntry {
                kind,
                name_off,
                size_or_type,
                vlen,
                extra,
            });
            off = extra + extra_len;
        }
        let mut btf = Btf {
            data,
            strings,
            strings_len: str_len,
            types,
            functions: HashMap::new(),
        };
        let functions = (1..btf.types.len())
            .filter(|&id| btf.types[id].kind == KIND_FUNC)
            .map(|id| (btf.name(btf.types[id].name_off).to_string(), id as u32))
            .collect();
        btf.functions = functions;
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let start = self.strings + off as usize;
        let end_limit = self.strings + self.strings_len;
        if start >= end_limit {
            return "";
        }
        let end = self.data[start..end_limit]
            .iter()
            .position(|&b| b == 0)
            .map_or(end_limit, |p| start + p);
        std::str::from_utf8(&self.data[start..end]).unwrap_or("")
    }

    pub fn has_function(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    pub fn function_count(&self) -> usize {
        self.functions.len()
    }

    /// The parameters of function `name`, if BTF knows it.
    pub fn function_params(&self, name: &str) -> Option<Vec<Param>> {
        let func = self.types.get(*self.functions.get(name)? as usize)?;
        let proto = self.types.get(func.size_or_type as usize)?;
        if proto.kind != KIND_FUNC_PROTO {
            return None;
        }
        let mut params = Vec::new();
        for i in 0..proto.vlen as usize {
            let at = proto.extra + i * 8;
            let name_off = u32::from_le_bytes(self.data.get(at..at + 4)?.try_into().ok()?);
            let type_id = u32::from_le_bytes(self.data.get(at + 4..at + 8)?.try_into().ok()?);
            if type_id == 0 && i + 1 == proto.vlen as usize {
                break; // variadic marker
            }
            params.push(Param {
                name: self.name(name_off).to_string(),
                shape: self.shape(type_id),
            });
        }
        Some(params)
    }

    /// The name of what a pointer points to, through const/volatile/typedef-free modifiers
    /// (`const char *` -> `char`, `struct file *` -> `file`); `void` for `void *`.
    fn pointee_name(&self, mut id: u32) -> String {
        for _ in 0..32 {
            let Some(p) = self.types.get(id as usize) else {
                return "void".into();
            };
            match p.kind {
                KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => id = p.size_or_type,
                _ => return self.name(p.name_off).to_string(),
            }
        }
        "void".into()
    }

    fn shape(&self, mut id: u32) -> ParamShape {
        for _ in 0..32 {
            let Some(t) = self.types.get(id as usize) else {
                return ParamShape::Other("unknown");
            };
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                KIND_PTR => return ParamShape::Pointer(self.pointee_name(t.size_or_type)),
                KIND_INT => {
                    return ParamShape::Integer {
                        bytes: t.size_or_type,
                    };
                }
                KIND_ENUM | KIND_ENUM64 => return ParamShape::Enum,
                KIND_STRUCT | KIND_UNION => {
                    return ParamShape::Struct(self.name(t.name_off).to_string());
                }
                _ => return ParamShape::Other("other"),
            }
        }
        ParamShape::Other("type chain too long")
    }
}

/// What a resolved member path ends on, and so how the kernel reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// An integer (or enum) of `bytes` bytes.
    Int { bytes: u32, signed: bool },
    /// A `char *`: the string it points to.
    CharPtr,
    /// A `char[N]` inside the object: the string stored there.
    CharArray,
    /// Any other pointer: its value.
    Pointer,
}

/// A member path (`fs.pwd.dentry.d_name.name`) as the kernel follows it: for step i, load a
/// pointer from the current address first when bit i of `deref` is set, then add `offsets[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPath {
    pub offsets: Vec<u32>,
    pub deref: u32,
    pub leaf: Leaf,
}

const KIND_ARRAY: u32 = 3;

impl Btf {
    fn strip(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    fn u32_at(&self, off: usize) -> Option<u32> {
        Some(u32::from_le_bytes(
            self.data.get(off..off + 4)?.try_into().ok()?,
        ))
    }

    fn size_of(&self, id: u32) -> Option<u32> {
        let id = self.strip(id);
        let t = self.types.get(id as usize)?;
        match t.kind {
            KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 => Some(t.size_or_type),
            KIND_PTR => Some(8),
            KIND_ARRAY => {
                let elem = self.u32_at(t.extra)?;
                let n = self.u32_at(t.extra + 8)?;
                Some(self.size_of(elem)? * n)
            }
            _ => None,
        }
    }

    /// Member `name` of struct/union `id`, looking into anonymous members: (byte offset,
    /// type id).
    fn member(&self, id: u32, name: &str) -> Result<Option<(u32, u32)>, String> {
        let t = &self.types[id as usize];
        let bitfields = (self.u32_at(t.extra.saturating_sub(8)).unwrap_or(0) >> 31) == 1;
        for i in 0..t.vlen as usize {
            let at = t.extra + i * 12;
            let (Some(name_off), Some(ty), Some(off)) =
                (self.u32_at(at), self.u32_at(at + 4), self.u32_at(at + 8))
            else {
                return Err("truncated member".into());
            };
            let (bit_off, bit_size) = if bitfields {
                (off & 0xff_ffff, off >> 24)
            } else {
                (off, 0)
            };
            let mname = self.name(name_off);
            if mname == name {
                if bit_size != 0 || bit_off % 8 != 0 {
                    return Err(format!("member `{name}` is a bit field"));
                }
                return Ok(Some((bit_off / 8, ty)));
            }
            if mname.is_empty() {
                let inner = self.strip(ty);
                if matches!(
                    self.types.get(inner as usize).map(|t| t.kind),
                    Some(KIND_STRUCT | KIND_UNION)
                ) && let Some((o, ty)) = self.member(inner, name)?
                {
                    return Ok(Some((bit_off / 8 + o, ty)));
                }
            }
        }
        Ok(None)
    }

    /// The struct argument `index` of raw tracepoint `event` points to (from the kernel's
    /// `btf_trace_<event>` typedef: a pointer to a prototype whose first parameter is the
    /// tracepoint's private data).
    pub fn raw_tp_arg_struct(&self, event: &str, index: u32) -> Result<String, String> {
        let want = format!("btf_trace_{event}");
        let typedef = (1..self.types.len())
            .find(|&id| {
                let t = &self.types[id];
                t.kind == KIND_TYPEDEF && self.name(t.name_off) == want
            })
            .ok_or_else(|| format!("raw tracepoint {event} is not in the kernel's BTF"))?;
        let ptr = self.strip(self.types[typedef].size_or_type);
        let proto = self.strip(self.types[ptr as usize].size_or_type);
        let t = &self.types[proto as usize];
        if t.kind != KIND_FUNC_PROTO {
            return Err(format!("{want} is not a function pointer"));
        }
        let at = t.extra + (index as usize + 1) * 8;
        if index + 1 >= t.vlen {
            return Err(format!(
                "raw tracepoint {event} has {} arguments",
                t.vlen.saturating_sub(1)
            ));
        }
        let ty = self.u32_at(at + 4).ok_or("truncated prototype")?;
        match self.shape(ty) {
            ParamShape::Pointer(name) if !name.is_empty() => Ok(name),
            _ => Err(format!(
                "argument {index} of raw tracepoint {event} is not a pointer to a struct"
            )),
        }
    }

    /// The struct named `name`.
    pub fn struct_id(&self, name: &str) -> Option<u32> {
        (1..self.types.len() as u32).find(|&id| {
            let t = &self.types[id as usize];
            t.kind == KIND_STRUCT && t.vlen > 0 && self.name(t.name_off) == name
        })
    }

    /// Follows `path` (members, each optionally `name[N]`) from struct `root`.
    pub fn resolve_members(&self, root: &str, path: &[String]) -> Result<MemberPath, String> {
        let mut cur = self
            .struct_id(root)
            .ok_or_else(|| format!("struct {root} is not in the kernel's BTF"))?;
        let mut out = MemberPath {
            offsets: Vec::new(),
            deref: 0,
            leaf: Leaf::Pointer,
        };
        let mut walked = root.to_string();
        for (i, part) in path.iter().enumerate() {
            let (name, index) = match part.split_once('[') {
                Some((n, rest)) => {
                    let idx = rest
                        .strip_suffix(']')
                        .and_then(|x| x.parse::<u32>().ok())
                        .ok_or_else(|| format!("`{part}`: bad array index"))?;
                    (n, Some(idx))
                }
                None => (part.as_str(), None),
            };
            let mut id = self.strip(cur);
            if self.types[id as usize].kind == KIND_PTR {
                out.deref |= 1 << i;
                id = self.strip(self.types[id as usize].size_or_type);
            }
            let t = &self.types[id as usize];
            if !matches!(t.kind, KIND_STRUCT | KIND_UNION) {
                return Err(format!(
                    "`{walked}` is not a struct: it has no member `{name}`"
                ));
            }
            let (mut off, mut ty) = self
                .member(id, name)?
                .ok_or_else(|| format!("`{walked}` has no member `{name}`"))?;
            if let Some(idx) = index {
                let at = self.strip(ty);
                let a = &self.types[at as usize];
                if a.kind != KIND_ARRAY {
                    return Err(format!("`{walked}.{name}` is not an array"));
                }
                let elem = self.u32_at(a.extra).unwrap_or(0);
                let n = self.u32_at(a.extra + 8).unwrap_or(0);
                if idx >= n {
                    return Err(format!(
                        "`{walked}.{name}` has {n} elements, not {}",
                        idx + 1
                    ));
                }
                off += idx * self.size_of(elem).ok_or("element of unknown size")?;
                ty = elem;
            }
            out.offsets.push(off);
            walked = format!("{walked}.{part}");
            cur = ty;
        }
        let id = self.strip(cur);
        let t = &self.types[id as usize];
        let is_char = |id: u32| {
            let c = &self.types[self.strip(id) as usize];
            c.kind == KIND_INT && c.size_or_type == 1
        };
        out.leaf = match t.kind {
            KIND_INT => Leaf::Int {
                bytes: t.size_or_type,
                signed: self.u32_at(t.extra).unwrap_or(0) & (1 << 24) != 0,
            },
            KIND_ENUM | KIND_ENUM64 => Leaf::Int {
                bytes: t.size_or_type,
                signed: false,
            },
            KIND_PTR if is_char(t.size_or_type) => Leaf::CharPtr,
            KIND_PTR => Leaf::Pointer,
            KIND_ARRAY if is_char(self.u32_at(t.extra).unwrap_or(0)) => Leaf::CharArray,
            _ => {
                return Err(format!(
                    "`{walked}` is a struct, union or array: resolve must end on an integer, a \
                     string or a pointer"
                ));
            }
        };
        if !matches!(
            out.leaf,
            Leaf::Int {
                bytes: 1 | 2 | 4 | 8,
                ..
            } | Leaf::CharPtr
                | Leaf::CharArray
                | Leaf::Pointer
        ) {
            return Err(format!("`{walked}`: integer of unusual size"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod member_tests {
    use super::*;

    /// The host kernel's BTF: the offsets are the kernel's, so the test checks the shape of
    /// what is found (leaf kinds, where pointers are followed), not numbers.
    fn vmlinux() -> Btf {
        Btf::from_file("/sys/kernel/btf/vmlinux").expect("this machine's kernel has BTF")
    }

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    #[test]
    fn task_members_resolve_to_offsets_pointer_loads_and_leaves() {
        let btf = vmlinux();
        let pid = btf.resolve_members("task_struct", &path("pid")).unwrap();
        assert_eq!(
            pid.leaf,
            Leaf::Int {
                bytes: 4,
                signed: true
            }
        );
        assert_eq!((pid.offsets.len(), pid.deref), (1, 0));
        let comm = btf.resolve_members("task_struct", &path("comm")).unwrap();
        assert_eq!(comm.leaf, Leaf::CharArray);
        let ppid = btf
            .resolve_members("task_struct", &path("real_parent.pid"))
            .unwrap();
        assert_eq!(
            ppid.deref, 0b10,
            "real_parent is a pointer: loaded before .pid"
        );
        assert_eq!(ppid.offsets[1], pid.offsets[0]);
        let cwd = btf
            .resolve_members("task_struct", &path("fs.pwd.dentry.d_name.name"))
            .unwrap();
        assert_eq!(cwd.leaf, Leaf::CharPtr);
        // fs and dentry are pointers; pwd and d_name are embedded.
        assert_eq!(cwd.deref, 0b01010);
        let uid = btf
            .resolve_members("task_struct", &path("cred.uid.val"))
            .unwrap();
        assert_eq!(
            uid.leaf,
            Leaf::Int {
                bytes: 4,
                signed: false
            }
        );
    }

    #[test]
    fn raw_tracepoint_arguments_name_their_struct() {
        let btf = vmlinux();
        assert_eq!(
            btf.raw_tp_arg_struct("sched_process_exec", 0).unwrap(),
            "task_struct"
        );
        assert_eq!(
            btf.raw_tp_arg_struct("sched_process_exec", 2).unwrap(),
            "linux_binprm"
        );
        let err = btf.raw_tp_arg_struct("sched_process_exec", 1).unwrap_err();
        assert!(err.contains("not a pointer to a struct"), "{err}");
        let err = btf.raw_tp_arg_struct("no_such_event", 0).unwrap_err();
        assert!(err.contains("not in the kernel's BTF"), "{err}");
    }

    #[test]
    fn bad_paths_name_the_problem() {
        let btf = vmlinux();
        let err = btf
            .resolve_members("task_struct", &path("nosuch"))
            .unwrap_err();
        assert!(err.contains("has no member `nosuch`"), "{err}");
        let err = btf
            .resolve_members("task_struct", &path("fs.pwd"))
            .unwrap_err();
        assert!(err.contains("must end on"), "{err}");
        let err = btf
            .resolve_members("task_struct", &path("pid.x"))
            .unwrap_err();
        assert!(err.contains("not a struct"), "{err}");
        let err = btf
            .resolve_members("no_such_struct", &path("a"))
            .unwrap_err();
        assert!(err.contains("not in the kernel's BTF"), "{err}");
    }
}
