//! The vocabularies of the language: argument types, operators, actions, namespaces,
//! capabilities, with every spelling Tetragon accepts (tetragon.md §2.5–2.8).

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $canonical:literal $(| $alias:literal)*,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant,)* }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The spelling written back when serialising.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $canonical,)* }
            }

            /// Accepts the canonical spelling and every alias (exact case).
            pub fn from_spelling(text: &str) -> Option<Self> {
                match text {
                    $($canonical $(| $alias)* => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

vocabulary! {
    /// Argument types (`KProbeArg.type`).
    ArgType {
        Auto => "auto",
        Int8 => "int8" | "sint8",
        Uint8 => "uint8",
        Int16 => "int16" | "sint16",
        Uint16 => "uint16",
        Int32 => "int" | "int32" | "sint32",
        Uint32 => "uint32",
        Int64 => "int64" | "long" | "sint64",
        Uint64 => "uint64" | "ulong",
        SizeT => "size_t",
        String => "string",
        CharBuf => "char_buf",
        CharIovec => "char_iovec",
        ConstBuf => "const_buf",
        Filename => "filename",
        Fd => "fd",
        File => "file",
        Path => "path",
        Dentry => "dentry",
        Kiocb => "kiocb",
        IovIter => "iov_iter",
        LinuxBinprm => "linux_binprm",
        Skb => "skb",
        Sock => "sock",
        Socket => "socket",
        Sockaddr => "sockaddr",
        SockaddrUn => "sockaddr_un",
        NetDevice => "net_device",
        Cred => "cred",
        Capability => "capability",
        KernelCapT => "kernel_cap_t",
        CapInheritable => "cap_inheritable",
        CapPermitted => "cap_permitted",
        CapEffective => "cap_effective",
        UserNamespace => "user_namespace",
        BpfAttr => "bpf_attr",
        BpfProg => "bpf_prog",
        BpfMap => "bpf_map",
        PerfEvent => "perf_event",
        BpfCmd => "bpf_cmd",
        LoadInfo => "load_info",
        Module => "module",
        Syscall64 => "syscall64",
        DataLoc => "data_loc",
        Nop => "nop",
    }
}

/// What a value of an argument type looks like to the selector machinery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeClass {
    Integer,
    Text,
    /// `file`, `path`: text plus FileType.
    FilePath,
    Skb,
    Sock,
    Sockaddr,
    SockaddrUn,
    CapabilitySet,
    /// Syscall id + ABI: integer maps and `list:NAME`.
    SyscallId,
    /// Read and reported but not filterable.
    Opaque,
}

impl ArgType {
    pub fn class(self) -> TypeClass {
        use ArgType::*;
        match self {
            Int8 | Uint8 | Int16 | Uint16 | Int32 | Uint32 | Int64 | Uint64 | SizeT | BpfCmd
            | Capability => TypeClass::Integer,
            String | CharBuf | CharIovec | Filename | Fd | Dentry | Kiocb | LinuxBinprm
            | NetDevice | DataLoc => TypeClass::Text,
            File | Path => TypeClass::FilePath,
            Skb => TypeClass::Skb,
            Sock | Socket => TypeClass::Sock,
            Sockaddr => TypeClass::Sockaddr,
            SockaddrUn => TypeClass::SockaddrUn,
            KernelCapT | CapInheritable | CapPermitted | CapEffective => TypeClass::CapabilitySet,
            Syscall64 => TypeClass::SyscallId,
            Auto | ConstBuf | IovIter | Cred | UserNamespace | BpfAttr | BpfProg | BpfMap
            | PerfEvent | LoadInfo | Module | Nop => TypeClass::Opaque,
        }
    }

    /// Whether the kernel reads this type through a pointer (so the BTF parameter must be one).
    pub fn needs_pointer(self) -> bool {
        !matches!(
            self.class(),
            TypeClass::Integer | TypeClass::SyscallId | TypeClass::CapabilitySet
        ) && !matches!(self, ArgType::Auto | ArgType::Nop | ArgType::Fd)
    }

    /// Integer width in bytes, for integer types.
    pub fn integer_width(self) -> Option<u32> {
        use ArgType::*;
        Some(match self {
            Int8 | Uint8 => 1,
            Int16 | Uint16 => 2,
            Int32 | Uint32 | Capability | BpfCmd => 4,
            Int64 | Uint64 | SizeT => 8,
            _ => return None,
        })
    }
}

vocabulary! {
    /// Selector operators (`pkg/selectors/kernel.go`), with every accepted spelling.
    Operator {
        Equal => "Equal" | "eq",
        NotEqual => "NotEqual" | "neq",
        Prefix => "Prefix" | "prefix",
        NotPrefix => "NotPrefix",
        Postfix => "Postfix" | "postfix",
        NotPostfix => "NotPostfix",
        GreaterThan => "GT" | "gt" | "GreaterThan",
        LessThan => "LT" | "lt" | "LessThan",
        Mask => "Mask" | "mask",
        InRange => "InRange",
        NotInRange => "NotInRange",
        InMap => "InMap",
        NotInMap => "NotInMap",
        SPort => "SPort",
        NotSPort => "NotSPort",
        SPortPriv => "SPortPriv",
        NotSPortPriv => "NotSPortPriv" | "NotSportPriv",
        DPort => "DPort",
        NotDPort => "NotDPort",
        DPortPriv => "DPortPriv",
        NotDPortPriv => "NotDPortPriv" | "NotDportPriv",
        SAddr => "SAddr",
        NotSAddr => "NotSAddr",
        DAddr => "DAddr",
        NotDAddr => "NotDAddr",
        Protocol => "Protocol",
        Family => "Family",
        State => "State",
        CapabilitiesGained => "CapabilitiesGained",
        SubString => "SubString",
        SubStringIgnCase => "SubStringIgnCase",
        CelExpr => "CelExpr",
        FileType => "FileType",
        NotFileType => "NotFileType",
        In => "In",
        NotIn => "NotIn",
        // vigil's extension: the argument is one of the named files (device + inode),
        // whichever link or mount it was reached by.
        SameFile => "SameFile",
    }
}

impl Operator {
    /// Whether this operator may filter an argument of the given class.
    pub fn applies_to(self, class: TypeClass) -> bool {
        use Operator::*;
        let integer = matches!(
            self,
            Equal
                | NotEqual
                | GreaterThan
                | LessThan
                | Mask
                | InRange
                | NotInRange
                | InMap
                | NotInMap
                | CelExpr
        );
        let text = matches!(
            self,
            Equal
                | NotEqual
                | Prefix
                | NotPrefix
                | Postfix
                | NotPostfix
                | SubString
                | SubStringIgnCase
        );
        let ports = matches!(
            self,
            SPort
                | NotSPort
                | SPortPriv
                | NotSPortPriv
                | DPort
                | NotDPort
                | DPortPriv
                | NotDPortPriv
        );
        let addrs = matches!(self, SAddr | NotSAddr | DAddr | NotDAddr);
        match class {
            TypeClass::Integer => integer,
            // SameFile on text: the runtime takes it for file-like kinds (fd, dentry,
            // linux_binprm) and names the problem for strings.
            TypeClass::Text => text || self == SameFile,
            TypeClass::FilePath => text || matches!(self, FileType | NotFileType | SameFile),
            TypeClass::Skb => ports || addrs || self == Protocol,
            TypeClass::Sock => ports || addrs || matches!(self, Protocol | Family | State),
            TypeClass::Sockaddr => {
                matches!(
                    self,
                    SAddr | NotSAddr | SPort | NotSPort | SPortPriv | NotSPortPriv | Family
                )
            }
            TypeClass::SockaddrUn => matches!(self, Equal | NotEqual | Prefix | NotPrefix | Family),
            TypeClass::CapabilitySet => integer || self == CapabilitiesGained,
            TypeClass::SyscallId => matches!(self, Equal | NotEqual | InMap | NotInMap),
            TypeClass::Opaque => false,
        }
    }

    /// Operators that need no values (the range is built in).
    pub fn takes_no_values(self) -> bool {
        use Operator::*;
        matches!(self, SPortPriv | NotSPortPriv | DPortPriv | NotDPortPriv)
    }
}

vocabulary! {
    /// Actions (`ActionSelector.action`); parsed case-insensitively via [`Action::parse`].
    Action {
        Post => "Post",
        NoPost => "NoPost",
        Sigkill => "Sigkill",
        Signal => "Signal",
        Override => "Override",
        GetUrl => "GetUrl",
        DnsLookup => "DnsLookup",
        TrackSock => "TrackSock",
        UntrackSock => "UntrackSock",
        NotifyEnforcer => "NotifyEnforcer",
        CleanupEnforcerNotification => "CleanupEnforcerNotification",
        Set => "Set",
    }
}

impl Action {
    /// Tetragon compares action names case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|a| a.name().eq_ignore_ascii_case(text))
    }

    /// Actions that change what the traced process experiences (counted as enforcement;
    /// elided in monitor mode).
    pub fn is_enforcement(self) -> bool {
        matches!(
            self,
            Action::Sigkill
                | Action::Signal
                | Action::Override
                | Action::NotifyEnforcer
                | Action::Set
        )
    }
}

vocabulary! {
    /// Namespaces of matchNamespaces / matchNamespaceChanges.
    NamespaceKind {
        Uts => "Uts",
        Ipc => "Ipc",
        Mnt => "Mnt",
        Pid => "Pid",
        PidForChildren => "PidForChildren",
        Net => "Net",
        Time => "Time",
        TimeForChildren => "TimeForChildren",
        Cgroup => "Cgroup",
        User => "User",
    }
}

vocabulary! {
    /// Capability sets of matchCapabilities.
    CapabilitySet {
        Effective => "Effective",
        Inheritable => "Inheritable",
        Permitted => "Permitted",
    }
}

vocabulary! {
    /// `lists[].type`.
    ListType {
        Syscalls => "syscalls",
        GeneratedSyscalls => "generated_syscalls",
        GeneratedFtrace => "generated_ftrace",
    }
}

/// Linux capabilities by name, in bit order (`CAP_CHOWN` = 0).
pub const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// FileType values and their aliases.
pub const FILE_TYPES: &[&str] = &[
    "sock", "socket", "lnk", "link", "reg", "regular", "blk", "block", "dir", "chr", "char",
    "fifo", "pipe",
];

/// LSM hooks on which `imaHash` is available.
pub const IMA_HASH_HOOKS: &[&str] = &[
    "bprm_check_security",
    "bprm_committed_creds",
    "bprm_committing_creds",
    "bprm_creds_from_file",
    "file_ioctl",
    "file_lock",
    "file_open",
    "file_post_open",
    "file_receive",
    "mmap_file",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve() {
        assert_eq!(ArgType::from_spelling("sint32"), Some(ArgType::Int32));
        assert_eq!(ArgType::from_spelling("ulong"), Some(ArgType::Uint64));
        assert_eq!(Operator::from_spelling("gt"), Some(Operator::GreaterThan));
        assert_eq!(
            Operator::from_spelling("NotSportPriv"),
            Some(Operator::NotSPortPriv)
        );
        assert_eq!(Operator::from_spelling("SubStringIgnoreCase"), None);
        assert_eq!(Action::parse("sigKILL"), Some(Action::Sigkill));
        assert_eq!(Action::parse("FollowFD"), None);
    }
}
