//! Keeps the SameFile sets of a loaded policy current: a file replaced under its path (a
//! new inode: an editor's rename, a package upgrade) is protected again within a second.
//! The previous inode stays out of the set: it is no longer the file the policy names.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use vigil_bpf::FileSet;
use vigil_bpf::abi::vigil_bin_key;
use vigil_runtime::tables::SameFileEntry;

/// How often the paths are looked at again.
const REFRESH: Duration = Duration::from_secs(1);

/// The SameFile paths of one policy and the kernel sets they are written to.
pub struct SameFiles {
    policy: String,
    sets: Vec<FileSet>,
    entries: Mutex<Vec<SameFileEntry>>,
}

fn key(set_id: u32, (ino, dev): (u64, u64)) -> vigil_bin_key {
    vigil_bin_key {
        set_id,
        pad: 0,
        ino,
        dev,
    }
}

impl SameFiles {
    /// Starts keeping `entries` current in `sets`; stops when the returned value is dropped
    /// (the policy is unloaded).
    pub fn watch(policy: &str, sets: Vec<FileSet>, entries: Vec<SameFileEntry>) -> Arc<Self> {
        let this = Arc::new(Self {
            policy: policy.to_string(),
            sets,
            entries: Mutex::new(entries),
        });
        let weak: Weak<Self> = Arc::downgrade(&this);
        let spawned = std::thread::Builder::new()
            .name("vigil-samefile".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(REFRESH);
                    match weak.upgrade() {
                        Some(s) => s.refresh(super::policies::binary_identity),
                        None => return,
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(policy = %policy, error = %e,
                "cannot start the SameFile refresher: the files are protected as resolved at load");
        }
        this
    }

    /// Resolves every path again; a changed identity replaces the old one in every set.
    pub fn refresh(&self, resolve: impl Fn(&str) -> Option<(u64, u64)>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for i in 0..entries.len() {
            let now = resolve(&entries[i].path);
            let before = entries[i].identity;
            if now == before {
                continue;
            }
            let set_id = entries[i].set_id;
            if let Some(new) = now {
                for s in &self.sets {
                    if let Err(e) = s.insert(&key(set_id, new)) {
                        tracing::error!(policy = %self.policy, path = %entries[i].path, error = %e,
                            "SameFile: cannot protect the new file");
                    }
                }
            }
            entries[i].identity = now;
            // Another path of the same set may still name the old file (a hard link).
            if let Some(old) = before
                && !entries
                    .iter()
                    .any(|e| e.set_id == set_id && e.identity == Some(old))
            {
                for s in &self.sets {
                    s.remove(&key(set_id, old));
                }
            }
            tracing::info!(policy = %self.policy, path = %entries[i].path,
                inode = now.map(|(ino, _)| ino), "SameFile: the path names another file now");
        }
    }
}
