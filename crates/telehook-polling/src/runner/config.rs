//! The runner's settings: [`RunnerConfig`] and what its fields take.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use telehook_core::{ErrorPolicy, SequenceKey, Update};

/// Telegram's largest `getUpdates` `limit`, and so the most updates the runner holds: an
/// update is confirmed only once it and every earlier one are handled, so everything held must
/// fit in one `getUpdates` answer starting at the confirmed offset.
pub const MAX_HELD: usize = 100;

/// What happens to a key when its handler outlives [`RunnerConfig::handler_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HandlerTimeout {
    /// Report it (error log with `update_id`) and keep the key waiting for the handler: order
    /// is kept, only this key is delayed. The default.
    #[default]
    KeepWaiting,
    /// Report it and let the key's next update start; the late handler still finishes in the
    /// background (and keeps its concurrency slot until then). The update counts as handled.
    MoveOn,
}

/// Picks the sequence key of an update: updates with equal keys run one after another.
pub type KeyFn = Arc<dyn Fn(&Update) -> Option<SequenceKey> + Send + Sync>;

/// How the runner schedules handlers. Build it from [`RunnerConfig::default`] and set fields:
///
/// ```
/// let mut config = telehook_polling::RunnerConfig::default();
/// config.concurrency = 4;
/// config.stop_deadline = std::time::Duration::from_secs(5);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RunnerConfig {
    /// Handlers running at once (at least 1). Default 16.
    pub concurrency: usize,
    /// Updates held at once, running or waiting, 1–[`MAX_HELD`]. Default [`MAX_HELD`].
    pub max_held: usize,
    /// Report handlers that run longer than this. Default: none.
    pub handler_timeout: Option<Duration>,
    /// What a timed-out handler means for its key.
    pub on_handler_timeout: HandlerTimeout,
    /// What a failing (or panicking) handler means: `BoundedRetry` retries in place (its key
    /// waits), then gives up; `Retry` retries until it succeeds; `Acknowledge` moves on at once.
    /// A handler's [`UpdateHandler::required_error_policy`](telehook_core::UpdateHandler::required_error_policy)
    /// takes its place (logged at warn when it differs).
    pub error_policy: ErrorPolicy,
    /// First delay between retries of a failing handler (doubling with jitter, up to 30 s).
    /// Default 500 ms.
    pub retry_delay: Duration,
    /// How updates are keyed. Default: [`Update::sequence_key`], Telegram's own queues.
    pub key_fn: KeyFn,
    /// How long a stop may take, from the moment it is asked for: finishing held updates,
    /// then confirming the last position to the source. Default 10 s.
    pub stop_deadline: Duration,
    /// Updates (by `update_id`) an earlier run handled beyond its confirmed offset (its
    /// [`StopReport::handled_beyond_offset`](super::StopReport::handled_beyond_offset)):
    /// confirmed without running again.
    pub skip_update_ids: Vec<u64>,
    /// How many recently taken updates are remembered to skip a repeat: an update with the
    /// same `update_id` **and the same bytes** as one of them is not handled again (a relay
    /// that stored a Telegram redelivery twice). An equal `update_id` with different bytes is
    /// a new update (Telegram reuses ids after choosing new ones). Default 4,096; 0 turns it off.
    pub dedupe_window: usize,
    /// A fetch that brings nothing new starts the next one no sooner than this backoff after
    /// it started (from 50 ms, doubling with jitter up to this), so a source that answers at
    /// once cannot make the runner spin. A long poll that waited longer is not delayed.
    /// Default 5 s.
    pub idle_backoff_max: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            max_held: MAX_HELD,
            handler_timeout: None,
            on_handler_timeout: HandlerTimeout::KeepWaiting,
            error_policy: ErrorPolicy::default(),
            retry_delay: Duration::from_millis(500),
            key_fn: Arc::new(|update: &Update| update.sequence_key().cloned()),
            stop_deadline: Duration::from_secs(10),
            skip_update_ids: Vec::new(),
            dedupe_window: 4_096,
            idle_backoff_max: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for RunnerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerConfig")
            .field("concurrency", &self.concurrency)
            .field("max_held", &self.max_held)
            .field("handler_timeout", &self.handler_timeout)
            .field("on_handler_timeout", &self.on_handler_timeout)
            .field("error_policy", &self.error_policy)
            .field("retry_delay", &self.retry_delay)
            .field("stop_deadline", &self.stop_deadline)
            .field("skip_update_ids", &self.skip_update_ids.len())
            .field("dedupe_window", &self.dedupe_window)
            .field("idle_backoff_max", &self.idle_backoff_max)
            .finish_non_exhaustive()
    }
}
