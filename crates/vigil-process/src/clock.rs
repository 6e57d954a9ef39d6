//! Conversion of kernel boot-clock times (what the eBPF programs stamp) to wall-clock time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Now on CLOCK_BOOTTIME, the clock of `bpf_ktime_get_boot_ns`.
pub fn boot_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// Maps boot-clock nanoseconds to wall-clock time, with the offset measured once.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    boot_epoch_ns: u64,
}

impl BootClock {
    pub fn measure() -> Self {
        let wall = clock_ns(libc::CLOCK_REALTIME);
        Self {
            boot_epoch_ns: wall.saturating_sub(boot_ns()),
        }
    }

    pub fn to_wall(&self, ktime: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.boot_epoch_ns + ktime)
    }

    /// Seconds and nanoseconds since the epoch.
    pub fn to_unix(&self, ktime: u64) -> (i64, i32) {
        let ns = self.boot_epoch_ns + ktime;
        ((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i32)
    }
}
