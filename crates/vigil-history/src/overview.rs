//! Queries for an overview of the whole history (the web explorer): the time span it covers
//! and the processes alive during a window.

use std::collections::HashMap;

use super::{History, ProcessRow, row_of, sql_err};
use crate::HistoryError;

impl History {
    /// (oldest, newest) event time in ns since the epoch over all slices; None when no
    /// batch was committed yet.
    pub fn time_range(&self) -> Result<Option<(i64, i64)>, HistoryError> {
        let mut range: Option<(i64, i64)> = None;
        for s in &self.slices {
            let row: (Option<i64>, Option<i64>) = s
                .conn
                .query_row("SELECT min(first_ns), max(last_ns) FROM batches", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(sql_err(&s.path))?;
            if let (Some(lo), Some(hi)) = row {
                range = Some(match range {
                    None => (lo, hi),
                    Some((a, b)) => (a.min(lo), b.max(hi)),
                });
            }
        }
        Ok(range)
    }

    /// Processes alive at some moment of `[since_ns, until_ns]` (started before its end, not
    /// exited before its start; an unknown start or exit counts as alive), merged across
    /// slices, the newest starts first, at most `limit`. The flag says whether more matched.
    pub fn processes_alive(
        &self,
        since_ns: i64,
        until_ns: i64,
        limit: usize,
    ) -> Result<(Vec<ProcessRow>, bool), HistoryError> {
        let mut merged: HashMap<String, ProcessRow> = HashMap::new();
        // Per slice, one row past the limit says "more": a slice's rows are merged, so the
        // total can only shrink by merging.
        let per_slice = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        for s in &self.slices {
            let err = sql_err(&s.path);
            let mut stmt = s
                .conn
                .prepare_cached(
                    "SELECT exec_id, parent_exec_id, pid, binary, arguments, pod_namespace, \
                     pod_name, start_ns, exit_ns FROM processes \
                     WHERE (start_ns IS NULL OR start_ns <= ?1) \
                     AND (exit_ns IS NULL OR exit_ns >= ?2) \
                     ORDER BY start_ns DESC LIMIT ?3",
                )
                .map_err(&err)?;
            let rows = stmt
                .query_map(rusqlite::params![until_ns, since_ns, per_slice], row_of)
                .map_err(&err)?;
            for row in rows {
                let row = row.map_err(&err)?;
                match merged.get_mut(&row.exec_id) {
                    Some(known) => {
                        known.exit_ns = known.exit_ns.or(row.exit_ns);
                        known.start_ns = known.start_ns.or(row.start_ns);
                    }
                    None => {
                        merged.insert(row.exec_id.clone(), row);
                    }
                }
            }
        }
        // Another slice may know an exit before the window (and so not have listed the
        // process): the point lookups merge it in.
        if self.slices.len() > 1 {
            for p in merged.values_mut().filter(|p| p.exit_ns.is_none()) {
                if let Some(whole) = self.process(&p.exec_id)? {
                    p.exit_ns = whole.exit_ns;
                }
            }
        }
        let mut alive: Vec<ProcessRow> = merged
            .into_values()
            .filter(|p| p.exit_ns.is_none_or(|e| e >= since_ns))
            .collect();
        alive.sort_by(|a, b| {
            b.start_ns
                .cmp(&a.start_ns)
                .then_with(|| a.exec_id.cmp(&b.exec_id))
        });
        let more = alive.len() > limit;
        alive.truncate(limit);
        Ok((alive, more))
    }
}

#[cfg(test)]
mod tests {
    use crate::{History, schema};

    /// A slice file with these process rows (exec id, start, exit) and one batch spanning
    /// `batch` (first, last ns).
    fn slice(
        dir: &std::path::Path,
        name: &str,
        rows: &[(&str, i64, Option<i64>)],
        batch: (i64, i64),
    ) {
        let path = dir.join(name);
        std::fs::File::create(&path).unwrap();
        let w = schema::open_writer(&path, 1 << 20, "node").unwrap();
        for (id, start, exit) in rows {
            w.execute(
                "INSERT INTO processes (exec_id, parent_exec_id, pid, binary, arguments, start_ns, exit_ns) \
                 VALUES (?1, '', 1, '/bin/sh', '', ?2, ?3)",
                rusqlite::params![id, start, exit],
            )
            .unwrap();
        }
        w.execute(
            "INSERT INTO batches (first_ns, last_ns, events, raw_bytes, codec, data) VALUES (?1, ?2, 0, 0, 'zstd-jsonl', x'')",
            rusqlite::params![batch.0, batch.1],
        )
        .unwrap();
    }

    #[test]
    fn the_range_spans_every_slice_and_alive_means_overlapping_the_window() {
        let dir = tempfile::tempdir().unwrap();
        slice(
            dir.path(),
            &crate::slices::file_name(1),
            &[
                ("early", 10, Some(20)),
                ("long", 15, None),
                ("late", 50, None),
            ],
            (10, 60),
        );
        // The later slice knows that "long" exited at 30.
        slice(
            dir.path(),
            &crate::slices::file_name(2),
            &[("long", 15, Some(30))],
            (25, 90),
        );
        let h = History::open(dir.path()).unwrap();
        assert_eq!(h.time_range().unwrap(), Some((10, 90)));
        let ids = |since, until, limit| {
            let (rows, more) = h.processes_alive(since, until, limit).unwrap();
            (
                rows.into_iter().map(|p| p.exec_id).collect::<Vec<_>>(),
                more,
            )
        };
        assert_eq!(
            ids(0, 100, 10),
            (vec!["late".into(), "long".into(), "early".into()], false)
        );
        assert_eq!(ids(35, 100, 10), (vec!["late".to_string()], false));
        assert_eq!(ids(0, 12, 10), (vec!["early".to_string()], false));
        assert_eq!(ids(0, 100, 2), (vec!["late".into(), "long".into()], true));
    }
}
