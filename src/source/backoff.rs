//! Reconnect backoff: capped exponential growth with full jitter, as a pure value (randomness passed in).

use std::time::Duration;

/// Capped exponential backoff with "full jitter" (AWS architecture blog): the n-th delay is drawn
/// uniformly from `[0, min(cap, initial * 2^n)]`, which spreads a fleet of sidecars reconnecting
/// after an exchange restart instead of synchronising them.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Self {
            initial,
            cap: cap.max(initial),
            attempt: 0,
        }
    }

    /// The upper bound of the next delay before jitter: `min(cap, initial * 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        // Beyond 2^20 the product exceeds any sane cap; stop doubling so it cannot overflow.
        let factor = 1u32 << self.attempt.min(20);
        self.initial.saturating_mul(factor).min(self.cap)
    }

    /// The next delay; `unit` is a uniform random number in `[0, 1]`.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The cap itself: used when retrying sooner is pointless (401/403).
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// A connection that applied a snapshot was healthy: start over from `initial`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_from_initial_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let got: Vec<u128> = (0..12).map(|_| b.next_delay(1.0).as_millis()).collect();
        assert_eq!(
            got,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
    }

    #[test]
    fn full_jitter_scales_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        assert_eq!(b.next_delay(0.0), Duration::ZERO);
        assert_eq!(b.next_delay(0.5), Duration::from_millis(100));
        // Out-of-range randomness is clamped rather than trusted.
        assert_eq!(b.next_delay(7.0), Duration::from_millis(400));
    }

    #[test]
    fn reset_starts_over_and_huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        for _ in 0..1000 {
            b.next_delay(1.0);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.next_delay(1.0), Duration::from_millis(100));
    }

    #[test]
    fn cap_below_initial_is_raised_to_initial() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.cap(), Duration::from_secs(2));
    }
}
