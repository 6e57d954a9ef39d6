//! `tracingpolicy list` as tetra prints it: Go's tabwriter with kubectl's layout (cells
//! padded to the widest in their column plus 3 spaces, the last cell of a line unpadded),
//! kernel memory in decimal units, and for a partially enabled policy its hooks in a
//! sub-table indented under NAME.

use vigil_proto::tetragon::{
    HookState, TracingPolicyMode, TracingPolicyState, TracingPolicyStatus,
};

const PADDING: usize = 3;

/// Go tabwriter (minwidth 0, padding 3, no flags) over rows of cells: every cell but the
/// last of its row is padded to its column's width plus the padding.
fn tabwrite(rows: &[Vec<String>]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter(|r| i + 1 < r.len())
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                if i + 1 < r.len() {
                    let w = widths[i] + PADDING;
                    line.push_str(&format!("{cell:<w$}"));
                } else {
                    line.push_str(cell);
                }
            }
            line
        })
        .collect()
}

/// Bytes in decimal units as tetra prints them: `512 B`, `4.46 MB`.
pub fn humanize_bytes(b: u64) -> String {
    const UNIT: u64 = 1000;
    if b < UNIT {
        return format!("{b} B");
    }
    let (mut div, mut exp) = (UNIT, 0usize);
    let mut n = b / UNIT;
    while n >= UNIT {
        div *= UNIT;
        exp += 1;
        n /= UNIT;
    }
    format!("{:.2} {}B", b as f64 / div as f64, &"kMGTPE"[exp..=exp])
}

fn lower_without(name: &str, prefix: &str) -> String {
    name.to_lowercase()
        .strip_prefix(prefix)
        .map(str::to_string)
        .unwrap_or_else(|| name.to_lowercase())
}

/// The text of `tracingpolicy list`, one `\n`-terminated line per row.
pub fn policies(policies: &[TracingPolicyStatus]) -> String {
    let mut rows = vec![
        [
            "ID",
            "NAME",
            "DOMAIN",
            "STATE",
            "FILTERID",
            "NAMESPACE",
            "SENSORS",
            "KERNELMEMORY",
            "MODE",
            "NPOST",
            "NENFORCE",
            "NMONITOR",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut hooks_after_row = Vec::new();
    for p in policies {
        let c = p
            .stats
            .as_ref()
            .and_then(|s| s.action_counters)
            .unwrap_or_default();
        let state =
            TracingPolicyState::try_from(p.state).unwrap_or(TracingPolicyState::TpStateUnknown);
        let mode = TracingPolicyMode::try_from(p.mode).unwrap_or(TracingPolicyMode::TpModeUnknown);
        rows.push(vec![
            p.id.to_string(),
            p.name.clone(),
            p.domain.clone(),
            lower_without(state.as_str_name(), "tp_state_"),
            p.filter_id.to_string(),
            if p.namespace.is_empty() {
                "(global)".to_string()
            } else {
                p.namespace.clone()
            },
            p.sensors.join(","),
            humanize_bytes(p.kernel_memory_bytes),
            lower_without(mode.as_str_name(), "tp_mode_"),
            c.post.to_string(),
            (c.signal + c.r#override + c.notify_enforcer + c.set).to_string(),
            (c.monitor_signal + c.monitor_override + c.monitor_notify_enforcer + c.monitor_set)
                .to_string(),
        ]);
        if state == TracingPolicyState::TpStatePartiallyEnabled && !p.hook_statuses.is_empty() {
            hooks_after_row.push((rows.len() - 1, p));
        }
    }
    let lines = tabwrite(&rows);
    // The hook sub-tables line up under NAME.
    let indent = " ".repeat(lines[0].find("NAME").unwrap_or(0));
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        out.push_str(line);
        out.push('\n');
        if let Some((_, p)) = hooks_after_row.iter().find(|(row, _)| *row == i) {
            let mut sub = vec![
                ["SECTION", "CFGIDX", "DESCRIPTION", "STATUS"]
                    .map(String::from)
                    .to_vec(),
            ];
            for h in &p.hook_statuses {
                let st = HookState::try_from(h.state).unwrap_or(HookState::StatusUnspecified);
                sub.push(vec![
                    h.section.clone(),
                    h.hook_idx.to_string(),
                    h.hook_description.clone(),
                    lower_without(st.as_str_name(), "status_"),
                ]);
            }
            for l in tabwrite(&sub) {
                out.push_str(&indent);
                out.push_str(&l);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::tetragon::{HookStatus, TracingPolicyActionCounters, TracingPolicyStats};

    #[test]
    fn bytes_as_tetra() {
        assert_eq!(humanize_bytes(0), "0 B");
        assert_eq!(humanize_bytes(999), "999 B");
        assert_eq!(humanize_bytes(1000), "1.00 kB");
        assert_eq!(humanize_bytes(4_458_824), "4.46 MB");
        assert_eq!(humanize_bytes(3_000_000_000), "3.00 GB");
    }

    fn status(id: u64, name: &str, state: TracingPolicyState) -> TracingPolicyStatus {
        TracingPolicyStatus {
            id,
            name: name.into(),
            domain: "grpc".into(),
            state: state as i32,
            mode: TracingPolicyMode::TpModeEnforce as i32,
            sensors: vec!["generic_syscall:__x64_sys_openat".into()],
            kernel_memory_bytes: 245_760,
            stats: Some(TracingPolicyStats {
                action_counters: Some(TracingPolicyActionCounters {
                    post: 12,
                    signal: 2,
                    set: 1,
                    monitor_signal: 3,
                    ..Default::default()
                }),
                selector_action_counters: Vec::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn table_as_tetra_prints_it() {
        let mut partial = status(7, "lsm", TracingPolicyState::TpStatePartiallyEnabled);
        partial.hook_statuses = vec![HookStatus {
            state: HookState::StatusCallNotFound as i32,
            hook_description: "security_bprm_check".into(),
            section: "lsmhooks".into(),
            hook_idx: 0,
        }];
        partial.stats = None;
        partial.sensors.clear();
        partial.kernel_memory_bytes = 0;
        let text = policies(&[
            status(1, "etc-cat", TracingPolicyState::TpStateEnabled),
            partial,
        ]);
        // Written by hand from tetra's PrintTracingPolicies format.
        let expected = concat!(
            "ID   NAME      DOMAIN   STATE               FILTERID   NAMESPACE   SENSORS                            KERNELMEMORY   MODE      NPOST   NENFORCE   NMONITOR\n",
            "1    etc-cat   grpc     enabled             0          (global)    generic_syscall:__x64_sys_openat   245.76 kB      enforce   12      3          3\n",
            "7    lsm       grpc     partially_enabled   0          (global)                                       0 B            enforce   0       0          0\n",
            "     SECTION    CFGIDX   DESCRIPTION           STATUS\n",
            "     lsmhooks   0        security_bprm_check   call_not_found\n",
        );
        assert_eq!(text, expected);
    }
}
