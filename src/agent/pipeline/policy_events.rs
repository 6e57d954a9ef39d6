//! Policy events: kernel records of policy hooks (syscalls, tracepoints, uprobes, usdts,
//! kernel functions, LSM) turned into Tetragon's process_kprobe / process_tracepoint /
//! process_uprobe / process_usdt / process_lsm with their arguments.

use super::*;

impl Pipeline {
    pub(super) fn on_syscall(&mut self, rec: &SyscallRecord) {
        use tetragon::kprobe_argument::Arg;
        let m = &rec.msg;
        let registry = Arc::clone(&self.hooks);
        let hooks = registry.read().unwrap_or_else(|e| e.into_inner());
        let Some(hook) = hooks.get(m.hook_id, m.generation) else {
            self.stats.unknown_hook_events += 1;
            tracing::error!(
                hook = m.hook_id,
                generation = m.generation,
                "event from an unknown hook dropped"
            );
            return;
        };
        let info = crate::agent::convert::with_task_state(self.image_of(&m.process, m.tid), m);
        let parent = info.parent_key.and_then(|p| self.cache.get(&p));
        let text_of = |i: usize| {
            vigil_process::text::valid_utf8(
                rec.strings.get(i).map(Vec::as_slice).unwrap_or_default(),
            )
        };
        let host_user_ns = crate::agent::kstruct_arg::HostUserNs(self.enc.host_ns.user);
        let mut args: Vec<_> = hook
            .args
            .iter()
            .enumerate()
            .map(|(i, (kind, label))| {
                let text = || {
                    let mut t = text_of(i);
                    // A cut path keeps its leaf end (vigil_kobj.h): say so, never silently.
                    if m.str_trunc & (1 << i) != 0 && !matches!(kind, HookArg::String) {
                        t.insert_str(0, "...");
                    }
                    t
                };
                let arg = match kind {
                    HookArg::String
                    | HookArg::LinuxBinprm
                    | HookArg::File
                    | HookArg::Path
                    | HookArg::Bytes
                    | HookArg::Sock
                    | HookArg::Skb
                    | HookArg::NetSockaddr
                    | HookArg::Cred
                    | HookArg::UserNs
                    | HookArg::BpfAttr
                    | HookArg::BpfProg
                    | HookArg::BpfMap
                    | HookArg::PerfEvent
                    | HookArg::Module
                    | HookArg::CapSet(_)
                    | HookArg::NetDevice
                        if m.str_error & (1 << i) != 0 =>
                    {
                        Arg::ErrorArg(tetragon::KprobeError {
                            message: "cannot read the argument from memory".into(),
                        })
                    }
                    HookArg::String => Arg::StringArg(text_of(i)),
                    HookArg::File => Arg::FileArg(tetragon::KprobeFile {
                        path: text(),
                        permission: permission(m.ints[i] as u32),
                        ..Default::default()
                    }),
                    HookArg::Path => Arg::PathArg(tetragon::KprobePath {
                        path: text(),
                        permission: permission(m.ints[i] as u32),
                        ..Default::default()
                    }),
                    HookArg::Bytes => bytes_arg(rec.strings.get(i), m.ints[i] as u64),
                    HookArg::Data if m.str_error & (1 << i) == 0 => bytes_arg(
                        Some(&self.data.take(
                            m.tid,
                            rec.strings.get(i).map(Vec::as_slice).unwrap_or_default(),
                        )),
                        m.ints[i] as u64,
                    ),
                    HookArg::Sockaddr | HookArg::Data if m.str_error & (1 << i) != 0 => {
                        Arg::ErrorArg(tetragon::KprobeError {
                            message: "cannot read the argument from memory".into(),
                        })
                    }
                    HookArg::Sockaddr => Arg::SockaddrArg(crate::agent::sockaddr::sockaddr_arg(
                        rec.strings.get(i).map(Vec::as_slice).unwrap_or_default(),
                    )),
                    HookArg::LinuxBinprm => Arg::LinuxBinprmArg(tetragon::KprobeLinuxBinprm {
                        path: text(),
                        permission: permission(m.ints[i] as u32),
                        ..Default::default()
                    }),
                    HookArg::Sock | HookArg::Skb | HookArg::NetSockaddr => {
                        crate::agent::net_arg::net_arg(
                            *kind,
                            rec.strings.get(i).map(Vec::as_slice).unwrap_or_default(),
                        )
                    }
                    other => crate::agent::kstruct_arg::kstruct_arg(
                        *other,
                        rec.strings.get(i).map(Vec::as_slice).unwrap_or_default(),
                        m.ints[i],
                        host_user_ns,
                    )
                    .unwrap_or_else(|| int_arg(*other, m.ints[i])),
                };
                tetragon::KprobeArgument {
                    arg: Some(arg),
                    label: label.clone().unwrap_or_default(),
                }
            })
            .collect();
        // `data` entries follow the arguments in the kernel's slots.
        let data = match hook.data_from {
            Some(k) if k <= args.len() => args.split_off(k),
            _ => Vec::new(),
        };
        // `nop` arguments hold their index only.
        let mut kinds = hook.args.iter().map(|(kind, _)| kind);
        args.retain(|_| kinds.next() != Some(&HookArg::Nop));
        // Open-like calls: the path the kernel opened, resolved from the returned fd.
        if let Some(path) = &rec.path {
            args.push(tetragon::KprobeArgument {
                arg: Some(Arg::FileArg(tetragon::KprobeFile {
                    path: vigil_process::text::valid_utf8(path),
                    ..Default::default()
                })),
                label: "resolved_path".into(),
            });
        }
        let returned = u32::from(m.flags) & VIGIL_SYSMSG_RETURN != 0;
        // A kernel-function return probe's value is in an argument slot: `return`, not an
        // argument. Syscall and uprobe returns come from the paired exit.
        let ret = match hook.return_slot {
            Some(i) if i < args.len() => Some(args.remove(i)),
            _ => hook
                .return_arg
                .filter(|_| returned)
                .map(|kind| tetragon::KprobeArgument {
                    arg: Some(int_arg(kind, m.ret)),
                    label: String::new(),
                }),
        };
        let action = if m.actions & VIGIL_ACT_OVERRIDE != 0 {
            tetragon::KprobeAction::Override
        } else if m.actions & VIGIL_ACT_SIGKILL != 0 {
            tetragon::KprobeAction::Sigkill
        } else if m.actions & VIGIL_ACT_SIGNAL != 0 {
            tetragon::KprobeAction::Signal
        } else {
            crate::agent::user_actions::action_of(hook, m.selector)
        };
        if hook.cgroup_sock && m.monitor == 0 {
            crate::agent::net_arg::signal_from_user(
                m.process.pid,
                m.hdr.ktime,
                m.actions,
                m.signal,
            );
        }
        if !matches!(
            hook.event,
            HookEvent::Kprobe | HookEvent::EverySyscall { .. }
        ) {
            let event = self.hook_event(hook, &info, parent.as_deref(), args, action);
            drop(hooks);
            self.emit_for(event, m.hdr.ktime, Some(info), parent);
            return;
        }
        let ancestors = if self.kprobe_ancestors {
            self.ancestors_of(parent.as_deref())
        } else {
            Vec::new()
        };
        if hook.lsm {
            let event = tetragon::ProcessLsm {
                process: Some(self.proto(&info, false)),
                parent: parent.as_deref().map(|p| self.proto(p, false)),
                function_name: hook.function_name.clone(),
                policy_name: hook.policy_name.clone(),
                message: hook.message.clone().unwrap_or_default(),
                args,
                action: action as i32,
                tags: hook.tags.clone(),
                ancestors,
                // Post imaHash; empty when IMA could not hash the file (Tetragon's too).
                ima_hash: rec
                    .ima
                    .as_ref()
                    .map(|d| d.tetragon_text())
                    .unwrap_or_default(),
                ..Default::default()
            };
            drop(hooks);
            self.emit_for(Event::ProcessLsm(event), m.hdr.ktime, Some(info), parent);
            return;
        }
        let event = tetragon::ProcessKprobe {
            process: Some(self.proto(&info, false)),
            parent: parent.as_deref().map(|p| self.proto(p, false)),
            function_name: match hook.event {
                HookEvent::EverySyscall { id_slot } => {
                    every_syscall_name(m.ints.get(id_slot).copied().unwrap_or(-1))
                }
                _ if m.compat != 0 => hook.function_name.replace("__x64_sys_", "__ia32_sys_"),
                _ => hook.function_name.clone(),
            },
            args,
            return_action: if hook.return_slot.is_some() && ret.is_some() {
                tetragon::KprobeAction::Post as i32
            } else {
                return_action(m.ret_actions)
            },
            r#return: ret,
            action: action as i32,
            policy_name: hook.policy_name.clone(),
            message: hook.message.clone().unwrap_or_default(),
            tags: hook.tags.clone(),
            ancestors,
            user_stack_trace: crate::agent::convert::user_stack_trace(
                rec,
                self.enc.expose_stack_addresses,
            ),
            kernel_stack_trace: crate::agent::convert::kernel_stack_trace(
                rec,
                self.enc.expose_stack_addresses,
            ),
            data,
            ..Default::default()
        };
        drop(hooks);
        self.emit_for(Event::ProcessKprobe(event), m.hdr.ktime, Some(info), parent);
    }

