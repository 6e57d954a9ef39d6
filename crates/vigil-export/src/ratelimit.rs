//! `--export-rate-limit` (events per minute): a token bucket of one minute's events that
//! refills continuously, as Tetragon's. Drops are counted and reported as one
//! `rate_limit_info` event per minute in which something was dropped (and at shutdown).

use std::time::{Duration, Instant};

pub const REPORT_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct RateLimiter {
    per_minute: f64,
    tokens: f64,
    last_refill: Instant,
    dropped_unreported: u64,
    dropped_total: u64,
    last_report: Instant,
}

impl RateLimiter {
    pub fn new(per_minute: u64, now: Instant) -> Self {
        Self {
            per_minute: per_minute as f64,
            tokens: per_minute as f64,
            last_refill: now,
            dropped_unreported: 0,
            dropped_total: 0,
            last_report: now,
        }
    }

    /// True when the event may be exported; otherwise it is counted as dropped.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.last_refill = now;
        self.tokens = (self.tokens + elapsed * self.per_minute / 60.0).min(self.per_minute);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped_unreported += 1;
            self.dropped_total += 1;
            false
        }
    }

    /// Drops to report now (once per interval, or always when `force`).
    pub fn report(&mut self, now: Instant, force: bool) -> Option<u64> {
        if !force && now.saturating_duration_since(self.last_report) < REPORT_INTERVAL {
            return None;
        }
        self.last_report = now;
        let n = std::mem::take(&mut self.dropped_unreported);
        (n > 0).then_some(n)
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_of_a_minute_refills_and_reports() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(60, t0);
        let passed = (0..100).filter(|_| r.allow(t0)).count();
        assert_eq!(passed, 60);
        assert_eq!(r.report(t0, false), None, "not before the interval");
        // One second later one more token.
        assert!(r.allow(t0 + Duration::from_secs(1)));
        assert!(!r.allow(t0 + Duration::from_secs(1)));
        assert_eq!(r.report(t0 + REPORT_INTERVAL, false), Some(41));
        assert_eq!(r.report(t0 + REPORT_INTERVAL * 2, false), None);
        assert_eq!(r.dropped_total(), 41);
    }
}
