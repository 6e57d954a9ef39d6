//! Decoding of the raw ring-buffer messages into typed records. Pure: unit-tested without a
//! kernel. Total: the lengths in a record describe a workload's strings (and a record may be
//! cut), so none of them is trusted to index; a bad record is a [`DecodeError`].

use std::mem::size_of;

use crate::abi::{
    VIGIL_MSG_CLONE, VIGIL_MSG_DATA, VIGIL_MSG_EXEC, VIGIL_MSG_EXIT, VIGIL_MSG_IMA,
    VIGIL_MSG_SYSCALL, VIGIL_MSG_THROTTLE, VIGIL_SYSMSG_PATH, vigil_clone_msg, vigil_data_msg,
    vigil_exec_msg, vigil_exit_msg, vigil_ima_msg, vigil_msg_header, vigil_syscall_msg,
    vigil_throttle_msg,
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
    /// `--cgroup-rate`: a cgroup went over the rate on one CPU.
    Throttle(ThrottleRecord),
    /// Post imaHash: the digest of an LSM event posted just before.
    Ima(ImaRecord),
}

/// A cgroup the kernel started throttling.
#[derive(Debug, Clone)]
pub struct ThrottleRecord {
    pub ktime: u64,
    pub cgroup_id: u64,
    /// The cgroup's name (exec messages' cgroup section).
    pub cgroup: Vec<u8>,
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
    /// Post imaHash: what the kernel's IMA gave for the hook's file, joined by the pipeline
    /// from the [`ImaRecord`] that follows an event flagged `VIGIL_SYSMSG_IMA`.
    pub ima: Option<ImaDigest>,
}

/// The digest for the LSM event of thread `tid` on `hook_id` posted at `event_ktime`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaRecord {
    pub event_ktime: u64,
    pub tid: u32,
    pub hook_id: u32,
    pub digest: ImaDigest,
}

/// A file digest computed by the kernel's IMA (`bpf_ima_file_hash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImaDigest {
    /// `algo` as IMA names it (`sha256`) and the digest.
    Digest { algo: &'static str, digest: Vec<u8> },
    /// IMA could not hash the file (-errno), or used an algorithm this agent cannot name.
    Failed { error: i32 },
}

impl ImaDigest {
    /// From the kernel's `enum hash_algo` value (or -errno) and its 64-byte buffer.
    fn from_kernel(algo: i32, buf: &[u8]) -> Self {
        // include/uapi/linux/hash_info.h: value, name, digest bytes.
        let known = match algo {
            0 => Some(("md4", 16)),
            1 => Some(("md5", 16)),
            2 => Some(("sha1", 20)),
            3 => Some(("rmd160", 20)),
            4 => Some(("sha256", 32)),
            5 => Some(("sha384", 48)),
            6 => Some(("sha512", 64)),
            7 => Some(("sha224", 28)),
            17 => Some(("sm3", 32)),
            _ => None,
        };
        match known {
            Some((algo, len)) if len <= buf.len() => Self::Digest {
                algo,
                digest: buf[..len].to_vec(),
            },
            _ => Self::Failed { error: algo },
        }
    }

    /// Tetragon's `ima_hash` text: `sha256:<hex>`; empty when there is no digest.
    pub fn tetragon_text(&self) -> String {
        match self {
            Self::Digest { algo, digest } => {
                let mut out = String::with_capacity(algo.len() + 1 + 2 * digest.len());
                out.push_str(algo);
                out.push(':');
                vigil_hex::push(&mut out, digest);
                out
            }
            Self::Failed { .. } => String::new(),
        }
    }
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
    let kind = data.first().copied().unwrap_or_default();
    match u32::from(kind) {
        VIGIL_MSG_EXEC => decode_exec(data).map(|r| Record::Exec(Box::new(r))),
        VIGIL_MSG_CLONE => read::<vigil_clone_msg>(data, kind).map(Record::Clone),
        VIGIL_MSG_EXIT => read::<vigil_exit_msg>(data, kind).map(Record::Exit),
        VIGIL_MSG_SYSCALL => decode_syscall(data).map(|r| Record::Syscall(Box::new(r))),
        VIGIL_MSG_DATA => decode_data(data).map(Record::Data),
        VIGIL_MSG_THROTTLE => decode_throttle(data).map(Record::Throttle),
        VIGIL_MSG_IMA => decode_ima(data).map(Record::Ima),
        _ => Err(DecodeError::UnknownKind(kind)),
    }
}

