//! Queue mode on real SQLite files: order on 1 and 3 workers, a crash loses nothing, the error
//! policy then the dead-letter list and re-drive, a full queue refuses, a duplicate runs once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telehook_core::{
    BuildError, Context, ErrorPolicy, HandlerError, OnTimeout, RequestHead, Update, Webhook,
};
use telehook_polling::RunnerConfig;
use telehook_queue::{
    EnqueueHandler, Enqueued, QueueBackend, QueueError, SqliteQueue, Worker, run_workers,
};
use tokio::sync::Notify;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("telehook-queue-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn db(&self) -> PathBuf {
        self.0.join("queue.sqlite3")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn message(update_id: u64, chat: i64) -> Update {
    Update::from_bytes(format!(
        r#"{{"update_id":{update_id},"message":{{"message_id":{update_id},"date":1,"chat":{{"id":{chat},"type":"private"}},"text":"hi"}}}}"#
    ))
    .unwrap()
}

fn config(concurrency: usize) -> RunnerConfig {
    let mut config = RunnerConfig::default();
    config.concurrency = concurrency;
    config.retry_delay = Duration::from_millis(1);
    config.stop_deadline = Duration::from_secs(5);
    config
}

/// Records (chat, update_id) per run and wakes `done` once `expect` distinct updates ran.
#[derive(Clone)]
struct Recorder {
    runs: Arc<Mutex<Vec<(i64, u64)>>>,
    done: Arc<Notify>,
    expect: usize,
}

impl Recorder {
    fn new(expect: usize) -> Self {
        Self {
            runs: Arc::default(),
            done: Arc::new(Notify::new()),
            expect,
        }
    }
    fn record(&self, update: &Update) {
        let mut runs = self.runs.lock().unwrap();
        runs.push((update.chat_id().unwrap_or(0), update.update_id()));
        let distinct: BTreeSet<u64> = runs.iter().map(|r| r.1).collect();
        if distinct.len() >= self.expect {
            self.done.notify_one();
        }
    }
    /// Records the run unless `limit` runs are recorded already (checked and recorded at once).
    fn record_below(&self, limit: usize, update: &Update) -> bool {
        if self.runs.lock().unwrap().len() >= limit {
            return false;
        }
        let mut runs = self.runs.lock().unwrap();
        if runs.len() >= limit {
            return false;
        }
        runs.push((update.chat_id().unwrap_or(0), update.update_id()));
        if runs.len() >= self.expect {
            self.done.notify_one();
        }
        true
    }
    fn runs(&self) -> Vec<(i64, u64)> {
        self.runs.lock().unwrap().clone()
    }
}

fn assert_in_chat_order(runs: &[(i64, u64)]) {
    let mut per_chat: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for (chat, id) in runs {
        per_chat.entry(*chat).or_default().push(*id);
    }
    for (chat, ids) in per_chat {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "chat {chat} out of order: {ids:?}"
        );
    }
}

