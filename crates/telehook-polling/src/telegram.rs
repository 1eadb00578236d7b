//! `getUpdates` as an [`UpdateSource`], with Telegram's error rules, and the [`Polling`]
//! builder that starts everything.

use std::future::Future;
use std::time::Duration;

use telehook_api::{ApiError, Bot, GetUpdates};
use telehook_core::{ErrorPolicy, SequenceKey, Update, UpdateHandler, UpdateType};

use crate::runner::{self, HandlerTimeout, RunnerConfig, StopReport};
use crate::source::UpdateSource;
use crate::{ConflictCause, PollingError};

/// Exponential backoff with full jitter between `min` and `max`, reset after a success.
#[derive(Debug, Clone)]
struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    seed: u64,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        use std::hash::BuildHasher as _;
        let seed =
            std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
        Self {
            min,
            max: max.max(min),
            attempt: 0,
            seed,
        }
    }

    /// The next delay: `min * 2^attempt`, capped at `max`, then a random point in its upper half.
    fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt += 1;
        // xorshift: good enough to spread clients apart, no dependency needed.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let fraction = (self.seed % 1_000) as u32;
        ceiling / 2 + ceiling / 2 * fraction / 1_000
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// `getUpdates` over the Bot API: waits on 429 as told, backs off on 5xx and network errors,
/// and stops on 401, 409 and other refusals.
#[derive(Debug)]
pub struct GetUpdatesSource {
    bot: Bot,
    timeout: u32,
    allowed_updates: Option<Vec<String>>,
    backoff: Backoff,
}

impl GetUpdatesSource {
    /// A source long-polling with `timeout` seconds, backing off between `min` and `max`.
    pub fn new(
        bot: Bot,
        timeout: u32,
        allowed_updates: Option<Vec<String>>,
        backoff: (Duration, Duration),
    ) -> Self {
        Self {
            bot,
            timeout,
            allowed_updates,
            backoff: Backoff::new(backoff.0, backoff.1),
        }
    }

    async fn get_updates(&mut self, params: GetUpdates) -> Result<Vec<Update>, PollingError> {
        loop {
            match self.bot.get_updates(&params).await {
                Ok(values) => {
                    self.backoff.reset();
                    return Ok(values.iter().filter_map(to_update).collect());
                }
                Err(error) => self.on_error(error).await?,
            }
        }
    }

    /// Waits as the error asks, or says that polling must stop.
    async fn on_error(&mut self, error: ApiError) -> Result<(), PollingError> {
        if error.is_unauthorized() {
            return Err(PollingError::Unauthorized);
        }
        if error.is_conflict() {
            let description = match &error {
                ApiError::Api { description, .. } => description.clone(),
                other => other.to_string(),
            };
            let cause = if description.to_lowercase().contains("webhook") {
                ConflictCause::WebhookActive
            } else {
                ConflictCause::OtherInstance
            };
            return Err(PollingError::Conflict { cause, description });
        }
        if let Some(wait) = error.retry_after() {
            tracing::warn!(
                retry_after_s = wait.as_secs(),
                "getUpdates rate limited (429): waiting as Telegram asks"
            );
            tokio::time::sleep(wait).await;
            return Ok(());
        }
        let transient = match &error {
            ApiError::Api { error_code, .. } => *error_code >= 500,
            ApiError::Network { .. } | ApiError::BadResponse { .. } => true,
            _ => false,
        };
        if !transient {
            return Err(PollingError::Api(error));
        }
        let delay = self.backoff.next_delay();
        tracing::warn!(
            attempt = self.backoff.attempt,
            delay_ms = delay.as_millis() as u64,
            %error,
            "getUpdates failed: retrying after a backoff"
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Calls `deleteWebhook` (retrying transient errors), so a leftover webhook does not end
    /// in a 409 loop.
    pub async fn delete_webhook(&mut self, drop_pending_updates: bool) -> Result<(), PollingError> {
        loop {
            match self.bot.delete_webhook(drop_pending_updates).await {
                Ok(_) => {
                    self.backoff.reset();
                    return Ok(());
                }
                Err(error) => self.on_error(error).await?,
            }
        }
    }
}

fn to_update(value: &serde_json::Value) -> Option<Update> {
    let bytes = serde_json::to_vec(value).ok()?;
    match Update::from_bytes(bytes) {
        Ok(update) => Some(update),
        Err(reason) => {
            tracing::error!(%reason, "getUpdates returned something that is not an update: skipped");
            None
        }
    }
}

fn offset_param(offset: Option<u64>) -> Option<i64> {
    offset.and_then(|o| i64::try_from(o).ok())
}

impl UpdateSource for GetUpdatesSource {
    async fn fetch(
        &mut self,
        offset: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Update>, PollingError> {
        let params = GetUpdates {
            offset: offset_param(offset),
            limit: Some(u8::try_from(limit.clamp(1, 100)).unwrap_or(100)),
            timeout: Some(self.timeout),
            allowed_updates: self.allowed_updates.clone(),
        };
        self.get_updates(params).await
    }

    async fn confirm(&mut self, offset: u64) -> Result<(), PollingError> {
        let params = GetUpdates {
            offset: offset_param(Some(offset)),
            limit: Some(1),
            timeout: Some(0),
            allowed_updates: None,
        };
        self.get_updates(params).await.map(drop)
    }
}

/// Long polling for one bot: `deleteWebhook`, then `getUpdates` feeding the concurrent runner.
///
/// ```no_run
/// # async fn demo() -> Result<(), telehook_polling::PollingError> {
/// use telehook_core::{Context, HandlerError, Update};
/// let bot = telehook_api::Bot::new(std::env::var("TELEGRAM_BOT_TOKEN").unwrap());
/// let report = telehook_polling::Polling::new(bot)
///     .concurrency(16)
///     .run(
///         |update: Update, _ctx: Context| async move {
///             println!("update {}", update.update_id());
///             Ok::<_, HandlerError>(())
///         },
///         async { let _ = tokio::signal::ctrl_c().await; },
///     )
///     .await?;
/// println!("handled {}", report.handled);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Polling {
    bot: Bot,
    timeout: u32,
    allowed_updates: Option<Vec<String>>,
    drop_pending_updates: bool,
    backoff: (Duration, Duration),
    runner: RunnerConfig,
    skip: Vec<u64>,
}

impl Polling {
    /// Long polling for `bot` with the defaults: `timeout` 30 s, concurrency 16, per-chat
    /// order, bounded retry of failing handlers, backoff 1 s → 60 s.
    pub fn new(bot: Bot) -> Self {
        Self {
            bot,
            timeout: 30,
            allowed_updates: None,
            drop_pending_updates: false,
            backoff: (Duration::from_secs(1), Duration::from_secs(60)),
            runner: RunnerConfig::default(),
            skip: Vec::new(),
        }
    }

    /// The long-poll `timeout` of each `getUpdates`, in seconds (0 = short polling).
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = seconds;
        self
    }

    /// The update kinds to receive (`allowed_updates`); Telegram remembers them.
    pub fn allowed_updates<I: IntoIterator<Item = S>, S: Into<String>>(mut self, kinds: I) -> Self {
        self.allowed_updates = Some(kinds.into_iter().map(Into::into).collect());
        self
    }

    /// Drop the updates that are pending when polling starts.
    pub fn drop_pending_updates(mut self, drop: bool) -> Self {
        self.drop_pending_updates = drop;
        self
    }

    /// The backoff after 5xx and network errors: from `min`, doubling, capped at `max`, with
    /// jitter; reset after a success.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max);
        self
    }

