//! The runner: feeds updates from any [`UpdateSource`] to one handler, with bounded
//! concurrency, one update at a time per sequence key, back-pressure on fetching, positions
//! confirmed only after handling, the webhook's error policy, panics caught, and a graceful stop
//! bounded by a deadline.
//!
//! `getUpdates` (`GetUpdatesSource`), telehook-relay's client and [`crate::MemorySource`]
//! all feed the same runner; implement [`UpdateSource`] to feed it from anything else.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher as _;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use telehook_core::{
    Context, ErasedHandler, ErrorPolicy, SequenceKey, Update, UpdateHandler, UpdateType,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::source::{Delivery, UpdateSource};

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
    /// [`StopReport::handled_beyond_offset`]): confirmed without running again.
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

/// What a run did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StopReport {
    /// Updates whose handler finished (successfully or given up by the error policy).
    pub handled: u64,
    /// Updates given up after failing (counted in `handled` too).
    pub given_up: u64,
    /// Failed handler runs (errors and panics, retries included).
    pub failures: u64,
    /// Handler runs that panicked (counted in `failures` too).
    pub panics: u64,
    /// Updates skipped because the same update (equal `update_id` and bytes) was taken
    /// before, or because it was in [`RunnerConfig::skip_update_ids`].
    pub skipped: u64,
    /// Times the source's sequence started over (Telegram chose new, lower `update_id`s).
    pub sequence_resets: u64,
    /// The position confirmed when stopping: every delivery below it is handled (for
    /// `getUpdates`, the `offset`).
    pub confirmed_offset: Option<u64>,
    /// Whether the source acknowledged `confirmed_offset` before the stop deadline. When
    /// false, handled updates from the last confirmed position on come again after a restart
    /// (at least once); the offset is logged.
    pub confirmed: bool,
    /// Updates (by `update_id`) still running when the stop deadline passed: their runs were
    /// cancelled, and the source delivers them again.
    pub unfinished: Vec<u64>,
    /// Updates held but never started before the deadline; the source delivers them again.
    pub not_started: Vec<u64>,
    /// Updates handled whose position is at or above `confirmed_offset` (an earlier one was
    /// unfinished), so the source will deliver them again: pass them to the next run's
    /// `skip_update_ids` to avoid handling them twice.
    pub handled_beyond_offset: Vec<u64>,
}

#[derive(Clone, Copy)]
enum Event {
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

struct Held {
    position: u64,
    update_id: u64,
    done: bool,
}

struct Run {
    update_id: u64,
    key: Option<SequenceKey>,
    abort: AbortHandle,
    moved_on: bool,
}

/// Remembers the last `capacity` updates taken, by `update_id` and a hash of their bytes.
struct Recent {
    capacity: usize,
    order: VecDeque<(u64, u64)>,
    set: HashSet<(u64, u64)>,
    seed: u64,
}

/// A cheap hash of an update's bytes (word at a time, multiply-rotate), seeded per run. Only
/// compared between updates with equal `update_id`s, so it needs to tell bodies apart, not to
/// resist crafted collisions.
fn body_hash(seed: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut hash = seed ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        hash = (hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    (hash.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K)
}

impl Recent {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            order: VecDeque::with_capacity(capacity.min(4_096)),
            set: HashSet::with_capacity(capacity.min(4_096)),
            seed: std::collections::hash_map::RandomState::new().hash_one(0u64),
        }
    }

