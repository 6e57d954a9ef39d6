//! The export file with Tetragon's rotation (it uses lumberjack): when a line would take the
//! file past `--export-file-max-size-mb`, or every `--export-file-rotation-interval`, the
//! file is renamed to `<name>-<UTC 2006-01-02T15-04-05.000><ext>` (e.g.
//! `events-2024-05-01T10-00-00.123.json`), gzipped to `....json.gz` with
//! `--export-file-compress`, and only the newest `--export-file-max-backups` backups stay.
//!
//! Lines are buffered and written whole: a line never straddles two files. A failed write
//! (ENOSPC, EIO, the file gone) truncates the file back to its last complete line, drops the
//! buffered lines (the caller counts them), and the next flush tries again.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

const BUFFER: usize = 1 << 16;

#[derive(Debug, Clone)]
pub struct Rotation {
    /// Bytes; 0: never by size.
    pub max_size: u64,
    /// Backups kept; 0: all (as lumberjack).
    pub max_backups: usize,
    /// Rotation interval in addition to size; None: by size only.
    pub interval: Option<Duration>,
    pub compress: bool,
    pub perm: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_size: 10 << 20,
            max_backups: 5,
            interval: None,
            compress: false,
            perm: 0o600,
        }
    }
}

/// A failed flush: the error and how many lines were dropped.
#[derive(Debug)]
pub struct FlushError {
    pub error: io::Error,
    pub lines: u64,
    /// Lines of the same flush that did get out before the error.
    pub delivered: u64,
}

pub struct LogFile {
    path: PathBuf,
    cfg: Rotation,
    file: Option<File>,
    size: u64,
    buf: Vec<u8>,
    buf_lines: u64,
    opened: Instant,
    housekeeping: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFile").field("path", &self.path).finish()
    }
}

/// Opens (creates) the export file. The agent runs as root and the file usually sits in a
/// directory others can reach: a symlink planted at the path is refused (`O_NOFOLLOW`), never
/// followed to overwrite another file, and an existing file gets the configured mode too,
/// not only a new one (a file created earlier with looser permissions would keep leaking
/// every event otherwise).
fn open(path: &Path, perm: u32) -> io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(perm)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| no_symlink(path, e))?;
    let meta = file.metadata()?;
    set_mode(&file, &meta, perm)?;
    Ok((file, meta.len()))
}

/// ELOOP from `O_NOFOLLOW` in words that name the path.
fn no_symlink(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        io::Error::new(
            e.kind(),
            format!(
                "{} is a symbolic link: the export file is never written through one \
                 (remove the link or give the real path)",
                path.display()
            ),
        )
    } else {
        e
    }
}

/// fchmod to `perm` when a regular file has another mode (devices such as /dev/stdout or
/// /dev/full keep theirs: they are not ours to change).
fn set_mode(file: &File, meta: &std::fs::Metadata, perm: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if meta.file_type().is_file() && meta.permissions().mode() & 0o7777 != perm {
        file.set_permissions(std::fs::Permissions::from_mode(perm))?;
    }
    Ok(())
}

/// `2006-01-02T15-04-05.000` in UTC, lumberjack's backup time format.
pub fn backup_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// (prefix, ext) as lumberjack splits a file name: `events.json` -> (`events-`, `.json`).
fn name_parts(path: &Path) -> (String, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rfind('.') {
        Some(i) if i > 0 => (format!("{}-", &name[..i]), name[i..].to_string()),
        _ => (format!("{name}-"), String::new()),
    }
}

/// Backups of `path` in its directory, newest first.
pub fn backups(path: &Path) -> Vec<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (prefix, ext) = name_parts(path);
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(&prefix)?;
            let stamp = rest
                .strip_suffix(&format!("{ext}.gz"))
                .or_else(|| rest.strip_suffix(ext.as_str()))?;
            (stamp.len() == 23 && stamp.as_bytes()[10] == b'T')
                .then(|| (stamp.to_string(), e.path()))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, p)| p).collect()
}

fn gzip(src: &Path) -> io::Result<()> {
    let mut dst_name = src.as_os_str().to_owned();
    dst_name.push(".gz");
    let dst = PathBuf::from(dst_name);
    // The backup is read without following a symlink: whatever was swapped in for the
    // export file is never copied into a backup.
    let mut input = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(src)
        .map_err(|e| no_symlink(src, e))?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&input.metadata()?.permissions());
    // A new file only (the rotation picked a free name): nothing planted there is followed.
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&dst)
        .map_err(|e| no_symlink(&dst, e))?;
    set_mode(&out, &out.metadata()?, mode & 0o7777)?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let result = io::copy(&mut input, &mut enc).and_then(|_| enc.finish().map(drop));
    match result {
        Ok(()) => std::fs::remove_file(src),
        Err(e) => {
            let _ = std::fs::remove_file(&dst);
            Err(e)
        }
    }
}

