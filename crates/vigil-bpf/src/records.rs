//! Decoding of the raw ring-buffer messages into typed records. Pure: unit-tested without a
//! kernel.

use std::mem::size_of;

use crate::abi::{
    VIGIL_MSG_CLONE, VIGIL_MSG_DATA, VIGIL_MSG_EXEC, VIGIL_MSG_EXIT, VIGIL_MSG_SYSCALL,
    VIGIL_SYSMSG_PATH, vigil_clone_msg, vigil_data_msg, vigil_exec_msg, vigil_exit_msg,
    vigil_msg_header, vigil_syscall_msg,
};

/// One message from the kernel.
#[derive(Debug, Clone)]
pub enum Record {
    Exec(Box<ExecRecord>),
    Clone(vigil_clone_msg),
    Exit(vigil_exit_msg),
    Syscall(Box<SyscallRecord>),
    /// A chunk of a maxData buffer, ahead of the event that refers to it.
    Data(DataRecord),
}

/// A chunk of a maxData `char_buf`: bytes at `off` of buffer `id` of thread `tid`.
#[derive(Debug, Clone)]
pub struct DataRecord {
    pub tid: u32,
    pub id: u64,
    pub off: u32,
    pub bytes: Vec<u8>,
}

/// A syscall hook matched: the fixed part and the string arguments (by argument slot;
/// empty for non-string arguments).
#[derive(Debug, Clone)]
pub struct SyscallRecord {
    pub msg: vigil_syscall_msg,
    pub strings: Vec<Vec<u8>>,
    /// The kernel-resolved path (open-like calls, at exit), if the message carries one.
    pub path: Option<Vec<u8>>,
    /// Post userStackTrace: user return addresses, innermost first.
    pub user_stack: Vec<u64>,
    /// Post kernelStackTrace: kernel return addresses, innermost first.
    pub kernel_stack: Vec<u64>,
}

/// An exec message with its variable sections split out.
#[derive(Debug, Clone)]
pub struct ExecRecord {
    pub msg: vigil_exec_msg,
    /// Encoded path of the executed file: `[u8 len][bytes]` components, leaf first.
    pub path: Vec<u8>,
    /// Encoded current working directory, same encoding.
    pub cwd: Vec<u8>,
    /// Name of the task's cgroup (the leaf, which carries a container id if any).
    pub cgroup: Vec<u8>,
    /// argv as in the process's memory: NUL-terminated strings, possibly truncated.
    pub args: Vec<u8>,
    /// Environment block, same layout as `args` (empty unless enabled).
    pub env: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("message kind {kind} needs {need} bytes, got {got}")]
    Truncated { kind: u8, need: usize, got: usize },
}

fn read<T: Copy>(data: &[u8], kind: u8) -> Result<T, DecodeError> {
    if data.len() < size_of::<T>() {
        return Err(DecodeError::Truncated {
            kind,
            need: size_of::<T>(),
            got: data.len(),
        });
    }
    // SAFETY: the length is checked above and T is a plain-old-data ABI struct.
    Ok(unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<T>()) })
}

/// Decodes one ring-buffer message.
pub fn decode(data: &[u8]) -> Result<Record, DecodeError> {
    if data.len() < size_of::<vigil_msg_header>() {
        return Err(DecodeError::Short(data.len()));
    }
    let kind = data[0];
    match u32::from(kind) {
        VIGIL_MSG_EXEC => decode_exec(data).map(|r| Record::Exec(Box::new(r))),
        VIGIL_MSG_CLONE => read::<vigil_clone_msg>(data, kind).map(Record::Clone),
        VIGIL_MSG_EXIT => read::<vigil_exit_msg>(data, kind).map(Record::Exit),
        VIGIL_MSG_SYSCALL => decode_syscall(data).map(|r| Record::Syscall(Box::new(r))),
        VIGIL_MSG_DATA => decode_data(data).map(Record::Data),
        _ => Err(DecodeError::UnknownKind(kind)),
    }
}

fn decode_data(data: &[u8]) -> Result<DataRecord, DecodeError> {
    let kind = VIGIL_MSG_DATA as u8;
    let msg: vigil_data_msg = read(data, kind)?;
    let start = size_of::<vigil_data_msg>();
    let end = start + msg.len as usize;
    if data.len() < end {
        return Err(DecodeError::Truncated {
            kind,
            need: end,
            got: data.len(),
        });
    }
    Ok(DataRecord {
        tid: msg.tid,
        id: msg.id,
        off: msg.off,
        bytes: data[start..end].to_vec(),
    })
}

fn decode_exec(data: &[u8]) -> Result<ExecRecord, DecodeError> {
    let kind = VIGIL_MSG_EXEC as u8;
    let msg: vigil_exec_msg = read(data, kind)?;
    let lens = [
        usize::from(msg.path_len),
        usize::from(msg.cwd_len),
        usize::from(msg.cgroup_len),
        msg.args_len as usize,
        msg.env_len as usize,
    ];
    let need = size_of::<vigil_exec_msg>() + lens.iter().sum::<usize>();
    if data.len() < need {
        return Err(DecodeError::Truncated {
            kind,
            need,
            got: data.len(),
        });
    }
    let mut off = size_of::<vigil_exec_msg>();
    let mut take = |len: usize| {
        let s = data[off..off + len].to_vec();
        off += len;
        s
    };
    Ok(ExecRecord {
        msg,
        path: take(lens[0]),
        cwd: take(lens[1]),
        cgroup: take(lens[2]),
        args: take(lens[3]),
        env: take(lens[4]),
    })
}

