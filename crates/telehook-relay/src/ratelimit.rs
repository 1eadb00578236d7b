//! Requests per client IP: the GCRA of [`governor`] (a token bucket without a refill timer),
//! one cell per IP, with a bounded number of IPs tracked.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::RateLimit;

/// Per-IP rate limiter, bounded to `max_clients` IPs.
///
/// When the table is full, IPs whose allowance has refilled completely are forgotten (they lose
/// nothing by it, since a fresh cell is the same). If it is still full, requests are counted
/// against one shared overflow allowance (the same quota) until room frees up: the bound holds,
/// no tracked client's debt is reset, and a flood of new IPs cannot get more than one client's
/// share.
#[derive(Debug)]
pub struct RateLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    overflow: governor::DefaultDirectRateLimiter,
    clock: DefaultClock,
    max_clients: usize,
}

impl RateLimiter {
    /// A limiter with the given rate, burst and client bound.
    pub fn new(limit: RateLimit) -> Self {
        let per_second = if limit.per_second.is_finite() && limit.per_second > 0.0 {
            limit.per_second
        } else {
            f64::MIN_POSITIVE
        };
        let period = Duration::try_from_secs_f64(1.0 / per_second)
            .unwrap_or(Duration::MAX)
            .max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(limit.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        let limiter = DefaultKeyedRateLimiter::keyed(quota);
        Self {
            overflow: governor::RateLimiter::direct(quota),
            clock: limiter.clock().clone(),
            limiter,
            max_clients: limit.max_clients.max(1),
        }
    }

    /// Takes one request's allowance for `ip`, or says how long until one is there.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.limiter.len() >= self.max_clients {
            self.limiter.retain_recent();
            if self.limiter.len() >= self.max_clients {
                return self
                    .overflow
                    .check()
                    .map_err(|not_until| not_until.wait_time_from(self.clock.now()));
            }
        }
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets IPs whose allowance has refilled (called periodically).
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many client IPs are tracked now.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_burst_and_tells_when_to_retry() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 3,
            max_clients: 10,
        });
        let ip: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..3 {
            assert!(limiter.check(ip).is_ok());
        }
        let wait = limiter.check(ip).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(
            limiter.check([127, 0, 0, 2].into()).is_ok(),
            "other clients keep their own allowance"
        );
    }

    #[test]
    fn a_full_table_keeps_its_clients_and_its_bound() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 0.001,
            burst: 2,
            max_clients: 2,
        });
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            [10, 0, 0, 3].into(),
        );
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(b).is_ok());
        // No room for a third IP: it shares the overflow allowance (burst 2).
        assert!(limiter.check(c).is_ok());
        assert!(limiter.check([10, 0, 0, 4].into()).is_ok());
        assert!(
            limiter.check([10, 0, 0, 5].into()).is_err(),
            "overflow spent"
        );
        assert_eq!(limiter.tracked(), 2, "the bound holds");
    }
}