/// The sections that follow a fixed header, each `lens[i]` bytes, in order. The lengths come
/// from the record, so they are summed with checked arithmetic and never trusted to index.
fn sections<const N: usize>(
    data: &[u8],
    kind: u8,
    header: usize,
    lens: [usize; N],
) -> Result<[&[u8]; N], DecodeError> {
    let need = lens
        .iter()
        .try_fold(header, |sum, &len| sum.checked_add(len))
        .unwrap_or(usize::MAX);
    let truncated = || DecodeError::Truncated {
        kind,
        need,
        got: data.len(),
    };
    let mut rest = data.get(header..).ok_or_else(truncated)?;
    let mut out: [&[u8]; N] = [&[]; N];
    for (section, len) in out.iter_mut().zip(lens) {
        let (head, tail) = rest.split_at_checked(len).ok_or_else(truncated)?;
        *section = head;
        rest = tail;
    }
    Ok(out)
}

fn len_of(len: u32) -> usize {
    usize::try_from(len).unwrap_or(usize::MAX)
}

fn decode_data(data: &[u8]) -> Result<DataRecord, DecodeError> {
    let kind = VIGIL_MSG_DATA as u8;
    let msg: vigil_data_msg = read(data, kind)?;
    let [bytes] = sections(data, kind, size_of::<vigil_data_msg>(), [len_of(msg.len)])?;
    Ok(DataRecord {
        tid: msg.tid,
        id: msg.id,
        off: msg.off,
        bytes: bytes.to_vec(),
    })
}

fn decode_throttle(data: &[u8]) -> Result<ThrottleRecord, DecodeError> {
    let msg: vigil_throttle_msg = read(data, VIGIL_MSG_THROTTLE as u8)?;
    let name = msg.cgroup.map(|c| c as u8);
    let len = len_of(msg.cgroup_len).min(name.len());
    Ok(ThrottleRecord {
        ktime: msg.hdr.ktime,
        cgroup_id: msg.cgroup_id,
        cgroup: name[..len].to_vec(),
    })
}

fn decode_exec(data: &[u8]) -> Result<ExecRecord, DecodeError> {
    let kind = VIGIL_MSG_EXEC as u8;
    let msg: vigil_exec_msg = read(data, kind)?;
    let lens = [
        usize::from(msg.path_len),
        usize::from(msg.cwd_len),
        usize::from(msg.cgroup_len),
        len_of(msg.args_len),
        len_of(msg.env_len),
    ];
    let [path, cwd, cgroup, args, env] = sections(data, kind, size_of::<vigil_exec_msg>(), lens)?;
    Ok(ExecRecord {
        msg,
        path: path.to_vec(),
        cwd: cwd.to_vec(),
        cgroup: cgroup.to_vec(),
        args: args.to_vec(),
        env: env.to_vec(),
    })
}

fn decode_syscall(data: &[u8]) -> Result<SyscallRecord, DecodeError> {
    let kind = VIGIL_MSG_SYSCALL as u8;
    let msg: vigil_syscall_msg = read(data, kind)?;
    let has_path = u32::from(msg.flags) & VIGIL_SYSMSG_PATH != 0;
    let path_len = if has_path {
        usize::from(msg.path_len)
    } else {
        0
    };
    let [s0, s1, s2, s3, s4] = msg.str_len.map(usize::from);
    let whole_words = |len: u32| len_of(len) / 8 * 8;
    let lens = [
        s0,
        s1,
        s2,
        s3,
        s4,
        path_len,
        whole_words(msg.ustack_len),
        whole_words(msg.kstack_len),
    ];
    let [a0, a1, a2, a3, a4, path, ustack, kstack] =
        sections(data, kind, size_of::<vigil_syscall_msg>(), lens)?;
    let words = |b: &[u8]| -> Vec<u64> {
        b.chunks_exact(8)
            .filter_map(|w| w.try_into().ok().map(u64::from_le_bytes))
            .collect()
    };
    Ok(SyscallRecord {
        msg,
        strings: [a0, a1, a2, a3, a4].map(<[u8]>::to_vec).to_vec(),
        path: has_path.then(|| path.to_vec()),
        user_stack: words(ustack),
        kernel_stack: words(kstack),
        ima: None,
    })
}

