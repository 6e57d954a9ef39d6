//! The enrichment stage: kernel records in, Tetragon events out, in ring-buffer order (so an
//! exec always precedes the exit of the same image).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use vigil_bpf::abi::*;
use vigil_bpf::lifecycle::ProcessTable;
use vigil_bpf::records::{self, ExecRecord, Record, SyscallRecord};
use vigil_export::Bus;
use vigil_process::cache::ProcessCache;
use vigil_process::clock::{BootClock, boot_ns};
use vigil_process::exec_id::ExecIds;
use vigil_process::model::ProcessInfo;
use vigil_process::procfs::ScannedProcess;
use vigil_proto::tetragon::{self, get_events_response::Event};
use vigil_runtime::{HookArg, HookEvent};

use super::convert::{clone_info, exec_info, key, scanned_info};
use super::encode::{self, EncodeOptions, signal_name, timestamp};

mod ima_wait;
mod policy_events;

/// Ancestors printed per event at most (a fork bomb must not produce megabyte lines).
const MAX_ANCESTORS: usize = 64;

/// Counters of the user-space stages, for logs, loss events and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct PipelineStats {
    pub records: u64,
    pub decode_errors: u64,
    pub events: u64,
    /// Policy records whose (hook id, generation) no registry knows.
    pub unknown_hook_events: u64,
}

pub struct Pipeline {
    ids: ExecIds,
    clock: BootClock,
    cache: ProcessCache,
    enc: EncodeOptions,
    ancestors: bool,
    kprobe_ancestors: bool,
    /// maxData buffers waiting for their event.
    data: super::maxdata::Chunks,
    cluster_name: String,
    bus: Bus,
    reported_kernel: [u64; VIGIL_CNT_MAX as usize],
    reported_sink_lost: u64,
    /// Totals of the user-space losses already reported (see `report_losses`).
    reported_user: [u64; 6],
    hooks: super::policies::HookRegistry,
    cgroups: Option<super::containers::CgroupResolver>,
    pods: Option<super::containers::PodIdentity>,
    /// `--enable-process-exec-sha256`: events waiting for their exec's hash.
    hashes: Option<super::exec_hash::HashWait>,
    /// `--enable-k8s-api`: this node's labels, put on every event (`node_labels`).
    node_labels: Option<vigil_k8s::NodeLabels>,
    /// `--cgroup-rate`: the throttled cgroups.
    throttles: Option<super::cgroup_rate::Throttles>,
    /// Post imaHash: LSM events waiting for their file digest.
    ima: ima_wait::ImaWait,
    pub stats: PipelineStats,
}

impl Pipeline {
    pub fn new(
        ids: ExecIds,
        cache: ProcessCache,
        enc: EncodeOptions,
        ancestors: bool,
        cluster_name: String,
        bus: Bus,
    ) -> Self {
        Self {
            ids,
            clock: BootClock::measure(),
            cache,
            enc,
            ancestors,
            kprobe_ancestors: false,
            data: Default::default(),
            cluster_name,
            bus,
            reported_kernel: [0; VIGIL_CNT_MAX as usize],
            reported_sink_lost: 0,
            reported_user: [0; 6],
            hooks: super::policies::HookRegistry::default(),
            cgroups: None,
            pods: None,
            hashes: None,
            node_labels: None,
            throttles: None,
            ima: ima_wait::ImaWait::default(),
            stats: PipelineStats::default(),
        }
    }

    fn emit(&mut self, event: Event, ktime: u64) {
        let response = tetragon::GetEventsResponse {
            event: Some(event),
            node_name: self.ids.node_name().to_string(),
            time: Some(timestamp(&self.clock, ktime)),
            cluster_name: self.cluster_name.clone(),
            node_labels: self
                .node_labels
                .as_ref()
                .and_then(vigil_k8s::NodeLabels::get)
                .map(|l| l.into_iter().collect())
                .unwrap_or_default(),
            ..Default::default()
        };
        self.bus.publish(response);
        self.stats.events += 1;
    }

