//! Files a process has mapped, read because of one of its events (build IDs of
//! `process_loader`, symbols of user stacks). Everything about them is the workload's choice:
//! the path may be a symlink, a FIFO, `/dev/zero`, a file on a FUSE mount that never
//! answers, or gigabytes long. So a file is
//! - opened through `/proc/PID/map_files/<start>-<end>`: the kernel hands over the very file
//!   that is mapped, with no path walk in anyone's mount namespace (no link to follow, no
//!   rename race);
//! - used only if it is a regular file of at most [`Limits::max_bytes`];
//! - opened and read on a worker thread, with a deadline: the caller (the pipeline) waits
//!   at most [`Limits::timeout`]; at most [`MAX_IN_FLIGHT`] reads run at once, so files that
//!   never answer cannot pile up threads; a path that timed out is not tried again for a
//!   while.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Reads running at once; more are refused (`Busy`) rather than queued.
pub const MAX_IN_FLIGHT: usize = 2;

/// Bytes of `/proc/PID/maps` read at most (a process with 65,530 mappings and long paths
/// would otherwise cost hundreds of MB).
pub const MAPS_MAX_BYTES: u64 = 4 << 20;

/// A path whose read timed out is left alone this long.
const TIMED_OUT_BACKOFF: Duration = Duration::from_secs(60);

/// Paths remembered as timed out, at most.
const TIMED_OUT_KEPT: usize = 256;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 32 << 20,
            timeout: Duration::from_millis(100),
        }
    }
}

/// Why a mapped file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the process has no mapping of {0}")]
    NotMapped(String),
    #[error("not a regular file")]
    NotRegular,
    #[error("{0} bytes, more than the {1}-byte limit")]
    TooLarge(u64, u64),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("{MAX_IN_FLIGHT} reads already in flight")]
    Busy,
    #[error("recently timed out; not tried again yet")]
    BackingOff,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The identity of a file as the kernel knows it (for caches: same file, same answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

/// One mapping of a maps line: (start, end, path).
fn mappings(maps: &str) -> impl Iterator<Item = (u64, u64, &str)> {
    maps.lines().filter_map(|l| {
        let mut f = l.splitn(6, ' ');
        let range = f.next()?;
        let (_perms, _off, _dev, _ino) = (f.next()?, f.next()?, f.next()?, f.next()?);
        let path = f.next().unwrap_or_default().trim_start();
        let (a, b) = range.split_once('-')?;
        let start = u64::from_str_radix(a, 16).ok()?;
        let end = u64::from_str_radix(b, 16).ok()?;
        (start < end).then_some((start, end, path))
    })
}

/// Reads at most `max` bytes of `r`; `Err(TooLarge)` when there is more.
fn read_capped(r: &mut impl Read, max: u64) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    let n = r.take(max.saturating_add(1)).read_to_end(&mut out)?;
    if n as u64 > max {
        return Err(ReadError::TooLarge(n as u64, max));
    }
    Ok(out)
}

/// `/proc/PID/maps`, at most [`MAPS_MAX_BYTES`] of it (a longer one is cut at a line).
pub fn read_maps(proc_root: &str, pid: u32) -> std::io::Result<String> {
    let f = std::fs::File::open(format!("{proc_root}/{pid}/maps"))?;
    let mut out = Vec::new();
    f.take(MAPS_MAX_BYTES).read_to_end(&mut out)?;
    if out.len() as u64 >= MAPS_MAX_BYTES
        && let Some(nl) = out.iter().rposition(|&b| b == b'\n')
    {
        out.truncate(nl + 1);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Opens the file mapped at `[start, end)` of process `pid`: a regular file of at most
/// `max` bytes, with its identity.
pub fn open_mapping(
    proc_root: &str,
    pid: u32,
    start: u64,
    end: u64,
    max: u64,
) -> Result<(std::fs::File, FileKey), ReadError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("{proc_root}/{pid}/map_files/{start:x}-{end:x}"))?;
    checked(f, max)
}

/// Opens `path` (absolute, in the agent's own mount namespace) without following a link at
/// any component (`openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`): a regular
/// file of at most `max` bytes, with its identity. For processes of the host's mount
/// namespace that are gone (their map_files with them).
pub fn open_path_no_links(path: &str, max: u64) -> Result<(std::fs::File, FileKey), ReadError> {
    use std::os::fd::FromRawFd;
    let c = std::ffi::CString::new(path).map_err(|_| ReadError::NotRegular)?;
    // SAFETY: open_how is plain old data; all-zero is its empty value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2(2) with a NUL-terminated path and an open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(ReadError::Io(std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd from openat2, owned from here on.
    let f = unsafe { std::fs::File::from_raw_fd(fd as i32) };
    checked(f, max)
}

/// `f` if it is a regular file of at most `max` bytes, with its identity.
fn checked(f: std::fs::File, max: u64) -> Result<(std::fs::File, FileKey), ReadError> {
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular);
    }
    if meta.len() > max {
        return Err(ReadError::TooLarge(meta.len(), max));
    }
    let key = FileKey {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    };
    Ok((f, key))
}

/// Reads the whole (already checked) file, at most `max` bytes (it may have grown).
pub fn read_file(f: &mut std::fs::File, max: u64) -> Result<Vec<u8>, ReadError> {
    read_capped(f, max)
}

