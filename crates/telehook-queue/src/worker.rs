//! The worker side of queue mode: an [`UpdateSource`] over one partition of a queue for
//! telehook-polling's runner, and the handler wrapper that acks, counts failures and
//! dead-letters.

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

/// The default [`Workers::lease`].
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// The shortest [`Workers::lease`].
const MIN_LEASE: Duration = Duration::from_millis(300);

/// Workers in several processes (or machines) sharing one queue: each process runs a
/// `Workers`, which holds leases on its fair share of the partitions and runs a [`Worker`] on
/// each partition it holds.
///
/// Every third of the lease a `Workers` heartbeats ([`QueueBackend::members`]), renews the
/// leases it holds ([`QueueBackend::acquire`]) and claims free partitions up to its share,
/// `ceil(partitions / members)`. When more members arrive its share shrinks and it hands the
/// extra partitions over: their workers drain, then the leases are released and the newcomers
/// claim them (rebalancing). When a process dies its leases run out and the others take its
/// partitions over; what it left unacked runs again there, in per-chat order.
///
/// **One worker per partition at a time.** A partition's worker stops taking updates once its
/// lease has gone half a lease without a renewal (a renewal that failed is retried after a
/// twelfth of the lease), and its drain is bounded by a quarter of the lease
/// (`RunnerConfig::stop_deadline` is lowered to that if longer): handlers still running then
/// are cancelled, so the worker is gone before the lease can run out and another process
/// claim the partition. A lease found taken by another owner (`acquire` answering `false`)
/// stops the worker at once. Handlers must not block a thread for that long (a cancelled task
/// stops at its next `.await`), and `HandlerTimeout::MoveOn` (a late handler left running)
/// voids the promise.
///
/// Give every process its own [`owner`](Self::owner) id (the default is unique per run).
/// Without any lease support in the backend (the trait's defaults), one `Workers` runs every
/// partition, like [`run_workers`].
///
/// ```no_run
/// use std::time::Duration;
/// use telehook_core::{Context, HandlerError, Update};
/// use telehook_queue::{SqliteQueue, Workers};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = SqliteQueue::builder("bot-queue.sqlite3").partitions(8).open()?;
/// let handler = |update: Update, _ctx: Context| async move {
///     println!("update {}", update.update_id());
///     Ok::<_, HandlerError>(())
/// };
/// let report = Workers::new(queue)
///     .owner(format!("worker-{}", std::process::id()))
///     .lease(Duration::from_secs(15))
///     .run(handler, telehook_polling::RunnerConfig::default(), async {
///         let _ = tokio::signal::ctrl_c().await;
///     })
///     .await?;
/// println!("{} partition runs", report.runs.len());
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use]
pub struct Workers<B> {
    backend: B,
    owner: String,
    lease: Duration,
}

/// What a [`Workers::run`] did, returned when it stops.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WorkersReport {
    /// Each partition run, in the order they stopped: the partition and its runner's report.
    /// A partition held twice (lost, then claimed again) has two.
    pub runs: Vec<(u32, StopReport)>,
    /// Partition runs stopped because their lease could not be renewed in time or was found
    /// held by another owner.
    pub leases_lost: u64,
    /// Partitions handed over to other members (this process held more than its share).
    pub handed_over: u64,
    /// Partitions claimed (each successful first `acquire`).
    pub claimed: u64,
}

/// One partition this process runs a worker on.
struct Held {
    /// When the worker must stop unless renewed before (half a lease after the start of the
    /// last successful `acquire`); an instant in the past stops it.
    stop_at: tokio::sync::watch::Sender<tokio::time::Instant>,
    /// Asked to stop (shutdown, hand-over or a lost lease): not counted in the share.
    stopping: bool,
}

impl Held {
    fn stop(&mut self) {
        self.stopping = true;
        self.stop_at.send_replace(tokio::time::Instant::now());
    }
}

/// A run's identity, unique enough among processes: the process id, the start time and a
/// counter.
fn default_owner() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("worker-{}-{nanos:x}-{n}", std::process::id())
}