    /// Handlers running at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.runner.concurrency = n;
        self
    }

    /// Updates held at once (running or waiting), at most 100.
    pub fn max_held(mut self, n: usize) -> Self {
        self.runner.max_held = n;
        self
    }

    /// Report handlers that run longer than `timeout`, and decide what their key does.
    pub fn handler_timeout(mut self, timeout: Duration, policy: HandlerTimeout) -> Self {
        self.runner.handler_timeout = Some(timeout);
        self.runner.on_handler_timeout = policy;
        self
    }

    /// What a failing handler means (the same policies as the webhook).
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.runner.error_policy = policy;
        self
    }

    /// The first delay between retries of a failing handler.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.runner.retry_delay = delay;
        self
    }

    /// Order updates by your own key instead of Telegram's queues (`None` = no ordering).
    pub fn key_fn(
        mut self,
        f: impl Fn(&Update) -> Option<SequenceKey> + Send + Sync + 'static,
    ) -> Self {
        self.runner.key_fn = std::sync::Arc::new(f);
        self
    }

    /// How long a stop waits for held updates.
    pub fn stop_deadline(mut self, deadline: Duration) -> Self {
        self.runner.stop_deadline = deadline;
        self
    }

    /// Updates an earlier run handled beyond its confirmed offset (its
    /// [`StopReport::handled_beyond_offset`]): they are confirmed without running again.
    pub fn skip_update_ids(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        self.skip.extend(ids);
        self
    }

    /// Deletes any webhook, then polls and runs `handler` until `stop` resolves (then finishes
    /// what it holds, up to the stop deadline, and confirms the offset) or a fatal error.
    pub async fn run<U, H>(
        self,
        handler: H,
        stop: impl Future<Output = ()>,
    ) -> Result<StopReport, PollingError>
    where
        U: UpdateType,
        H: UpdateHandler<U>,
    {
        let mut source =
            GetUpdatesSource::new(self.bot, self.timeout, self.allowed_updates, self.backoff);
        let mut stop = std::pin::pin!(stop);
        tokio::select! {
            result = source.delete_webhook(self.drop_pending_updates) => result?,
            () = &mut stop => return Ok(StopReport::default()),
        }
        tracing::info!(
            timeout_s = self.timeout,
            concurrency = self.runner.concurrency,
            "long polling started"
        );
        runner::run(source, handler, self.runner, &self.skip, stop).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        for (i, delay) in delays.iter().enumerate() {
            let ceiling = Duration::from_secs(1 << i.min(6)).min(Duration::from_secs(60));
            assert!(
                *delay >= ceiling / 2 && *delay <= ceiling,
                "attempt {i}: {delay:?} not in [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_secs(1));
    }
}