/// The first mapping of `path` in process `pid`'s maps: (start, end).
pub fn mapping_of(proc_root: &str, pid: u32, path: &str) -> Result<(u64, u64), ReadError> {
    let maps = read_maps(proc_root, pid)?;
    mappings(&maps)
        .find(|(_, _, p)| *p == path)
        .map(|(s, e, _)| (s, e))
        .ok_or_else(|| ReadError::NotMapped(path.to_string()))
}

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

fn timed_out() -> &'static Mutex<HashMap<String, Instant>> {
    static T: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// Runs `work` (which opens and reads a file named `what`) on a worker thread and waits at
/// most `timeout` for it.
pub fn with_deadline<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    work: impl FnOnce() -> Result<T, ReadError> + Send + 'static,
) -> Result<T, ReadError> {
    {
        let mut t = timed_out().lock().unwrap_or_else(|e| e.into_inner());
        match t.get(what) {
            Some(at) if at.elapsed() < TIMED_OUT_BACKOFF => return Err(ReadError::BackingOff),
            Some(_) => {
                t.remove(what);
            }
            None => {}
        }
    }
    if IN_FLIGHT.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        return Err(ReadError::Busy);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("vigil-mapped-read".into())
        .spawn(move || {
            let r = work();
            IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        return Err(ReadError::Io(e));
    }
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => {
            let mut t = timed_out().lock().unwrap_or_else(|e| e.into_inner());
            if t.len() >= TIMED_OUT_KEPT {
                t.clear();
            }
            t.insert(what.to_string(), Instant::now());
            Err(ReadError::TimedOut(timeout))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_give_ranges_and_paths_with_spaces() {
        let maps = "1000-2000 r-xp 00000000 08:01 12 /usr/lib/a b.so\n\
                    2000-1000 r-xp 0 08:01 1 /reversed\n\
                    zz-30 r-xp 0 0:0 0 /bad\n\
                    3000-4000 rw-p 00000000 00:00 0\n";
        let got: Vec<_> = mappings(maps).collect();
        assert_eq!(
            got,
            vec![(0x1000, 0x2000, "/usr/lib/a b.so"), (0x3000, 0x4000, "")]
        );
    }

    #[test]
    fn reads_are_capped() {
        let mut r = std::io::Cursor::new(vec![7u8; 100]);
        assert!(matches!(
            read_capped(&mut r, 99),
            Err(ReadError::TooLarge(100, 99))
        ));
        let mut r = std::io::Cursor::new(vec![7u8; 100]);
        assert_eq!(read_capped(&mut r, 100).unwrap().len(), 100);
    }

    /// This test binary's own mapping is opened through map_files; /dev/zero mapped
    /// executable is never the character device.
    #[test]
    fn own_mapping_opens_and_a_device_mapping_is_refused() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let pid = std::process::id();
        let (s, e) = mapping_of("/proc", pid, &exe.display().to_string()).unwrap();
        let (mut f, key) = open_mapping("/proc", pid, s, e, u64::MAX).unwrap();
        assert_eq!(key.ino, std::fs::metadata(&exe).unwrap().ino());
        let (_, key) = open_mapping("/proc", pid, s, e, u64::MAX).unwrap();
        assert!(read_file(&mut f, key.size).unwrap().starts_with(b"\x7fELF"));
        let tiny = open_mapping("/proc", pid, s, e, 16).unwrap_err();
        assert!(matches!(tiny, ReadError::TooLarge(_, 16)), "{tiny}");

        let zero = std::fs::File::open("/dev/zero").unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh private read-only mapping of /dev/zero, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE,
                zero.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let start = p as u64;
        let r = open_mapping("/proc", pid, start, start + 4096, u64::MAX);
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(p, 4096) };
        // Whatever the kernel hands over for it (nothing, or its private zero page's
        // backing), it is never the endless character device.
        if let Ok((_, key)) = &r {
            assert!(key.size <= 4096, "{key:?}");
        }
    }

    #[test]
    fn paths_are_opened_without_links_and_only_regular() {
        let dir = std::env::temp_dir().join(format!("vigil-nolinks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"0123456789").unwrap();
        let link = dir.join("l");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let (_, key) = open_path_no_links(&file.display().to_string(), 100).unwrap();
        assert_eq!(key.size, 10);
        let e = open_path_no_links(&link.display().to_string(), 100).unwrap_err();
        assert!(
            matches!(&e, ReadError::Io(io) if io.raw_os_error() == Some(libc::ELOOP)),
            "{e}"
        );
        assert!(matches!(
            open_path_no_links("/dev/zero", u64::MAX),
            Err(ReadError::NotRegular)
        ));
        assert!(matches!(
            open_path_no_links(&file.display().to_string(), 5),
            Err(ReadError::TooLarge(10, 5))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_read_that_never_answers_times_out_and_backs_off() {
        let t0 = Instant::now();
        let r = with_deadline("/test/never", Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_millis(400));
            Ok(())
        });
        assert!(matches!(r, Err(ReadError::TimedOut(_))), "{r:?}");
        assert!(t0.elapsed() < Duration::from_millis(300));
        let again = with_deadline("/test/never", Duration::from_millis(50), || Ok(()));
        assert!(matches!(again, Err(ReadError::BackingOff)), "{again:?}");
        // Busy while the stuck read and another test's read hold both slots: a caller sees
        // it and tries later, as this does.
        let deadline = Instant::now() + Duration::from_secs(5);
        let fine = loop {
            match with_deadline("/test/fine", Duration::from_secs(5), || Ok(5)) {
                Err(ReadError::Busy) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => break other,
            }
        };
        assert_eq!(fine.unwrap(), 5);
    }
}
