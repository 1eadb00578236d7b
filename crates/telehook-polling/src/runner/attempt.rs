//! One update's handler runs: attempts with the error policy between them, the handler
//! timeout reported, panics caught, and the outcome sent back to the scheduler as an [`Event`].

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt as _;
use telehook_core::{Context, ErasedHandler, ErrorPolicy, Update};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backoff::Backoff;

/// What a handler run tells the scheduler.
#[derive(Clone, Copy)]
pub(super) enum Event {
    TimedOut {
        position: u64,
    },
    Finished {
        position: u64,
        gave_up: bool,
        failures: u32,
        panics: u32,
    },
}

/// Runs `handler` on `update` until it succeeds or `policy` gives up, reporting a run that
/// outlives `timeout` and then the outcome on `events`.
pub(super) async fn handle(
    handler: ErasedHandler,
    update: Update,
    position: u64,
    timeout: Option<Duration>,
    policy: ErrorPolicy,
    retry_delay: Duration,
    events: mpsc::Sender<Event>,
) {
    let update_id = update.update_id();
    let started = Instant::now();
    let (mut attempt, mut panics) = (0u32, 0u32);
    let mut backoff: Option<Backoff> = None;
    let gave_up = loop {
        attempt += 1;
        let ctx = Context::detached(update_id);
        let run = AssertUnwindSafe(handler.call(update.clone(), ctx)).catch_unwind();
        let outcome = match timeout {
            None => run.await,
            Some(limit) => {
                let mut run = std::pin::pin!(run);
                match tokio::time::timeout(limit, &mut run).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        tracing::error!(
                            update_id,
                            chat_id = update.chat_id(),
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "handler still running after handler_timeout"
                        );
                        let _ = events.send(Event::TimedOut { position }).await;
                        let outcome = run.await;
                        tracing::warn!(
                            update_id,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "timed-out handler finished"
                        );
                        outcome
                    }
                }
            }
        };
        let error = match outcome {
            Ok(Ok(())) => break false,
            Ok(Err(e)) => e.to_string(),
            Err(_) => {
                panics += 1;
                "handler panicked".to_owned()
            }
        };
        tracing::error!(update_id, chat_id = update.chat_id(), attempt, error = %error, "handler failed");
        let retry = match policy {
            ErrorPolicy::Acknowledge => false,
            ErrorPolicy::Retry => true,
            ErrorPolicy::BoundedRetry { max_attempts } => attempt < max_attempts,
        };
        if !retry {
            tracing::error!(
                update_id,
                attempt,
                "giving up on the update after failed attempts"
            );
            break true;
        }
        let delay = backoff
            .get_or_insert_with(|| Backoff::new(retry_delay, Duration::from_secs(30)))
            .next_delay();
        tokio::time::sleep(delay).await;
    };
    let failures = attempt - u32::from(!gave_up);
    let _ = events
        .send(Event::Finished {
            position,
            gave_up,
            failures,
            panics,
        })
        .await;
}