    /// Emits an event about `process` (and `parent`), with their pods under
    /// `--enable-k8s-api` (possibly after waiting for them; see `PodIdentity`), behind the
    /// execs waiting for their hash (`--enable-process-exec-sha256`).
    fn emit_for(
        &mut self,
        event: Event,
        ktime: u64,
        process: Option<Arc<ProcessInfo>>,
        parent: Option<Arc<ProcessInfo>>,
    ) {
        self.emit_hashed(event, ktime, process, parent, None);
    }

    /// `emit_for` for an exec whose file is to be hashed (`request`).
    fn emit_hashed(
        &mut self,
        event: Event,
        ktime: u64,
        process: Option<Arc<ProcessInfo>>,
        parent: Option<Arc<ProcessInfo>>,
        request: Option<vigil_runtime::exec_hash::Request>,
    ) {
        use super::exec_hash::Outgoing;
        let Some(hashes) = &mut self.hashes else {
            return self.emit_with_pods(event, ktime, process, parent);
        };
        let out = Outgoing {
            event,
            ktime,
            process,
            parent,
        };
        for o in hashes.admit(out, request, Instant::now()) {
            self.emit_with_pods(o.event, o.ktime, o.process, o.parent);
        }
    }

    fn emit_with_pods(
        &mut self,
        event: Event,
        ktime: u64,
        process: Option<Arc<ProcessInfo>>,
        parent: Option<Arc<ProcessInfo>>,
    ) {
        use super::containers::Pending;
        let Some(pods) = &mut self.pods else {
            return self.emit(event, ktime);
        };
        // The images behind the event's ancestors (the same walk that described them).
        let ancestors = match (&parent, has_ancestors(&event)) {
            (Some(p), true) => self.cache.ancestors(p, MAX_ANCESTORS),
            _ => Vec::new(),
        };
        let pending = Pending::new(event, ktime, process, parent, ancestors);
        let ready = pods.admit(pending, Instant::now());
        for p in ready {
            self.emit(p.event, p.ktime);
        }
    }

    /// Emits events whose hash or pod wait is over; true if any went out.
    pub fn release_pending(&mut self, now: Instant, all: bool) -> bool {
        let undigested = self.ima.release(now, all);
        let from_ima = !undigested.is_empty();
        for rec in undigested {
            self.on_syscall(&rec);
        }
        let hashed = match &mut self.hashes {
            Some(h) => h.release(now, all),
            None => Vec::new(),
        };
        let mut any = from_ima || !hashed.is_empty();
        for o in hashed {
            self.emit_with_pods(o.event, o.ktime, o.process, o.parent);
        }
        let Some(pods) = &mut self.pods else {
            return any;
        };
        let ready = pods.release(now, all);
        any |= !ready.is_empty();
        for p in ready {
            self.emit(p.event, p.ktime);
        }
        any
    }

    /// How long the main loop may block waiting for records: short while events wait for
    /// hashes (finished hashes do not wake it).
    pub fn poll_interval(&self) -> std::time::Duration {
        match &self.hashes {
            _ if self.ima.waiting() => ima_wait::POLL,
            Some(h) if h.waiting() => super::exec_hash::POLL,
            _ => std::time::Duration::from_millis(100),
        }
    }

    /// `--enable-process-exec-sha256`: hashes on process_exec.
    pub fn set_exec_hashes(&mut self, hashes: super::exec_hash::HashWait) {
        self.hashes = Some(hashes);
    }

    /// `--enable-k8s-api`: this node's labels for `node_labels`.
    pub fn set_node_labels(&mut self, labels: vigil_k8s::NodeLabels) {
        self.node_labels = Some(labels);
    }

    /// `--enable-k8s-api`: pods for container events.
    pub fn set_pod_identity(&mut self, pods: super::containers::PodIdentity) {
        self.pods = Some(pods);
    }

