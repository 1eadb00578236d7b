//! `getUpdates` as an [`UpdateSource`], with Telegram's error rules, and the [`Polling`]
//! builder that starts everything.

use std::future::Future;
use std::time::Duration;

use serde_json::value::RawValue;
use telehook_api::{ApiError, Bot, GetUpdates};
use telehook_core::{Bytes, ErrorPolicy, SequenceKey, Update, UpdateHandler, UpdateType};

use crate::backoff::Backoff;
use crate::runner::{self, HandlerTimeout, RunnerConfig, StopReport};
use crate::source::{Delivery, UpdateSource};
use crate::{ConflictCause, PollingError};

/// `getUpdates` over the Bot API: waits on 429 as told, backs off on 5xx and network errors,
/// and stops on 401, 409 and other refusals.
#[derive(Debug)]
pub struct GetUpdatesSource {
    bot: Bot,
    timeout: Duration,
    allowed_updates: Option<Vec<String>>,
    backoff: Backoff,
}

impl GetUpdatesSource {
    /// A source long-polling with `timeout` (whole seconds; Telegram's `timeout` parameter),
    /// backing off between `min` and `max`.
    pub fn new(
        bot: Bot,
        timeout: Duration,
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

    async fn get_updates(&mut self, params: GetUpdates) -> Result<Vec<Delivery>, PollingError> {
        loop {
            let error = match self.bot.get_updates_raw(&params).await {
                Ok(result) => match split_updates(&result) {
                    Ok(updates) => {
                        self.backoff.reset();
                        return Ok(updates);
                    }
                    Err(error) => error,
                },
                Err(error) => error,
            };
            self.on_error(error).await?;
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
            // A `retry_after` of 0 must not turn into a tight loop.
            let wait = if wait.is_zero() {
                self.backoff.next_delay()
            } else {
                wait
            };
            tracing::warn!(
                retry_after_ms = wait.as_millis() as u64,
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
            attempt = self.backoff.attempt(),
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

/// Splits getUpdates' `result` into updates whose raw bytes are exactly the bytes the server
/// sent (slices of the answer, no copy, no re-serialization). An element that is not an update
/// is logged and skipped.
fn split_updates(result: &Bytes) -> Result<Vec<Delivery>, ApiError> {
    let elements: Vec<&RawValue> =
        serde_json::from_slice(result).map_err(|e| ApiError::BadResponse {
            method: "getUpdates".into(),
            status: 200,
            reason: format!("`result` is not an array: {e}"),
        })?;
    Ok(elements
        .into_iter()
        .filter_map(|raw| {
            match Update::from_bytes(result.slice_ref(raw.get().as_bytes())) {
                Ok(update) => Some(Delivery::new(update)),
                Err(reason) => {
                    tracing::error!(%reason, "getUpdates returned something that is not an update: skipped");
                    None
                }
            }
        })
        .collect())
}

fn offset_param(offset: Option<u64>) -> Option<i64> {
    offset.and_then(|o| i64::try_from(o).ok())
}

impl UpdateSource for GetUpdatesSource {
    type Error = PollingError;

    async fn fetch(
        &mut self,
        offset: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Delivery>, PollingError> {
        let params = GetUpdates {
            offset: offset_param(offset),
            limit: Some(u8::try_from(limit.clamp(1, 100)).unwrap_or(100)),
            timeout: Some(u32::try_from(self.timeout.as_secs()).unwrap_or(u32::MAX)),
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
#[must_use = "a Polling does nothing until `run` is awaited"]
pub struct Polling {
    bot: Bot,
    timeout: Duration,
    allowed_updates: Option<Vec<String>>,
    drop_pending_updates: bool,
    delete_webhook: bool,
    backoff: (Duration, Duration),
    runner: RunnerConfig,
}

impl Polling {
    /// Long polling for `bot` with the defaults: `timeout` 30 s, concurrency 16, per-chat
    /// order, bounded retry of failing handlers, backoff 1 s → 60 s.
    pub fn new(bot: Bot) -> Self {
        Self {
            bot,
            timeout: Duration::from_secs(30),
            allowed_updates: None,
            drop_pending_updates: false,
            delete_webhook: true,
            backoff: (Duration::from_secs(1), Duration::from_secs(60)),
            runner: RunnerConfig::default(),
        }
    }

    /// The long-poll `timeout` of each `getUpdates` (Telegram counts whole seconds: a fraction
    /// is dropped; zero is short polling, which the runner paces with its idle backoff).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
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

    /// Whether `run` calls `deleteWebhook` before polling (default `true`). With `false`, a
    /// webhook that is set stays set and `run` stops with [`PollingError::Conflict`]
    /// ([`ConflictCause::WebhookActive`]) at the first `getUpdates`, which Telegram refuses
    /// while a webhook is set (<https://core.telegram.org/bots/api#getupdates>): for a tool
    /// that must never remove a production webhook (`telehook dev` without `--take-over`),
    /// without a window between checking `getWebhookInfo` and polling. `drop_pending_updates`
    /// then has no effect.
    pub fn delete_webhook_at_start(mut self, delete: bool) -> Self {
        self.delete_webhook = delete;
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

    /// How long a stop may take, from the moment `shutdown` resolves: finishing held updates
    /// and confirming the offset, whatever Telegram answers meanwhile (a 5xx, a 429 with a long
    /// `retry_after`, a hung connection).
    pub fn stop_deadline(mut self, deadline: Duration) -> Self {
        self.runner.stop_deadline = deadline;
        self
    }

    /// Updates an earlier run handled beyond its confirmed offset (its
    /// [`StopReport::handled_beyond_offset`]): they are confirmed without running again.
    pub fn skip_update_ids(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        self.runner.skip_update_ids.extend(ids);
        self
    }

    /// The runner's settings, all at once (what the other methods set one by one).
    pub fn runner_config(mut self, config: RunnerConfig) -> Self {
        self.runner = config;
        self
    }

    /// Deletes any webhook (unless [`delete_webhook_at_start`](Self::delete_webhook_at_start)
    /// is `false`), then polls and runs `handler` until `shutdown` resolves (then
    /// finishes what it holds and confirms the offset, all within the stop deadline) or a fatal
    /// error.
    pub async fn run<U, H>(
        self,
        handler: H,
        shutdown: impl Future<Output = ()>,
    ) -> Result<StopReport, PollingError>
    where
        U: UpdateType,
        H: UpdateHandler<U>,
    {
        let mut source =
            GetUpdatesSource::new(self.bot, self.timeout, self.allowed_updates, self.backoff);
        let mut shutdown = std::pin::pin!(shutdown);
        if self.delete_webhook {
            tokio::select! {
                result = source.delete_webhook(self.drop_pending_updates) => result?,
                () = &mut shutdown => return Ok(StopReport::default()),
            }
        }
        tracing::info!(
            timeout_s = self.timeout.as_secs(),
            concurrency = self.runner.concurrency,
            "long polling started"
        );
        runner::run(source, handler, self.runner, shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn too_many_requests(retry_after: u64) -> ApiError {
        ApiError::Api {
            method: "getUpdates".into(),
            error_code: 429,
            description: format!("Too Many Requests: retry after {retry_after}"),
            retry_after: Some(retry_after),
            migrate_to_chat_id: None,
        }
    }

    fn source() -> GetUpdatesSource {
        GetUpdatesSource::new(
            Bot::new("1:test"),
            Duration::from_secs(30),
            None,
            (Duration::from_secs(1), Duration::from_secs(60)),
        )
    }

    /// Time is virtual (paused): each wait is measured exactly, nothing sleeps for real.
    #[tokio::test(start_paused = true)]
    async fn a_429_with_retry_after_0_backs_off_instead_of_asking_again_at_once() {
        let mut source = source();
        let mut waits = Vec::new();
        for _ in 0..4 {
            let start = tokio::time::Instant::now();
            source
                .on_error(too_many_requests(0))
                .await
                .expect("a 429 is retried, not fatal");
            waits.push(start.elapsed());
        }
        // The backoff's delays: [ceiling / 2, ceiling) for ceilings 1 s, 2 s, 4 s, 8 s (the
        // timer may round up by a millisecond).
        for (n, wait) in waits.iter().enumerate() {
            let ceiling = Duration::from_secs(1 << n);
            assert!(
                *wait >= ceiling / 2 && *wait <= ceiling + Duration::from_millis(1),
                "wait {n} after retry_after 0 was {wait:?}: {waits:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_with_retry_after_waits_exactly_that_long() {
        let mut source = source();
        let start = tokio::time::Instant::now();
        source.on_error(too_many_requests(7)).await.unwrap();
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(7) && waited <= Duration::from_millis(7_001),
            "{waited:?}"
        );
    }
}
