//! Cross-checks our JSON against Google's reference protojson parser.
//!
//! Builds events that exercise every Process field, every KprobeArgument
//! variant and every event type, serialises them, and feeds the lines to
//! `tools/check_json.py` (json_format.Parse with ignore_unknown_fields=False)
//! when the venv from `tools/setup-venv.sh` exists. Set
//! `VIGIL_PROTO_JSONL_OUT=<file>` to also keep the lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pbjson_types::{BoolValue, Int32Value, UInt32Value};
use vigil_proto::tetragon::{
    BinaryHashMissing, BinaryLocation, BinaryProperties, BpfCmd, Capabilities, CapabilitiesType,
    Container, EnvVar, EventsLost, FileProperties, GetEventsResponse, Image, InodeProperties,
    KernelModule, KprobeAction, KprobeArgument, KprobeBpfAttr, KprobeBpfMap, KprobeBpfProg,
    KprobeCapability, KprobeCred, KprobeError, KprobeFile, KprobeLinuxBinprm, KprobeNetDev,
    KprobePath, KprobePerfEvent, KprobeSkb, KprobeSock, KprobeSockaddr, KprobeSockaddrUn,
    KprobeTruncatedBytes, KprobeUserNamespace, LossStage, Namespace, Namespaces, Pod, Process,
    ProcessCredentials, ProcessExec, ProcessExit, ProcessKprobe, ProcessLoader, ProcessLsm,
    ProcessPrivilegesChanged, ProcessThrottle, ProcessTracepoint, ProcessUprobe, ProcessUsdt,
    RateLimitInfo, SecureBitsType, SecurityContext, StackTraceEntry, SyscallId, TaintedBitsType,
    Test, ThrottleType, UserNamespace, UserRecord, get_events_response::Event,
    kprobe_argument::Arg,
};
use vigil_proto::wkt::Timestamp;

fn u32v(v: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value: v })
}

fn ns(inum: u32) -> Option<Namespace> {
    Some(Namespace {
        inum,
        is_host: true,
    })
}

fn caps() -> Capabilities {
    Capabilities {
        permitted: vec![
            CapabilitiesType::CapChown as i32,
            CapabilitiesType::DacOverride as i32,
        ],
        effective: vec![CapabilitiesType::CapCheckpointRestore as i32],
        inheritable: vec![],
    }
}

fn user_ns() -> UserNamespace {
    UserNamespace {
        level: Some(Int32Value { value: 0 }),
        uid: u32v(0),
        gid: u32v(0),
        ns: ns(4_026_531_837),
    }
}

fn creds() -> ProcessCredentials {
    ProcessCredentials {
        uid: u32v(1000),
        gid: u32v(1000),
        euid: u32v(0),
        egid: u32v(0),
        suid: u32v(0),
        sgid: u32v(0),
        fsuid: u32v(0),
        fsgid: u32v(0),
        securebits: vec![SecureBitsType::SecBitNoRoot as i32],
        caps: Some(caps()),
        user_ns: Some(user_ns()),
    }
}

fn full_process() -> Process {
    Process {
        exec_id: "bm9kZToxMjM0NToxMjM=".into(),
        pid: u32v(123),
        uid: u32v(0),
        cwd: "/tmp".into(),
        binary: "/usr/bin/sudo".into(),
        arguments: "id".into(),
        flags: "execve clone".into(),
        start_time: Some(Timestamp::new(1_700_000_000, 1)),
        auid: u32v(1000),
        pod: Some(Pod {
            namespace: "default".into(),
            name: "p".into(),
            uid: "6b3c1a2e-0000-4000-8000-000000000000".into(),
            container: Some(Container {
                id: "containerd://abc".into(),
                name: "c".into(),
                image: Some(Image {
                    id: "img@sha256:00".into(),
                    name: "img:latest".into(),
                }),
                start_time: Some(Timestamp::new(1_700_000_000, 0)),
                pid: u32v(1),
                maybe_exec_probe: true,
                security_context: Some(SecurityContext { privileged: true }),
            }),
            pod_labels: [("app".to_string(), "x".to_string())].into(),
            workload: "w".into(),
            workload_kind: "Deployment".into(),
            pod_annotations: [("a".to_string(), "b".to_string())].into(),
        }),
        docker: "abc".into(),
        parent_exec_id: "cGFyZW50".into(),
        refcnt: 2,
        cap: Some(caps()),
        ns: Some(Namespaces {
            uts: ns(1),
            ipc: ns(2),
            mnt: ns(3),
            pid: ns(4),
            pid_for_children: ns(5),
            net: ns(6),
            time: ns(7),
            time_for_children: ns(8),
            cgroup: ns(9),
            user: ns(10),
        }),
        tid: u32v(124),
        process_credentials: Some(creds()),
        binary_properties: Some(BinaryProperties {
            setuid: u32v(0),
            setgid: None,
            privileges_changed: vec![
                ProcessPrivilegesChanged::PrivilegesRaisedExecFileSetuid as i32,
            ],
            file: Some(FileProperties {
                inode: Some(InodeProperties {
                    number: 18_446_744_073_709_551_615,
                    links: u32v(0),
                }),
                path: "/memfd:x (deleted)".into(),
            }),
        }),
        user: Some(UserRecord {
            name: "root".into(),
        }),
        in_init_tree: Some(BoolValue { value: false }),
        environment_variables: vec![EnvVar {
            key: "PATH".into(),
            value: "/bin".into(),
        }],
        argv: vec![b"sudo".to_vec(), vec![0xc3, 0x28]],
        binary_location: BinaryLocation::Unlinked as i32,
        binary_sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
        // Never beside a hash in a real event; here to put the enum on the wire.
        binary_sha256_missing: BinaryHashMissing::Timeout as i32,
        container: Some(Container {
            id: "containerd://vigil-web".into(),
            name: "vigil-web".into(),
            image: Some(Image {
                id: "vigil.test/busybox@sha256:00".into(),
                name: "vigil.test/busybox:1".into(),
            }),
            pid: u32v(1),
            ..Default::default()
        }),
    }
}