    /// process_tracepoint / process_uprobe / process_usdt, as Tetragon's.
    fn hook_event(
        &self,
        hook: &vigil_runtime::HookInfo,
        info: &ProcessInfo,
        parent: Option<&ProcessInfo>,
        args: Vec<tetragon::KprobeArgument>,
        action: tetragon::KprobeAction,
    ) -> Event {
        let process = Some(self.proto(info, false));
        let parent_proto = parent.map(|p| self.proto(p, false));
        let (policy_name, message, tags) = (
            hook.policy_name.clone(),
            hook.message.clone().unwrap_or_default(),
            hook.tags.clone(),
        );
        match &hook.event {
            HookEvent::Tracepoint { subsys, event } => {
                Event::ProcessTracepoint(tetragon::ProcessTracepoint {
                    process,
                    parent: parent_proto,
                    subsys: subsys.clone(),
                    event: event.clone(),
                    args,
                    policy_name,
                    action: action as i32,
                    message,
                    tags,
                    ..Default::default()
                })
            }
            HookEvent::Uprobe {
                path,
                symbol,
                offset,
                ref_ctr_offset,
            } => Event::ProcessUprobe(tetragon::ProcessUprobe {
                process,
                parent: parent_proto,
                path: path.clone(),
                symbol: symbol.clone(),
                policy_name,
                message,
                args,
                tags,
                offset: *offset,
                ref_ctr_offset: *ref_ctr_offset,
                action: action as i32,
                ..Default::default()
            }),
            HookEvent::Usdt {
                path,
                provider,
                name,
            } => Event::ProcessUsdt(tetragon::ProcessUsdt {
                process,
                parent: parent_proto,
                path: path.clone(),
                provider: provider.clone(),
                name: name.clone(),
                policy_name,
                message,
                args,
                tags,
                action: action as i32,
                ..Default::default()
            }),
            HookEvent::Loader => {
                let path = match args.first().and_then(|a| a.arg.as_ref()) {
                    Some(tetragon::kprobe_argument::Arg::FileArg(f)) => f.path.clone(),
                    _ => String::new(),
                };
                Event::ProcessLoader(tetragon::ProcessLoader {
                    process,
                    parent: parent_proto,
                    buildid: crate::agent::build_ids::build_id(
                        info.key.pid,
                        &path,
                        info.namespaces.mnt == self.enc.host_ns.mnt,
                    ),
                    path,
                    ancestors: self.ancestors_of(parent),
                })
            }
            HookEvent::Kprobe | HookEvent::EverySyscall { .. } => {
                unreachable!("kprobe events are built by on_syscall")
            }
        }
    }
}