async fn handled_in_chat_order(partitions: u32) {
    let dir = TempDir::new(&format!("order{partitions}"));
    let queue = SqliteQueue::builder(dir.db())
        .partitions(partitions)
        .open()
        .unwrap();
    let total = 300u64;
    for id in 1..=total {
        assert_eq!(
            queue.enqueue(&message(id, (id % 7) as i64)).await.unwrap(),
            Enqueued::Stored
        );
    }
    let recorder = Recorder::new(total as usize);
    let (r, done) = (recorder.clone(), Arc::clone(&recorder.done));
    let handler = move |update: Update, _ctx: Context| {
        let r = r.clone();
        async move {
            // Yield so runs of different chats interleave.
            tokio::task::yield_now().await;
            r.record(&update);
            Ok::<_, HandlerError>(())
        }
    };
    let reports = run_workers(queue.clone(), handler, config(4), async move {
        done.notified().await;
    })
    .await
    .unwrap();
    assert_eq!(reports.len(), partitions as usize);
    let runs = recorder.runs();
    assert_eq!(runs.len(), total as usize, "each update once");
    assert_eq!(
        runs.iter().map(|r| r.1).collect::<BTreeSet<_>>().len(),
        total as usize
    );
    assert_in_chat_order(&runs);
    assert_eq!(queue.queued().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handled_in_chat_order_on_one_worker() {
    handled_in_chat_order(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handled_in_chat_order_on_three_workers() {
    handled_in_chat_order(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_run_loses_nothing() {
    let dir = TempDir::new("crash");
    let total = 60u64;
    {
        let queue = SqliteQueue::open(dir.db()).unwrap();
        for id in 1..=total {
            queue.enqueue(&message(id, (id % 5) as i64)).await.unwrap();
        }
    }
    // First run: 20 updates handled, then every handler hangs and the worker is dropped.
    let first = Recorder::new(20);
    {
        let queue = SqliteQueue::open(dir.db()).unwrap();
        let queue_probe = queue.clone();
        let r = first.clone();
        let handler = move |update: Update, _ctx: Context| {
            let r = r.clone();
            async move {
                if !r.record_below(20, &update) {
                    std::future::pending::<()>().await;
                }
                Ok::<_, HandlerError>(())
            }
        };
        let worker = tokio::spawn(
            Worker::new(queue, 0)
                .runner_config(config(4))
                .run(handler, std::future::pending()),
        );
        first.done.notified().await;
        // Wait until the 20 acks committed (the others hang), then crash: the task is dropped
        // mid-run.
        while queue_probe.queued().await.unwrap() > total - 20 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        worker.abort();
        let _ = worker.await;
    }
    // Reopen: everything not handled is still there and runs now; nothing handled runs again.
    let queue = SqliteQueue::open(dir.db()).unwrap();
    let left = queue.queued().await.unwrap();
    assert_eq!(left, total - 20);
    let second = Recorder::new(left as usize);
    let (r, done) = (second.clone(), Arc::clone(&second.done));
    let handler = move |update: Update, _ctx: Context| {
        let r = r.clone();
        async move {
            r.record(&update);
            Ok::<_, HandlerError>(())
        }
    };
    Worker::new(queue.clone(), 0)
        .runner_config(config(4))
        .run(handler, async move {
            done.notified().await;
        })
        .await
        .unwrap();
    let a: BTreeSet<u64> = first.runs().iter().map(|r| r.1).collect();
    let b: BTreeSet<u64> = second.runs().iter().map(|r| r.1).collect();
    assert!(
        a.is_disjoint(&b),
        "an acked update ran again: {:?}",
        a.intersection(&b).collect::<Vec<_>>()
    );
    assert_eq!(a.union(&b).count(), total as usize, "an update was lost");
    assert_in_chat_order(&second.runs());
    assert_eq!(queue.queued().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_update_is_dead_lettered_listed_and_redriven() {
    let dir = TempDir::new("dead");
    let queue = SqliteQueue::open(dir.db()).unwrap();
    for id in 1..=6 {
        queue
            .enqueue(&message(id, if id == 3 { 30 } else { 1 }))
            .await
            .unwrap();
    }
    let attempts_seen = Arc::new(Mutex::new(Vec::new()));
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let recorder = Recorder::new(5);
    let handler = {
        let (r, attempts_seen, fixed) = (
            recorder.clone(),
            Arc::clone(&attempts_seen),
            Arc::clone(&fixed),
        );
        move |update: Update, ctx: Context| {
            let (r, attempts_seen, fixed) =
                (r.clone(), Arc::clone(&attempts_seen), Arc::clone(&fixed));
            async move {
                if update.update_id() == 3 && !fixed.load(std::sync::atomic::Ordering::SeqCst) {
                    attempts_seen.lock().unwrap().push(ctx.failed_attempts());
                    if ctx.failed_attempts() == 1 {
                        panic!("a panic counts as a failed attempt");
                    }
                    return Err::<(), HandlerError>("update 3 always fails".into());
                }
                r.record(&update);
                Ok(())
            }
        }
    };
    let mut cfg = config(2);
    cfg.error_policy = ErrorPolicy::BoundedRetry { max_attempts: 3 };
    let stop = Arc::new(Notify::new());
    let worker = tokio::spawn({
        let (queue, stop) = (queue.clone(), Arc::clone(&stop));
        Worker::new(queue, 0)
            .runner_config(cfg)
            .run(handler, async move {
                stop.notified().await;
            })
    });
    recorder.done.notified().await;
    let dead = loop {
        let dead = queue.dead_letters(10).await.unwrap();
        if !dead.is_empty() {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].update_id, 3);
    assert_eq!(dead[0].failed_attempts, 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("update 3 always fails"));
    assert_eq!(
        *attempts_seen.lock().unwrap(),
        vec![0, 1, 2],
        "the handler sees the attempt count"
    );
    assert_eq!(queue.queued().await.unwrap(), 0);
    // A redelivery of a dead-lettered update is not stored again.
    assert_eq!(
        queue.enqueue(&message(3, 30)).await.unwrap(),
        Enqueued::Duplicate
    );

    // Fixed: re-drive it; the running worker handles it.
    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(queue.redrive(None).await.unwrap(), 1);
    while !recorder.runs().iter().any(|r| r.1 == 3) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.notify_one();
    worker.await.unwrap().unwrap();
    assert!(queue.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(queue.queued().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_and_the_webhook_answers_an_error() {
    let dir = TempDir::new("full");
    let queue = SqliteQueue::builder(dir.db()).capacity(3).open().unwrap();
    // No error policy set: EnqueueHandler's required ErrorPolicy::Retry applies (the default
    // BoundedRetry { max_attempts: 3 } would answer 200 at the third refused delivery).
    let webhook = Webhook::builder()
        .build(EnqueueHandler::new(queue.clone()))
        .unwrap();
    let deliver = |id: u64| {
        let body = message(id, 1).raw().clone();
        webhook.handle_bytes(RequestHead::new("POST", |_| None), body)
    };
    for id in 1..=3 {
        assert_eq!(deliver(id).await.status(), 200);
    }
    // Refused, however often Telegram retries: never a 200 for an update not stored.
    for _ in 0..10 {
        let refused = deliver(4).await;
        assert_eq!(refused.status(), 500, "{:?}", refused.body());
    }
    assert!(matches!(
        queue.enqueue(&message(5, 1)).await,
        Err(QueueError::Full { capacity: 3 })
    ));
    // A redelivery of a stored update is still a 200 (it is stored).
    assert_eq!(deliver(2).await.status(), 200);
    assert_eq!(queue.queued().await.unwrap(), 3);
    // Room again: the update refused ten times is stored and acknowledged at last.
    let taken = queue.take(0, 0, 1, Duration::ZERO).await.unwrap();
    queue.ack(taken[0].seq, taken[0].update_id).await.unwrap();
    assert_eq!(deliver(4).await.status(), 200);
    assert_eq!(queue.queued().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enqueueing_webhook_refuses_an_error_policy_that_could_lose_updates() {
    let dir = TempDir::new("policy");
    let queue = SqliteQueue::open(dir.db()).unwrap();
    for policy in [
        ErrorPolicy::BoundedRetry { max_attempts: 3 },
        ErrorPolicy::Acknowledge,
    ] {
        let built = Webhook::builder()
            .error_policy(policy)
            .build(EnqueueHandler::new(queue.clone()));
        assert!(
            matches!(
                built,
                Err(BuildError::ErrorPolicyConflict {
                    configured,
                    required: ErrorPolicy::Retry,
                }) if configured == policy
            ),
            "{policy:?}: {built:?}"
        );
    }
    // Setting the required one is fine.
    Webhook::builder()
        .error_policy(ErrorPolicy::Retry)
        .build(EnqueueHandler::new(queue))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_update_id_is_handled_once() {
    let dir = TempDir::new("dup");
    let queue = SqliteQueue::open(dir.db()).unwrap();
    assert_eq!(
        queue.enqueue(&message(1, 1)).await.unwrap(),
        Enqueued::Stored
    );
    assert_eq!(
        queue.enqueue(&message(1, 1)).await.unwrap(),
        Enqueued::Duplicate
    );
    queue.enqueue(&message(2, 1)).await.unwrap();
    let recorder = Recorder::new(2);
    let (r, done) = (recorder.clone(), Arc::clone(&recorder.done));
    let handler = move |update: Update, _ctx: Context| {
        let r = r.clone();
        async move {
            r.record(&update);
            Ok::<_, HandlerError>(())
        }
    };
    Worker::new(queue.clone(), 0)
        .runner_config(config(2))
        .run(handler, async move {
            done.notified().await;
        })
        .await
        .unwrap();
    // Telegram redelivers update 1 after it was handled (its 200 got lost): not stored again.
    assert_eq!(
        queue.enqueue(&message(1, 1)).await.unwrap(),
        Enqueued::Duplicate
    );
    assert_eq!(queue.queued().await.unwrap(), 0);
    assert_eq!(recorder.runs(), vec![(1, 1), (1, 2)]);
    // Also after a reopen.
    drop(queue);
    let queue = SqliteQueue::open(dir.db()).unwrap();
    assert_eq!(
        queue.enqueue(&message(1, 1)).await.unwrap(),
        Enqueued::Duplicate
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_with_other_partitions_while_updates_are_queued_is_refused() {
    let dir = TempDir::new("partitions");
    let queue = SqliteQueue::builder(dir.db()).partitions(3).open().unwrap();
    queue.enqueue(&message(1, 1)).await.unwrap();
    drop(queue);
    // The chats' partitions were fixed at enqueue: another count would strand updates.
    assert!(matches!(
        SqliteQueue::builder(dir.db()).partitions(1).open(),
        Err(QueueError::PartitionsChanged {
            stored: 3,
            asked: 1
        })
    ));
    let queue = SqliteQueue::builder(dir.db()).partitions(3).open().unwrap();
    assert_eq!(queue.queued().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_with_different_partitions_never_both_enqueue() {
    let dir = TempDir::new("two-handles");
    // Both open on an empty file (nothing queued, no worker yet): both succeed.
    let two = SqliteQueue::builder(dir.db()).partitions(2).open().unwrap();
    let four = SqliteQueue::builder(dir.db()).partitions(4).open().unwrap();
    // The later open recorded 4: its enqueues go on, the older handle's are refused, so one
    // chat never lands in two partitions (two workers, out of order).
    assert_eq!(
        four.enqueue(&message(1, 7)).await.unwrap(),
        Enqueued::Stored
    );
    let refused = two.enqueue(&message(2, 7)).await;
    assert!(
        matches!(
            refused,
            Err(QueueError::PartitionsChanged {
                stored: 4,
                asked: 2
            })
        ),
        "{refused:?}"
    );
    assert_eq!(four.queued().await.unwrap(), 1);
    // Still refused after the refusal (nothing recorded it away).
    assert!(two.enqueue(&message(3, 7)).await.is_err());
    assert_eq!(
        four.enqueue(&message(3, 7)).await.unwrap(),
        Enqueued::Stored
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_stored_as_text_is_taken_not_stalling_its_partition() {
    let dir = TempDir::new("text-body");
    let queue = SqliteQueue::open(dir.db()).unwrap();
    queue.enqueue(&message(1, 5)).await.unwrap();
    // A row written by another tool, its body as TEXT rather than BLOB.
    let text = r#"{"update_id":2,"message":{"message_id":2,"date":1,"chat":{"id":5,"type":"private"},"text":"hi"}}"#;
    rusqlite::Connection::open(dir.db())
        .unwrap()
        .execute(
            "INSERT INTO queue (update_id, partition, body, enqueued_at) VALUES (2, 0, ?1, 0)",
            [text],
        )
        .unwrap();
    queue.enqueue(&message(3, 5)).await.unwrap();
    let taken = queue.take(0, 0, 10, Duration::ZERO).await.unwrap();
    let ids: Vec<u64> = taken.iter().map(|i| i.update_id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(taken[1].body, text.as_bytes());
    assert!(Update::from_bytes(taken[1].body.clone()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_id_above_i64_max_is_stored_taken_acked_and_deduplicated() {
    let dir = TempDir::new("big-id");
    let queue = SqliteQueue::open(dir.db()).unwrap();
    let big = u64::MAX - 1;
    let update = message(big, 9);
    assert_eq!(update.update_id(), big);
    assert_eq!(queue.enqueue(&update).await.unwrap(), Enqueued::Stored);
    assert_eq!(queue.enqueue(&update).await.unwrap(), Enqueued::Duplicate);
    let taken = queue.take(0, 0, 10, Duration::ZERO).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].update_id, big);
    queue.ack(taken[0].seq, taken[0].update_id).await.unwrap();
    assert_eq!(queue.queued().await.unwrap(), 0);
    // Remembered as completed under the same id.
    assert_eq!(queue.enqueue(&update).await.unwrap(), Enqueued::Duplicate);
    // And through the dead-letter list and back.
    let other = message(i64::MAX as u64 + 1, 9);
    queue.enqueue(&other).await.unwrap();
    let taken = queue.take(0, 0, 10, Duration::ZERO).await.unwrap();
    queue.dead_letter(taken[0].seq).await.unwrap();
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead[0].update_id, i64::MAX as u64 + 1);
    assert_eq!(
        queue
            .redrive(Some(vec![i64::MAX as u64 + 1]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(queue.queued().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enqueueing_webhook_refuses_to_acknowledge_at_the_timeout() {
    let dir = TempDir::new("on-timeout");
    let queue = SqliteQueue::open(dir.db()).unwrap();
    // OnTimeout::Return would answer 200 while the enqueue may still fail: refused.
    let built = Webhook::builder()
        .on_timeout(OnTimeout::Return)
        .build(EnqueueHandler::new(queue.clone()));
    assert!(
        matches!(built, Err(BuildError::AcknowledgeBeforeRunEnds)),
        "{built:?}"
    );
    // The default (Throw) builds.
    Webhook::builder()
        .build(EnqueueHandler::new(queue))
        .unwrap();
}
