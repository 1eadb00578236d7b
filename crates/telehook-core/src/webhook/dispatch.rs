//! The dispatcher proper: one delivery from body to answer, under the redelivery guard, the
//! in-flight limit and the timeout.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use http_body::Body;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tracing::Instrument as _;

use super::body;
use super::error::{Rejection, WebhookError};
use super::head::InvocationDeadline;
use super::policy::{ErrorPolicy, OnTimeout, TimeoutAction, TimeoutEvent};
use super::response::WebhookResponse;
use super::telemetry;
use crate::context::{Context, ReplySlot};
use crate::guard::{Claim, Outcome, RedeliveryStore, RunResult, StoreError, UpdateKey};
use crate::handler::{ErasedHandler, Prepared};

mod run;

use run::{RunFacts, TimeoutProbe, outcome_response, panic_message, refuse_draining};

/// The dispatcher's configuration and shared state, behind the [`Webhook`](super::Webhook)'s
/// `Arc`.
pub(super) struct Inner {
    pub(super) secret_token: Option<Vec<u8>>,
    pub(super) source_allowlist: Option<super::SourceAllowlist>,
    pub(super) timeout: Duration,
    pub(super) on_timeout: OnTimeout,
    pub(super) max_body_bytes: usize,
    pub(super) body_read_timeout: Duration,
    pub(super) error_policy: ErrorPolicy,
    pub(super) max_in_flight: usize,
    pub(super) in_flight: Arc<Semaphore>,
    /// Set when a drain starts: [`Webhook::is_ready`](super::Webhook::is_ready) turns false.
    pub(super) draining: AtomicBool,
    /// Woken when the last run in flight ends, for [`Webhook::wait_idle`](super::Webhook::wait_idle).
    pub(super) idle: Notify,
    pub(super) store: Arc<dyn RedeliveryStore>,
    pub(super) handler: ErasedHandler,
    /// The timer and spawn: tokio's, or a [`Runtime`](crate::rt::Runtime) given to the builder.
    pub(super) rt: crate::rt::Rt,
}

/// What the spawned run reports back to the request that started it.
struct Finished {
    result: RunResult,
    error: Option<String>,
}

impl Inner {
    /// Reads and validates the body, claims the update in the redelivery guard, and runs the
    /// handler or answers for a run that exists.
    pub(super) async fn dispatch<B>(
        self: Arc<Self>,
        body: B,
        extensions: http::Extensions,
    ) -> WebhookResponse
    where
        B: Body,
        B::Error: fmt::Display,
    {
        if self.draining.load(Ordering::Acquire) {
            // Shutting down: a new delivery is not started (its run could be cut short), and
            // Telegram delivers it again, to whatever serves the webhook next.
            return refuse_draining();
        }
        let reading = body::read(body, self.max_body_bytes, self.body_read_timeout, &self.rt);
        let body = match reading.await {
            Ok(body) => body,
            Err(rejection) => {
                telemetry::refused(&rejection);
                return WebhookResponse::rejected(rejection);
            }
        };
        // A drain may have begun while the body arrived: refuse before claiming the update.
        if self.draining.load(Ordering::Acquire) {
            return refuse_draining();
        }
        let prepared = match self.handler.prepare(body) {
            Ok(prepared) => prepared,
            Err(reason) => {
                tracing::warn!(%reason, "webhook request refused: not a Telegram update");
                let rejection = Rejection::NotAnUpdate(reason);
                telemetry::refused(&rejection);
                return WebhookResponse::rejected(rejection);
            }
        };
        telemetry::received(prepared.kind.as_ref());
        // One span per update, for tracing-opentelemetry and the like; without a subscriber
        // interested in it, it is disabled and costs a cached callsite check.
        let span = tracing::info_span!(
            "telehook.update",
            update_id = prepared.key.update_id,
            kind = prepared.kind.as_deref().unwrap_or("none"),
            sequence_key = tracing::field::Empty,
        );
        if !span.is_disabled()
            && let Some(key) = prepared.run.sequence_key()
        {
            span.record("sequence_key", tracing::field::display(key));
        }
        self.dispatch_update(prepared, extensions)
            .instrument(span)
            .await
    }

