//! The concurrent runner: bounded concurrency, one update at a time per sequence key,
//! back-pressure on fetching, offsets confirmed only after handling, graceful stop.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use telehook_core::{Context, ErrorPolicy, SequenceKey, Update, UpdateHandler, UpdateType};
use tokio::sync::mpsc;

use crate::PollingError;
use crate::source::UpdateSource;

/// Telegram's largest `getUpdates` `limit`, and so the most updates the runner holds: an
/// update is confirmed only once it and every earlier one are handled, so everything held must
/// fit in one `getUpdates` answer starting at the confirmed offset.
pub const MAX_HELD: usize = 100;

/// What happens to a key when its handler outlives [`RunnerConfig::handler_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

/// How the runner schedules handlers.
#[derive(Clone)]
pub struct RunnerConfig {
    /// Handlers running at once (at least 1). Default 16.
    pub concurrency: usize,
    /// Updates held at once, running or waiting, 1–[`MAX_HELD`]. Default [`MAX_HELD`].
    pub max_held: usize,
    /// Report handlers that run longer than this. Default: none.
    pub handler_timeout: Option<Duration>,
    /// What a timed-out handler means for its key.
    pub on_handler_timeout: HandlerTimeout,
    /// What a failing handler means: `BoundedRetry` retries in place (its key waits), then
    /// gives up; `Retry` retries until it succeeds; `Acknowledge` moves on at once.
    pub error_policy: ErrorPolicy,
    /// First delay between retries of a failing handler (doubling, up to 30 s). Default 500 ms.
    pub retry_delay: Duration,
    /// How updates are keyed. Default: [`Update::sequence_key`], Telegram's own queues.
    pub key_fn: KeyFn,
    /// How long a stop waits for held updates to finish. Default 10 s.
    pub stop_deadline: Duration,
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
    /// The offset confirmed to the source: every update below it is handled.
    pub confirmed_offset: Option<u64>,
    /// Updates still running when the stop deadline passed; the source delivers them again.
    pub unfinished: Vec<u64>,
    /// Updates held but never started before the deadline; the source delivers them again.
    pub not_started: Vec<u64>,
    /// Updates handled whose id is at or above `confirmed_offset` (an earlier one was
    /// unfinished), so the source will deliver them again: pass them to the next run's
    /// `skip_update_ids` to avoid handling them twice.
    pub handled_beyond_offset: Vec<u64>,
}

type FetchFuture = Pin<Box<dyn Future<Output = Result<Vec<Update>, PollingError>> + Send>>;

#[derive(Clone, Copy)]
enum Event {
    TimedOut { update_id: u64 },
    Finished { update_id: u64, gave_up: bool },
}

struct Held {
    update_id: u64,
    done: bool,
}

type Erased = Arc<
    dyn Fn(
            Update,
            Context,
        ) -> Pin<Box<dyn Future<Output = Result<(), telehook_core::HandlerError>> + Send>>
        + Send
        + Sync,
>;

fn erase<U: UpdateType, H: UpdateHandler<U>>(handler: H) -> Erased {
    let handler = Arc::new(handler);
    Arc::new(move |update: Update, ctx: Context| {
        let handler = Arc::clone(&handler);
        Box::pin(async move {
            let update_id = update.update_id();
            let update = U::from_update(update).map_err(|e| -> telehook_core::HandlerError {
                format!("update {update_id} does not fit the handler's type: {e}").into()
            })?;
            handler.handle(update, ctx).await
        })
    })
}

