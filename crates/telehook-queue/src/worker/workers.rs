//! [`Workers`]: workers in several processes sharing one queue's partitions through leases
//! and heartbeats, handing partitions over as members come and go.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use telehook_core::{ErasedHandler, UpdateHandler, UpdateType};
use telehook_polling::{RunnerConfig, StopReport};

use super::Worker;
use crate::backend::{QueueBackend, QueueError};

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
/// partition, like [`run_workers`](super::run_workers).
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
            tracing::debug!(owner = %self.owner, error = %crate::backend::Chain(&e), "queue: could not end the heartbeat");
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
                tracing::error!(partition, error = %crate::backend::Chain(&e), "queue: a partition's worker failed; the partition is released");
            }
            Err(e) => {
                tracing::error!(partition, error = %crate::backend::Chain(&e), "queue: a partition's worker panicked; the partition is released");
            }
        }
        // Safe whoever holds it now: only the owner's own lease is removed.
        if let Err(e) = self
            .bounded(self.backend.release(partition, &self.owner))
            .await
        {
            tracing::warn!(partition, error = %crate::backend::Chain(&e), "queue: could not release a lease; it runs out by itself");
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
            Err(e) => {
                tracing::warn!(owner = %self.owner, error = %crate::backend::Chain(&e), "queue: heartbeat failed");
            }
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
                    tracing::warn!(partition, error = %crate::backend::Chain(&e), "queue: renewing a lease failed; retrying");
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
                    tracing::warn!(partition, error = %crate::backend::Chain(&e), "queue: claiming a partition failed");
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