    /// Records `update`; false if the same update was recorded before.
    fn insert(&mut self, update: &Update) -> bool {
        if self.capacity == 0 {
            return true;
        }
        let entry = (update.update_id(), body_hash(self.seed, update.raw()));
        if !self.set.insert(entry) {
            return false;
        }
        self.order.push_back(entry);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

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
    // The stop's clock starts now; the abandoned fetch (a long poll, a backoff, a 429's
    // retry_after) ends here.
    let deadline = Instant::now() + state.config.stop_deadline;
    drop(fetch);
    // Keep a share of the deadline for the confirmation.
    let reserve = (state.config.stop_deadline / 4).min(Duration::from_secs(2));
    let mut report = state.drain(deadline - reserve).await;
    if let Some(offset) = report.confirmed_offset {
        let confirm = async { source.lock().await.confirm(offset).await };
        match tokio::time::timeout_at(deadline, confirm).await {
            Ok(Ok(())) => report.confirmed = true,
            Ok(Err(error)) => tracing::warn!(
                offset,
                %error,
                "could not confirm the last offset when stopping; updates from this offset on come again after a restart"
            ),
            Err(_) => tracing::warn!(
                offset,
                "the stop deadline passed before the last offset was confirmed; updates from this offset on come again after a restart"
            ),
        }
    }
    match fatal {
        Some(error) => Err(error),
        None => Ok(report),
    }
}

struct State {
    concurrency: usize,
    config: RunnerConfig,
    handler: ErasedHandler,
    /// Fetched deliveries not yet confirmable, in delivery order.
    order: VecDeque<Held>,
    /// The highest position taken since the sequence last started over: positions grow, so
    /// one at or below it (and not below the offset asked for) is a repeat.
    max_taken: Option<u64>,
    /// Held updates not yet finished (running or waiting).
    held_count: usize,
    /// Everything below this is handled.
    confirmed: Option<u64>,
    /// Keys with a run in flight (or queued in `ready`), and the deliveries waiting behind it.
    busy: HashMap<SequenceKey, VecDeque<(Delivery, Option<SequenceKey>)>>,
    /// Deliveries free to run, waiting for a concurrency slot.
    ready: VecDeque<(Delivery, Option<SequenceKey>)>,
    /// Handler runs in flight, including ones whose key moved on after a timeout.
    runs: HashMap<u64, Run>,
    skip: HashSet<u64>,
    recent: Recent,
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    report: StopReport,
}

impl State {
    fn new(concurrency: usize, config: RunnerConfig, handler: ErasedHandler) -> Self {
        // Each run sends at most two events; runs in flight are bounded by MAX_HELD plus the
        // late runs of `MoveOn`, which hold concurrency slots.
        let (events_tx, events) = mpsc::channel(2 * (MAX_HELD + concurrency));
        Self {
            concurrency,
            skip: config.skip_update_ids.iter().copied().collect(),
            recent: Recent::new(config.dedupe_window),
            config,
            handler,
            order: VecDeque::new(),
            max_taken: None,
            held_count: 0,
            confirmed: None,
            busy: HashMap::new(),
            ready: VecDeque::new(),
            runs: HashMap::new(),
            events_tx,
            events,
            report: StopReport::default(),
        }
    }

    fn fetch_offset(&self) -> Option<u64> {
        self.order.front().map(|h| h.position).or(self.confirmed)
    }

    /// Takes a fetched batch; returns how many deliveries were new.
    fn on_fetched(&mut self, asked: Option<u64>, deliveries: Vec<Delivery>) -> usize {
        let mut fresh = 0;
        let mut reset_seen = false;
        for delivery in deliveries {
            let position = delivery.position();
            let update_id = delivery.update().update_id();
            if let Some(asked) = asked
                && position < asked
            {
                if self.order.iter().any(|h| h.position == position) {
                    // Held already (the rare case of a sequence that started over while an
                    // update from before was still running).
                    continue;
                }
                if !reset_seen {
                    // Telegram chose new update_ids (after a week without updates, they start
                    // anywhere, possibly lower): the official server then ignores an offset
                    // "in the future" and answers from the head of its queue. Trust the answer.
                    reset_seen = true;
                    self.max_taken = None;
                    self.report.sequence_resets += 1;
                    tracing::info!(
                        offset = asked,
                        update_id,
                        "update_id started over below the offset asked for (Telegram picks new ids after a week without updates); going on from the new ids"
                    );
                }
            }
            if self.max_taken.is_some_and(|max| position <= max) {
                // Taken before in this sequence: held (returned again because the offset sits
                // behind a running update) or handled since the fetch was asked for.
                continue;
            }
            self.max_taken = Some(position);
            fresh += 1;
            let repeat = !self.recent.insert(delivery.update());
            if repeat || self.skip.remove(&update_id) {
                tracing::info!(
                    update_id,
                    position,
                    "skipping an update already handled (a redelivery, or handled by an earlier run)"
                );
                self.report.skipped += 1;
                self.order.push_back(Held {
                    position,
                    update_id,
                    done: true,
                });
                self.advance();
                continue;
            }
            self.order.push_back(Held {
                position,
                update_id,
                done: false,
            });
            self.held_count += 1;
            let key = (self.config.key_fn)(delivery.update());
            match key {
                Some(key) => match self.busy.entry(key) {
                    Entry::Occupied(mut waiting) => {
                        let key = waiting.key().clone();
                        waiting.get_mut().push_back((delivery, Some(key)));
                    }
                    Entry::Vacant(slot) => {
                        let key = slot.key().clone();
                        slot.insert(VecDeque::new());
                        self.ready.push_back((delivery, Some(key)));
                    }
                },
                None => self.ready.push_back((delivery, None)),
            }
        }
        fresh
    }