/// Runs `handler` over updates from `source` until `stop` resolves or the source fails fatally.
///
/// Every fetched update is handled exactly once by this run, updates with equal keys one
/// after another in `update_id` order, at most `concurrency` at once. The source is asked for
/// no more updates than there is room for, and the offset it is given never passes an update
/// whose handler has not finished.
pub async fn run<S, U, H>(
    source: S,
    handler: H,
    config: RunnerConfig,
    skip_update_ids: &[u64],
    stop: impl Future<Output = ()>,
) -> Result<StopReport, PollingError>
where
    S: UpdateSource + 'static,
    U: UpdateType,
    H: UpdateHandler<U>,
{
    let concurrency = config.concurrency.max(1);
    let max_held = config.max_held.clamp(1, MAX_HELD);
    let handler = erase(handler);
    let mut state = State::new(concurrency, config.clone(), handler, skip_update_ids);
    let mut stop = std::pin::pin!(stop);
    // The source sits behind a lock so an abandoned fetch (at stop) gives it back for the
    // final confirmation.
    let source = Arc::new(tokio::sync::Mutex::new(source));
    let mut fetch: Option<FetchFuture> = None;
    let mut wait_for_progress = false;
    let mut fatal = None;

    loop {
        state.start_ready();
        if fetch.is_none() && !wait_for_progress {
            let free = max_held.saturating_sub(state.held_count);
            if free > 0 && state.order.len() < MAX_HELD {
                let limit = (state.order.len() + free).min(MAX_HELD);
                let (source, offset) = (Arc::clone(&source), state.fetch_offset());
                fetch = Some(Box::pin(async move {
                    source.lock().await.fetch(offset, limit).await
                }));
            }
        }
        tokio::select! {
            biased;
            () = &mut stop => break,
            Some(event) = state.events.recv() => {
                state.on_event(event);
                wait_for_progress = false;
            }
            result = async { fetch.as_mut().expect("guarded").await }, if fetch.is_some() => {
                fetch = None;
                match result {
                    Ok(updates) => {
                        let fresh = state.on_fetched(updates);
                        // Only updates we already hold came back: the source answers at once
                        // while our offset sits behind a running update, so wait for progress.
                        wait_for_progress = fresh == 0 && !state.order.is_empty();
                    }
                    Err(error) => {
                        fatal = Some(error);
                        break;
                    }
                }
            }
        }
    }
    drop(fetch);
    let report = state.stop().await;
    if let Some(offset) = report.confirmed_offset
        && let Err(error) = source.lock().await.confirm(offset).await
    {
        tracing::warn!(offset, %error, "could not confirm the last offset when stopping; those updates will come again");
    }
    match fatal {
        Some(error) => Err(error),
        None => Ok(report),
    }
}

struct State {
    concurrency: usize,
    config: RunnerConfig,
    handler: Erased,
    /// Fetched updates not yet confirmable, in `update_id` order.
    order: VecDeque<Held>,
    /// Held updates not yet finished (running or waiting).
    held_count: usize,
    /// The highest `update_id` ever fetched: anything at or below it is a repeat.
    max_seen: Option<u64>,
    /// Everything below this is handled.
    confirmed: Option<u64>,
    /// Keys with a run in flight (or queued in `ready`), and the updates waiting behind it.
    busy: HashMap<SequenceKey, VecDeque<Update>>,
    /// Updates free to run, waiting for a concurrency slot.
    ready: VecDeque<Update>,
    /// Handler runs in flight, including ones whose key moved on after a timeout.
    running: usize,
    /// Runs whose key already moved on (timed out with `MoveOn`).
    moved_on: HashMap<u64, Option<SequenceKey>>,
    /// Keys of the runs in flight.
    running_keys: HashMap<u64, Option<SequenceKey>>,
    skip: std::collections::HashSet<u64>,
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    handled: u64,
    given_up: u64,
    handled_ids_beyond: Vec<u64>,
}

impl State {
    fn new(concurrency: usize, config: RunnerConfig, handler: Erased, skip: &[u64]) -> Self {
        // Each run sends at most two events; runs in flight are bounded by MAX_HELD plus the
        // late runs of `MoveOn`, which hold concurrency slots.
        let (events_tx, events) = mpsc::channel(2 * (MAX_HELD + concurrency));
        Self {
            concurrency,
            config,
            handler,
            order: VecDeque::new(),
            held_count: 0,
            max_seen: None,
            confirmed: None,
            busy: HashMap::new(),
            ready: VecDeque::new(),
            running: 0,
            moved_on: HashMap::new(),
            running_keys: HashMap::new(),
            skip: skip.iter().copied().collect(),
            events_tx,
            events,
            handled: 0,
            given_up: 0,
            handled_ids_beyond: Vec::new(),
        }
    }

    fn fetch_offset(&self) -> Option<u64> {
        self.order.front().map(|h| h.update_id).or(self.confirmed)
    }

