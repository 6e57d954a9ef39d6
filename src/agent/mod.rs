//! `vigil agent`: start-up, the main loop and shutdown.
//!
//! Threads: the ring-buffer reader (kernel -> bounded queue) and this one (queue ->
//! enrichment -> sinks). Shutdown on SIGTERM/SIGINT drops the sensor, which detaches every
//! program; nothing is pinned, so nothing stays behind.

mod api;
mod build_ids;
mod cgroup_rate;
mod containers;
mod convert;
mod encode;
mod exec_hash;
mod io_uring;
mod kstruct_arg;
mod logging;
mod maxdata;
mod memory;
mod net_arg;
pub(crate) mod options;
mod outputs;
mod pipeline;
mod policies;
mod same_file;
mod sockaddr;
mod sources;
mod user_actions;

pub use sources::parse as parse_cli;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use vigil_bpf::lifecycle::{LifecycleOptions, LifecycleSensor};
use vigil_process::cache::ProcessCache;
use vigil_process::exec_id::{ExecIds, node_name};

use crate::cli::AgentFlags;
use encode::EncodeOptions;
use options::AgentOptions;
use pipeline::Pipeline;

pub use options::parse_duration;

/// How often kernel loss counters are read and the cache is swept.
const HOUSEKEEPING: Duration = Duration::from_millis(500);
/// Minimum time between two returns of freed memory to the system.
const TRIM_INTERVAL: Duration = Duration::from_secs(2);
/// How long a deleted pod's containers stay known (their processes' last events).
const DELETED_POD_TTL: Duration = Duration::from_secs(60);
/// `--enable-process-exec-sha256`: threads reading files, and hash requests waiting for
/// them at most (a burst of new files beyond it goes out marked QUEUE_FULL). Two workers:
/// one file that never answers (a stuck mount) does not stop every hash.
const EXEC_HASH_WORKERS: usize = 2;
const EXEC_HASH_QUEUE: usize = 1024;
/// `--enable-container-runtimes`: one call to containerd or Docker gives up after this (on
/// the runtimes' thread; events wait at most --container-runtime-wait), and the answers
/// kept take at most this many bytes.
const RUNTIME_CALL_TIMEOUT: Duration = Duration::from_secs(2);
const RUNTIME_CACHE_BYTES: usize = 4 << 20;

fn usernames() -> HashMap<u32, String> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

