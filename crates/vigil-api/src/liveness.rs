//! Health `liveness` that means something: NOT_SERVING while the event pipeline is stuck.
//!
//! The pipeline bumps a counter for every batch it has handled; the ring reader counts the
//! batches it handed over. Records are waiting when the reader is ahead. The pipeline is
//! stalled when records have been waiting for [`STALL_THRESHOLD`] without the counter
//! moving; an idle agent (nothing waiting) is never stalled, however long it waits.

use std::time::{Duration, Instant};

/// How long waiting records may see no progress before liveness says NOT_SERVING.
pub const STALL_THRESHOLD: Duration = Duration::from_secs(10);
/// How often the health updater samples the pipeline.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One look at the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Batches handled so far (only ever grows).
    pub handled: u64,
    /// Records are waiting for the pipeline.
    pub waiting: bool,
}

/// What the health updater asks the agent.
pub type Probe = Box<dyn Fn() -> Sample + Send + Sync>;

/// Decides from successive samples whether the pipeline is alive (pure; time is given).
#[derive(Debug, Clone)]
pub struct StallDetector {
    threshold: Duration,
    last: Option<u64>,
    /// Since when no progress has been seen while records were waiting.
    since: Instant,
}

impl StallDetector {
    pub fn new(threshold: Duration, now: Instant) -> Self {
        Self {
            threshold,
            last: None,
            since: now,
        }
    }

    /// Takes a sample; returns whether the pipeline is alive.
    pub fn observe(&mut self, s: Sample, now: Instant) -> bool {
        if self.last != Some(s.handled) || !s.waiting {
            // Progress, or nothing to do: the clock starts again.
            self.last = Some(s.handled);
            self.since = now;
            return true;
        }
        now.saturating_duration_since(self.since) < self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_only_when_records_wait_without_progress() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut d = StallDetector::new(Duration::from_secs(10), t0);
        let sample = |handled, waiting| Sample { handled, waiting };
        // Idle for a long time: alive.
        assert!(d.observe(sample(0, false), s(0)));
        assert!(d.observe(sample(0, false), s(100)));
        // Records arrive and are handled: alive.
        assert!(d.observe(sample(1, true), s(101)));
        assert!(d.observe(sample(2, true), s(105)));
        // Records wait, nothing moves: alive until the threshold, then not.
        assert!(d.observe(sample(2, true), s(110)));
        assert!(d.observe(sample(2, true), s(114)));
        assert!(!d.observe(sample(2, true), s(115)));
        assert!(!d.observe(sample(2, true), s(200)));
        // It recovers: alive again at once.
        assert!(d.observe(sample(3, true), s(201)));
        assert!(d.observe(sample(3, false), s(230)));
        assert!(d.observe(sample(3, true), s(235)));
        assert!(!d.observe(sample(3, true), s(245)));
    }
}
