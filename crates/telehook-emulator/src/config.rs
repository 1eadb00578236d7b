//! How fast the emulator's clock runs ([`Timing`]) and how much it keeps ([`Limits`]).

use std::time::{Duration, Instant};

/// Telegram's durations, and the factor that scales every one of them.
///
/// `scale` multiplies every duration the emulator waits on its own: the webhook response
/// timeout, retry delays and their cap, an honoured `Retry-After`, update expiry, and a
/// `getUpdates` long-poll `timeout`. `Timing::scaled(0.001)` turns Telegram's 60 s response
/// timeout into 60 ms, so retry and timeout behaviour can be tested in milliseconds.
/// Durations a test passes in itself ([`crate::Fault::Delay`], deadlines of `wait_for_*`) are
/// never scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Timing {
    /// The factor applied to every duration below (1.0 = Telegram's real timings).
    pub scale: f64,
    /// How long a webhook delivery may take before it fails with "Read timeout expired" (60 s).
    pub webhook_timeout: Duration,
    /// The retry delay grows 2, 4, 8 … s up to a cap drawn per update between these two (60–120 s).
    pub retry_cap_min: Duration,
    /// See [`Timing::retry_cap_min`].
    pub retry_cap_max: Duration,
    /// A `Retry-After` in a webhook's error response is honoured up to this (3600 s).
    pub max_retry_after: Duration,
    /// Drop webhook updates that expire before delivery: callback queries after 150 s, inline
    /// queries after 30 s, everything else after 24 h (true).
    pub expiry: bool,
}

impl Default for Timing {
    fn default() -> Self {
        Self::real()
    }
}

impl Timing {
    /// The smallest [`Timing::scale`] the emulator accepts (a microsecond per second).
    pub const MIN_SCALE: f64 = 1e-6;
    /// The largest [`Timing::scale`] the emulator accepts (a second becomes about 17 minutes).
    pub const MAX_SCALE: f64 = 1e3;

    /// Telegram's own timings.
    pub fn real() -> Self {
        Self {
            scale: 1.0,
            webhook_timeout: Duration::from_secs(60),
            retry_cap_min: Duration::from_secs(60),
            retry_cap_max: Duration::from_secs(120),
            max_retry_after: Duration::from_secs(3600),
            expiry: true,
        }
    }

    /// Telegram's timings with every duration multiplied by `scale` (e.g. 0.001: seconds
    /// become milliseconds). The scale must be between [`Timing::MIN_SCALE`] and
    /// [`Timing::MAX_SCALE`]: [`crate::EmulatorBuilder::start`] refuses any other with
    /// [`crate::EmulatorError::InvalidTimeScale`].
    pub fn scaled(scale: f64) -> Self {
        Self {
            scale,
            ..Self::real()
        }
    }

    /// Sets the webhook response timeout (before scaling).
    #[must_use]
    pub fn webhook_timeout(mut self, timeout: Duration) -> Self {
        self.webhook_timeout = timeout;
        self
    }

    /// Turns expiry of undelivered webhook updates on or off.
    #[must_use]
    pub fn expiry(mut self, expiry: bool) -> Self {
        self.expiry = expiry;
        self
    }

    /// Checks that [`Timing::scale`] is within [`Timing::MIN_SCALE`]..=[`Timing::MAX_SCALE`].
    pub fn validate(&self) -> Result<(), crate::EmulatorError> {
        if self.scale.is_finite() && (Self::MIN_SCALE..=Self::MAX_SCALE).contains(&self.scale) {
            Ok(())
        } else {
            Err(crate::EmulatorError::InvalidTimeScale { scale: self.scale })
        }
    }

    /// `duration` on the emulator's clock (saturating at `Duration::MAX`).
    pub fn scale(&self, duration: Duration) -> Duration {
        let factor = if self.scale.is_finite() && self.scale > 0.0 {
            self.scale.clamp(Self::MIN_SCALE, Self::MAX_SCALE)
        } else {
            1.0
        };
        Duration::try_from_secs_f64(duration.as_secs_f64() * factor).unwrap_or(Duration::MAX)
    }

    /// The instant `duration` (on the emulator's clock) from now; never overflows.
    pub(crate) fn deadline(&self, duration: Duration) -> Instant {
        instant_after(self.scale(duration))
    }
}

/// The longest wait the emulator schedules: a later instant counts as "never" (about 30 years).
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `Instant::now() + duration`, saturating at about 30 years from now instead of panicking
/// with "overflow when adding duration to instant".
pub(crate) fn instant_after(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration.min(FAR_FUTURE))
        .or_else(|| now.checked_add(Duration::from_secs(3600)))
        .unwrap_or(now)
}

/// Caps on everything the emulator keeps, per bot. When a buffer is full the oldest entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Updates waiting for getUpdates or a webhook delivery (default 10 000).
    pub max_pending_updates: usize,
    /// Recorded API calls (default 10 000).
    pub max_recorded_calls: usize,
    /// Delivery attempts in the delivery log (default 10 000).
    pub max_delivery_log: usize,
    /// Chats the emulator knows (default 10 000).
    pub max_known_chats: usize,
    /// Callback and inline query ids that can still be answered (default 1 000).
    pub max_open_queries: usize,
    /// Size of a request body, and of a webhook's response body (default 10 MiB).
    pub max_body_bytes: usize,
    /// Messages kept for edits, copies, forwards and button presses (default 10 000).
    pub max_stored_messages: usize,
    /// Files kept for `getFile` and the download route (default 1 000) …
    pub max_stored_files: usize,
    /// … and their total size (default 64 MiB).
    pub max_stored_file_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pending_updates: 10_000,
            max_recorded_calls: 10_000,
            max_delivery_log: 10_000,
            max_known_chats: 10_000,
            max_open_queries: 1_000,
            max_body_bytes: 10 * 1024 * 1024,
            max_stored_messages: 10_000,
            max_stored_files: 1_000,
            max_stored_file_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_pending_updates`].
    #[must_use]
    pub fn max_pending_updates(mut self, n: usize) -> Self {
        self.max_pending_updates = n;
        self
    }

    /// Sets [`Limits::max_recorded_calls`].
    #[must_use]
    pub fn max_recorded_calls(mut self, n: usize) -> Self {
        self.max_recorded_calls = n;
        self
    }

    /// Sets [`Limits::max_delivery_log`].
    #[must_use]
    pub fn max_delivery_log(mut self, n: usize) -> Self {
        self.max_delivery_log = n;
        self
    }
}
