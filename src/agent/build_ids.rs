//! Build IDs of mapped files for `process_loader` events, read from the file's ELF notes and
//! cached by file identity: the same libraries are mapped by every process. The file is the
//! one the process maps, read through `/proc/PID/map_files` off the pipeline thread with a
//! size cap and a deadline (`vigil_runtime::mapped_file`): the path is the workload's choice.

use std::collections::HashMap;
use std::sync::Mutex;

use vigil_runtime::mapped_file::{self, FileKey, Limits};

/// Entries kept before the cache starts over (each is a key and 20 bytes).
const CACHE_MAX: usize = 1024;

static CACHE: Mutex<Option<HashMap<FileKey, Vec<u8>>>> = Mutex::new(None);

/// The build ID of the file process `pid` maps from `path`; empty when it has none, or
/// cannot be read within the limits. A process that is gone (short-lived ones usually are
/// by now) has no map_files: when it ran in the host's mount namespace (`host_mounts`) its
/// path names the same file here, opened without following links.
pub fn build_id(pid: u32, path: &str, host_mounts: bool) -> Vec<u8> {
    build_id_in("/proc", pid, path, host_mounts, Limits::default())
}

fn build_id_in(
    proc_root: &str,
    pid: u32,
    path: &str,
    host_mounts: bool,
    limits: Limits,
) -> Vec<u8> {
    let root = proc_root.to_string();
    let what = path.to_string();
    let found = mapped_file::with_deadline(path, limits.timeout, move || {
        let opened = mapped_file::mapping_of(&root, pid, &what).and_then(|(start, end)| {
            mapped_file::open_mapping(&root, pid, start, end, limits.max_bytes)
        });
        let (mut f, key) = match opened {
            Err(mapped_file::ReadError::NotMapped(_) | mapped_file::ReadError::Io(_))
                if host_mounts && what.starts_with('/') =>
            {
                mapped_file::open_path_no_links(&what, limits.max_bytes)?
            }
            other => other?,
        };
        if let Some(id) = CACHE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .get(&key)
        {
            return Ok(id.clone());
        }
        let data = mapped_file::read_file(&mut f, limits.max_bytes)?;
        let id = vigil_runtime::elf::build_id(&data).unwrap_or_default();
        let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let cache = guard.get_or_insert_with(HashMap::new);
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, id.clone());
        Ok(id)
    });
    match found {
        Ok(id) => id,
        Err(e) => {
            tracing::debug!(pid, path, error = %e, "no build ID");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readelf_build_id(path: &str) -> String {
        let out = std::process::Command::new("readelf")
            .args(["-n", path])
            .output()
            .expect("readelf (binutils)");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix("Build ID: "))
            .expect("a build ID")
            .trim()
            .to_string()
    }

    #[test]
    fn the_mapped_binary_has_the_build_id_readelf_shows() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // The exec may not have happened yet when spawn returns.
        let exe = loop {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
            if exe.ends_with("sleep") || std::time::Instant::now() > deadline {
                break exe.display().to_string();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let got = build_id(pid, &exe, false);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(vigil_hex::encode(&got), readelf_build_id(&exe));
        // A path the process does not map gives nothing, even if the file exists.
        assert!(build_id(std::process::id(), "/bin/true", false).is_empty());
        // Unless the process is gone and was in the host's mount namespace: then the path
        // is opened here (without following links: /bin is a link on merged-/usr systems).
        let direct = build_id(u32::MAX, "/usr/bin/true", true);
        assert_eq!(
            vigil_hex::encode(&direct),
            readelf_build_id("/usr/bin/true")
        );
        // A file past the size cap is not read (this test binary is over 1 MiB).
        let me = std::fs::read_link("/proc/self/exe")
            .unwrap()
            .display()
            .to_string();
        let small = Limits {
            max_bytes: 1 << 20,
            ..Limits::default()
        };
        assert!(build_id_in("/proc", std::process::id(), &me, false, small).is_empty());
    }

    /// A process maps /dev/zero executable and names it: the agent reads a bounded amount
    /// (before: `std::fs::read("/dev/zero")`, which grows until the OOM killer comes), and a
    /// FIFO named by a process is never opened (before: blocked for ever).
    #[test]
    fn device_and_fifo_paths_are_not_read() {
        let zero = std::fs::File::open("/dev/zero").unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh private mapping of /dev/zero, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                1 << 20,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE,
                zero.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let t0 = std::time::Instant::now();
        let id = build_id(std::process::id(), "/dev/zero", true);
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(p, 1 << 20) };
        assert!(id.is_empty());
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));

        let dir = std::env::temp_dir().join(format!("vigil-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("pipe");
        let c = std::ffi::CString::new(fifo.display().to_string()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t0 = std::time::Instant::now();
        assert!(build_id(std::process::id(), &fifo.display().to_string(), true).is_empty());
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
