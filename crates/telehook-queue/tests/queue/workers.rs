//! Workers on a real SQLite file: per-chat order on 1 and 3 workers, a crash loses nothing,
//! the error policy then the dead-letter list and re-drive, a duplicate runs once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telehook_core::{Context, ErrorPolicy, HandlerError, Update};
use telehook_polling::RunnerConfig;
use telehook_queue::{Enqueued, QueueBackend, SqliteQueue, Worker, run_workers};
use tokio::sync::Notify;

use super::{TempDir, message};

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
