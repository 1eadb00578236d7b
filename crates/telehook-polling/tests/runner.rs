//! The runner against scripted sources, in tokio's paused time (deterministic, instant): a
//! sequence that starts over below the offset, a source that answers at once with nothing, a
//! stop while the source hangs, repeats by position and by bytes, and panicking handlers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telehook_core::{Context, ErrorPolicy, HandlerError, Update};
use telehook_polling::{Delivery, RunnerConfig, UpdateSource};
use tokio::sync::Notify;

fn update(id: u64, chat: i64, text: &str) -> Update {
    Update::from_bytes(format!(
        r#"{{"update_id":{id},"message":{{"message_id":1,"date":0,"chat":{{"id":{chat},"type":"private"}},"text":"{text}"}}}}"#
    ))
    .unwrap()
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TestError(&'static str);

/// More fetches than any correct run needs: the runner is spinning.
const SPINNING: usize = 1_000;

/// A queue with the official server's getUpdates rules (tdlib/telegram-bot-api,
/// `Client::do_get_updates` over `TQueue::get`): an offset more than 10 past the newest id is
/// "in the future" and ignored (the answer comes from the head and confirms nothing);
/// otherwise everything below the offset is confirmed (dropped). An empty queue long-polls.
#[derive(Clone, Default)]
struct ServerLike {
    queue: Arc<Mutex<VecDeque<Update>>>,
    arrived: Arc<Notify>,
    fetches: Arc<AtomicUsize>,
    offsets: Arc<Mutex<Vec<Option<u64>>>>,
}

impl ServerLike {
    fn push(&self, updates: impl IntoIterator<Item = Update>) {
        self.queue.lock().unwrap().extend(updates);
        self.arrived.notify_waiters();
    }

    fn apply_offset(&self, offset: Option<u64>) {
        let mut queue = self.queue.lock().unwrap();
        let Some(offset) = offset else { return };
        let tail = queue.back().map_or(0, Update::update_id);
        if offset > tail + 10 {
            return;
        }
        while queue.front().is_some_and(|u| u.update_id() < offset) {
            queue.pop_front();
        }
    }

    fn pending(&self) -> Vec<u64> {
        self.queue
            .lock()
            .unwrap()
            .iter()
            .map(Update::update_id)
            .collect()
    }
}

impl UpdateSource for ServerLike {
    type Error = TestError;

    async fn fetch(
        &mut self,
        offset: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Delivery>, TestError> {
        if self.fetches.fetch_add(1, Ordering::SeqCst) > SPINNING {
            return Err(TestError("the runner asks again and again: a tight loop"));
        }
        self.offsets.lock().unwrap().push(offset);
        loop {
            let arrived = self.arrived.notified();
            self.apply_offset(offset);
            let batch: Vec<Delivery> = self
                .queue
                .lock()
                .unwrap()
                .iter()
                .take(limit)
                .cloned()
                .map(Delivery::new)
                .collect();
            if !batch.is_empty() {
                return Ok(batch);
            }
            arrived.await;
        }
    }

    async fn confirm(&mut self, offset: u64) -> Result<(), TestError> {
        self.apply_offset(Some(offset));
        Ok(())
    }
}

/// Records handled update ids and wakes waiters.
#[derive(Clone, Default)]
struct Handled {
    ids: Arc<Mutex<Vec<u64>>>,
    changed: Arc<Notify>,
}

impl Handled {
    fn record(&self, id: u64) {
        self.ids.lock().unwrap().push(id);
        self.changed.notify_waiters();
    }

    fn ids(&self) -> Vec<u64> {
        self.ids.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) {
        loop {
            let changed = self.changed.notified();
            if self.ids.lock().unwrap().len() >= n {
                return;
            }
            changed.await;
        }
    }
}

fn recording(
    handled: &Handled,
) -> impl Fn(Update, Context) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
{
    let handled = handled.clone();
    move |update: Update, _ctx: Context| {
        handled.record(update.update_id());
        std::future::ready(Ok(()))
    }
}

/// Telegram chose new, lower update_ids (a quiet week): the official server ignores the old
/// offset as "in the future" and answers from its head. The runner must handle the new ids,
/// confirm them, and say once that the sequence started over. Before: it dropped every id at or
/// below the highest seen and re-asked in a tight loop.
#[tokio::test(start_paused = true)]
async fn update_ids_that_start_over_below_the_offset_are_handled_and_confirmed() {
    let server = ServerLike::default();
    server.push([1000, 1001, 1002].map(|id| update(id, 1, "before")));
    let handled = Handled::default();
    let stop = handled.clone();
    let probe = server.clone();
    let run = tokio::spawn(telehook_polling::run(
        server.clone(),
        recording(&handled),
        RunnerConfig::default(),
        async move { stop.wait_for(6).await },
    ));
    handled.wait_for(3).await;
    // The runner confirms 1000–1002 with its next fetch (offset 1003), then waits.
    while !probe.pending().is_empty() || probe.offsets.lock().unwrap().last() != Some(&Some(1003)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.push([5, 6, 7].map(|id| update(id, 1, "after a quiet week")));
    let report = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the runner stops")
        .unwrap()
        .expect("no tight loop");
    assert_eq!(handled.ids(), [1000, 1001, 1002, 5, 6, 7]);
    assert_eq!(report.sequence_resets, 1);
    assert_eq!(report.confirmed_offset, Some(8));
    assert!(report.confirmed);
    assert!(server.pending().is_empty(), "the new ids were confirmed");
}

/// After a reset an id can come again with a different update: that is a new update. The same
/// update (same id, same bytes) at another position is a repeat (a relay that stored a Telegram
/// redelivery twice) and is skipped.
#[tokio::test(start_paused = true)]
async fn an_equal_update_id_with_other_bytes_is_new_and_with_the_same_bytes_a_repeat() {
    #[derive(Default)]
    struct Script(VecDeque<Vec<Delivery>>);
    impl UpdateSource for Script {
        type Error = TestError;
        async fn fetch(&mut self, _: Option<u64>, _: usize) -> Result<Vec<Delivery>, TestError> {
            match self.0.pop_front() {
                Some(batch) => Ok(batch),
                None => std::future::pending().await,
            }
        }
        async fn confirm(&mut self, _: u64) -> Result<(), TestError> {
            Ok(())
        }
    }
    let script = Script(VecDeque::from([
        vec![
            Delivery::at(1, update(40, 1, "first")),
            Delivery::at(2, update(41, 2, "other chat")),
        ],
        vec![
            // Telegram's redelivery, stored twice by a relay.
            Delivery::at(3, update(40, 1, "first")),
            // Same id, different update (ids reused after a reset).
            Delivery::at(4, update(40, 1, "a different update")),
        ],
    ]));
    let handled = Handled::default();
    let stop = handled.clone();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let recorder = handled.clone();
    let report = telehook_polling::run(
        script,
        move |update: Update, _: Context| {
            seen.lock().unwrap().push(update.raw_str().to_owned());
            recorder.record(update.update_id());
            std::future::ready(Ok::<_, HandlerError>(()))
        },
        RunnerConfig::default(),
        async move { stop.wait_for(3).await },
    )
    .await
    .unwrap();
    assert_eq!(handled.ids().len(), 3);
    assert_eq!(report.skipped, 1, "{report:?}");
    let bodies = bodies.lock().unwrap();
    assert_eq!(
        bodies.iter().filter(|b| b.contains("\"first\"")).count(),
        1,
        "the repeat ran twice"
    );
    assert!(bodies.iter().any(|b| b.contains("a different update")));
    assert_eq!(report.confirmed_offset, Some(5));
}

/// A source that answers at once with nothing (short polling, a misbehaving server) is not
/// asked again in a tight loop: the runner backs off between empty answers.
#[tokio::test(start_paused = true)]
async fn a_source_answering_nothing_at_once_is_not_asked_in_a_tight_loop() {
    #[derive(Clone, Default)]
    struct Empty(Arc<AtomicUsize>);
    impl UpdateSource for Empty {
        type Error = TestError;
        async fn fetch(&mut self, _: Option<u64>, _: usize) -> Result<Vec<Delivery>, TestError> {
            if self.0.fetch_add(1, Ordering::SeqCst) > SPINNING {
                return Err(TestError("tight loop"));
            }
            Ok(Vec::new())
        }
        async fn confirm(&mut self, _: u64) -> Result<(), TestError> {
            Ok(())
        }
    }
    let source = Empty::default();
    let fetches = source.0.clone();
    telehook_polling::run(
        source,
        |_: Update, _: Context| async { Ok::<_, HandlerError>(()) },
        RunnerConfig::default(),
        tokio::time::sleep(Duration::from_secs(60)),
    )
    .await
    .expect("no tight loop");
    let fetches = fetches.load(Ordering::SeqCst);
    // 50 ms doubling to 5 s (upper-half jitter): at most ~35 calls in a minute.
    assert!(
        (3..=40).contains(&fetches),
        "{fetches} fetches in 60 s of empty answers"
    );
}

/// A source whose fetch and confirmation both hang (a dead connection): a stop still returns
/// within its deadline, cancels the run that did not finish, and says the offset was not
/// confirmed.
#[tokio::test(start_paused = true)]
async fn a_stop_returns_within_its_deadline_when_the_source_and_a_handler_hang() {
    struct Hanging(Option<Vec<Delivery>>);
    impl UpdateSource for Hanging {
        type Error = TestError;
        async fn fetch(&mut self, _: Option<u64>, _: usize) -> Result<Vec<Delivery>, TestError> {
            match self.0.take() {
                Some(batch) => Ok(batch),
                None => std::future::pending().await,
            }
        }
        async fn confirm(&mut self, _: u64) -> Result<(), TestError> {
            std::future::pending().await
        }
    }
    let source = Hanging(Some(vec![
        Delivery::new(update(1, 1, "quick")),
        Delivery::new(update(2, 2, "hangs")),
        Delivery::new(update(3, 3, "quick")),
    ]));
    let handled = Handled::default();
    let stop = handled.clone();
    let recorder = handled.clone();
    let mut config = RunnerConfig::default();
    config.stop_deadline = Duration::from_secs(3);
    let started = tokio::time::Instant::now();
    let report = tokio::time::timeout(
        Duration::from_secs(3600),
        telehook_polling::run(
            source,
            move |update: Update, _: Context| {
                let recorder = recorder.clone();
                async move {
                    if update.update_id() == 2 {
                        std::future::pending::<()>().await;
                    }
                    recorder.record(update.update_id());
                    Ok::<_, HandlerError>(())
                }
            },
            config,
            async move { stop.wait_for(2).await },
        ),
    )
    .await
    .expect("the stop outlived its deadline by far")
    .unwrap();
    assert!(
        started.elapsed() <= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.unfinished, [2]);
    assert_eq!(report.confirmed_offset, Some(2));
    assert!(!report.confirmed, "the confirmation hung");
    assert_eq!(report.handled_beyond_offset, [3]);
}

/// A handler that panics on one update does not stop the others; the panic counts as a
/// failure and follows the error policy (bounded retry, then given up and confirmed).
#[tokio::test(start_paused = true)]
async fn a_panicking_handler_follows_the_error_policy_and_the_others_go_on() {
    let updates = (1..=5).map(|id| update(id, id as i64, "x"));
    let handled = Handled::default();
    let stop = handled.clone();
    let recorder = handled.clone();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let mut config = RunnerConfig::default();
    config.error_policy = ErrorPolicy::BoundedRetry { max_attempts: 2 };
    config.retry_delay = Duration::from_millis(10);
    let report = telehook_polling::run(
        telehook_polling::MemorySource::new(updates),
        move |update: Update, _: Context| {
            let (recorder, counted) = (recorder.clone(), counted.clone());
            async move {
                if update.update_id() == 3 {
                    counted.fetch_add(1, Ordering::SeqCst);
                    panic!("handler bug on update 3");
                }
                recorder.record(update.update_id());
                Ok::<_, HandlerError>(())
            }
        },
        config,
        async move {
            stop.wait_for(4).await;
            // Let the retries of update 3 run out.
            tokio::time::sleep(Duration::from_secs(5)).await;
        },
    )
    .await
    .unwrap();
    let mut ids = handled.ids();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 4, 5]);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "two attempts, then given up"
    );
    assert_eq!(report.panics, 2);
    assert_eq!(report.failures, 2);
    assert_eq!(report.given_up, 1);
    assert_eq!(report.handled, 5);
    assert_eq!(report.confirmed_offset, Some(6));
}

/// A handler that fails its first five runs and requires `ErrorPolicy::Retry` (as
/// telehook-queue's `EnqueueHandler` does: giving up would confirm an update it never stored).
struct NeedsRetry {
    runs: Arc<AtomicUsize>,
    handled: Handled,
}

impl telehook_core::UpdateHandler<Update> for NeedsRetry {
    async fn handle(&self, update: Update, _ctx: Context) -> Result<(), HandlerError> {
        if self.runs.fetch_add(1, Ordering::SeqCst) < 5 {
            return Err("the queue is full".into());
        }
        self.handled.record(update.update_id());
        Ok(())
    }

    fn required_error_policy(&self) -> Option<ErrorPolicy> {
        Some(ErrorPolicy::Retry)
    }
}

/// The configured `BoundedRetry { max_attempts: 2 }` would give the update up after two
/// failures and confirm it; the handler's required `Retry` keeps it until it succeeds.
#[tokio::test(start_paused = true)]
async fn a_handler_that_requires_retry_is_never_given_up_whatever_the_config_says() {
    let handled = Handled::default();
    let stop = handled.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut config = RunnerConfig::default();
    config.error_policy = ErrorPolicy::BoundedRetry { max_attempts: 2 };
    config.retry_delay = Duration::from_millis(10);
    let report = telehook_polling::run(
        telehook_polling::MemorySource::new([update(1, 1, "x")]),
        NeedsRetry {
            runs: runs.clone(),
            handled: handled.clone(),
        },
        config,
        async move {
            // Without the required policy the update is given up and never handled: stop after
            // a minute of (paused, instant) time instead of waiting for ever.
            tokio::select! {
                () = stop.wait_for(1) => {}
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(handled.ids(), [1]);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        6,
        "five failures, then the run that worked"
    );
    assert_eq!(report.given_up, 0);
    assert_eq!(report.failures, 5);
    assert_eq!(report.confirmed_offset, Some(2));
}