/// Tetragon's function name of a raw syscall id (syscall64: bit 31 marks an ia32 call).
fn every_syscall_name(id: i64) -> String {
    let (v, ia32) = (id as u64, u64::from(VIGIL_SYSCALL64_IA32));
    let nr = (v & !ia32) as u32;
    let name = if v & ia32 != 0 {
        vigil_runtime::tables::ia32_name(nr).map(|n| format!("__ia32_sys_{n}"))
    } else {
        vigil_runtime::hooks::x64_name(nr).map(|n| format!("__x64_sys_{n}"))
    };
    name.unwrap_or_else(|| format!("syscall-{nr}"))
}

/// An integer argument as Tetragon reports its type.
fn int_arg(kind: HookArg, v: i64) -> tetragon::kprobe_argument::Arg {
    use tetragon::kprobe_argument::Arg;
    match kind {
        HookArg::Int => Arg::IntArg(v as i32),
        HookArg::Uint32 => Arg::UintArg(v as u32),
        HookArg::Int64 => Arg::LongArg(v),
        HookArg::Uint64 | HookArg::SizeT => Arg::SizeArg(v as u64),
        HookArg::SyscallId => {
            // Tetragon's syscall64: bit 31 marks a 32-bit (ia32) call.
            let (v, ia32) = (v as u64, u64::from(VIGIL_SYSCALL64_IA32));
            Arg::SyscallId(tetragon::SyscallId {
                id: (v & !ia32) as u32,
                abi: if v & ia32 != 0 { "i386" } else { "x64" }.to_string(),
            })
        }
        HookArg::String
        | HookArg::LinuxBinprm
        | HookArg::File
        | HookArg::Path
        | HookArg::Bytes
        | HookArg::Data
        | HookArg::Sock
        | HookArg::Skb
        | HookArg::Sockaddr
        | HookArg::NetSockaddr
        | HookArg::Cred
        | HookArg::UserNs
        | HookArg::BpfAttr
        | HookArg::BpfProg
        | HookArg::BpfMap
        | HookArg::PerfEvent
        | HookArg::Module
        | HookArg::CapSet(_)
        | HookArg::NetDevice
        | HookArg::Capability
        | HookArg::BpfCmd
        | HookArg::Nop => Arg::LongArg(v),
    }
}