    fn proto(&self, info: &ProcessInfo, exec: bool) -> tetragon::Process {
        let mut p = encode::process(info, &self.clock, &self.enc, exec);
        if let Some(c) = &self.cgroups {
            if p.pod.is_none() {
                p.pod = c.hook_pod(info);
            }
            p.container = c.runtime_container(info);
        }
        p
    }

    fn ancestors_of(&self, parent: Option<&ProcessInfo>) -> Vec<tetragon::Process> {
        match parent {
            Some(p) if self.ancestors => self
                .cache
                .ancestors(p, MAX_ANCESTORS)
                .iter()
                .map(|a| self.proto(a, false))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The image a kernel message names, or an `unknown` one. Exact image only: a pid
    /// fallback would name the wrong image when its exec was lost; messages without an image
    /// (ktime 0) can only be matched by pid.
    fn image_of(&self, process: &vigil_proc_key, tid: u32) -> Arc<ProcessInfo> {
        let k = key(process);
        let known = if k.ktime != 0 {
            self.cache.get(&k)
        } else {
            self.cache.by_pid(k.pid)
        };
        known.unwrap_or_else(|| {
            Arc::new(ProcessInfo {
                key: k,
                exec_id: self.ids.exec_id(k),
                tid,
                flags: vec!["unknown"],
                auid: u32::MAX,
                ..Default::default()
            })
        })
    }

    /// Handles one raw ring-buffer message.
    pub fn handle_raw(&mut self, data: &[u8], now: Instant) {
        self.stats.records += 1;
        match records::decode(data) {
            Ok(Record::Exec(rec)) => self.on_exec(&rec, now),
            Ok(Record::Clone(msg)) => self.on_clone(&msg, now),
            Ok(Record::Exit(msg)) => self.on_exit(&msg, now),
            Ok(Record::Syscall(rec)) if u32::from(rec.msg.flags) & VIGIL_SYSMSG_IMA != 0 => {
                for rec in self.ima.admit(rec, now) {
                    self.on_syscall(&rec);
                }
            }
            Ok(Record::Syscall(rec)) => self.on_syscall(&rec),
            Ok(Record::Ima(digest)) => {
                if let Some(rec) = self.ima.complete(digest) {
                    self.on_syscall(&rec);
                }
            }
            Ok(Record::Data(d)) => self.data.add(&d),
            Ok(Record::Throttle(t)) => {
                let start = self
                    .throttles
                    .as_mut()
                    .and_then(|th| th.started(t.cgroup_id, &t.cgroup, t.ktime));
                if let Some(start) = start {
                    self.emit(Event::ProcessThrottle(start.event), start.ktime);
                }
            }
            Err(e) => {
                self.stats.decode_errors += 1;
                tracing::error!(error = %e, "undecodable kernel message dropped");
            }
        }
    }

    fn on_exec(&mut self, rec: &ExecRecord, now: Instant) {
        let m = &rec.msg;
        let parent = self.cache.resolve(key(&m.parent));
        let parent_exec_id = parent
            .as_ref()
            .map_or_else(|| self.ids.exec_id(key(&m.parent)), |p| p.exec_id.clone());
        let mut info = exec_info(&self.ids, rec, parent_exec_id);
        if let Some(p) = &parent {
            info.parent_key = Some(p.key);
        }
        super::containers::complete(&mut info, parent.as_deref(), self.cgroups.as_mut());
        let info = Arc::new(info);
        self.cache.insert(info.clone(), now);
        if m.replaced.ktime != 0 {
            // After the insert: an exec replacing an exec is the new image's parent.
            self.cache.end(key(&m.replaced), now);
        }
        if m.flags & VIGIL_EXEC_THROTTLED != 0 {
            // Known to the cache for the process's later events, but not reported.
            if let Some(th) = &mut self.throttles {
                th.withheld_execs += 1;
            }
            return;
        }
        let event = tetragon::ProcessExec {
            process: Some(self.proto(&info, true)),
            parent: parent.as_deref().map(|p| self.proto(p, false)),
            ancestors: self.ancestors_of(parent.as_deref()),
        };
        let request = self
            .hashes
            .is_some()
            .then(|| super::exec_hash::request(rec, &info));
        self.emit_hashed(
            Event::ProcessExec(event),
            m.hdr.ktime,
            Some(info),
            parent,
            request,
        );
    }

    fn on_clone(&mut self, msg: &vigil_clone_msg, now: Instant) {
        let parent = self.cache.resolve(key(&msg.parent));
        let info = clone_info(&self.ids, msg, parent.as_deref());
        self.cache.insert(Arc::new(info), now);
    }

    fn on_exit(&mut self, msg: &vigil_exit_msg, now: Instant) {
        if msg.flags & VIGIL_EXIT_THROTTLED != 0 {
            if let Some(th) = &mut self.throttles {
                th.withheld_exits += 1;
            }
            return self.cache.end(key(&msg.process), now);
        }
        let info = self.image_of(&msg.process, msg.tid);
        let parent = info.parent_key.and_then(|p| self.cache.get(&p));
        let code = msg.exit_code;
        let event = tetragon::ProcessExit {
            process: Some(self.proto(&info, false)),
            parent: parent.as_deref().map(|p| self.proto(p, false)),
            signal: signal_name(code & 0x7f),
            status: (code >> 8) & 0xff,
            time: Some(timestamp(&self.clock, msg.hdr.ktime)),
            ancestors: self.ancestors_of(parent.as_deref()),
        };
        let key = info.key;
        self.emit_for(Event::ProcessExit(event), msg.hdr.ktime, Some(info), parent);
        self.cache.end(key, now);
    }

    /// Looks up full cgroup paths in procfs when a cgroup's name does not name a container.
    pub fn set_cgroup_resolver(&mut self, resolver: super::containers::CgroupResolver) {
        self.cgroups = Some(resolver);
    }

    /// `--cgroup-rate`: throttled cgroups get process_throttle events.
    pub fn set_throttles(&mut self, throttles: super::cgroup_rate::Throttles) {
        self.throttles = Some(throttles);
    }

    /// `--cgroup-rate`: ends the throttles that calmed down (THROTTLE_STOP).
    pub fn check_throttles(&mut self, now: Instant) {
        let Some(th) = &mut self.throttles else {
            return;
        };
        for stop in th.check(now, boot_ns()) {
            self.emit(Event::ProcessThrottle(stop.event), stop.ktime);
        }
    }

    /// `--enable-ancestors kprobe`: ancestors on process_kprobe events too.
    pub fn set_kprobe_ancestors(&mut self, on: bool) {
        self.kprobe_ancestors = on;
    }

    /// Uses the registry the policy loaders fill, so that hook events can be printed.
    pub fn set_hook_registry(&mut self, registry: super::policies::HookRegistry) {
        self.hooks = registry;
    }

    /// Reports the processes found running at start-up (flag `procFS`), parents first, and
    /// registers them in the kernel process table so that their exits carry the same
    /// exec_id.
    pub fn on_scanned(&mut self, scanned: &[ScannedProcess], table: &ProcessTable, now: Instant) {
        // Parents' binaries, for matchParentBinaries on processes older than the agent.
        let binaries: std::collections::HashMap<u32, (u64, u64)> = scanned
            .iter()
            .map(|p| (p.pid, (p.exe_ino, p.exe_dev)))
            .collect();
        for p in scanned {
            let parent_info = self.cache.by_pid(p.ppid);
            let parent = parent_info.as_ref().map(|i| i.key);
            let mut info = scanned_info(&self.ids, p, parent);
            // The scan read the full cgroup paths already: no resolver.
            super::containers::complete(&mut info, parent_info.as_deref(), None);
            if let Some(c) = &self.cgroups {
                c.ask_runtimes(&info, false);
            }
            let entry = vigil_proc_entry {
                key: vigil_proc_key {
                    pid: p.pid,
                    pad: 0,
                    ktime: p.start_ktime,
                },
                parent: parent.map_or_else(vigil_proc_key::default, |k| vigil_proc_key {
                    pid: k.pid,
                    pad: 0,
                    ktime: k.ktime,
                }),
                flags: VIGIL_ENTRY_PROCFS | VIGIL_ENTRY_BASELINE,
                pad: 0,
                bin_ino: p.exe_ino,
                bin_dev: p.exe_dev,
                pbin_ino: binaries.get(&p.ppid).map_or(0, |b| b.0),
                pbin_dev: binaries.get(&p.ppid).map_or(0, |b| b.1),
                // What the scan saw stands for the exec the kernel did not see.
                exec_caps: [
                    p.creds.cap_permitted,
                    p.creds.cap_effective,
                    p.creds.cap_inheritable,
                ],
                exec_ns: super::convert::kernel_namespaces(&p.namespaces),
                pad2: 0,
            };
            if !table.insert_if_absent(p.pid, &entry) {
                // The kernel already saw this pid fork or exec after attach: its own
                // messages describe it better than the scan.
                continue;
            }
            let info = Arc::new(info);
            self.cache.insert(info.clone(), now);
            let parent_info = parent.and_then(|k| self.cache.get(&k));
            let event = tetragon::ProcessExec {
                process: Some(self.proto(&info, true)),
                parent: parent_info.as_deref().map(|i| self.proto(i, false)),
                ancestors: self.ancestors_of(parent_info.as_deref()),
            };
            let request = self
                .hashes
                .is_some()
                .then(|| super::exec_hash::scanned_request(p))
                .flatten();
            self.emit_hashed(
                Event::ProcessExec(event),
                boot_ns(),
                Some(info),
                parent_info,
                request,
            );
        }
    }

    /// Emits one loss event per counter that moved since the last report, and logs it.
    pub fn report_losses(&mut self, kernel: [u64; VIGIL_CNT_MAX as usize]) {
        use tetragon::LossStage;
        let sources = [
            (
                VIGIL_CNT_RB_LOST_EXEC,
                LossStage::RingBuffer,
                "PROCESS_EXEC",
            ),
            (
                VIGIL_CNT_RB_LOST_CLONE,
                LossStage::RingBuffer,
                "PROCESS_CLONE",
            ),
            (
                VIGIL_CNT_RB_LOST_EXIT,
                LossStage::RingBuffer,
                "PROCESS_EXIT",
            ),
            (
                VIGIL_CNT_PROC_MAP_FULL,
                LossStage::KernelProcessTable,
                "PROCESS_EXEC",
            ),
            (
                VIGIL_CNT_RB_LOST_POLICY,
                LossStage::RingBuffer,
                "PROCESS_KPROBE",
            ),
            (
                VIGIL_CNT_PENDING_LOST,
                LossStage::PolicyState,
                "PROCESS_KPROBE",
            ),
        ];
        for (idx, stage, event_type) in sources {
            let (total, before) = (kernel[idx as usize], self.reported_kernel[idx as usize]);
            if total > before {
                self.reported_kernel[idx as usize] = total;
                self.loss_event(stage, event_type, total - before, total);
            }
        }
        // User-space budgets: each count is a total since start.
        let (withheld_execs, withheld_exits) = self
            .throttles
            .as_ref()
            .map_or((0, 0), |t| (t.withheld_execs, t.withheld_exits));
        let user = [
            (
                self.cache.stats().refused_full,
                LossStage::ProcessCache,
                "PROCESS_EXEC",
            ),
            (
                super::user_actions::dropped(),
                LossStage::UserAction,
                "PROCESS_KPROBE",
            ),
            (self.data.dropped(), LossStage::Data, "PROCESS_KPROBE"),
            // Records naming a hook no registry knows (a kept ring's, without its hooks).
            (
                self.stats.unknown_hook_events,
                LossStage::PolicyState,
                "PROCESS_KPROBE",
            ),
            // Withheld by the kernel; counted here from the identity-only messages.
            (withheld_execs, LossStage::CgroupRate, "PROCESS_EXEC"),
            (withheld_exits, LossStage::CgroupRate, "PROCESS_EXIT"),
        ];
        for (i, (total, stage, event_type)) in user.into_iter().enumerate() {
            let before = self.reported_user[i];
            if total > before {
                self.reported_user[i] = total;
                self.loss_event(stage, event_type, total - before, total);
            }
        }
        let sink_lost = self.bus.lost();
        if sink_lost > self.reported_sink_lost {
            let delta = sink_lost - self.reported_sink_lost;
            self.reported_sink_lost = sink_lost;
            // The loss event itself may not reach a failing sink; the log line does.
            self.loss_event(LossStage::Sink, "ANY", delta, sink_lost);
        }
    }

    fn loss_event(&mut self, stage: tetragon::LossStage, event_type: &str, count: u64, total: u64) {
        tracing::warn!(
            stage = stage.as_str_name(),
            event_type,
            count,
            total,
            "events lost"
        );
        let event = tetragon::EventsLost {
            stage: stage as i32,
            event_type: event_type.to_string(),
            count,
            total,
        };
        self.emit(Event::EventsLost(event), boot_ns());
    }

    /// Sweeps the cache; returns how many entries went.
    pub fn collect_garbage(&mut self, now: Instant) -> usize {
        self.cache.collect(now, false)
    }

    /// Returns memory freed after a burst to the system.
    pub fn release_memory(&mut self) {
        self.cache.shrink();
        super::memory::return_free_memory();
    }

    pub fn flush(&mut self) {
        self.bus.flush();
    }

    /// Shutdown: sinks report what is pending (rate-limit drops) and flush.
    pub fn close(&mut self) {
        self.release_pending(Instant::now(), true);
        if let Some(h) = &self.hashes {
            h.log_summary();
        }
        self.bus.close();
    }

    pub fn cache(&self) -> &ProcessCache {
        &self.cache
    }

    /// Writes the process cache as JSON lines (debug aid, SIGUSR1).
    pub fn dump_cache(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for e in self.cache.snapshot(Instant::now()) {
            let line = serde_json::json!({
                "pid": e.key.pid, "ktime": e.key.ktime.to_string(), "exec_id": e.exec_id,
                "binary": e.binary, "alive": e.alive, "refcnt": e.refcnt,
                "releasable_for_ms": e.releasable_for.map(|d| d.as_millis() as u64),
            });
            writeln!(out, "{line}")?;
        }
        out.flush()
    }
}

impl Pipeline {
    /// The process cache as GetDebug(CONFIG_FLAG_DUMP_PROCESS_CACHE) reports it.
    /// `exclude_execve_map_processes` is accepted; every entry here came through the kernel
    /// table or the /proc scan, so it excludes nothing.
    pub fn debug_processes(
        &self,
        args: &tetragon::DumpProcessCacheReqArgs,
    ) -> Vec<tetragon::ProcessInternal> {
        self.cache
            .snapshot(Instant::now())
            .into_iter()
            .filter(|e| !(args.skip_zero_refcnt && e.refcnt == 0))
            .filter_map(|e| {
                let info = self.cache.get(&e.key)?;
                Some(tetragon::ProcessInternal {
                    process: Some(self.proto(&info, false)),
                    color: if e.alive { "alive" } else { "ended" }.to_string(),
                    refcnt: Some(e.refcnt.into()),
                    refcnt_ops: Default::default(),
                })
            })
            .collect()
    }
}

/// Whether an event lists ancestors (they need their pods too).
fn has_ancestors(event: &Event) -> bool {
    match event {
        Event::ProcessExec(e) => !e.ancestors.is_empty(),
        Event::ProcessExit(e) => !e.ancestors.is_empty(),
        Event::ProcessKprobe(e) => !e.ancestors.is_empty(),
        Event::ProcessTracepoint(e) => !e.ancestors.is_empty(),
        Event::ProcessUprobe(e) => !e.ancestors.is_empty(),
        Event::ProcessLsm(e) => !e.ancestors.is_empty(),
        Event::ProcessUsdt(e) => !e.ancestors.is_empty(),
        _ => false,
    }
}
