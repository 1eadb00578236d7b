//! What the dispatcher does at a timeout ([`OnTimeout`]) and when the handler fails
//! ([`ErrorPolicy`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The default number of failed runs after which [`ErrorPolicy::BoundedRetry`] gives up.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// What to answer when the handler is still running at the timeout.
#[derive(Clone, Default)]
pub enum OnTimeout {
    /// Answer `503` so Telegram delivers the update again, and surface a
    /// [`WebhookError::Timeout`](crate::WebhookError::Timeout). The handler keeps running; the redelivery waits for it and
    /// never starts a second run. Safe everywhere: the default.
    #[default]
    Throw,
    /// Answer `200` at once and let the handler go on in the background. Telegram then sends
    /// the chat's next update while this one still runs, and on serverless platforms the work
    /// may be frozen mid-way. Read `docs/timeouts.md` first.
    Return,
    /// Decide per update: the callback sees what timed out and picks an action. Use it to
    /// count timeouts, or to `Return` only for kinds whose order does not matter.
    Custom(Arc<dyn Fn(&TimeoutEvent) -> TimeoutAction + Send + Sync>),
}

impl OnTimeout {
    /// A custom timeout callback.
    pub fn custom(f: impl Fn(&TimeoutEvent) -> TimeoutAction + Send + Sync + 'static) -> Self {
        Self::Custom(Arc::new(f))
    }

    pub(super) fn decide(&self, event: &TimeoutEvent) -> TimeoutAction {
        match self {
            Self::Throw => TimeoutAction::Throw,
            Self::Return => TimeoutAction::Return,
            Self::Custom(f) => f(event),
        }
    }
}

impl fmt::Debug for OnTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Throw => "Throw",
            Self::Return => "Return",
            Self::Custom(_) => "Custom(..)",
        })
    }
}

/// What a custom [`OnTimeout`] callback chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutAction {
    /// As [`OnTimeout::Throw`].
    Throw,
    /// As [`OnTimeout::Return`].
    Return,
}

/// What timed out, for a custom [`OnTimeout`] callback.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TimeoutEvent {
    /// The update still being handled.
    pub update_id: u64,
    /// Its kind (`"message"`, …), if any.
    pub kind: Option<String>,
    /// Its chat, if any.
    pub chat_id: Option<i64>,
    /// How long the handler has run.
    pub elapsed: Duration,
    /// True if this is a redelivery waiting for the first run rather than the first run.
    pub redelivery: bool,
}

/// What to do when the handler returns `Err` (or panics). See `docs/adapter-contract.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Answer `500` so Telegram delivers the update again, until `max_attempts` runs have
    /// failed; then answer `200` and log that the update was given up. The default (3
    /// attempts): a failing update blocks its whole chat for up to 24 h otherwise.
    BoundedRetry {
        /// Failed runs before giving up (at least 1).
        max_attempts: u32,
    },
    /// Always answer `200`: the update is lost on the first failure, its chat never blocks.
    Acknowledge,
    /// Always answer `500`: Telegram retries until the update expires, blocking its chat.
    Retry,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        Self::BoundedRetry {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}
