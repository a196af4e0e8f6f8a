//! How soon a service that exited runs again: quickly the first time,
//! slower while it keeps failing, quickly again once it has been healthy.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    healthy_after: Duration,
    next: Duration,
}

impl Default for Backoff {
    /// First restart after 100 ms, doubling up to 30 s, reset after a
    /// minute of running.
    fn default() -> Self {
        Self::new(
            Duration::from_millis(100),
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
    }
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration, healthy_after: Duration) -> Self {
        Self {
            first,
            cap,
            healthy_after,
            next: first,
        }
    }

    /// The delay before the next start, given how long the last run lasted.
    pub fn delay_after(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.healthy_after {
            self.next = self.first;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.cap);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_while_failing_fast_and_stops_at_the_cap() {
        let mut backoff = Backoff::new(MS(100), MS(1000), MS(60_000));
        let delays: Vec<_> = (0..6).map(|_| backoff.delay_after(MS(10))).collect();
        assert_eq!(
            delays,
            vec![MS(100), MS(200), MS(400), MS(800), MS(1000), MS(1000)]
        );
    }

    #[test]
    fn a_healthy_run_resets_it() {
        let mut backoff = Backoff::new(MS(100), MS(1000), MS(60_000));
        backoff.delay_after(MS(10));
        backoff.delay_after(MS(10));
        assert_eq!(backoff.delay_after(MS(60_000)), MS(100));
        assert_eq!(backoff.delay_after(MS(10)), MS(200));
    }

    #[test]
    fn the_first_restart_is_within_a_second() {
        assert!(Backoff::default().delay_after(Duration::ZERO) < Duration::from_secs(1));
    }
}
