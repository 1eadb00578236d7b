//! The runner: feeds updates from any [`UpdateSource`] to one handler, with bounded
//! concurrency, one update at a time per sequence key, back-pressure on fetching, positions
//! confirmed only after handling, the webhook's error policy, panics caught, and a graceful stop
//! bounded by a deadline.
//!
//! `getUpdates` (`GetUpdatesSource`), telehook-relay's client and [`crate::MemorySource`]
//! all feed the same runner; implement [`UpdateSource`] to feed it from anything else.

mod attempt;
mod config;
mod dedupe;
mod report;
mod schedule;
mod stop;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use telehook_core::{ErasedHandler, UpdateHandler, UpdateType};
use tokio::time::Instant;

pub use config::{HandlerTimeout, KeyFn, MAX_HELD, RunnerConfig};
pub use report::StopReport;

use crate::backoff::Backoff;
use crate::source::{Delivery, UpdateSource};
use schedule::State;

type FetchFuture<E> = Pin<Box<dyn Future<Output = Result<Vec<Delivery>, E>> + Send>>;

/// Runs `handler` over updates from `source` until `shutdown` resolves or the source fails
/// fatally, then stops gracefully (see [`RunnerConfig::stop_deadline`]).
///
/// Every fetched update is handled once by this run (a repeat of one already taken is
/// skipped), updates with equal keys one after another in delivery order, at most
/// `concurrency` at once. The source is asked for no more updates than there is room for, and
/// the position it is given never passes an update whose handler has not finished. A handler
/// that panics is caught and counted as a failure; the error policy decides what follows.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use telehook_core::{Context, HandlerError, Update};
/// use telehook_polling::{MemorySource, RunnerConfig};
///
/// let updates = (1..=3).map(|id| Update::from_bytes(format!(r#"{{"update_id":{id}}}"#)).unwrap());
/// let (done, all_done) = tokio::sync::oneshot::channel::<()>();
/// let done = std::sync::Mutex::new(Some(done));
/// let report = telehook_polling::run(
///     MemorySource::new(updates),
///     move |update: Update, _ctx: Context| {
///         if update.update_id() == 3 {
///             done.lock().unwrap().take().map(|d| d.send(()));
///         }
///         async { Ok::<_, HandlerError>(()) }
///     },
///     RunnerConfig::default(),
///     async { let _ = all_done.await; },
/// )
/// .await
/// .unwrap();
/// assert_eq!(report.handled, 3);
/// assert_eq!(report.confirmed_offset, Some(4));
/// # });
/// ```
pub async fn run<S, U, H>(
    source: S,
    handler: H,
    config: RunnerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<StopReport, S::Error>
where
    S: UpdateSource + 'static,
    U: UpdateType,
    H: UpdateHandler<U>,
{
    let concurrency = config.concurrency.max(1);
    let max_held = config.max_held.clamp(1, MAX_HELD);
    let handler = ErasedHandler::new(handler);
    // A handler that only works under one error policy (telehook-queue's `EnqueueHandler`
    // needs `Retry`: confirming an update it failed to enqueue would lose it) gets it.
    let mut config = config;
    if let Some(required) = handler.required_error_policy()
        && required != config.error_policy
    {
        tracing::warn!(
            configured = ?config.error_policy,
            required = ?required,
            update_type = handler.update_type_name(),
            "the handler requires its own error policy; the configured one is not used"
        );
        config.error_policy = required;
    }
    let mut idle = Backoff::new(
        Duration::from_millis(50),
        config.idle_backoff_max.max(Duration::from_millis(50)),
    );
    let idle_reset_after = config.idle_backoff_max;
    let mut state = State::new(concurrency, config, handler);
    let mut shutdown = std::pin::pin!(shutdown);
    // The source sits behind a lock so an abandoned fetch (at stop) gives it back for the
    // final confirmation.
    let source = Arc::new(tokio::sync::Mutex::new(source));
    let mut fetch: Option<(FetchFuture<S::Error>, Option<u64>, Instant)> = None;
    let mut wait_for_progress = false;
    let mut not_before: Option<Instant> = None;
    let mut fatal = None;

    loop {
        state.start_ready();
        if not_before.is_some_and(|at| at <= Instant::now()) {
            not_before = None;
        }
        if fetch.is_none() && !wait_for_progress && not_before.is_none() {
            let free = max_held.saturating_sub(state.held_count);
            if free > 0 && state.order.len() < MAX_HELD {
                let limit = (state.order.len() + free).min(MAX_HELD);
                let (source, offset) = (Arc::clone(&source), state.fetch_offset());
                let future: FetchFuture<S::Error> =
                    Box::pin(async move { source.lock().await.fetch(offset, limit).await });
                fetch = Some((future, offset, Instant::now()));
            }
        }
        let idle_sleep = async {
            match not_before {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(event) = state.events.recv() => {
                state.on_event(event);
                wait_for_progress = false;
            }
            result = async { fetch.as_mut().expect("guarded").0.as_mut().await }, if fetch.is_some() => {
                let (_, asked, started) = fetch.take().expect("guarded");
                match result {
                    Ok(deliveries) => {
                        let fresh = state.on_fetched(asked, deliveries);
                        if fresh > 0 || started.elapsed() >= idle_reset_after {
                            idle.reset();
                        }
                        if fresh == 0 {
                            if state.order.is_empty() {
                                // Nothing new and nothing to wait for: do not ask again at once.
                                not_before = Some(started + idle.next_delay());
                            } else {
                                // Only updates we already hold came back: the source answers at
                                // once while our offset sits behind a running update, so wait
                                // for progress.
                                wait_for_progress = true;
                            }
                        }
                    }
                    Err(error) => {
                        fatal = Some(error);
                        break;
                    }
                }
            }
            () = idle_sleep => not_before = None,
        }
    }
    // The abandoned fetch (a long poll, a backoff, a 429's retry_after) ends here.
    drop(fetch);
    let report = stop::stop(state, &source).await;
    match fatal {
        Some(error) => Err(error),
        None => Ok(report),
    }
}
