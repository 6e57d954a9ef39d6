//! Tetragon's process identity: `exec_id = base64(StdEncoding, "<node>:<ktime>:<pid>")`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Identity of one process image in the kernel: thread-group id and the boot-clock time of
/// its exec (or fork, for a process that has not executed anything yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ProcessKey {
    pub pid: u32,
    pub ktime: u64,
}

impl ProcessKey {
    pub fn new(pid: u32, ktime: u64) -> Self {
        Self { pid, ktime }
    }
}

/// Builds exec ids for one node.
#[derive(Debug, Clone)]
pub struct ExecIds {
    node_name: String,
}

impl ExecIds {
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
        }
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub fn exec_id(&self, key: ProcessKey) -> String {
        STANDARD.encode(format!("{}:{}:{}", self.node_name, key.ktime, key.pid))
    }
}

/// The node name as Tetragon picks it: `NODE_NAME`, then `HUBBLE_NODE_NAME`, then the
/// kernel hostname.
pub fn node_name() -> String {
    for var in ["NODE_NAME", "HUBBLE_NODE_NAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return v;
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_id_matches_tetragon_sample() {
        // From Tetragon's documented process_exec sample (events.md).
        let ids = ExecIds::new("gke-john-632-default-pool-7041cac0-9s95");
        assert_eq!(
            ids.exec_id(ProcessKey::new(52699, 13548674321373)),
            "Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4Njc0MzIxMzczOjUyNjk5"
        );
    }
}