    fn start_ready(&mut self) {
        while self.runs.len() < self.concurrency {
            let Some((delivery, key)) = self.ready.pop_front() else {
                break;
            };
            self.spawn(delivery, key);
        }
    }

    fn spawn(&mut self, delivery: Delivery, key: Option<SequenceKey>) {
        let position = delivery.position();
        let update = delivery.into_update();
        let update_id = update.update_id();
        let handler = self.handler.clone();
        let events = self.events_tx.clone();
        let timeout = self.config.handler_timeout;
        let policy = self.config.error_policy;
        let retry_delay = self.config.retry_delay;
        let task = tokio::spawn(async move {
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
        });
        self.runs.insert(
            position,
            Run {
                update_id,
                key,
                abort: task.abort_handle(),
                moved_on: false,
            },
        );
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::TimedOut { position } => {
                if self.config.on_handler_timeout == HandlerTimeout::MoveOn
                    && let Some(run) = self.runs.get_mut(&position)
                {
                    run.moved_on = true;
                    let key = run.key.clone();
                    self.complete(position, key);
                }
            }
            Event::Finished {
                position,
                gave_up,
                failures,
                panics,
            } => {
                let Some(run) = self.runs.remove(&position) else {
                    return;
                };
                self.report.handled += 1;
                self.report.given_up += u64::from(gave_up);
                self.report.failures += u64::from(failures);
                self.report.panics += u64::from(panics);
                if !run.moved_on {
                    self.complete(position, run.key);
                }
            }
        }
    }

    /// The update no longer holds its key or its place: start the key's next update, and
    /// confirm what can be confirmed.
    fn complete(&mut self, position: u64, key: Option<SequenceKey>) {
        self.held_count -= 1;
        if let Some(key) = key {
            let next = self.busy.get_mut(&key).and_then(VecDeque::pop_front);
            match next {
                Some(next) => self.ready.push_back(next),
                None => {
                    self.busy.remove(&key);
                }
            }
        }
        if let Some(held) = self.order.iter_mut().find(|h| h.position == position) {
            held.done = true;
        }
        self.advance();
    }

    fn advance(&mut self) {
        while self.order.front().is_some_and(|h| h.done) {
            let held = self.order.pop_front().expect("front exists");
            self.confirmed = Some(held.position + 1);
        }
    }

    /// Finishes what is held, starting nothing new once `deadline` passes; cancels what still
    /// runs then.
    async fn drain(mut self, deadline: Instant) -> StopReport {
        loop {
            self.start_ready();
            if self.held_count == 0 && self.runs.values().all(|r| r.moved_on) {
                break;
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.on_event(event),
                Ok(None) | Err(_) => break,
            }
        }
        let mut unfinished: Vec<u64> = Vec::new();
        for run in self.runs.values().filter(|r| !r.moved_on) {
            // Its update comes again; a run left going could overlap the next process's.
            run.abort.abort();
            unfinished.push(run.update_id);
        }
        unfinished.sort_unstable();
        let mut not_started: Vec<u64> = self
            .ready
            .iter()
            .map(|(d, _)| d.update().update_id())
            .collect();
        not_started.extend(
            self.busy
                .values()
                .flatten()
                .map(|(d, _)| d.update().update_id()),
        );
        not_started.sort_unstable();
        let beyond: Vec<u64> = self
            .order
            .iter()
            .filter(|h| h.done)
            .map(|h| h.update_id)
            .collect();
        if !unfinished.is_empty() || !not_started.is_empty() {
            tracing::warn!(
                unfinished = ?unfinished,
                not_started = ?not_started,
                confirmed_offset = self.confirmed,
                "stopped with updates not handled; they will be delivered again"
            );
        }
        let mut report = self.report;
        report.confirmed_offset = self.confirmed;
        report.unfinished = unfinished;
        report.not_started = not_started;
        report.handled_beyond_offset = beyond;
        report
    }
}
