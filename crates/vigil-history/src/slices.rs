//! Slice files and retention arithmetic.
//!
//! A slice is `history-<start ms, 16 digits>.db` plus the files SQLite keeps beside it
//! (`-wal`, `-shm`, `-journal`). Retention counts all of them, in every slice, against the
//! byte budget, and drops whole slices: deleting rows would not shrink a file.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The smallest byte budget: an empty slice and a batch must fit several times over.
pub const MIN_BUDGET: u64 = 4 << 20;

const PREFIX: &str = "history-";
const SUFFIX: &str = ".db";
/// The files of a slice besides the database itself.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The file name of the slice that starts at `start_ms` (ms since the epoch).
pub fn file_name(start_ms: u64) -> String {
    format!("{PREFIX}{start_ms:016}{SUFFIX}")
}

/// The start of a slice from its file name; None for any other file.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    (digits.len() == 16 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The database and its companions.
pub fn files_of(db: &Path) -> Vec<PathBuf> {
    let mut files = vec![db.to_path_buf()];
    for c in COMPANIONS {
        let mut name = db.as_os_str().to_owned();
        name.push(c);
        files.push(PathBuf::from(name));
    }
    files
}

/// Bytes on disk of a slice: its database and companions (absent files count 0).
pub fn bytes_of(db: &Path) -> u64 {
    files_of(db)
        .iter()
        .filter_map(|f| std::fs::symlink_metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// The slices in `dir`, oldest first: (start ms, path).
pub fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(start) = entry.file_name().to_str().and_then(parse_name) {
            out.push((start, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Removes a slice's files (the database last, so a half-removed slice is still listed).
pub fn remove(db: &Path) -> std::io::Result<()> {
    let files = files_of(db);
    for f in files.iter().skip(1) {
        match std::fs::remove_file(f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::remove_file(&files[0])
}

/// The limits, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes of all slices' files together, at most.
    pub max_bytes: u64,
    /// A slice goes when its newest event is older than this.
    pub max_age: Duration,
}

impl Budget {
    /// WAL bytes between checkpoints: a sixteenth of the budget, within [256 KiB, 8 MiB].
    pub fn wal_limit(&self) -> u64 {
        (self.max_bytes / 16).clamp(256 << 10, 8 << 20)
    }

    /// A slice is closed at this size, so that dropping the oldest frees about an eighth.
    pub fn slice_bytes(&self) -> u64 {
        (self.max_bytes / 8).max(1 << 20)
    }

    /// A slice is closed after this long, so that age retention is exact to about an eighth.
    pub fn slice_span(&self) -> Duration {
        (self.max_age / 8).clamp(Duration::from_secs(60), Duration::from_secs(3600))
    }
}

/// What retention knows of one slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceState {
    pub bytes: u64,
    /// Time (ms since the epoch) of its newest event (its start when it has none).
    pub newest_ms: u64,
    /// The slice being written.
    pub current: bool,
}

/// What to do before writing `incoming` more bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indexes (into the given slices, oldest first) of the slices to drop.
    pub drop: Vec<usize>,
    /// Close the current slice and start a new one (the current alone is over budget),
    /// then plan again.
    pub rotate: bool,
}

/// Slices too old go; then the oldest go until what is left plus `incoming` fits. When only
/// the current slice is left and it does not fit, the plan is to rotate it.
pub fn plan(slices: &[SliceState], budget: &Budget, incoming: u64, now_ms: u64) -> Plan {
    let max_age_ms = u64::try_from(budget.max_age.as_millis()).unwrap_or(u64::MAX);
    let mut plan = Plan::default();
    let mut total: u64 = slices.iter().map(|s| s.bytes).sum();
    for (i, s) in slices.iter().enumerate() {
        let too_old = now_ms.saturating_sub(s.newest_ms) > max_age_ms;
        if !s.current && too_old {
            plan.drop.push(i);
            total -= s.bytes;
        }
    }
    for (i, s) in slices.iter().enumerate() {
        if total.saturating_add(incoming) <= budget.max_bytes {
            break;
        }
        if !s.current && !plan.drop.contains(&i) {
            plan.drop.push(i);
            total -= s.bytes;
        }
    }
    if total.saturating_add(incoming) > budget.max_bytes && slices.iter().any(|s| s.current) {
        plan.rotate = true;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max_bytes: u64, secs: u64) -> Budget {
        Budget {
            max_bytes,
            max_age: Duration::from_secs(secs),
        }
    }

    fn slice(bytes: u64, newest_ms: u64, current: bool) -> SliceState {
        SliceState {
            bytes,
            newest_ms,
            current,
        }
    }

    #[test]
    fn names_sort_by_time_and_strangers_are_ignored() {
        assert_eq!(file_name(42), "history-0000000000000042.db");
        assert_eq!(
            parse_name(&file_name(1_700_000_000_123)),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_name("history-42.db"), None);
        assert_eq!(parse_name("history-0000000000000042.db-wal"), None);
        assert_eq!(parse_name("other.db"), None);
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn nothing_goes_while_everything_fits() {
        let s = [slice(100, 1000, false), slice(100, 2000, true)];
        assert_eq!(plan(&s, &budget(1000, 3600), 100, 3000), Plan::default());
    }

    #[test]
    fn the_oldest_go_until_the_incoming_bytes_fit() {
        let s = [
            slice(300, 1000, false),
            slice(300, 2000, false),
            slice(300, 3000, false),
            slice(50, 4000, true),
        ];
        // 950 + 200 > 1000: dropping the oldest (300) leaves 650 + 200.
        assert_eq!(
            plan(&s, &budget(1000, 3600), 200, 5000),
            Plan {
                drop: vec![0],
                rotate: false
            }
        );
        // 950 + 500: two must go.
        assert_eq!(plan(&s, &budget(1000, 3600), 500, 5000).drop, vec![0, 1]);
    }

    #[test]
    fn old_slices_go_whatever_their_size_but_never_the_current_one() {
        let s = [
            slice(10, 1_000, false),
            slice(10, 50_000, false),
            slice(10, 1_000, true),
        ];
        // max age 10 s at now = 60 s: the first (newest at 1 s) is too old, the second not;
        // the current one is written to, so it stays.
        assert_eq!(
            plan(&s, &budget(1 << 30, 10), 0, 60_000),
            Plan {
                drop: vec![0],
                rotate: false
            }
        );
    }

    #[test]
    fn a_current_slice_over_budget_is_rotated() {
        let s = [slice(400, 1000, false), slice(900, 2000, true)];
        assert_eq!(
            plan(&s, &budget(1000, 3600), 200, 3000),
            Plan {
                drop: vec![0],
                rotate: true
            }
        );
    }

    #[test]
    fn derived_sizes_stay_within_their_bounds() {
        let small = budget(MIN_BUDGET, 60);
        assert_eq!(small.wal_limit(), 256 << 10);
        assert_eq!(small.slice_bytes(), 1 << 20);
        assert_eq!(small.slice_span(), Duration::from_secs(60));
        let big = budget(10 << 30, 7 * 86400);
        assert_eq!(big.wal_limit(), 8 << 20);
        assert_eq!(big.slice_bytes(), 10 << 27);
        assert_eq!(big.slice_span(), Duration::from_secs(3600));
    }
}
