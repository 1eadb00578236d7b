//! The one backoff telehook uses wherever it waits after a failure (the `getUpdates` loop, the
//! relay client, the runner's retries of a failing handler): exponential with jitter, built on
//! [`backon`].

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};

/// Exponential backoff with jitter, reset after a success.
///
/// The `n`-th delay (from 0) has the ceiling `min · 2ⁿ`, capped at `max`, and is a random point
/// in the upper half of it, `[ceiling / 2, ceiling)`: clients that failed together retry apart,
/// and no delay exceeds `max`.
///
/// ```
/// use std::time::Duration;
/// let mut backoff = telehook_polling::Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// let first = backoff.next_delay();
/// assert!(first >= Duration::from_millis(500) && first < Duration::from_secs(1));
/// backoff.reset();
/// ```
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    attempt: u32,
}

impl Backoff {
    /// A backoff from `min` to `max` (`max` below `min` is raised to `min`).
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        // backon's jitter adds up to 100 % of the delay, so halving both ends puts every delay
        // in the upper half of its ceiling.
        let builder = ExponentialBuilder::new()
            .with_min_delay(min / 2)
            .with_max_delay(max / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            min,
            max,
            builder,
            delays: builder.build(),
            attempt: 0,
        }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.delays.next().unwrap_or(self.max / 2).min(
            self.max
                .saturating_sub(Duration::from_nanos(1))
                .max(self.min / 2),
        )
    }

    /// How many delays were handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts again from `min` (after a success).
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
        self.attempt = 0;
    }
}

impl Clone for Backoff {
    /// A fresh backoff with the same bounds.
    fn clone(&self) -> Self {
        Self::new(self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_in_the_upper_half_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for i in 0..12u32 {
            let delay = backoff.next_delay();
            let ceiling = Duration::from_secs(1 << i.min(6)).min(Duration::from_secs(60));
            assert!(
                delay >= ceiling / 2 && delay < ceiling,
                "attempt {i}: {delay:?} not in [{:?}, {ceiling:?})",
                ceiling / 2
            );
        }
        assert_eq!(backoff.attempt(), 12);
        backoff.reset();
        assert_eq!(backoff.attempt(), 0);
        assert!(backoff.next_delay() < Duration::from_secs(1));
    }

    #[test]
    fn delays_differ_between_backoffs() {
        let a: Vec<_> = {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
            (0..8).map(|_| b.next_delay()).collect()
        };
        let b: Vec<_> = {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
            (0..8).map(|_| b.next_delay()).collect()
        };
        assert_ne!(a, b, "jitter spreads clients apart");
    }
}