impl LogFile {
    pub fn open(path: &Path, cfg: Rotation) -> io::Result<Self> {
        let (file, size) = open(path, cfg.perm)?;
        Ok(Self {
            path: path.to_path_buf(),
            cfg,
            file: Some(file),
            size,
            buf: Vec::with_capacity(BUFFER),
            buf_lines: 0,
            opened: Instant::now(),
            housekeeping: None,
        })
    }

    /// Queues one line (with its newline); may flush and rotate first.
    pub fn write_line(&mut self, line: &[u8]) -> Result<(), FlushError> {
        let result = self.prepare(line.len());
        self.push(line);
        result.map(drop)
    }

    /// Makes room for `len` more bytes: flushes (and rotates by size) now if they would not
    /// fit, so that the next [`push`](Self::push)es up to `len` bytes write nothing. The
    /// numbering sink needs this: a loss report and the line after it must land together,
    /// never with a flush failure between them. Returns the lines written meanwhile.
    pub fn prepare(&mut self, len: usize) -> Result<u64, FlushError> {
        let mut result = Ok(0);
        let projected = self.size + (self.buf.len() + len) as u64;
        if self.cfg.max_size > 0
            && projected > self.cfg.max_size
            && self.size + self.buf.len() as u64 > 0
        {
            result = self.flush();
            if result.is_ok() {
                self.rotate();
            }
        } else if self.buf.len() + len > BUFFER {
            result = self.flush();
        }
        result
    }

    /// Queues one line (with its newline) without flushing.
    pub fn push(&mut self, line: &[u8]) {
        self.buf.extend_from_slice(line);
        self.buf_lines += 1;
    }

    /// Rotates when the interval has passed (called from the sink's flush).
    pub fn tick(&mut self, now: Instant) -> Result<(), FlushError> {
        if let Some(every) = self.cfg.interval
            && now.saturating_duration_since(self.opened) >= every
        {
            self.flush()?;
            if self.size > 0 {
                self.rotate();
            } else {
                self.opened = now;
            }
        }
        Ok(())
    }

    /// Writes the buffered lines; returns how many.
    pub fn flush(&mut self) -> Result<u64, FlushError> {
        if self.buf.is_empty() {
            return Ok(0);
        }
        let lines = std::mem::take(&mut self.buf_lines);
        let result = self.write_buffer();
        self.buf.clear();
        result.map(|()| lines).map_err(|error| FlushError {
            error,
            lines,
            delivered: 0,
        })
    }

    fn write_buffer(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            let (file, size) = open(&self.path, self.cfg.perm)?;
            self.file = Some(file);
            self.size = size;
            self.opened = Instant::now();
        }
        let file = self.file.as_mut().expect("opened above");
        match file.write_all(&self.buf) {
            Ok(()) => {
                self.size += self.buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Keep the file made of whole lines: cut what part of the buffer went in.
                if file.set_len(self.size).is_err() {
                    self.file = None;
                }
                if e.raw_os_error() != Some(libc::ENOSPC) {
                    // The file may be gone or broken: reopen on the next flush.
                    self.file = None;
                }
                Err(e)
            }
        }
    }

    /// Renames the current file to a backup and starts a new one; compression and pruning
    /// run in the background, one rotation at a time.
    pub fn rotate(&mut self) {
        self.file = None;
        let (prefix, ext) = name_parts(&self.path);
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut now = SystemTime::now();
        let name = |t| dir.join(format!("{prefix}{}{ext}", backup_timestamp(t)));
        let gz = |p: &Path| {
            let mut s = p.as_os_str().to_owned();
            s.push(".gz");
            PathBuf::from(s)
        };
        let mut backup = name(now);
        // Two rotations within a millisecond: the next free name.
        while backup.exists() || gz(&backup).exists() {
            now += Duration::from_millis(1);
            backup = name(now);
        }
        if let Err(e) = std::fs::rename(&self.path, &backup)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::error!(path = %self.path.display(), error = %e, "cannot rotate the export file");
        }
        self.size = 0;
        self.opened = Instant::now();
        if let Ok((file, size)) = open(&self.path, self.cfg.perm) {
            self.file = Some(file);
            self.size = size;
        }
        if let Some(h) = self.housekeeping.take() {
            let _ = h.join();
        }
        let (path, compress, keep) = (self.path.clone(), self.cfg.compress, self.cfg.max_backups);
        self.housekeeping = Some(std::thread::spawn(move || {
            if compress
                && backup.exists()
                && let Err(e) = gzip(&backup)
            {
                tracing::error!(path = %backup.display(), error = %e, "cannot compress a rotated export file");
            }
            if keep > 0 {
                for old in backups(&path).into_iter().skip(keep) {
                    let _ = std::fs::remove_file(old);
                }
            }
        }));
    }

    /// Waits for background compression and pruning (tests, shutdown).
    pub fn wait_housekeeping(&mut self) {
        if let Some(h) = self.housekeeping.take() {
            let _ = h.join();
        }
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        self.wait_housekeeping();
    }
}

#[cfg(test)]
#[path = "rotate_tests.rs"]
mod tests;