fn decode_ima(data: &[u8]) -> Result<ImaRecord, DecodeError> {
    let msg: vigil_ima_msg = read(data, VIGIL_MSG_IMA as u8)?;
    Ok(ImaRecord {
        event_ktime: msg.event_ktime,
        tid: msg.tid,
        hook_id: msg.hook_id,
        digest: ImaDigest::from_kernel(msg.d.algo, &msg.d.digest),
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

    /// Every message kind, with every length field at its most hostile, and every cut of
    /// it: errors, never a panic.
    #[test]
    fn hostile_lengths_and_cuts_are_errors() {
        fn bytes_of<T>(v: &T) -> Vec<u8> {
            // SAFETY: plain-old-data ABI structs viewed as bytes.
            unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
                .to_vec()
        }
        let mut exec = vigil_exec_msg::default();
        exec.hdr.kind = VIGIL_MSG_EXEC as u8;
        (exec.path_len, exec.cwd_len, exec.cgroup_len) = (u16::MAX, u16::MAX, u16::MAX);
        (exec.args_len, exec.env_len) = (u32::MAX, u32::MAX);
        let mut sys = vigil_syscall_msg::default();
        sys.hdr.kind = VIGIL_MSG_SYSCALL as u8;
        sys.str_len = [u16::MAX; 5];
        sys.flags = VIGIL_SYSMSG_PATH as u16;
        sys.path_len = u16::MAX;
        (sys.ustack_len, sys.kstack_len) = (u32::MAX, u32::MAX);
        let mut data = vigil_data_msg::default();
        data.hdr.kind = VIGIL_MSG_DATA as u8;
        data.len = u32::MAX;
        for mut msg in [bytes_of(&exec), bytes_of(&sys), bytes_of(&data)] {
            msg.extend_from_slice(&[0xaa; 64]);
            for cut in 0..=msg.len() {
                assert!(decode(&msg[..cut]).is_err(), "cut at {cut}");
            }
        }
        // imaHash: the digest record, named by the kernel's algorithm number.
        let mut ima = vigil_ima_msg::default();
        ima.hdr.kind = VIGIL_MSG_IMA as u8;
        (ima.tid, ima.hook_id, ima.event_ktime) = (7, 3, 99);
        ima.d.algo = 4;
        for (i, b) in ima.d.digest.iter_mut().enumerate() {
            *b = 0xa0 + i as u8;
        }
        let msg = bytes_of(&ima);
        let rec = match decode(&msg).unwrap() {
            Record::Ima(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!((rec.tid, rec.hook_id, rec.event_ktime), (7, 3, 99));
        let text = rec.digest.tetragon_text();
        assert_eq!(text.len(), "sha256:".len() + 64);
        assert!(text.starts_with("sha256:a0a1a2"), "{text}");
        assert!(text.ends_with("bdbebf"), "{text}");
        assert!(decode(&msg[..msg.len() - 1]).is_err(), "a cut digest");
        ima.d.algo = -95;
        let rec = match decode(&bytes_of(&ima)).unwrap() {
            Record::Ima(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(rec.digest, ImaDigest::Failed { error: -95 });
        assert_eq!(rec.digest.tetragon_text(), "");
        // A stack length that is not a whole number of words keeps only whole words.
        let mut sys = vigil_syscall_msg::default();
        sys.hdr.kind = VIGIL_MSG_SYSCALL as u8;
        sys.ustack_len = 13;
        let mut msg = bytes_of(&sys);
        msg.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9]);
        let Record::Syscall(rec) = decode(&msg).unwrap() else {
            panic!("not a syscall record")
        };
        assert_eq!(rec.user_stack, vec![1]);
    }

    /// A throttle message's name length is not trusted: at most the name field is read.
    #[test]
    fn throttle_name_is_bounded_by_its_field() {
        let mut msg = vigil_throttle_msg::default();
        msg.hdr.kind = VIGIL_MSG_THROTTLE as u8;
        msg.cgroup_id = 77;
        msg.cgroup[..4].copy_from_slice(&[b'a' as _, b'b' as _, b'c' as _, b'd' as _]);
        msg.cgroup_len = 3;
        // SAFETY: plain-old-data ABI struct viewed as bytes.
        let mut bytes = unsafe {
            std::slice::from_raw_parts(
                (&msg as *const vigil_throttle_msg).cast::<u8>(),
                size_of::<vigil_throttle_msg>(),
            )
        }
        .to_vec();
        let Record::Throttle(rec) = decode(&bytes).unwrap() else {
            panic!("not a throttle record")
        };
        assert_eq!((rec.cgroup_id, rec.cgroup.as_slice()), (77, &b"abc"[..]));
        bytes[size_of::<vigil_msg_header>() + 8..][..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        let Record::Throttle(rec) = decode(&bytes).unwrap() else {
            panic!("not a throttle record")
        };
        assert_eq!(rec.cgroup.len(), msg.cgroup.len());
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
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