impl<B: QueueBackend> Workers<B> {
    /// Workers on `backend`, with a fresh owner id and [`DEFAULT_LEASE`].
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            owner: default_owner(),
            lease: DEFAULT_LEASE,
        }
    }

    /// This process's id among the workers (unique per process; used in the leases). Default:
    /// `worker-{pid}-{start time}-{n}`.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// How long a lease (and a heartbeat) lasts without renewal: how long a dead process's
    /// partitions wait before another takes them over. Renewed every third of it. Default
    /// [`DEFAULT_LEASE`] (15 s); at least 300 ms.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(MIN_LEASE);
        self
    }

    /// Runs `handler` on the partitions this process holds until `shutdown` resolves: then
    /// every worker drains (within `config.stop_deadline`, at most a quarter of the lease),
    /// the leases are released and the heartbeat ends (`members` with a zero lease), so the
    /// other members take the partitions over at their next renewal. Stops with an error only
    /// when the backend is closed.
    pub async fn run<U, H>(
        self,
        handler: H,
        config: RunnerConfig,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WorkersReport, QueueError>
    where
        U: UpdateType,
        H: UpdateHandler<U>,
    {
        Run::new(self, ErasedHandler::new(handler), config)
            .run(shutdown)
            .await
    }
}

/// The state of one [`Workers::run`].
struct Run<B> {
    backend: B,
    owner: String,
    lease: Duration,
    handler: ErasedHandler,
    config: RunnerConfig,
    /// Partitions in the order this process prefers them (rotated by its owner id, so
    /// members start claiming at different places).
    preference: Vec<u32>,
    held: std::collections::BTreeMap<u32, Held>,
    tasks: tokio::task::JoinSet<Result<StopReport, QueueError>>,
    task_partition: HashMap<tokio::task::Id, u32>,
    members: u32,
    report: WorkersReport,
}

impl<B: QueueBackend> Run<B> {
    fn new(workers: Workers<B>, handler: ErasedHandler, mut config: RunnerConfig) -> Self {
        let partitions = workers.backend.partitions().max(1);
        let start =
            (xxhash_rust::xxh3::xxh3_64(workers.owner.as_bytes()) % u64::from(partitions)) as u32;
        let preference = (0..partitions).map(|i| (start + i) % partitions).collect();
        config.stop_deadline = config.stop_deadline.min(workers.lease / 4);
        Self {
            backend: workers.backend,
            owner: workers.owner,
            lease: workers.lease,
            handler,
            config,
            preference,
            held: std::collections::BTreeMap::new(),
            tasks: tokio::task::JoinSet::new(),
            task_partition: HashMap::new(),
            members: 1,
            report: WorkersReport::default(),
        }
    }

