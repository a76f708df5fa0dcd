//! The service's clock: wall time, which tests may freeze or move forward.
//!
//! Every time the SQS plugin reads goes through one [`Clock`] per running service, so a test
//! can make a visibility timeout or a deduplication window pass without sleeping, and the
//! conformance harness can compare two captures taken "at the same instant".

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

/// Wall-clock epoch milliseconds, optionally frozen or offset for tests.
#[derive(Debug, Default)]
pub struct Clock {
    frozen: AtomicBool,
    frozen_at: AtomicI64,
    offset: AtomicI64,
    changed: Notify,
}

impl Clock {
    /// Now, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        if self.frozen.load(Ordering::SeqCst) {
            return self.frozen_at.load(Ordering::SeqCst);
        }
        let sys = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        sys + self.offset.load(Ordering::SeqCst)
    }

    /// Stops the clock at `ms`.
    pub fn freeze(&self, ms: i64) {
        self.frozen_at.store(ms, Ordering::SeqCst);
        self.frozen.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Moves the clock forward (frozen or not) by `ms`, waking long polls so they look again.
    pub fn advance(&self, ms: i64) {
        if self.frozen.load(Ordering::SeqCst) {
            self.frozen_at.fetch_add(ms, Ordering::SeqCst);
        } else {
            self.offset.fetch_add(ms, Ordering::SeqCst);
        }
        self.changed.notify_waiters();
    }

    /// Completes when the clock is frozen or moved.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_clock_moves_only_when_advanced() {
        let c = Clock::default();
        c.freeze(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(500);
        assert_eq!(c.now_ms(), 1_500);
    }

    #[test]
    fn a_running_clock_follows_the_system_clock() {
        let c = Clock::default();
        let a = c.now_ms();
        c.advance(60_000);
        assert!(c.now_ms() >= a + 60_000);
    }
}
