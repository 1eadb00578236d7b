//! The webhook side of queue mode: a handler whose run is a durable enqueue.

use telehook_core::{Context, ErrorPolicy, HandlerError, Update, UpdateHandler};

use crate::backend::{Enqueued, QueueBackend};

/// An [`UpdateHandler`] that stores the update in the queue and returns once it is durable,
/// so the dispatcher answers Telegram's `200` only after the enqueue committed. A refused
/// enqueue (a full queue, a storage error) is the handler's error: the dispatcher answers an
/// error status and Telegram delivers the update again later
/// ([`setWebhook`](https://core.telegram.org/bots/api#setwebhook): Telegram retries a
/// delivery that did not get a `2xx`).
///
/// It requires `ErrorPolicy::Retry`
/// ([`UpdateHandler::required_error_policy`]), so that no number of refused enqueues ever turns
/// into a `200`: `Webhook::builder().build(EnqueueHandler::new(..))` uses `Retry` by itself,
/// and a builder given another policy (the `BoundedRetry` default would acknowledge after its
/// last attempt, here losing the update) refuses to build
/// (`BuildError::ErrorPolicyConflict`). Likewise it must not be acknowledged before the enqueue
/// ends ([`UpdateHandler::acknowledge_only_after_run`]): a builder given `OnTimeout::Return`
/// refuses to build (`BuildError::AcknowledgeBeforeRunEnds`):
///
/// ```no_run
/// use telehook_core::Webhook;
/// use telehook_queue::{EnqueueHandler, SqliteQueue};
///
/// let queue = SqliteQueue::open("bot-queue.sqlite3").unwrap();
/// // The error policy is ErrorPolicy::Retry, required by EnqueueHandler.
/// let webhook = Webhook::builder().build(EnqueueHandler::new(queue)).unwrap();
/// # drop(webhook);
/// ```
#[derive(Debug, Clone)]
pub struct EnqueueHandler<B> {
    backend: B,
}

impl<B: QueueBackend> EnqueueHandler<B> {
    /// A handler enqueueing into `backend`.
    pub fn new(backend: B) -> Self {
        Self { backend }
    }
}

impl<B: QueueBackend> UpdateHandler<Update> for EnqueueHandler<B> {
    async fn handle(&self, update: Update, _ctx: Context) -> Result<(), HandlerError> {
        let update_id = update.update_id();
        match self.backend.enqueue(&update).await {
            Ok(Enqueued::Stored) => Ok(()),
            Ok(Enqueued::Duplicate) => {
                tracing::debug!(update_id, "queue: already stored, not enqueued again");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(update_id, error = %e, "queue: enqueue refused; Telegram will deliver again");
                Err(Box::new(e))
            }
        }
    }

    /// `ErrorPolicy::Retry`: a refused enqueue is never acknowledged.
    fn required_error_policy(&self) -> Option<ErrorPolicy> {
        Some(ErrorPolicy::Retry)
    }

    /// `true`: a `200` before the enqueue committed could acknowledge an update that is then
    /// never stored, so the builder refuses `OnTimeout::Return`
    /// (`BuildError::AcknowledgeBeforeRunEnds`) and a custom timeout answering `Return`
    /// answers `503` instead.
    fn acknowledge_only_after_run(&self) -> bool {
        true
    }
}
