//! Build IDs of mapped files for `process_loader` events, read from the file's ELF notes and
//! cached by (path, size, mtime): the same libraries are mapped by every process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

/// Entries kept before the cache starts over (each is a path and 20 bytes).
const CACHE_MAX: usize = 1024;

type Key = (String, u64, Option<SystemTime>);

/// The build ID of the file at `path`; empty when it has none or cannot be read.
pub fn build_id(path: &str) -> Vec<u8> {
    static CACHE: Mutex<Option<HashMap<Key, Vec<u8>>>> = Mutex::new(None);
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let key = (path.to_string(), meta.len(), meta.modified().ok());
    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guard.get_or_insert_with(HashMap::new);
    if let Some(id) = cache.get(&key) {
        return id.clone();
    }
    let id = std::fs::read(path)
        .ok()
        .and_then(|data| vigil_runtime::elf::build_id(&data))
        .unwrap_or_default();
    if cache.len() >= CACHE_MAX {
        cache.clear();
    }
    cache.insert(key, id.clone());
    id
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_system_binary_has_the_build_id_readelf_shows() {
        let out = std::process::Command::new("readelf")
            .args(["-n", "/bin/true"])
            .output()
            .expect("readelf (binutils)");
        let text = String::from_utf8_lossy(&out.stdout);
        let want = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Build ID: "))
            .expect("/bin/true has a build ID")
            .trim()
            .to_string();
        let got: String = super::build_id("/bin/true")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, want);
        assert!(super::build_id("/nonexistent").is_empty());
    }
}