#[allow(deprecated)] // user_namespace_arg is deprecated but still on the wire
fn every_arg() -> Vec<KprobeArgument> {
    let args = vec![
        Arg::StringArg("s".into()),
        Arg::IntArg(-1),
        Arg::SkbArg(KprobeSkb {
            hash: 1,
            len: 2,
            saddr: "10.0.0.1".into(),
            protocol: "IPPROTO_TCP".into(),
            family: "AF_INET".into(),
            ..Default::default()
        }),
        Arg::SizeArg(u64::MAX),
        Arg::BytesArg(vec![0, 1, 2, 255]),
        Arg::PathArg(KprobePath {
            mount: "m".into(),
            path: "/p".into(),
            flags: "f".into(),
            permission: "drwxr-xr-x".into(),
        }),
        Arg::FileArg(KprobeFile {
            path: "/etc/passwd".into(),
            permission: "-rw-r--r--".into(),
            ..Default::default()
        }),
        Arg::TruncatedBytesArg(KprobeTruncatedBytes {
            bytes_arg: vec![1, 2],
            orig_size: 10_000,
        }),
        Arg::SockArg(KprobeSock {
            family: "AF_INET6".into(),
            cookie: u64::MAX,
            state: "TCP_ESTABLISHED".into(),
            ..Default::default()
        }),
        Arg::CredArg(KprobeCred {
            permitted: vec![CapabilitiesType::CapBpf as i32],
            ..Default::default()
        }),
        Arg::LongArg(i64::MIN),
        Arg::BpfAttrArg(KprobeBpfAttr {
            prog_type: "BPF_PROG_TYPE_KPROBE".into(),
            insn_cnt: 3,
            prog_name: "p".into(),
        }),
        Arg::PerfEventArg(KprobePerfEvent {
            kprobe_func: "f".into(),
            r#type: "t".into(),
            config: 1,
            probe_offset: 2,
        }),
        Arg::BpfMapArg(KprobeBpfMap {
            map_type: "hash".into(),
            key_size: 4,
            value_size: 8,
            max_entries: 16,
            map_name: "m".into(),
        }),
        Arg::UintArg(u32::MAX),
        Arg::UserNamespaceArg(KprobeUserNamespace {
            level: Some(Int32Value { value: 1 }),
            owner: u32v(0),
            group: u32v(0),
            ns: ns(1),
        }),
        Arg::CapabilityArg(KprobeCapability {
            value: Some(Int32Value { value: 21 }),
            name: "CAP_SYS_ADMIN".into(),
        }),
        Arg::ProcessCredentialsArg(creds()),
        Arg::UserNsArg(user_ns()),
        Arg::ModuleArg(KernelModule {
            name: "m".into(),
            signature_ok: Some(BoolValue { value: false }),
            tainted: vec![TaintedBitsType::TaintOutOfTreeModule as i32],
        }),
        Arg::KernelCapTArg("000001ffffffffff".into()),
        Arg::CapInheritableArg("0".into()),
        Arg::CapPermittedArg("1".into()),
        Arg::CapEffectiveArg("2".into()),
        Arg::LinuxBinprmArg(KprobeLinuxBinprm {
            path: "/bin/x".into(),
            flags: "f".into(),
            permission: "-rwxr-xr-x".into(),
        }),
        Arg::NetDevArg(KprobeNetDev {
            name: "eth0".into(),
        }),
        Arg::BpfCmdArg(BpfCmd::BpfTokenCreate as i32),
        Arg::SyscallId(SyscallId {
            id: 59,
            abi: "x64".into(),
        }),
        Arg::SockaddrArg(KprobeSockaddr {
            family: "AF_INET".into(),
            addr: "1.2.3.4".into(),
            port: 80,
        }),
        Arg::BpfProgArg(KprobeBpfProg {
            prog_type: "t".into(),
            insn_cnt: 1,
            prog_name: "n".into(),
        }),
        Arg::ErrorArg(KprobeError {
            message: "read failed".into(),
        }),
        Arg::SockaddrunArg(KprobeSockaddrUn {
            family: "AF_UNIX".into(),
            path: "@abstract".into(),
        }),
    ];
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| KprobeArgument {
            arg: Some(arg),
            label: format!("a{i}"),
        })
        .collect()
}

