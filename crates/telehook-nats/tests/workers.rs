//! telehook-queue's workers on a NatsQueue (a real nats-server): run_workers on 1 and 3
//! partitions, and Workers in two "processes" (two connections, two owners) sharing the
//! partitions by leases, one of them crashing mid-run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telehook_core::{Context, HandlerError, Update};
use telehook_nats::NatsQueue;
use telehook_nats::testing::NatsServer;
use telehook_polling::RunnerConfig;
use telehook_queue::{QueueBackend, Workers, run_workers};
use tokio::sync::Notify;

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

/// Records (chat, update_id) per run; wakes `done` once `expect` distinct updates ran.
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
        if runs.iter().map(|r| r.1).collect::<BTreeSet<_>>().len() >= self.expect {
            self.done.notify_waiters();
            self.done.notify_one();
        }
    }
    fn runs(&self) -> Vec<(i64, u64)> {
        self.runs.lock().unwrap().clone()
    }
    fn handler(
        &self,
    ) -> impl Fn(Update, Context) -> std::future::Ready<Result<(), HandlerError>>
    + Clone
    + Send
    + Sync
    + 'static {
        let recorder = self.clone();
        move |update: Update, _ctx: Context| {
            recorder.record(&update);
            std::future::ready(Ok(()))
        }
    }
}

/// Each chat's updates ran in enqueue order (first runs; a repeat after a crash is allowed
/// only where `repeats_allowed`), and every update ran. Returns the number of repeated runs.
fn check(runs: &[(i64, u64)], total: u64, repeats_allowed: bool) -> usize {
    let mut per_chat: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut repeats = 0;
    for (chat, id) in runs {
        if seen.insert(*id) {
            per_chat.entry(*chat).or_default().push(*id);
        } else {
            repeats += 1;
        }
    }
    for (chat, ids) in per_chat {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "chat {chat} out of order: {ids:?}"
        );
    }
    assert_eq!(
        seen,
        (1..=total).collect::<BTreeSet<_>>(),
        "every update ran"
    );
    if !repeats_allowed {
        assert_eq!(repeats, 0, "no update ran twice");
    }
    repeats
}

async fn enqueue(queue: &NatsQueue, total: u64, chats: u64) {
    for id in 1..=total {
        queue
            .enqueue(&message(id, (id % chats) as i64))
            .await
            .unwrap();
    }
}

async fn run_workers_in_chat_order(partitions: u32) {
    let server = NatsServer::start().await.unwrap();
    let queue = NatsQueue::builder([server.url()])
        .name(format!("workers{partitions}"))
        .partitions(partitions)
        .connect()
        .await
        .unwrap();
    let total = 300;
    enqueue(&queue, total, 7).await;
    let recorder = Recorder::new(total as usize);
    let done = Arc::clone(&recorder.done);
    let reports = run_workers(queue.clone(), recorder.handler(), config(4), async move {
        done.notified().await;
    })
    .await
    .unwrap();
    assert_eq!(reports.len(), partitions as usize);
    check(&recorder.runs(), total, false);
    assert_eq!(queue.queued().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_workers_keeps_chat_order_on_one_partition() {
    run_workers_in_chat_order(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_workers_keeps_chat_order_on_three_partitions() {
    run_workers_in_chat_order(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_in_two_processes_share_the_partitions_and_survive_a_crash() {
    let server = NatsServer::start().await.unwrap();
    let connect = || {
        NatsQueue::builder([server.url()])
            .name("shared")
            .partitions(4)
            .connect()
    };
    let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
    let total = 400;
    let recorder = Recorder::new(total as usize);
    let lease = Duration::from_millis(900);

    // Process A runs alone first, then crashes (its task aborted: no ack, no release).
    let handler_a = recorder.handler();
    let crashed = tokio::spawn(async move {
        Workers::new(a)
            .owner("a")
            .lease(lease)
            .run(handler_a, config(2), std::future::pending())
            .await
    });
    let producer = connect().await.unwrap();
    enqueue(&producer, total / 2, 11).await;
    // Let A handle some, then kill it.
    let mut waited = 0;
    while recorder.runs().len() < 50 {
        waited += 1;
        assert!(waited < 6_000, "process A never ran 50 updates");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    crashed.abort();
    let _ = crashed.await;
    let before_b = recorder.runs().len();

    // Process B starts, takes every partition once A's leases ran out; more updates come.
    let done = Arc::clone(&recorder.done);
    let handler_b = recorder.handler();
    let b_run = tokio::spawn(async move {
        Workers::new(b)
            .owner("b")
            .lease(lease)
            .run(handler_b, config(2), async move { done.notified().await })
            .await
    });
    for id in total / 2 + 1..=total {
        producer
            .enqueue(&message(id, (id % 11) as i64))
            .await
            .unwrap();
    }
    let report = tokio::time::timeout(Duration::from_secs(120), b_run)
        .await
        .expect("every update handled")
        .unwrap()
        .unwrap();
    assert!(report.claimed >= 4, "B claimed all partitions: {report:?}");
    let runs = recorder.runs();
    let repeats = check(&runs, total, true);
    // Only what A was running or had handled but not acked when it died runs again: at most
    // its runners' concurrency per partition.
    assert!(
        repeats <= 2 * 4,
        "{repeats} repeats (A ran {before_b} before dying)"
    );
    assert_eq!(producer.queued().await.unwrap(), 0);
}