    /// The part of [`Inner::dispatch`] after the body became an update, inside its span.
    async fn dispatch_update(
        self: Arc<Self>,
        prepared: Prepared,
        extensions: http::Extensions,
    ) -> WebhookResponse {
        let key = prepared.key;
        let update_id = key.update_id;
        // A store in memory answers at once: no boxed future on the common path.
        let claim = match self.store.claim_ready(key) {
            Some(claim) => claim,
            None => self.store.claim(key).await,
        };
        match claim {
            Err(e) => store_failed(update_id, e),
            Ok(Claim::Done(outcome)) => {
                telemetry::absorbed("finished");
                tracing::info!(
                    update_id,
                    "redelivery of an update already handled: answered without running the handler"
                );
                outcome_response(outcome)
            }
            Ok(Claim::InFlight) => {
                telemetry::absorbed("in_flight");
                let probe = TimeoutProbe {
                    kind: prepared.kind,
                    chat_id: prepared.chat_id,
                    raw: prepared.raw,
                };
                self.await_first_run(&probe, key, &extensions).await
            }
            Ok(Claim::Run { failed_attempts }) => {
                self.run(prepared, failed_attempts, extensions).await
            }
        }
    }

    /// A redelivery of an update whose first run is still going: wait for it (up to the
    /// timeout) and answer with its outcome, so the handler never runs twice at once.
    async fn await_first_run(
        &self,
        probe: &TimeoutProbe,
        key: UpdateKey,
        extensions: &http::Extensions,
    ) -> WebhookResponse {
        let update_id = key.update_id;
        tracing::info!(
            update_id,
            "redelivery of an update still being handled: waiting for the first run"
        );
        let started = Instant::now();
        let timeout = self.effective_timeout(started, extensions);
        match self.rt.timeout(timeout, self.store.wait(key)).await {
            Ok(Ok(result)) => self.result_response(update_id, result, None),
            Ok(Err(e)) => store_failed(update_id, e),
            Err(_) => {
                let event = probe.event(update_id, started.elapsed(), true);
                match self.decide_timeout(&event) {
                    TimeoutAction::Return => {
                        telemetry::timed_out("return");
                        WebhookResponse::ok()
                    }
                    TimeoutAction::Throw => throw_timeout(&event),
                }
            }
        }
    }

    /// What the configured [`OnTimeout`] chose for `event`, except that a handler which must
    /// not be acknowledged before its run ends
    /// ([`UpdateHandler::acknowledge_only_after_run`](crate::UpdateHandler::acknowledge_only_after_run))
    /// never gets an early `200`: a custom callback's `Return` counts as `Throw` for it (the
    /// builder already refused [`OnTimeout::Return`] itself). Called once per timed-out
    /// delivery, so the warning is logged once per update delivery.
    fn decide_timeout(&self, event: &TimeoutEvent) -> TimeoutAction {
        let action = self.on_timeout.decide(event);
        if action == TimeoutAction::Return && self.handler.acknowledge_only_after_run() {
            tracing::warn!(
                update_id = event.update_id,
                "on_timeout chose Return, but this handler's update must not be acknowledged \
                 before its run ends: answering as for Throw"
            );
            return TimeoutAction::Throw;
        }
        action
    }

    /// Ends a run's hold on the in-flight limit, and wakes [`Webhook::wait_idle`](super::Webhook::wait_idle)
    /// if it was the last run (one atomic load otherwise).
    fn release(&self, permit: OwnedSemaphorePermit) {
        drop(permit);
        telemetry::run_ended();
        if self.in_flight.available_permits() == self.max_in_flight {
            self.idle.notify_waiters();
        }
    }

    /// The configured timeout, shortened to what is left before an [`InvocationDeadline`].
    fn effective_timeout(&self, now: Instant, extensions: &http::Extensions) -> Duration {
        match extensions.get::<InvocationDeadline>() {
            Some(InvocationDeadline(deadline)) => {
                self.timeout.min(deadline.saturating_duration_since(now))
            }
            None => self.timeout,
        }
    }

