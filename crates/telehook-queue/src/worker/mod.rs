//! The worker side of queue mode: an [`UpdateSource`] over one partition of a queue for
//! telehook-polling's runner, and the handler wrapper that acks, counts failures and
//! dead-letters; [`Worker`] runs them on one partition and [`run_workers`] on every partition
//! in this process. Workers in several processes, sharing the partitions through leases, are in
//! `workers`.

mod workers;

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use telehook_core::{
    Context, ErasedHandler, ErrorPolicy, HandlerError, Update, UpdateHandler, UpdateType,
};
use telehook_polling::{Backoff, Delivery, RunnerConfig, StopReport, UpdateSource};

pub use self::workers::{DEFAULT_LEASE, Workers, WorkersReport};
use crate::backend::{QueueBackend, QueueError};

/// How long one `take` waits for new items before asking again (other processes' enqueues
/// are seen at least this often).
const TAKE_WAIT: Duration = Duration::from_secs(1);

/// What the handler wrapper needs to know about an item the source handed out.
#[derive(Clone, Copy)]
struct Slot {
    seq: u64,
    failed_attempts: u32,
}

type Slots = Arc<Mutex<HashMap<u64, Slot>>>;

fn lock(slots: &Slots) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
    slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One partition of a queue as an [`UpdateSource`]: positions are the queue's `seq`. Items
/// leave the queue when the worker acks them (each, as soon as it is handled), so
/// [`UpdateSource::confirm`] has nothing left to do.
pub struct QueueSource<B> {
    backend: B,
    partition: u32,
    slots: Slots,
}

impl<B> std::fmt::Debug for QueueSource<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSource")
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

impl<B: QueueBackend> UpdateSource for QueueSource<B> {
    type Error = QueueError;