    async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WorkersReport, QueueError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut stopping = false;
        let mut fatal: Option<QueueError> = None;
        let mut next_tick = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown, if !stopping => {
                    stopping = true;
                    self.held.values_mut().for_each(Held::stop);
                }
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    if let Some(e) = self.on_joined(joined).await {
                        fatal.get_or_insert(e);
                        stopping = true;
                        self.held.values_mut().for_each(Held::stop);
                    }
                }
                () = tokio::time::sleep_until(next_tick) => {
                    let renewed = self.tick(stopping).await;
                    next_tick = tokio::time::Instant::now()
                        + if renewed { self.lease / 3 } else { self.lease / 12 };
                }
            }
            if stopping && self.tasks.is_empty() {
                break;
            }
        }
        // Leave: the heartbeat ends now rather than a lease from now.
        if let Err(e) = self
            .bounded(self.backend.members(&self.owner, Duration::ZERO))
            .await
        {
            tracing::debug!(owner = %self.owner, error = %e, "queue: could not end the heartbeat");
        }
        match fatal {
            Some(e) => Err(e),
            None => Ok(self.report),
        }
    }

    /// A backend call bounded by a third of the lease.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, QueueError>>,
    ) -> Result<T, QueueError> {
        match tokio::time::timeout(self.lease / 3, call).await {
            Ok(result) => result,
            Err(_) => Err(QueueError::Engine(
                "the queue engine did not answer in time".into(),
            )),
        }
    }

    /// A partition's worker ended: record its report and release its lease. Returns the
    /// error that ends the whole run (the backend closed).
    async fn on_joined(
        &mut self,
        joined: Result<(tokio::task::Id, Result<StopReport, QueueError>), tokio::task::JoinError>,
    ) -> Option<QueueError> {
        let (id, result) = match joined {
            Ok((id, result)) => (id, Ok(result)),
            Err(e) => (e.id(), Err(e)),
        };
        let partition = self.task_partition.remove(&id)?;
        // Not asked to stop: its lease went half a lease without a renewal.
        let unasked = self.held.remove(&partition).is_some_and(|h| !h.stopping);
        let mut fatal = None;
        match result {
            Ok(Ok(report)) => {
                if unasked {
                    tracing::error!(partition, owner = %self.owner, "queue: lease not renewed in time; this partition's worker stopped");
                    self.report.leases_lost += 1;
                }
                self.report.runs.push((partition, report));
            }
            Ok(Err(QueueError::Closed)) => fatal = Some(QueueError::Closed),
            Ok(Err(e)) => {
                tracing::error!(partition, error = %e, "queue: a partition's worker failed; the partition is released");
            }
            Err(e) => {
                tracing::error!(partition, error = %e, "queue: a partition's worker panicked; the partition is released");
            }
        }
        // Safe whoever holds it now: only the owner's own lease is removed.
        if let Err(e) = self
            .bounded(self.backend.release(partition, &self.owner))
            .await
        {
            tracing::warn!(partition, error = %e, "queue: could not release a lease; it runs out by itself");
        }
        fatal
    }

    /// Heartbeat, renew, rebalance, claim. Returns false when a renewal failed (retry soon).
    async fn tick(&mut self, stopping: bool) -> bool {
        match self
            .bounded(self.backend.members(&self.owner, self.lease))
            .await
        {
            Ok(n) => self.members = n.max(1),
            Err(e) => tracing::warn!(owner = %self.owner, error = %e, "queue: heartbeat failed"),
        }
        // Renew every lease held (together: one transaction on SQLite).
        let renewals = self.held.keys().map(|&partition| {
            let started = tokio::time::Instant::now();
            let call = self.bounded(self.backend.acquire(partition, &self.owner, self.lease));
            async move { (partition, started, call.await) }
        });
        let renewals = futures_util::future::join_all(renewals).await;
        let mut all_renewed = true;
        for (partition, started, result) in renewals {
            let Some(held) = self.held.get_mut(&partition) else {
                continue;
            };
            match result {
                // A stopping worker keeps its lease until it has drained; its stop is set.
                Ok(true) => {
                    if !held.stopping {
                        held.stop_at.send_replace(started + self.lease / 2);
                    }
                }
                Ok(false) => {
                    if !held.stopping {
                        tracing::error!(partition, owner = %self.owner, "queue: lease taken by another owner; stopping this partition's worker");
                        self.report.leases_lost += 1;
                    }
                    held.stop();
                }
                Err(e) => {
                    all_renewed = false;
                    tracing::warn!(partition, error = %e, "queue: renewing a lease failed; retrying");
                }
            }
        }
        if stopping {
            return all_renewed;
        }
        let partitions = self.preference.len() as u32;
        let share = partitions.div_ceil(self.members) as usize;
        // Hand over what is beyond the share: the least preferred first.
        let mut active: Vec<u32> = self
            .preference
            .iter()
            .copied()
            .filter(|p| self.held.get(p).is_some_and(|h| !h.stopping))
            .collect();
        while active.len() > share {
            let Some(partition) = active.pop() else { break };
            if let Some(held) = self.held.get_mut(&partition) {
                tracing::info!(partition, owner = %self.owner, members = self.members, "queue: handing a partition over");
                held.stop();
                self.report.handed_over += 1;
            }
        }
        // Claim free partitions up to the share.
        let mut count = active.len();
        for i in 0..self.preference.len() {
            if count >= share {
                break;
            }
            let partition = self.preference[i];
            if self.held.contains_key(&partition) {
                continue;
            }
            let started = tokio::time::Instant::now();
            match self
                .bounded(self.backend.acquire(partition, &self.owner, self.lease))
                .await
            {
                Ok(true) => {
                    self.start(partition, started + self.lease / 2);
                    count += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    // Likely the engine is down: try again at the next tick, not each partition now.
                    tracing::warn!(partition, error = %e, "queue: claiming a partition failed");
                    break;
                }
            }
        }
        all_renewed
    }

    /// Starts a worker on a partition just claimed.
    fn start(&mut self, partition: u32, stop_at: tokio::time::Instant) {
        tracing::info!(partition, owner = %self.owner, "queue: partition claimed");
        self.report.claimed += 1;
        let (tx, mut rx) = tokio::sync::watch::channel(stop_at);
        // The worker's shutdown: the stop instant passes (not renewed in time, or set to now
        // to stop it), or the run is gone.
        let shutdown = async move {
            loop {
                let at = *rx.borrow_and_update();
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep_until(at) => return,
                }
            }
        };
        let worker = Worker::new(self.backend.clone(), partition)
            .runner_config(self.config.clone())
            .run_erased(self.handler.clone(), shutdown);
        let handle = self.tasks.spawn(worker);
        self.task_partition.insert(handle.id(), partition);
        self.held.insert(
            partition,
            Held {
                stop_at: tx,
                stopping: false,
            },
        );
    }
}