    async fn run(
        self: Arc<Self>,
        prepared: Prepared,
        failed_attempts: u32,
        extensions: http::Extensions,
    ) -> WebhookResponse {
        let Prepared {
            key,
            kind,
            chat_id,
            raw,
            run,
        } = prepared;
        let update_id = key.update_id;
        let permit = Arc::clone(&self.in_flight).try_acquire_owned();
        // Checked again with the permit held: a drain that began after the check before the
        // claim either waits for this permit, or set `draining` before it got all permits,
        // so a run never starts after `drain` saw none in flight. Checked before the limit
        // too: a drain waiting for permits is why the limit looks reached.
        if self.draining.load(Ordering::Acquire) {
            drop(permit);
            let _ = self
                .store
                .finish(key, RunResult::Failed { failed_attempts })
                .await;
            return refuse_draining();
        }
        let Ok(permit) = permit else {
            // Give the claim back unchanged so the redelivery runs it.
            let _ = self
                .store
                .finish(key, RunResult::Failed { failed_attempts })
                .await;
            tracing::warn!(
                update_id,
                limit = self.max_in_flight,
                "too many handler runs in flight: answering 503"
            );
            telemetry::refused_for("overloaded");
            return WebhookResponse::failed(WebhookError::Overloaded {
                update_id,
                limit: self.max_in_flight,
            });
        };
        telemetry::run_started();
        let started = Instant::now();
        let timeout = self.effective_timeout(started, &extensions);
        let slot = ReplySlot::new();
        let ctx = Context::webhook(
            update_id,
            failed_attempts,
            started,
            timeout,
            Arc::clone(&slot),
        )
        .with_extensions(extensions);
        let probe = TimeoutProbe { kind, chat_id, raw };
        let facts = RunFacts {
            key,
            failed_attempts,
            started,
        };
        let mut run = AssertUnwindSafe(run.start(ctx)).catch_unwind();

        // Most handlers that answer by webhook reply finish without waiting on anything: poll
        // once here, and pay for a task, a channel and a timer only if the handler is pending.
        let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut run).poll(cx))).await;
        if let Poll::Ready(outcome) = first {
            let finished = self.conclude(facts, &probe, outcome, &slot, false).await;
            self.release(permit);
            return self.result_response(update_id, finished.result, finished.error);
        }

        let acknowledged_early = Arc::new(AtomicBool::new(false));
        let (tx, rx) = oneshot::channel::<Finished>();
        let task = {
            let this = Arc::clone(&self);
            let probe = probe.clone();
            let slot = Arc::clone(&slot);
            let acknowledged_early = Arc::clone(&acknowledged_early);
            async move {
                let outcome = run.await;
                let elapsed = started.elapsed();
                let early = acknowledged_early.load(Ordering::SeqCst);
                let finished = this.conclude(facts, &probe, outcome, &slot, early).await;
                if tx.send(finished).is_err() {
                    tracing::warn!(
                        update_id,
                        elapsed_ms = elapsed.as_millis() as u64,
                        "handler finished after its delivery timed out"
                    );
                }
                this.release(permit);
            }
        };
        // The run keeps the update's span after the delivery is answered.
        self.rt.spawn(task.in_current_span());

        match self.rt.timeout(timeout, rx).await {
            Ok(Ok(finished)) => self.result_response(update_id, finished.result, finished.error),
            Ok(Err(_)) => {
                // The task ended without reporting: only possible if the runtime shut down.
                WebhookResponse::failed(WebhookError::Interrupted { update_id })
            }
            Err(_) => {
                let event = probe.event(update_id, started.elapsed(), false);
                match self.decide_timeout(&event) {
                    TimeoutAction::Return => {
                        telemetry::timed_out("return");
                        acknowledged_early.store(true, Ordering::SeqCst);
                        tracing::warn!(
                            update_id,
                            elapsed_ms = event.elapsed.as_millis() as u64,
                            "handler still running at the timeout: answering 200 (on_timeout = Return); \
                             the chat's next update may now run in parallel with this one"
                        );
                        match slot.close() {
                            Some(reply) => WebhookResponse::json(reply),
                            None => WebhookResponse::ok(),
                        }
                    }
                    TimeoutAction::Throw => throw_timeout(&event),
                }
            }
        }
    }

    /// Turns how the handler ended into the run's result, records it in the store, and says
    /// what to answer.
    async fn conclude(
        &self,
        facts: RunFacts,
        probe: &TimeoutProbe,
        outcome: std::thread::Result<Result<(), crate::HandlerError>>,
        slot: &ReplySlot,
        acknowledged_early: bool,
    ) -> Finished {
        let RunFacts {
            key,
            failed_attempts,
            started,
        } = facts;
        let update_id = key.update_id;
        let (label, failure) = match outcome {
            Ok(Ok(())) => ("ok", None),
            Ok(Err(e)) => ("error", Some(e.to_string())),
            Err(panic) => ("panic", Some(panic_message(panic.as_ref()))),
        };
        telemetry::run_finished(label, started.elapsed());
        let reply = slot.close();
        let result = match &failure {
            None => RunResult::Done(Outcome::Handled { reply }),
            Some(message) => self.failure_result(
                update_id,
                probe.chat_id(),
                failed_attempts + 1,
                message,
                acknowledged_early,
            ),
        };
        let recorded = match self.store.finish_ready(key, result.clone()) {
            Ok(recorded) => recorded,
            Err(result) => self.store.finish(key, result).await,
        };
        if let Err(e) = recorded {
            tracing::error!(update_id, error = %e, "could not record the outcome in the redelivery store");
        }
        Finished {
            result,
            error: failure,
        }
    }

    fn failure_result(
        &self,
        update_id: u64,
        chat_id: Option<i64>,
        failed_attempts: u32,
        message: &str,
        acknowledged_early: bool,
    ) -> RunResult {
        tracing::error!(update_id, chat_id, failed_attempts, error = %message, "handler failed");
        if acknowledged_early {
            tracing::error!(
                update_id,
                "the update was already acknowledged (on_timeout = Return): it is lost"
            );
            telemetry::given_up();
            return RunResult::Done(Outcome::GaveUp);
        }
        match self.error_policy {
            ErrorPolicy::Acknowledge => {
                tracing::warn!(
                    update_id,
                    "acknowledging the failed update (error_policy = Acknowledge)"
                );
                telemetry::given_up();
                RunResult::Done(Outcome::GaveUp)
            }
            ErrorPolicy::BoundedRetry { max_attempts } if failed_attempts >= max_attempts => {
                tracing::error!(
                    update_id,
                    failed_attempts,
                    "giving up on the update: acknowledging it so its chat is not blocked"
                );
                telemetry::given_up();
                RunResult::Done(Outcome::GaveUp)
            }
            ErrorPolicy::BoundedRetry { .. } | ErrorPolicy::Retry => {
                RunResult::Failed { failed_attempts }
            }
        }
    }

    fn result_response(
        &self,
        update_id: u64,
        result: RunResult,
        error: Option<String>,
    ) -> WebhookResponse {
        match result {
            RunResult::Done(outcome) => outcome_response(outcome),
            RunResult::Failed { failed_attempts } => {
                WebhookResponse::failed(WebhookError::HandlerFailed {
                    update_id,
                    failed_attempts,
                    message: error.unwrap_or_else(|| "the handler failed (see the log)".into()),
                })
            }
        }
    }
}

fn throw_timeout(event: &TimeoutEvent) -> WebhookResponse {
    telemetry::timed_out("throw");
    tracing::error!(
        update_id = event.update_id,
        chat_id = event.chat_id,
        elapsed_ms = event.elapsed.as_millis() as u64,
        redelivery = event.redelivery,
        "handler still running at the timeout: answering 503 so Telegram delivers the update again; \
         the handler keeps running and the redelivery will wait for it"
    );
    WebhookResponse::failed(WebhookError::Timeout {
        update_id: event.update_id,
        elapsed: event.elapsed,
    })
}

fn store_failed(update_id: u64, error: StoreError) -> WebhookResponse {
    tracing::error!(update_id, %error, "redelivery store failed: answering 503");
    WebhookResponse::failed(WebhookError::Store {
        update_id,
        source: error,
    })
}