pub fn run(flags: &AgentFlags, warnings: &[String]) -> Result<()> {
    let started = Instant::now();
    let log_reload = logging::init(flags)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    let cpus = libbpf_rs::num_possible_cpus().unwrap_or(1);
    let opts = AgentOptions::from_flags(flags, cpus)?;
    let node = node_name();
    let outputs = outputs::OutputOptions::from_flags(
        &flags.out,
        opts.export_filename.clone(),
        opts.export_file_perm,
        &node,
    )?;
    if flags.out.check_config {
        println!("vigil agent: configuration OK");
        return Ok(());
    }
    vigil_bpf::preflight::check(opts.btf.as_deref())?;
    // bpffs is where kept links live and where operators' tools look; a fresh machine may
    // not have it. A promise to keep enforcement across exits is checked now, not at exit.
    let bpffs = if opts.keep_sensors_on_exit {
        vigil_bpf::pin::check_pinnable(std::path::Path::new(vigil_bpf::pin::KEEP_DIR))
            .map_err(|e| anyhow::anyhow!("--keep-sensors-on-exit cannot be kept: {e}"))?
    } else {
        vigil_bpf::pin::ensure_bpffs().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "bpffs unavailable (only --keep-sensors-on-exit needs it)");
            false
        })
    };
    if bpffs {
        tracing::info!(path = vigil_bpf::pin::BPFFS, "bpffs mounted");
    }
    // Before loading anything: a bad kubeconfig is a start-up error. The watch starts now
    // so that pods are known by the time the first events leave.
    // Pod-scoped policies (namespaced, podSelector) exist only with the API.
    let scopes = opts.k8s.as_ref().map(|_| vigil_k8s::Scopes::shared());
    // This node's labels (nodeSelector, `node_labels` on events), from the policies thread.
    let node_labels = opts.k8s.as_ref().map(|_| vigil_k8s::NodeLabels::default());
    let pods = match &opts.k8s {
        Some(k8s) => {
            let pods = vigil_k8s::PodStore::new(DELETED_POD_TTL, k8s.annotations).shared();
            let watch = vigil_k8s::WatchOptions {
                kubeconfig: k8s.kubeconfig.clone(),
                node_name: node.clone(),
            };
            let pod_scopes = scopes.clone().map(|scopes| vigil_k8s::PodScopes {
                scopes,
                cgroup_root: containers::RuntimeRegistry::host_cgroup_root(),
            });
            vigil_k8s::spawn(watch, pods.clone(), pod_scopes)?;
            Some(pods)
        }
        None => None,
    };

    let term = Arc::new(AtomicBool::new(false));
    let dump = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone()).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, dump.clone())
        .context("installing signal handlers")?;

    let (mut bus, metrics) = outputs::build(outputs, &node)?;
    let (hub, grpc_sink) = api::hub(&flags.api);
    bus.add(Box::new(grpc_sink));
    let mut sensor = LifecycleSensor::load(&LifecycleOptions {
        ring_buffer_bytes: opts.ring_buffer_bytes,
        process_table_entries: opts.process_table_entries,
        args_limit: opts.args_limit,
        env_limit: if opts.environment { 32 * 1024 - 1 } else { 0 },
        btf: opts.btf.clone(),
        cgroup_rate: opts.cgroup_rate,
        wake_on_exec: opts.exec_sha256.is_some(),
    })?;
    let counters = sensor.counters()?;
    // This agent's pins under KEEP_DIR start with its own instance name; others' are what a
    // previous agent kept (after a clean exit or a crash).
    let instance = format!(
        "agent-{}-{}",
        std::process::id(),
        vigil_process::clock::boot_ns()
    );
    let kept = std::path::Path::new(vigil_bpf::pin::KEEP_DIR);
    if opts.keep_sensors_on_exit {
        // Pinned now, not at exit: a crash keeps the process table current and the ring
        // for the next agent.
        let dir = kept.join(format!("{instance}-lifecycle"));
        sensor.pin_live(&dir).map_err(|e| {
            anyhow::anyhow!("--keep-sensors-on-exit cannot be kept: lifecycle sensor: {e}")
        })?;
    }
    let policy_files =
        policies::policy_files(&flags.tracing_policy, Some(&flags.tracing_policy_dir));
    let hook_registry = policies::HookRegistry::default();
    let mut runtime = policies::Runtime::new(
        vigil_bpf::syscalls::SharedMaps::of(&sensor)?,
        Arc::clone(&hook_registry),
        opts.btf.clone(),
    );
    if let Some(s) = &scopes {
        runtime = runtime.with_scopes(Arc::clone(s));
    }
    if opts.keep_sensors_on_exit {
        runtime = runtime.with_keep(instance.clone());
    }
    let runtime = Arc::new(runtime);
    let manager = api::policy_manager(&flags.api, Arc::clone(&runtime), opts.btf.as_deref());
    let kept_before = vigil_bpf::pin::kept_by_others(kept, &instance).len();
    if kept_before > 0 && opts.release_pinned_bpf {
        release_kept(kept, &instance, "--release-pinned-bpf");
    }
    let loaded_policies = manager.load_static(&policy_files);
    let io_uring_policy = io_uring::start(&runtime, opts.io_uring);
    for e in manager.restore() {
        tracing::error!(error = e, "persisted policy not restored");
    }
    // What a previous agent kept is adopted once every policy domain has reloaded: the
    // static and persisted ones now, the cluster's when its first listing has been acted on.
    let mut adopt = kept_before > 0 && !opts.release_pinned_bpf;
    let mut kept_hook_files = Vec::new();
    let k8s_listed = api::K8sListed::default();
    // The cluster's TracingPolicy objects (domain `k8s`), once the runtime can load them.
    if let Some(k8s) = &opts.k8s {
        let watch = vigil_k8s::WatchOptions {
            kubeconfig: k8s.kubeconfig.clone(),
            node_name: node.clone(),
        };
        vigil_k8s::spawn_policies(
            &watch,
            api::K8sPolicies(Arc::clone(&manager), k8s_listed.clone()),
            node_labels.clone().unwrap_or_default(),
        )?;
    }
    let table = sensor.process_table()?;

    // Scan only after attaching: a process started in between is seen by both, and the
    // kernel table decides which description wins.
    let scanned = vigil_process::procfs::scan(&opts.procfs)?;
    let host_ns = vigil_process::procfs::host_namespaces(&opts.procfs);
    let enc = EncodeOptions {
        process_cred: opts.process_cred,
        process_ns: opts.process_ns,
        environment: opts.environment,
        expose_stack_addresses: opts.expose_stack_addresses,
        usernames: opts.username_unix.then(usernames),
        host_ns,
    };
    let mut pipeline = Pipeline::new(
        ExecIds::new(node),
        ProcessCache::new(opts.process_cache_size, opts.gc_interval),
        enc,
        opts.ancestors_base,
        opts.cluster_name.clone(),
        bus,
    );
    pipeline.set_hook_registry(Arc::clone(&hook_registry));
    user_actions::start(opts.dns_lookup_server);
    pipeline.set_kprobe_ancestors(opts.ancestors_kprobe);
    if let Some(rate) = opts.cgroup_rate {
        pipeline.set_throttles(cgroup_rate::Throttles::new(rate, sensor.cgroup_rate()?));
        tracing::info!(
            events = rate.events,
            interval_ms = rate.interval_ns / 1_000_000,
            "cgroup rate started"
        );
    }
    let runtime_hooks =
        containers::RuntimeRegistry::new(containers::RuntimeRegistry::host_cgroup_root());
    let mut resolver =
        containers::CgroupResolver::new(opts.procfs.clone(), Some(Arc::clone(&runtime_hooks)));
    if let Some(s) = &scopes {
        resolver.set_scopes(Arc::clone(s));
        runtime_hooks.set_scopes(Arc::clone(s));
    }
    if let Some(r) = &opts.runtimes {
        let names = vigil_runtimes::RuntimeNames::start(vigil_runtimes::Config {
            containerd: r.containerd.clone(),
            docker: r.docker.clone(),
            cgroup_root: containers::RuntimeRegistry::host_cgroup_root(),
            procfs: opts.procfs.clone(),
            timeout: RUNTIME_CALL_TIMEOUT,
            wait: r.wait,
            cache_bytes: RUNTIME_CACHE_BYTES,
        })
        .context("starting the container runtimes' thread")?;
        resolver.set_runtime_names(names);
    }
    pipeline.set_cgroup_resolver(resolver);
    if let Some(n) = node_labels {
        pipeline.set_node_labels(n);
    }
    if let (Some(k8s), Some(pods)) = (&opts.k8s, pods) {
        pipeline.set_pod_identity(containers::PodIdentity::new(pods, k8s.pod_wait));
    }
    if let Some(h) = &opts.exec_sha256 {
        let hasher =
            vigil_runtime::exec_hash::Hasher::start(&vigil_runtime::exec_hash::HasherConfig {
                proc_root: opts
                    .procfs
                    .display()
                    .to_string()
                    .trim_end_matches('/')
                    .to_string(),
                max_file_bytes: h.max_file_bytes,
                cache_bytes: h.cache_bytes,
                workers: EXEC_HASH_WORKERS,
                queue: EXEC_HASH_QUEUE,
            })
            .context("starting the process_exec sha256 workers")?;
        pipeline.set_exec_hashes(exec_hash::HashWait::new(hasher, h.wait));
    }
    if adopt {
        // Events the previous agent's programs wrote while no agent read them.
        let (hooks, files) = policies::kept_hooks_of_others(&instance);
        hook_registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .adopt(hooks);
        drain_kept_rings(kept, &instance, &mut pipeline);
        kept_hook_files = files;
        if opts.k8s.is_none() {
            // Every domain has reloaded (static, persisted): adopted before ready.
            adopt = false;
            release_kept(
                kept,
                &instance,
                "adopted: replaced by this agent's policies",
            );
            for f in kept_hook_files.drain(..) {
                let _ = std::fs::remove_file(f);
            }
        }
    }
    pipeline.on_scanned(&scanned, &table, Instant::now());
    pipeline.flush();

    // The reader hands records over in batches of up to BATCH records and BATCH_BYTES.
    let (tx, rx) = sync_channel::<vigil_bpf::ringbuf::Batch>(
        opts.queue_size.div_ceil(vigil_bpf::ringbuf::BATCH),
    );
    let stop_reader = Arc::new(AtomicBool::new(false));
    // Health liveness compares what the reader handed over with what the loop handled.
    let progress = api::Progress::default();
    let reader = vigil_bpf::ringbuf::spawn_reader_counted(
        sensor.events()?,
        tx,
        stop_reader.clone(),
        Arc::clone(&progress.offered),
    )?;
    let program_ids: Vec<String> = sensor
        .program_ids()
        .iter()
        .map(|(_, id)| id.to_string())
        .collect();
    let api = api::start(flags, hub, log_reload, Arc::clone(&manager), runtime_hooks)?;
    tracing::info!(
        ready_ms = started.elapsed().as_millis() as u64,
        program_ids = program_ids.join(","),
        programs = sensor.attached(),
        ring_buffer_bytes = vigil_bpf::lifecycle::ring_size(opts.ring_buffer_bytes),
        scanned = scanned.len(),
        policies = loaded_policies,
        "vigil agent ready"
    );
    // What loading freed (the kernel BTF parsed for each object): resident memory at rest
    // from the start, not after the first trim (23.7 -> 6.4 MB RssAnon with one policy).
    memory::return_free_memory();
    if let Some(api) = &api {
        api.set_serving();
        api.watch_liveness(&progress);
    }
    // Set when the reader thread ends on its own: the agent then exits with an error.
    let mut reader_died = false;

    let adopt_deadline = Instant::now() + ADOPT_WAIT;
    let mut last_housekeeping = Instant::now();
    let mut pending_flush = false;
    let mut removed_since_trim = 0;
    let mut last_trim = Instant::now();
    while !term.load(Ordering::Relaxed) {
        match rx.recv_timeout(pipeline.poll_interval()) {
            Ok(batch) => {
                let now = Instant::now();
                for data in batch.iter() {
                    pipeline.handle_raw(data, now);
                }
                progress.handled_one();
                pending_flush = true;
                // Drain what is queued before flushing.
                while let Ok(more) = rx.try_recv() {
                    let now = Instant::now();
                    for data in more.iter() {
                        pipeline.handle_raw(data, now);
                    }
                    progress.handled_one();
                    if last_housekeeping.elapsed() >= HOUSEKEEPING {
                        break;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                tracing::error!("ring buffer reader stopped");
                reader_died = true;
                break;
            }
        }
        pending_flush |= pipeline.release_pending(Instant::now(), false);
        if pending_flush {
            pipeline.flush();
            pending_flush = false;
        }
        if last_housekeeping.elapsed() >= HOUSEKEEPING {
            last_housekeeping = Instant::now();
            if adopt
                && (opts.k8s.is_none() || k8s_listed.complete() || Instant::now() > adopt_deadline)
            {
                // The previous agent's programs enforced until this agent's own policies
                // were attached; two sets would report everything twice.
                adopt = false;
                release_kept(
                    kept,
                    &instance,
                    "adopted: replaced by this agent's policies",
                );
                for f in kept_hook_files.drain(..) {
                    let _ = std::fs::remove_file(f);
                }
            }
            pipeline.check_throttles(Instant::now());
            pipeline.report_losses(counters.read());
            if manager.release_idle() {
                pipeline.release_memory();
            }
            if let Some(m) = &metrics {
                m.set_process_cache(pipeline.cache().stats().entries, opts.process_cache_size);
                m.set_ringbuf_received(pipeline.stats.records);
            }
            removed_since_trim += pipeline.collect_garbage(Instant::now());
            if removed_since_trim > 0 && last_trim.elapsed() >= TRIM_INTERVAL {
                pipeline.release_memory();
                removed_since_trim = 0;
                last_trim = Instant::now();
            }
            pipeline.flush();
        }
        if dump.swap(false, Ordering::Relaxed) {
            dump_policy_counters(&manager, &opts);
            dump_cache(&pipeline, &opts);
        }
        if let Some(api) = &api {
            api.serve(&pipeline);
        }
    }
    if let Some(api) = api {
        api.stop();
    }

    tracing::info!("stopping: draining the ring buffer, then detaching");
    stop_reader.store(true, Ordering::Relaxed);
    // Keep draining while the reader finishes: it may be blocked on a full queue, and it
    // drops its sender when done, which ends this loop.
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(batch) => {
                for data in batch.iter() {
                    pipeline.handle_raw(data, Instant::now());
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) if reader.is_finished() => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    let reader_panic = reader.join().is_err();
    pipeline.report_losses(counters.read());
    pipeline.close();
    if opts.keep_sensors_on_exit {
        let (pinned, failed) = manager.keep_all_attached();
        for f in &failed {
            tracing::error!(error = f.as_str(), "policy not kept attached");
        }
        if failed.is_empty() {
            tracing::info!(
                links = pinned,
                dir = vigil_bpf::pin::KEEP_DIR,
                "--keep-sensors-on-exit: policies stay attached (pinned) after exit"
            );
        } else {
            tracing::error!(
                links = pinned,
                not_kept = failed.len(),
                dir = vigil_bpf::pin::KEEP_DIR,
                "--keep-sensors-on-exit: NOT every policy stays attached after exit"
            );
        }
    }
    // Policies first: their objects share the lifecycle maps.
    manager.unload_all();
    drop(io_uring_policy.finish());
    if opts.keep_sensors_on_exit {
        // Pinned at start: they go on keeping the process table and the ring.
        sensor.disconnect();
    }
    drop(sensor);
    tracing::info!(
        events = pipeline.stats.events,
        "vigil agent stopped; its eBPF programs detached (except those kept pinned)"
    );
    // A dead reader means no event is read any more: never a clean exit (a supervisor
    // must restart the agent).
    if reader_died || reader_panic {
        anyhow::bail!(
            "the ring buffer reader thread {}: events were no longer read",
            if reader_panic { "panicked" } else { "stopped" }
        );
    }
    Ok(())
}

/// How long adoption waits for the cluster's policies (an unreachable API server must not
/// keep the previous agent's programs forever).
const ADOPT_WAIT: Duration = Duration::from_secs(60);

/// Bytes of a previous agent's ring read at adoption.
const KEPT_RING_BYTES: usize = 64 << 20;

/// Delivers what previous agents' kept rings hold, in ring order: exec/exit records decode
/// like any others; policy records find their hooks in what those agents wrote down (the
/// registry has adopted them); one that names no known hook is reported lost.
fn drain_kept_rings(kept: &std::path::Path, instance: &str, pipeline: &mut Pipeline) {
    for dir in vigil_bpf::pin::kept_by_others(kept, instance) {
        let ring = dir.join("ring");
        if !ring.exists() {
            continue;
        }
        match vigil_bpf::ringbuf::drain_pinned(&ring, KEPT_RING_BYTES) {
            Ok(records) => {
                for data in &records {
                    pipeline.handle_raw(data, Instant::now());
                }
                tracing::info!(ring = %ring.display(), records = records.len(),
                    "read what a previous agent's kept ring held");
            }
            Err(e) => tracing::error!(ring = %ring.display(), error = %e,
                "cannot read a previous agent's kept ring"),
        }
    }
}

/// Detaches the links previous agents left pinned (`--keep-sensors-on-exit`).
fn release_kept(dir: &std::path::Path, instance: &str, why: &str) {
    match vigil_bpf::pin::release_others(dir, instance) {
        Ok(n) => tracing::info!(
            links = n,
            dir = %dir.display(),
            why,
            "released the links a previous agent kept attached"
        ),
        Err(e) => tracing::error!(
            error = %e,
            dir = %dir.display(),
            "cannot release the links a previous agent kept attached"
        ),
    }
}

/// Writes the in-kernel per-hook counters as JSON lines (debug aid, SIGUSR1; summed up,
/// they are ListTracingPolicies' action counters).
fn dump_policy_counters(manager: &vigil_api::MemoryPolicyManager, opts: &AgentOptions) {
    use std::io::Write;
    let path = opts.state_dir.join("policy-counters.json");
    let mut text = Vec::new();
    for (_, lines) in manager.debug_lines() {
        for line in lines {
            let _ = writeln!(text, "{line}");
        }
    }
    let result =
        std::fs::create_dir_all(&opts.state_dir).and_then(|()| std::fs::write(&path, text));
    if let Err(e) = result {
        tracing::error!(path = %path.display(), error = %e, "cannot write policy counters");
    }
}

fn dump_cache(pipeline: &Pipeline, opts: &AgentOptions) {
    let path = opts.state_dir.join("process-cache.json");
    let result = std::fs::create_dir_all(&opts.state_dir).and_then(|()| pipeline.dump_cache(&path));
    match result {
        Ok(()) => {
            tracing::info!(path = %path.display(), entries = pipeline.cache().stats().entries,
            "process cache dumped")
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot dump the process cache")
        }
    }
}