fn events() -> Vec<GetEventsResponse> {
    let p = || Some(full_process());
    let stack = vec![StackTraceEntry {
        address: 18_446_744_072_119_856_613,
        offset: 5,
        symbol: "kfree_skb_reason".into(),
        module: "/lib/x.so".into(),
    }];
    let evs = vec![
        Event::ProcessExec(ProcessExec {
            process: p(),
            parent: p(),
            ancestors: vec![full_process()],
        }),
        Event::ProcessExit(ProcessExit {
            process: p(),
            parent: p(),
            signal: "SIGKILL".into(),
            status: 137,
            time: Some(Timestamp::new(1_700_000_001, 500_000_000)),
            ancestors: vec![],
        }),
        Event::ProcessKprobe(ProcessKprobe {
            process: p(),
            parent: p(),
            function_name: "__x64_sys_setuid".into(),
            args: every_arg(),
            r#return: Some(KprobeArgument {
                arg: Some(Arg::IntArg(0)),
                label: String::new(),
            }),
            action: KprobeAction::Sigkill as i32,
            kernel_stack_trace: stack.clone(),
            policy_name: "pol".into(),
            return_action: KprobeAction::Post as i32,
            message: "msg".into(),
            tags: vec!["observability.process".into()],
            user_stack_trace: stack,
            ancestors: vec![],
            data: every_arg(),
            envs: vec![EnvVar {
                key: "HOME".into(),
                value: "/root".into(),
            }],
        }),
        Event::ProcessTracepoint(ProcessTracepoint {
            process: p(),
            subsys: "raw_syscalls".into(),
            event: "sys_enter".into(),
            args: every_arg(),
            action: KprobeAction::Set as i32,
            ..Default::default()
        }),
        Event::ProcessLoader(ProcessLoader {
            process: p(),
            path: "/lib/libc.so.6".into(),
            buildid: vec![0xde, 0xad],
            parent: p(),
            ancestors: vec![],
        }),
        Event::ProcessUprobe(ProcessUprobe {
            process: p(),
            path: "/bin/bash".into(),
            symbol: "readline".into(),
            offset: 1,
            ref_ctr_offset: 2,
            action: KprobeAction::Override as i32,
            args: every_arg(),
            data: every_arg(),
            ..Default::default()
        }),
        Event::ProcessThrottle(ProcessThrottle {
            r#type: ThrottleType::ThrottleStop as i32,
            cgroup: "session-1.scope".into(),
        }),
        Event::ProcessLsm(ProcessLsm {
            process: p(),
            function_name: "bprm_check_security".into(),
            ima_hash: "sha256:00".into(),
            args: every_arg(),
            ..Default::default()
        }),
        Event::ProcessUsdt(ProcessUsdt {
            process: p(),
            path: "/bin/x".into(),
            provider: "prov".into(),
            name: "probe".into(),
            flags: "f".into(),
            args: every_arg(),
            ..Default::default()
        }),
        Event::Test(Test {
            arg0: 1,
            arg1: 2,
            arg2: 3,
            arg3: u64::MAX,
        }),
        Event::RateLimitInfo(RateLimitInfo {
            number_of_dropped_process_events: 42,
        }),
        Event::EventsLost(EventsLost {
            stage: LossStage::KernelProcessTable as i32,
            event_type: "PROCESS_EXIT".into(),
            count: 1,
            total: 2,
        }),
    ];
    evs.into_iter()
        .zip(1..)
        .map(|(ev, seq)| GetEventsResponse {
            event: Some(ev),
            node_name: "node-1".into(),
            time: Some(Timestamp::new(1_700_000_002, 123_000_000)),
            aggregation_info: None,
            cluster_name: "c1".into(),
            node_labels: [("kubernetes.io/os".to_string(), "linux".to_string())].into(),
            vigil_seq: seq,
            vigil_instance: "0123456789abcdef0123456789abcdef".into(),
        })
        .collect()
}

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("VIGIL_VENV").unwrap_or_else(|| "/var/cache/vigil/venv".into());
    Path::new(&venv).join("bin/python")
}

#[test]
fn all_event_types_round_trip_and_pass_reference_parser() {
    let mut lines = String::new();
    for ev in events() {
        let line = serde_json::to_string(&ev).unwrap();
        let back: GetEventsResponse = serde_json::from_str(&line).unwrap();
        assert_eq!(back, ev, "serde round trip of {line}");
        lines.push_str(&line);
        lines.push('\n');
    }
    if let Some(out) = std::env::var_os("VIGIL_PROTO_JSONL_OUT") {
        std::fs::write(out, &lines).unwrap();
    }

    let python = venv_python();
    if !python.exists() {
        eprintln!(
            "skipping reference-parser check: {} missing (run tools/setup-venv.sh)",
            python.display()
        );
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/check_json.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "check_json.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