/// A `char_buf`: the bytes the engine read and the count the call asked for. When the
/// engine's buffer cut them, Tetragon's `truncated_bytes_arg` says so with the full size.
fn bytes_arg(read: Option<&Vec<u8>>, asked: u64) -> tetragon::kprobe_argument::Arg {
    use tetragon::kprobe_argument::Arg;
    let bytes = read.cloned().unwrap_or_default();
    if asked > bytes.len() as u64 {
        Arg::TruncatedBytesArg(tetragon::KprobeTruncatedBytes {
            bytes_arg: bytes,
            orig_size: asked,
        })
    } else {
        Arg::BytesArg(bytes)
    }
}

/// `return_action`: what matchReturnActions did (unset when it has none).
fn return_action(bits: u32) -> i32 {
    if bits & VIGIL_ACT_SIGKILL != 0 {
        tetragon::KprobeAction::Sigkill as i32
    } else if bits & VIGIL_ACT_SIGNAL != 0 {
        tetragon::KprobeAction::Signal as i32
    } else {
        0
    }
}

/// `ls -l` style mode string of an inode mode (Tetragon's `permission`), "" when unknown.
fn permission(mode: u32) -> String {
    if mode == 0 {
        return String::new();
    }
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        _ => '-',
    };
    let mut out = String::with_capacity(10);
    out.push(kind);
    for (shift, special, lower, upper) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => lower,
            (false, true) => upper,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    out
}

#[cfg(test)]
mod permission_tests {
    use super::permission;

    #[test]
    fn mode_strings_as_ls() {
        assert_eq!(permission(0o100644), "-rw-r--r--");
        assert_eq!(permission(0o040755), "drwxr-xr-x");
        assert_eq!(permission(0o104755), "-rwsr-xr-x");
        assert_eq!(permission(0o041777), "drwxrwxrwt");
        assert_eq!(permission(0o120777), "lrwxrwxrwx");
        assert_eq!(permission(0), "");
    }
}