fn decode_syscall(data: &[u8]) -> Result<SyscallRecord, DecodeError> {
    let kind = VIGIL_MSG_SYSCALL as u8;
    let msg: vigil_syscall_msg = read(data, kind)?;
    let lens: Vec<usize> = msg.str_len.iter().map(|l| usize::from(*l)).collect();
    let has_path = u32::from(msg.flags) & VIGIL_SYSMSG_PATH != 0;
    let path_len = if has_path {
        usize::from(msg.path_len)
    } else {
        0
    };
    let stack_len = msg.ustack_len as usize / 8 * 8;
    let kstack_len = msg.kstack_len as usize / 8 * 8;
    let need = size_of::<vigil_syscall_msg>()
        + lens.iter().sum::<usize>()
        + path_len
        + stack_len
        + kstack_len;
    if data.len() < need {
        return Err(DecodeError::Truncated {
            kind,
            need,
            got: data.len(),
        });
    }
    let mut off = size_of::<vigil_syscall_msg>();
    let strings = lens
        .iter()
        .map(|&len| {
            let s = data[off..off + len].to_vec();
            off += len;
            s
        })
        .collect();
    let path = has_path.then(|| data[off..off + path_len].to_vec());
    off += path_len;
    let words = |b: &[u8]| -> Vec<u64> {
        b.chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .collect()
    };
    let user_stack = words(&data[off..off + stack_len]);
    off += stack_len;
    let kernel_stack = words(&data[off..off + kstack_len]);
    Ok(SyscallRecord {
        msg,
        strings,
        path,
        user_stack,
        kernel_stack,
    })
}

/// Turns an encoded path (components leaf first) into an absolute path.
pub fn decode_path(encoded: &[u8]) -> Vec<u8> {
    let mut components = Vec::new();
    let mut rest = encoded;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        components.push(&tail[..len]);
        rest = &tail[len..];
    }
    let mut path = Vec::with_capacity(encoded.len() + 1);
    for component in components.iter().rev() {
        path.push(b'/');
        path.extend_from_slice(component);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(components_leaf_first: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in components_leaf_first {
            out.push(c.len() as u8);
            out.extend_from_slice(c);
        }
        out
    }

    #[test]
    fn path_is_rebuilt_root_first() {
        assert_eq!(
            decode_path(&encode(&[b"echo", b"bin", b"usr"])),
            b"/usr/bin/echo"
        );
        assert_eq!(decode_path(&[]), b"/");
        assert_eq!(decode_path(&encode(&[b"memfd:x"])), b"/memfd:x");
    }

    #[test]
    fn path_with_a_cut_component_does_not_panic() {
        assert_eq!(decode_path(&[10, b'a', b'b']), b"/ab");
    }

    #[test]
    fn short_and_unknown_messages_are_errors() {
        assert_eq!(decode(&[1, 2]).unwrap_err(), DecodeError::Short(2));
        let mut unknown = vec![0u8; 16];
        unknown[0] = 99;
        assert_eq!(decode(&unknown).unwrap_err(), DecodeError::UnknownKind(99));
        let mut exit = vec![0u8; 16];
        exit[0] = VIGIL_MSG_EXIT as u8;
        assert!(matches!(decode(&exit), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn exec_sections_are_split_in_order() {
        let mut msg = vigil_exec_msg::default();
        msg.hdr.kind = VIGIL_MSG_EXEC as u8;
        msg.path_len = 2;
        msg.cwd_len = 1;
        msg.cgroup_len = 3;
        msg.args_len = 4;
        msg.env_len = 0;
        // SAFETY: plain-old-data struct viewed as bytes.
        let head = unsafe {
            std::slice::from_raw_parts(
                (&msg as *const vigil_exec_msg).cast::<u8>(),
                size_of::<vigil_exec_msg>(),
            )
        };
        let mut data = head.to_vec();
        data.extend_from_slice(b"PPCGGGAAAA");
        let Record::Exec(rec) = decode(&data).unwrap() else {
            panic!("not an exec")
        };
        assert_eq!(rec.path, b"PP");
        assert_eq!(rec.cwd, b"C");
        assert_eq!(rec.cgroup, b"GGG");
        assert_eq!(rec.args, b"AAAA");
        assert!(rec.env.is_empty());
        data.pop();
        assert!(matches!(decode(&data), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn syscall_strings_then_the_resolved_path() {
        let mut msg = vigil_syscall_msg::default();
        msg.hdr.kind = VIGIL_MSG_SYSCALL as u8;
        msg.str_len = [0, 8, 0, 0, 0];
        msg.flags = VIGIL_SYSMSG_PATH as u16;
        msg.path_len = 13;
        // SAFETY: plain-old-data struct viewed as bytes.
        let head = unsafe {
            std::slice::from_raw_parts(
                (&msg as *const vigil_syscall_msg).cast::<u8>(),
                size_of::<vigil_syscall_msg>(),
            )
        };
        let mut data = head.to_vec();
        data.extend_from_slice(b"hostname/etc/hostname");
        let Record::Syscall(rec) = decode(&data).unwrap() else {
            panic!("not a syscall record")
        };
        assert_eq!(rec.strings[1], b"hostname");
        assert!(rec.strings[0].is_empty());
        assert_eq!(rec.path.as_deref(), Some(&b"/etc/hostname"[..]));
        data.pop();
        assert!(matches!(decode(&data), Err(DecodeError::Truncated { .. })));
        // Without the flag, path_len is not a section.
        let mut plain = data.clone();
        plain[..size_of::<vigil_syscall_msg>()].copy_from_slice(head);
        let flags_at = std::mem::offset_of!(vigil_syscall_msg, flags);
        plain[flags_at] = 0;
        let Record::Syscall(rec) = decode(&plain).unwrap() else {
            panic!("not a syscall record")
        };
        assert_eq!(rec.path, None);
    }
}
