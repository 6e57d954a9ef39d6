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

    fn shape(&self, mut id: u32) -> ParamShape {
        for _ in 0..32 {
            let Some(t) = self.types.get(id as usize) else {
                return ParamShape::Other("unknown");
            };
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                KIND_PTR => {
                    let target = self
                        .types
                        .get(t.size_or_type as usize)
                        .map_or("void", |p| self.name(p.name_off));
                    return ParamShape::Pointer(target.to_string());
                }
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
