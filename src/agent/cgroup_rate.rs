//! `--cgroup-rate`: the process_throttle events. The kernel throttles a cgroup on a CPU where
//! it goes over the rate and says so once (bpf/include/vigil_cgroup_rate.h); this side emits
//! THROTTLE_START for the cgroup, checks it every second, and ends the throttle with
//! THROTTLE_STOP once every CPU has been quiet or under the rate for 5 s (Tetragon's rule,
//! pkg/cgrouprate).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vigil_bpf::abi::vigil_rate_value;
use vigil_bpf::cgroup_rate::{CgroupRate, CgroupRateMap};
use vigil_proto::tetragon::{ProcessThrottle, ThrottleType};

/// How long a throttled cgroup must stay under the rate (or quiet) before it is released.
const CALM: Duration = Duration::from_secs(5);
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Cgroups with no event for this long leave the kernel's table (it has a fixed capacity).
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// A process_throttle event to emit, with its time (boot-clock ns).
#[derive(Debug, PartialEq)]
pub struct Throttle {
    pub event: ProcessThrottle,
    pub ktime: u64,
}

fn throttle(kind: ThrottleType, cgroup: &str, ktime: u64) -> Throttle {
    Throttle {
        event: ProcessThrottle {
            r#type: kind as i32,
            cgroup: cgroup.to_string(),
        },
        ktime,
    }
}

/// Whether a throttled cgroup may go: on every CPU, no event for CALM (counted from the
/// start of the last event's window, as Tetragon), or under the rate and throttled for CALM.
fn released(cpus: &[vigil_rate_value], events: u64, now_ns: u64) -> bool {
    let calm = CALM.as_nanos() as u64;
    cpus.iter().all(|v| {
        let quiet = now_ns > v.window.saturating_add(calm);
        let under = v.rate < events && now_ns > v.throttled.saturating_add(calm);
        quiet || under
    })
}

/// The cgroups being throttled, by cgroup id, with their names.
pub struct Throttles {
    rate: CgroupRate,
    map: CgroupRateMap,
    throttled: HashMap<u64, String>,
    last_check: Instant,
    last_forget: Instant,
    /// Events withheld so far, for the loss reports.
    pub withheld_execs: u64,
    pub withheld_exits: u64,
}

impl Throttles {
    pub fn new(rate: CgroupRate, map: CgroupRateMap) -> Self {
        let now = Instant::now();
        Self {
            rate,
            map,
            throttled: HashMap::new(),
            last_check: now,
            last_forget: now,
            withheld_execs: 0,
            withheld_exits: 0,
        }
    }

    /// The kernel started throttling `id` on one CPU: THROTTLE_START unless the cgroup is
    /// already throttled (on another CPU).
    pub fn started(&mut self, id: u64, name: &[u8], ktime: u64) -> Option<Throttle> {
        if self.throttled.contains_key(&id) {
            return None;
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let start = throttle(ThrottleType::ThrottleStart, &name, ktime);
        self.throttled.insert(id, name);
        Some(start)
    }

    /// Once a second: THROTTLE_STOP for each cgroup that calmed down (its throttle ended in
    /// the kernel first). `now_ns`: the boot clock.
    pub fn check(&mut self, now: Instant, now_ns: u64) -> Vec<Throttle> {
        if now.duration_since(self.last_check) < CHECK_EVERY {
            return Vec::new();
        }
        self.last_check = now;
        let events = u64::from(self.rate.events);
        let mut stops = Vec::new();
        self.throttled.retain(|&id, name| {
            // No entry: the kernel no longer counts the cgroup, so nothing holds it back.
            let Some(cpus) = self.map.get(id) else {
                stops.push(throttle(ThrottleType::ThrottleStop, name, now_ns));
                return false;
            };
            if !released(&cpus, events, now_ns) {
                return true;
            }
            if let Err(e) = self.map.clear_throttled(id, cpus) {
                // Left throttled: the next check tries again.
                tracing::warn!(cgroup = name.as_str(), error = %e, "cgroup throttle not ended");
                return true;
            }
            stops.push(throttle(ThrottleType::ThrottleStop, name, now_ns));
            false
        });
        if now.duration_since(self.last_forget) >= FORGET_AFTER {
            self.last_forget = now;
            let before = now_ns.saturating_sub(FORGET_AFTER.as_nanos() as u64);
            let throttled = &self.throttled;
            self.map
                .remove_idle(before, |id| throttled.contains_key(&id));
        }
        stops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn cpu(window: u64, rate: u64, throttled: u64) -> vigil_rate_value {
        vigil_rate_value {
            window,
            rate,
            throttled,
            ..Default::default()
        }
    }

    #[test]
    fn a_cgroup_goes_when_every_cpu_is_quiet_or_calm_for_five_seconds() {
        let now = 100 * S;
        // Quiet: last window started more than 5 s ago, whatever its rate.
        assert!(released(&[cpu(94 * S, 500, 90 * S)], 10, now));
        assert!(!released(&[cpu(96 * S, 500, 90 * S)], 10, now));
        // Still busy but under the rate, throttled long enough.
        assert!(released(&[cpu(99 * S, 9, 90 * S)], 10, now));
        // Under the rate, but throttled less than 5 s ago.
        assert!(!released(&[cpu(99 * S, 9, 97 * S)], 10, now));
        // At the rate: held.
        assert!(!released(&[cpu(99 * S, 10, 90 * S)], 10, now));
        // Every CPU must agree; a CPU that never ran the cgroup (zeroed) does.
        assert!(!released(&[cpu(0, 0, 0), cpu(99 * S, 10, 90 * S)], 10, now));
        assert!(released(&[cpu(0, 0, 0), cpu(94 * S, 10, 90 * S)], 10, now));
    }
}