    /// Takes a fetched batch; returns how many updates were new.
    fn on_fetched(&mut self, updates: Vec<Update>) -> usize {
        let mut fresh = 0;
        for update in updates {
            let id = update.update_id();
            if self.max_seen.is_some_and(|max| id <= max) {
                continue;
            }
            self.max_seen = Some(id);
            if self.skip.remove(&id) {
                tracing::info!(
                    update_id = id,
                    "skipping an update handled by an earlier run"
                );
                self.order.push_back(Held {
                    update_id: id,
                    done: true,
                });
                self.advance();
                continue;
            }
            fresh += 1;
            self.order.push_back(Held {
                update_id: id,
                done: false,
            });
            self.held_count += 1;
            let key = (self.config.key_fn)(&update);
            match key {
                Some(key) => match self.busy.get_mut(&key) {
                    Some(waiting) => waiting.push_back(update),
                    None => {
                        self.busy.insert(key, VecDeque::new());
                        self.ready.push_back(update);
                    }
                },
                None => self.ready.push_back(update),
            }
        }
        fresh
    }

    fn start_ready(&mut self) {
        while self.running < self.concurrency {
            let Some(update) = self.ready.pop_front() else {
                break;
            };
            self.spawn(update);
        }
    }

    fn spawn(&mut self, update: Update) {
        let update_id = update.update_id();
        let key = (self.config.key_fn)(&update);
        self.running += 1;
        self.running_keys.insert(update_id, key);
        let handler = Arc::clone(&self.handler);
        let events = self.events_tx.clone();
        let timeout = self.config.handler_timeout;
        let policy = self.config.error_policy;
        let retry_delay = self.config.retry_delay;
        tokio::spawn(async move {
            let started = Instant::now();
            let mut attempt = 0u32;
            let gave_up = loop {
                attempt += 1;
                let ctx = Context::detached(update_id);
                let run = AssertUnwindSafe(handler(update.clone(), ctx)).catch_unwind();
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
                                let _ = events.send(Event::TimedOut { update_id }).await;
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
                    Err(_) => "handler panicked".to_owned(),
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
                let delay = retry_delay
                    .saturating_mul(1 << (attempt - 1).min(16))
                    .min(Duration::from_secs(30));
                tokio::time::sleep(delay).await;
            };
            let _ = events.send(Event::Finished { update_id, gave_up }).await;
        });
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::TimedOut { update_id } => {
                if self.config.on_handler_timeout == HandlerTimeout::MoveOn {
                    let key = self.running_keys.get(&update_id).cloned().flatten();
                    self.moved_on.insert(update_id, key.clone());
                    self.complete(update_id, key);
                }
            }
            Event::Finished { update_id, gave_up } => {
                self.running -= 1;
                let key = self.running_keys.remove(&update_id).flatten();
                self.handled += 1;
                if gave_up {
                    self.given_up += 1;
                }
                if self.moved_on.remove(&update_id).is_none() {
                    self.complete(update_id, key);
                }
            }
        }
    }

    /// The update no longer holds its key or its place: start the key's next update, and
    /// confirm what can be confirmed.
    fn complete(&mut self, update_id: u64, key: Option<SequenceKey>) {
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
        if let Some(held) = self.order.iter_mut().find(|h| h.update_id == update_id) {
            held.done = true;
        }
        self.advance();
    }

    fn advance(&mut self) {
        while self.order.front().is_some_and(|h| h.done) {
            let held = self.order.pop_front().expect("front exists");
            self.confirmed = Some(held.update_id + 1);
        }
    }

    /// Stops starting new work only once held updates are done or the deadline passes.
    async fn stop(mut self) -> StopReport {
        let deadline = tokio::time::Instant::now() + self.config.stop_deadline;
        loop {
            self.start_ready();
            if self.held_count == 0 && self.running == 0 {
                break;
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.on_event(event),
                Ok(None) | Err(_) => break,
            }
        }
        let unfinished: Vec<u64> = {
            let mut ids: Vec<u64> = self
                .running_keys
                .keys()
                .copied()
                .filter(|id| !self.moved_on.contains_key(id))
                .collect();
            ids.sort_unstable();
            ids
        };
        let mut not_started: Vec<u64> = self.ready.iter().map(Update::update_id).collect();
        not_started.extend(self.busy.values().flatten().map(Update::update_id));
        not_started.sort_unstable();
        for held in &self.order {
            if held.done {
                self.handled_ids_beyond.push(held.update_id);
            }
        }
        if !unfinished.is_empty() || !not_started.is_empty() {
            tracing::warn!(
                unfinished = unfinished.len(),
                not_started = not_started.len(),
                "stopped with updates not handled; they will be delivered again"
            );
        }
        StopReport {
            handled: self.handled,
            given_up: self.given_up,
            confirmed_offset: self.confirmed,
            unfinished,
            not_started,
            handled_beyond_offset: self.handled_ids_beyond,
        }
    }
}
