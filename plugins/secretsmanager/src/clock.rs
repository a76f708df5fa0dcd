//! The service's clock: wall time that tests can stop and move, so a recovery window of
//! seven days ends without waiting seven days.

use std::sync::atomic::{AtomicI64, Ordering};

/// Epoch milliseconds: the system's, shifted by an offset, or stopped at a fixed instant.
#[derive(Debug, Default)]
pub struct Clock {
    /// Stopped at this instant; `0` while running.
    stopped_at: AtomicI64,
    /// Added to the system time while running.
    shift: AtomicI64,
}

impl Clock {
    /// Now.
    pub fn now_ms(&self) -> i64 {
        match self.stopped_at.load(Ordering::SeqCst) {
            0 => {
                let system = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                system + self.shift.load(Ordering::SeqCst)
            }
            t => t,
        }
    }

    /// Stops the clock at `ms` (positive).
    pub fn stop_at(&self, ms: i64) {
        self.stopped_at.store(ms.max(1), Ordering::SeqCst);
    }

    /// Moves the clock forward by `ms`, stopped or running.
    pub fn forward(&self, ms: i64) {
        let stopped = self.stopped_at.load(Ordering::SeqCst);
        if stopped == 0 {
            self.shift.fetch_add(ms, Ordering::SeqCst);
        } else {
            self.stopped_at.store(stopped + ms, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_time_moves_only_forward_on_request() {
        let c = Clock::default();
        c.stop_at(5);
        assert_eq!(c.now_ms(), 5);
        c.forward(10);
        assert_eq!(c.now_ms(), 15);
        let running = Clock::default();
        let before = running.now_ms();
        running.forward(1000);
        assert!(running.now_ms() >= before + 1000);
    }
}
