//! Scheduling: which held update runs next (one at a time per sequence key, at most
//! `concurrency` at once), repeats and sequence restarts in fetched batches, and the position
//! that can be confirmed.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use tokio::time::Instant;

use telehook_core::{ErasedHandler, SequenceKey};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::attempt::{self, Event};
use super::config::{HandlerTimeout, MAX_HELD, RunnerConfig};
use super::dedupe::Recent;
use super::report::StopReport;
use crate::source::Delivery;

pub(super) struct Held {
    pub(super) position: u64,
    pub(super) update_id: u64,
    pub(super) done: bool,
}

pub(super) struct Run {
    pub(super) update_id: u64,
    pub(super) key: Option<SequenceKey>,
    pub(super) abort: AbortHandle,
    pub(super) moved_on: bool,
}

pub(super) struct State {
    pub(super) concurrency: usize,
    pub(super) config: RunnerConfig,
    pub(super) handler: ErasedHandler,
    /// Fetched deliveries not yet confirmable, in delivery order.
    pub(super) order: VecDeque<Held>,
    /// The highest position taken since the sequence last started over: positions grow, so
    /// one at or below it (and not below the offset asked for) is a repeat.
    pub(super) max_taken: Option<u64>,
    /// Held updates not yet finished (running or waiting).
    pub(super) held_count: usize,
    /// Everything below this is handled.
    pub(super) confirmed: Option<u64>,
    /// Keys with a run in flight (or queued in `ready`), and the deliveries waiting behind it.
    pub(super) busy: HashMap<SequenceKey, VecDeque<(Delivery, Option<SequenceKey>)>>,
    /// Deliveries free to run, waiting for a concurrency slot.
    pub(super) ready: VecDeque<(Delivery, Option<SequenceKey>)>,
    /// Handler runs in flight, including ones whose key moved on after a timeout.
    pub(super) runs: HashMap<u64, Run>,
    pub(super) skip: HashSet<u64>,
    /// When each held, not yet started delivery was fetched (for the lag histogram); bounded
    /// by the held updates.
    pub(super) fetched_at: HashMap<u64, Instant>,
    pub(super) recent: Recent,
    pub(super) events_tx: mpsc::Sender<Event>,
    pub(super) events: mpsc::Receiver<Event>,
    pub(super) report: StopReport,
}

impl State {
    pub(super) fn new(concurrency: usize, config: RunnerConfig, handler: ErasedHandler) -> Self {
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
            fetched_at: HashMap::new(),
            events_tx,
            events,
            report: StopReport::default(),
        }
    }

    pub(super) fn fetch_offset(&self) -> Option<u64> {
        self.order.front().map(|h| h.position).or(self.confirmed)
    }

    /// Takes a fetched batch; returns how many deliveries were new.
    pub(super) fn on_fetched(&mut self, asked: Option<u64>, deliveries: Vec<Delivery>) -> usize {
        let fetched = Instant::now();
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
            self.fetched_at.insert(position, fetched);
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

    pub(super) fn start_ready(&mut self) {
        while self.runs.len() < self.concurrency {
            let Some((delivery, key)) = self.ready.pop_front() else {
                break;
            };
            self.spawn(delivery, key);
        }
    }

    pub(super) fn spawn(&mut self, delivery: Delivery, key: Option<SequenceKey>) {
        let position = delivery.position();
        if let Some(fetched) = self.fetched_at.remove(&position) {
            metrics::histogram!(crate::metric_names::POLLING_LAG)
                .record(fetched.elapsed().as_secs_f64());
        }
        let update = delivery.into_update();
        let update_id = update.update_id();
        let handler = self.handler.clone();
        let events = self.events_tx.clone();
        let timeout = self.config.handler_timeout;
        let policy = self.config.error_policy;
        let retry_delay = self.config.retry_delay;
        let task = tokio::spawn(attempt::handle(
            handler,
            update,
            position,
            timeout,
            policy,
            retry_delay,
            events,
        ));
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

    pub(super) fn on_event(&mut self, event: Event) {
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
    pub(super) fn complete(&mut self, position: u64, key: Option<SequenceKey>) {
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

    pub(super) fn advance(&mut self) {
        while self.order.front().is_some_and(|h| h.done) {
            let held = self.order.pop_front().expect("front exists");
            self.confirmed = Some(held.position + 1);
        }
    }
}