    async fn fetch(
        &mut self,
        offset: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let from = offset.unwrap_or(0);
        let mut backoff: Option<Backoff> = None;
        loop {
            let items = match self
                .backend
                .take(self.partition, from, limit, TAKE_WAIT)
                .await
            {
                Ok(items) => items,
                Err(QueueError::Closed) => return Err(QueueError::Closed),
                Err(e) => {
                    // A busy or failing disk: retried; the runner keeps what it holds.
                    let delay = backoff
                        .get_or_insert_with(|| {
                            Backoff::new(Duration::from_millis(50), Duration::from_secs(5))
                        })
                        .next_delay();
                    tracing::warn!(partition = self.partition, error = %e, retry_in_ms = delay.as_millis() as u64, "queue: reading failed");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            backoff = None;
            if items.is_empty() {
                continue;
            }
            let mut deliveries = Vec::with_capacity(items.len());
            for item in items {
                match Update::from_bytes(item.body) {
                    Ok(update) => {
                        lock(&self.slots).insert(
                            item.update_id,
                            Slot {
                                seq: item.seq,
                                failed_attempts: item.failed_attempts,
                            },
                        );
                        deliveries.push(Delivery::at(item.seq, update));
                    }
                    Err(e) => {
                        tracing::error!(update_id = item.update_id, error = %e, "queue: stored update is not valid; dead-lettering it");
                        self.backend.fail(item.seq, &e.to_string()).await?;
                        self.backend.dead_letter(item.seq).await?;
                    }
                }
            }
            if !deliveries.is_empty() {
                return Ok(deliveries);
            }
        }
    }

    async fn confirm(&mut self, _offset: u64) -> Result<(), QueueError> {
        Ok(())
    }
}

/// Runs the user's handler for one queued update: skips what is already done, passes the
/// stored attempt count in [`Context::failed_attempts`], acks on success, counts a failure
/// (a panic included) and dead-letters when the error policy's attempts are spent.
struct QueueHandler<B> {
    backend: B,
    inner: ErasedHandler,
    slots: Slots,
    max_attempts: Option<u32>,
}

impl<B: QueueBackend> UpdateHandler<Update> for QueueHandler<B> {
    async fn handle(&self, update: Update, _ctx: Context) -> Result<(), HandlerError> {
        let update_id = update.update_id();
        // No slot: acked or dead-lettered already (a retry the runner started after the
        // queue's own policy gave up): nothing to run.
        let Some(slot) = lock(&self.slots).get(&update_id).copied() else {
            return Ok(());
        };
        let ctx = Context::detached(update_id).with_failed_attempts(slot.failed_attempts);
        let outcome = AssertUnwindSafe(self.inner.call(update, ctx))
            .catch_unwind()
            .await;
        let message = match &outcome {
            Ok(Ok(())) => {
                self.backend.ack(slot.seq, update_id).await?;
                lock(&self.slots).remove(&update_id);
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "handler panicked".to_owned(),
        };
        let failed = self.backend.fail(slot.seq, &message).await?;
        if self.max_attempts.is_some_and(|max| failed >= max) {
            self.backend.dead_letter(slot.seq).await?;
            lock(&self.slots).remove(&update_id);
            tracing::error!(
                update_id,
                failed_attempts = failed,
                "queue: giving up; moved to the dead-letter list"
            );
        } else if let Some(slot) = lock(&self.slots).get_mut(&update_id) {
            slot.failed_attempts = failed;
        }
        match outcome {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Ok(()),
        }
    }
}

/// A worker: telehook-polling's runner over one partition of a queue.
///
/// The runner keeps each sequence key in order, runs up to `concurrency` handlers at once,
/// catches panics and stops gracefully; the worker adds what a queue needs: an item is acked
/// (and its `update_id` remembered as completed) once its handler succeeded, failed runs are
/// counted in the queue (so the count survives a restart, and the handler reads it in
/// [`Context::failed_attempts`]), and when the error policy's attempts are spent the item goes
/// to the dead-letter list. `ErrorPolicy::BoundedRetry { max_attempts }` dead-letters after
/// `max_attempts` failed runs, `Acknowledge` after the first, `Retry` never. The runner's own
/// repeat window (`dedupe_window`) is off: the queue does not store an `update_id` twice.
#[derive(Debug)]
#[must_use]
pub struct Worker<B> {
    backend: B,
    partition: u32,
    config: RunnerConfig,
}

impl<B: QueueBackend> Worker<B> {
    /// A worker on `partition` (`0..backend.partitions()`) of `backend`, with the runner's default settings.
    pub fn new(backend: B, partition: u32) -> Self {
        Self {
            backend,
            partition,
            config: RunnerConfig::default(),
        }
    }

    /// The runner's settings (concurrency, error policy, retry delay, handler timeout, stop
    /// deadline).
    pub fn runner_config(mut self, config: RunnerConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs `handler` on the partition's updates until `shutdown` resolves, then drains
    /// within the runner's `stop_deadline`. What was not handled stays queued.
    pub async fn run<U, H>(
        self,
        handler: H,
        shutdown: impl Future<Output = ()>,
    ) -> Result<StopReport, QueueError>
    where
        U: UpdateType,
        H: UpdateHandler<U>,
    {
        self.run_erased(ErasedHandler::new(handler), shutdown).await
    }

    async fn run_erased(
        self,
        handler: ErasedHandler,
        shutdown: impl Future<Output = ()>,
    ) -> Result<StopReport, QueueError> {
        let max_attempts = match self.config.error_policy {
            ErrorPolicy::BoundedRetry { max_attempts } => Some(max_attempts.max(1)),
            ErrorPolicy::Acknowledge => Some(1),
            ErrorPolicy::Retry => None,
        };
        // The queue recognises repeats itself (a queued, dead-lettered or completed update_id
        // is not stored again); the runner's window would skip a re-driven dead letter.
        let mut config = self.config;
        config.dedupe_window = 0;
        let slots = Slots::default();
        let source = QueueSource {
            backend: self.backend.clone(),
            partition: self.partition,
            slots: Arc::clone(&slots),
        };
        let handler = QueueHandler {
            backend: self.backend,
            inner: handler,
            slots,
            max_attempts,
        };
        telehook_polling::run(source, handler, config, shutdown).await
    }
}

/// Runs one [`Worker`] per partition of `backend`, all in this process, with the same handler
/// and settings, until `shutdown` resolves; returns each partition's report.
pub async fn run_workers<B, U, H>(
    backend: B,
    handler: H,
    config: RunnerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Vec<StopReport>, QueueError>
where
    B: QueueBackend,
    U: UpdateType,
    H: UpdateHandler<U>,
{
    let handler = ErasedHandler::new(handler);
    let shutdown = shutdown.boxed().shared();
    let runs = (0..backend.partitions()).map(|partition| {
        Worker::new(backend.clone(), partition)
            .runner_config(config.clone())
            .run_erased(handler.clone(), shutdown.clone())
    });
    futures_util::future::try_join_all(runs).await
}
