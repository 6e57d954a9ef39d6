//! Fuzz entry points: one `pub fn <target>(data: &[u8])` per parser of bytes a workload (or a
//! remote user) controls. Each must return for every input: an error is fine, a panic, hang
//! or unbounded allocation is a bug in the parser. The stable harness ([`harness`], run by
//! `cargo test -p vigil-fuzz`) and the cargo-fuzz targets in `/fuzz` call these same
//! functions.

pub mod harness;
pub mod seeds;

use vigil_runtime::elf::{self, Elf};

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory (`corpus/<name>/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("elf", elf),
    ("usdt", usdt),
    ("usdt_arg", usdt_arg),
    ("records", records),
    ("procfs", procfs),
    ("maps", maps),
    ("policy", policy),
    ("pod", pod),
    ("runtime_answers", runtime_answers),
];

/// An ELF file: as a uprobe's target, a `spec.loader` build ID, a stack's module.
pub fn elf(data: &[u8]) {
    let _ = elf::build_id(data);
    let Ok(elf) = Elf::parse(data) else { return };
    for name in ["main", "_start", ""] {
        if let Ok(Some(addr)) = elf.function(name) {
            let _ = elf.file_offset(addr);
        }
    }
    if let Ok(functions) = elf.functions() {
        for (addr, size, _) in functions.iter().take(64) {
            let _ = elf.file_offset(*addr);
            // What the symboliser relies on.
            assert!(addr.checked_add(*size).is_some());
        }
    }
    for s in &elf.sections {
        assert!(s.offset.checked_add(s.size).is_some() && s.addr.checked_add(s.size).is_some());
        let _ = elf.file_offset(s.addr);
    }
    let _ = elf.notes(".note.gnu.build-id");
    let _ = elf.file_offset(u64::MAX);
}

/// An ELF file's SystemTap SDT notes and their argument specifications.
pub fn usdt(data: &[u8]) {
    let Ok(elf) = Elf::parse(data) else { return };
    let _ = vigil_runtime::usdt::probes(&elf);
}

/// One USDT argument specification (`-4@%eax`), as the note's text.
pub fn usdt_arg(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for spec in text.split_whitespace() {
        let _ = vigil_runtime::usdt::parse_arg(spec);
    }
    let _ = vigil_runtime::usdt::parse_arg(&text);
}

/// One ring-buffer record, and the encoded paths it may carry.
pub fn records(data: &[u8]) {
    use vigil_bpf::records::{Record, decode, decode_path};
    match decode(data) {
        Ok(Record::Exec(e)) => {
            let _ = decode_path(&e.path);
            let _ = decode_path(&e.cwd);
        }
        Ok(Record::Syscall(s)) => {
            let _ = s.path.as_deref().map(decode_path);
        }
        _ => {}
    }
    let _ = decode_path(data);
}

/// /proc/<pid>/{stat,status,cgroup} and the container ids in cgroup names and paths: a
/// process chooses its `comm`, and a container its cgroup names.
pub fn procfs(data: &[u8]) {
    use vigil_process::{container, procfs};
    let text = String::from_utf8_lossy(data);
    let _ = procfs::parse_stat(&text);
    let _ = procfs::parse_status(&text);
    let _ = procfs::cgroup_leaf(&text);
    let _ = container::container_id_in_proc_cgroup(&text);
    let _ = container::container_id_in_path(&text);
    let _ = container::docker_field(&text);
    let _ = container::strip_runtime_scheme(&text);
}

/// /proc/<pid>/maps, as the stack symboliser reads it.
pub fn maps(data: &[u8]) {
    for (start, end, off, _) in vigil_runtime::symbolize::parse_maps(&String::from_utf8_lossy(data))
    {
        // What `symbolize` computes for an address in the range.
        assert!(start <= end && off.checked_add(end - start).is_some());
    }
}

/// A TracingPolicy document (files, `tracingpolicy validate`, gRPC AddTracingPolicy).
pub fn policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(policy) = vigil_policy::parse_policy(&text, "fuzz.yaml") {
        let _ = vigil_policy::compile(
            &policy,
            &vigil_policy::compile::Capabilities::TRACEPOINTS_ONLY,
        );
    }
}

/// A Pod object from the API server, as the pod store turns it into identities.
pub fn pod(data: &[u8]) {
    let Ok(pod) = serde_json::from_slice::<k8s_openapi::api::core::v1::Pod>(data) else {
        return;
    };
    let _ = vigil_k8s::pod::workload(&pod);
    for (_, identity) in vigil_k8s::pod::containers(&pod, true) {
        let _ = identity.for_process("/bin/sh", "-c true", 1);
    }
}

/// What containerd and Docker answer (`--enable-container-runtimes`): an HTTP response
/// from Docker's socket and its inspect JSON, an OCI spec's cgroupsPath from containerd.
pub fn runtime_answers(data: &[u8]) {
    if let Ok((_, body)) = vigil_runtimes::docker::parse_response(data) {
        let _ = vigil_runtimes::docker::parse_inspect(&body);
    }
    let _ = vigil_runtimes::docker::parse_inspect(data);
    let _ = vigil_runtimes::containerd::spec_cgroup_dir(data);
    let _ = vigil_runtimes::cgroup::cgroup_dir(&String::from_utf8_lossy(data));
    let _ = vigil_runtimes::cgroup::unified_path(&String::from_utf8_lossy(data));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays `corpus/<target>/` and the generated seeds, then mutates them for the budget.
    fn fuzz(target: &str) {
        let (_, entry) = TARGETS
            .iter()
            .find(|(name, _)| *name == target)
            .expect("a known target");
        match harness::run(target, *entry, harness::seed(), harness::budget()) {
            Ok(report) => assert!(report.replayed > 0, "no corpus for {target}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn fuzz_elf() {
        fuzz("elf");
    }

    #[test]
    fn fuzz_usdt() {
        fuzz("usdt");
    }

    #[test]
    fn fuzz_usdt_arg() {
        fuzz("usdt_arg");
    }

    #[test]
    fn fuzz_records() {
        fuzz("records");
    }

    #[test]
    fn fuzz_procfs() {
        fuzz("procfs");
    }

    #[test]
    fn fuzz_maps() {
        fuzz("maps");
    }

    #[test]
    fn fuzz_policy() {
        fuzz("policy");
    }

    #[test]
    fn fuzz_pod() {
        fuzz("pod");
    }

    #[test]
    fn fuzz_runtime_answers() {
        fuzz("runtime_answers");
    }

    #[test]
    fn every_target_has_a_corpus_directory_and_a_test() {
        let source = include_str!("lib.rs");
        for (name, _) in TARGETS {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("corpus")
                .join(name);
            assert!(dir.is_dir(), "{}", dir.display());
            assert!(
                source.contains(&format!("fn fuzz_{name}()")),
                "no test for {name}"
            );
        }
    }

    #[test]
    fn the_committed_corpus_stays_small() {
        let total: u64 = TARGETS
            .iter()
            .flat_map(|(name, _)| {
                let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("corpus")
                    .join(name);
                std::fs::read_dir(dir).into_iter().flatten()
            })
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        assert!(total < 64 * 1024, "{total} bytes");
    }

    /// The synthetic ELF reaches every part of the parsers it seeds.
    #[test]
    fn the_small_elf_seed_is_complete() {
        let data = seeds::small_elf();
        let elf = Elf::parse(&data).unwrap();
        assert_eq!(elf::build_id(&data), Some(vec![0xab; 20]));
        let main = elf.function("main").unwrap().unwrap();
        assert_eq!(
            elf.file_offset(main),
            Some(elf.section(".text").unwrap().offset)
        );
        assert_eq!(elf.functions().unwrap().len(), 2);
        let probes = vigil_runtime::usdt::probes(&elf).unwrap();
        assert_eq!(probes.len(), 2);
        assert!(
            probes
                .iter()
                .all(|(p, e)| e.is_none() && !p.args.is_empty())
        );
        assert_ne!(probes[0].0.semaphore, 0);
    }

    /// The ELF header reading of the parser before it was made total (issue 17): a 4-byte
    /// file indexed past its end, and header offsets overflowed.
    fn parse_before_the_fix(data: &[u8]) {
        let u64_at = |off: usize| -> Option<u64> {
            Some(u64::from_le_bytes(data.get(off..off + 8)?.try_into().ok()?))
        };
        let u16_at = |off: usize| -> Option<u16> {
            Some(u16::from_le_bytes(data.get(off..off + 2)?.try_into().ok()?))
        };
        if data.get(..4) != Some(b"\x7fELF") || data[4] != 2 || data[5] != 1 {
            return;
        }
        let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56))
        else {
            return;
        };
        for i in 0..usize::from(phnum) {
            let _ = u64_at(phoff as usize + i * usize::from(phentsize));
        }
    }

    /// The harness finds the bug issue 17 reported from a valid seed, without being shown it.
    #[test]
    fn the_harness_finds_the_old_elf_panic() {
        let found = harness::run_on(
            "planted",
            parse_before_the_fix,
            &[seeds::small_elf()],
            harness::seed(),
            std::time::Duration::from_secs(10),
        );
        let message = found.expect_err("the pre-fix parser panics on some mutation");
        assert!(message.contains("panicked") && message.contains("VIGIL_FUZZ_SEED="));
        if let Some(path) = message
            .split("saved as ")
            .nth(1)
            .and_then(|s| s.split(')').next())
        {
            let _ = std::fs::remove_file(path);
        }
    }

    #[test]
    fn the_mutator_is_deterministic_for_a_seed() {
        let run = || {
            let mut rng = harness::Rng::new(42);
            let mut data = b"seed data".to_vec();
            for _ in 0..200 {
                harness::mutate(&mut rng, &mut data, b"other", &["tok"]);
            }
            data
        };
        assert_eq!(run(), run());
    }
}
