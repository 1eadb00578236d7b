//! Workers in several processes on one SQLite file: each "process" is its own `SqliteQueue`
//! handle (its own writer thread and connections, sharing nothing but the file) and, where a
//! process dies, its own tokio runtime, shut down without any cleanup (like `kill -9`).
//!
//! Leases: never two holders of a partition; the `take` contract (a new holder gets what the
//! last one left unacked, in order); a dead process's partitions taken over, its unacked
//! updates run again in per-chat order; rebalancing when a second process joins.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telehook_core::{Context, HandlerError, Update};
use telehook_polling::RunnerConfig;
use telehook_queue::{QueueBackend, SqliteQueue, Workers, WorkersReport, partition_of};
use tokio::sync::Notify;

/// Long enough that a loaded 2-core machine renews in time, short enough for takeovers.
const LEASE: Duration = Duration::from_secs(2);

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "telehook-queue-leases-{name}-{}",
            std::process::id()
        ));
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

fn config() -> RunnerConfig {
    let mut config = RunnerConfig::default();
    config.concurrency = 4;
    config.retry_delay = Duration::from_millis(1);
    config
}

fn open(db: &Path, partitions: u32) -> SqliteQueue {
    SqliteQueue::builder(db)
        .partitions(partitions)
        .poll_interval(Duration::from_millis(20))
        .open()
        .unwrap()
}

/// The live leases in the file: partition → owner.
fn leases(db: &Path) -> BTreeMap<u32, String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut stmt = conn
        .prepare("SELECT partition, owner FROM leases WHERE expires_at > ?1")
        .unwrap();
    stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Bounds a test's waits: a regression fails the test instead of hanging it.
struct Deadline(std::time::Instant);

impl Deadline {
    fn new() -> Self {
        Self(std::time::Instant::now() + Duration::from_secs(60))
    }
    fn check(&self, what: &str) {
        assert!(
            std::time::Instant::now() < self.0,
            "gave up waiting (60 s) for {what}"
        );
    }
}

/// Workers whose heartbeat is live.
fn live_members(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    conn.query_row(
        "SELECT COUNT(*) FROM members WHERE expires_at > ?1",
        [now],
        |r| r.get(0),
    )
    .unwrap()
}

/// Every handler run of every process: (owner, chat, update_id), plus a check that no two
/// runs of one chat ever overlap, in any process.
#[derive(Clone, Default)]
struct Log {
    runs: Arc<Mutex<Vec<(String, i64, u64)>>>,
    active: Arc<Mutex<HashSet<i64>>>,
    overlaps: Arc<Mutex<Vec<u64>>>,
    changed: Arc<Notify>,
}

impl Log {
    /// A handler for process `owner`: runs `hang(update_id)` ones forever (never acked).
    fn handler(
        &self,
        owner: &str,
        hang: impl Fn(u64) -> bool + Send + Sync + 'static,
    ) -> impl Fn(Update, Context) -> futures_like::BoxFuture + Send + Sync + 'static {
        let (log, owner, hang) = (self.clone(), owner.to_owned(), Arc::new(hang));
        move |update: Update, _ctx: Context| {
            let (log, owner, hang) = (log.clone(), owner.clone(), Arc::clone(&hang));
            Box::pin(async move {
                let chat = update.chat_id().unwrap_or(0);
                if !log.active.lock().unwrap().insert(chat) {
                    log.overlaps.lock().unwrap().push(update.update_id());
                }
                tokio::task::yield_now().await;
                if hang(update.update_id()) {
                    // A run its process dies in: never finishes, never acked.
                    log.active.lock().unwrap().remove(&chat);
                    std::future::pending::<()>().await;
                }
                log.active.lock().unwrap().remove(&chat);
                log.runs
                    .lock()
                    .unwrap()
                    .push((owner, chat, update.update_id()));
                log.changed.notify_waiters();
                Ok::<_, HandlerError>(())
            })
        }
    }

    fn runs(&self) -> Vec<(String, i64, u64)> {
        self.runs.lock().unwrap().clone()
    }

    async fn wait_until(&self, done: impl Fn(&[(String, i64, u64)]) -> bool) {
        let deadline = Deadline::new();
        loop {
            deadline.check("the handler runs expected");
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if done(&self.runs.lock().unwrap()) {
                return;
            }
            // Woken by a run; the timeout only re-checks.
            let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
        }
    }

    fn assert_clean(&self) {
        assert!(
            self.overlaps.lock().unwrap().is_empty(),
            "two runs of one chat at once (update_ids {:?})",
            self.overlaps.lock().unwrap()
        );
        let mut per_chat: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
        for (_, chat, id) in self.runs() {
            per_chat.entry(chat).or_default().push(id);
        }
        for (chat, ids) in per_chat {
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "chat {chat} out of order or run twice: {ids:?}"
            );
        }
    }
}

mod futures_like {
    pub(crate) type BoxFuture = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), telehook_core::HandlerError>> + Send>,
    >;
}

/// A `Workers` run stopped by the returned notify.
fn spawn_workers(
    queue: SqliteQueue,
    owner: &str,
    handler: impl Fn(Update, Context) -> futures_like::BoxFuture + Send + Sync + 'static,
) -> (
    Arc<Notify>,
    tokio::task::JoinHandle<Result<WorkersReport, telehook_queue::QueueError>>,
) {
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn({
        let stop = Arc::clone(&stop);
        Workers::new(queue)
            .owner(owner)
            .lease(LEASE)
            .run(handler, config(), async move { stop.notified().await })
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_never_both_hold_a_partition() {
    let dir = TempDir::new("exclusive");
    let a = open(&dir.db(), 2);
    let b = open(&dir.db(), 2);
    let long = Duration::from_secs(60);

    assert!(a.acquire(0, "a", long).await.unwrap());
    assert!(!b.acquire(0, "b", long).await.unwrap(), "held by a");
    assert!(a.acquire(0, "a", long).await.unwrap(), "a renews");
    assert!(b.acquire(1, "b", long).await.unwrap(), "another partition");
    assert!(!a.acquire(1, "a", long).await.unwrap());
    assert!(!a.acquire(2, "a", long).await.unwrap(), "no such partition");
    // Releasing someone else's lease does nothing; the holder's release frees it at once.
    b.release(0, "b").await.unwrap();
    assert!(!b.acquire(0, "b", long).await.unwrap());
    a.release(0, "a").await.unwrap();
    assert!(b.acquire(0, "b", long).await.unwrap());
    // A lease that ran out (here: a zero lease) is free for anyone.
    assert!(a.acquire(1, "x", long).await.is_ok_and(|held| !held));
    assert!(b.acquire(1, "b", Duration::ZERO).await.unwrap());
    assert!(a.acquire(1, "a", long).await.unwrap(), "b's lease ran out");

    // Racing claims from both handles: exactly one wins each round.
    for round in 0..40u32 {
        let partition = round % 2;
        let (x, y) = tokio::join!(
            a.acquire(partition, "a", long),
            b.acquire(partition, "b", long)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let holder = leases(&dir.db()).get(&partition).cloned();
        match holder.as_deref() {
            Some("a") => assert!(x && !y, "round {round}: {x} {y}"),
            Some("b") => assert!(y && !x, "round {round}: {x} {y}"),
            other => panic!("round {round}: holder {other:?}"),
        }
        a.release(partition, "a").await.unwrap();
        b.release(partition, "b").await.unwrap();
    }

    // Members: heartbeats from both, then one leaves (a zero lease).
    assert_eq!(a.members("a", long).await.unwrap(), 1);
    assert_eq!(b.members("b", long).await.unwrap(), 2);
    assert_eq!(a.members("a", long).await.unwrap(), 2);
    b.members("b", Duration::ZERO).await.unwrap();
    assert_eq!(a.members("a", long).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_holder_takes_what_the_last_one_left_unacked_in_order() {
    let dir = TempDir::new("contract");
    let a = open(&dir.db(), 1);
    let b = open(&dir.db(), 1);
    for id in 1..=5 {
        a.enqueue(&message(id, 1)).await.unwrap();
    }
    assert!(a.acquire(0, "a", LEASE).await.unwrap());
    let taken = a.take(0, 0, 10, Duration::ZERO).await.unwrap();
    a.ack(taken[0].seq, taken[0].update_id).await.unwrap();
    a.fail(taken[1].seq, "boom").await.unwrap();
    // a stops without acking the rest; b takes the partition over.
    a.release(0, "a").await.unwrap();
    assert!(b.acquire(0, "b", LEASE).await.unwrap());
    let again = b.take(0, 0, 10, Duration::ZERO).await.unwrap();
    assert_eq!(
        again.iter().map(|i| i.update_id).collect::<Vec<_>>(),
        vec![2, 3, 4, 5]
    );
    assert_eq!(
        again[0].failed_attempts, 1,
        "the count survives the takeover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_partitions_and_handle_everything_once_in_chat_order() {
    let dir = TempDir::new("share");
    let partitions = 4;
    let (qa, qb) = (open(&dir.db(), partitions), open(&dir.db(), partitions));
    let log = Log::default();
    let (stop_a, a) = spawn_workers(qa.clone(), "a", log.handler("a", |_| false));
    let (stop_b, b) = spawn_workers(qb.clone(), "b", log.handler("b", |_| false));
    // Both members claim their share (2 each) before the load, so both do work.
    let deadline = Deadline::new();
    loop {
        deadline.check("a 2/2 split");
        let held = leases(&dir.db());
        let by = |o: &str| held.values().filter(|h| *h == o).count();
        if by("a") == 2 && by("b") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The webhook side enqueues through both handles (two webhook processes).
    let total = 600u64;
    for id in 1..=total {
        let q = if id % 2 == 0 { &qa } else { &qb };
        q.enqueue(&message(id, (id % 24) as i64)).await.unwrap();
    }
    log.wait_until(|runs| runs.len() >= total as usize).await;
    stop_a.notify_one();
    stop_b.notify_one();
    let (ra, rb) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());

    log.assert_clean();
    let runs = log.runs();
    assert_eq!(runs.len(), total as usize, "each update once");
    // Each chat's partition is served by one process only (unless a renewal came late on a
    // loaded machine and the partition moved: allowed, drained first).
    let mut served: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for (owner, chat, id) in &runs {
        served
            .entry(partition_of(&message(*id, *chat), partitions))
            .or_default()
            .insert(owner.clone());
    }
    if ra.leases_lost + rb.leases_lost == 0 {
        assert!(served.values().all(|o| o.len() == 1), "{served:?}");
    }
    let a_runs = runs.iter().filter(|r| r.0 == "a").count();
    assert!(
        a_runs > 0 && a_runs < runs.len(),
        "both worked: a ran {a_runs}"
    );
    assert_eq!(qa.queued().await.unwrap(), 0);
    // Stopped: every lease released, no member left.
    assert!(leases(&dir.db()).is_empty());
    assert_eq!(live_members(&dir.db()), 0);
    // Renewals late on a loaded machine stop a partition's worker early (it drains and is
    // claimed again): allowed, and still never two holders.
    eprintln!("leases lost: a {}, b {}", ra.leases_lost, rb.leases_lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_processs_partitions_are_taken_over_and_its_unacked_updates_run_again_in_order() {
    let dir = TempDir::new("takeover");
    let partitions = 3;
    let total = 240u64;
    let handled_first = 120u64;
    {
        let q = open(&dir.db(), partitions);
        for id in 1..=total {
            q.enqueue(&message(id, (id % 12) as i64)).await.unwrap();
        }
    }
    let log = Log::default();
    // Process a: its own runtime; handles updates 1..=120, hangs on the others (taken,
    // never acked), then dies without releasing anything.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let qa = open(&dir.db(), partitions);
    let probe = open(&dir.db(), partitions);
    {
        let handler = log.handler("a", move |id| id > handled_first);
        // A hanging run keeps its concurrency slot: room for every chat of a partition, so
        // the chats not hanging yet get to their last update below 121.
        let mut config = config();
        config.concurrency = 12;
        let qa = qa.clone();
        runtime.spawn(Workers::new(qa).owner("a").lease(LEASE).run(
            handler,
            config,
            std::future::pending(),
        ));
    }
    drop(qa);
    log.wait_until(|runs| runs.len() >= handled_first as usize)
        .await;
    // Until a's acks are committed (the hanging ones are never acked), then kill it.
    let deadline = Deadline::new();
    while probe.queued().await.unwrap() > total - handled_first {
        deadline.check("a's acks");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(leases(&dir.db()).len(), 3, "a held every partition");
    runtime.shutdown_background();

    // Process b starts; a's leases run out, b takes the partitions over.
    let qb = open(&dir.db(), partitions);
    let (stop_b, b) = spawn_workers(qb.clone(), "b", log.handler("b", |_| false));
    log.wait_until(|runs| runs.len() >= total as usize).await;
    stop_b.notify_one();
    let report = b.await.unwrap().unwrap();

    // Nothing a acked runs again; everything else runs once, each chat in order (a's
    // hanging runs never finished, so they are not in the log).
    log.assert_clean();
    let runs = log.runs();
    assert_eq!(runs.len(), total as usize);
    let ids: BTreeSet<u64> = runs.iter().map(|r| r.2).collect();
    assert_eq!(ids.len(), total as usize, "an update ran twice");
    assert!(
        runs.iter()
            .all(|(owner, _, id)| (owner == "a") == (*id <= handled_first))
    );
    assert!(report.claimed >= 3, "{report:?}");
    assert_eq!(qb.queued().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_joining_gets_its_share_handed_over() {
    let dir = TempDir::new("rebalance");
    let partitions = 4;
    let qa = open(&dir.db(), partitions);
    let log = Log::default();
    let (stop_a, a) = spawn_workers(qa.clone(), "a", log.handler("a", |_| false));
    let deadline = Deadline::new();
    while leases(&dir.db()).len() < 4 {
        deadline.check("a claiming every partition");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Load while a holds everything, and keep it coming while b joins.
    let mut next = 1u64;
    let chats = 16i64;
    let mut enqueue = async |n: u64| {
        for _ in 0..n {
            qa.enqueue(&message(next, (next as i64) % chats))
                .await
                .unwrap();
            next += 1;
        }
        next - 1
    };
    enqueue(200).await;
    let qb = open(&dir.db(), partitions);
    let (stop_b, b) = spawn_workers(qb.clone(), "b", log.handler("b", |_| false));
    let mut sent;
    let deadline = Deadline::new();
    loop {
        deadline.check("a 2/2 split");
        sent = enqueue(20).await;
        let held = leases(&dir.db());
        let by = |o: &str| held.values().filter(|h| *h == o).count();
        if by("a") == 2 && by("b") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent = enqueue(200).await.max(sent);
    log.wait_until(|runs| runs.len() >= sent as usize).await;
    stop_a.notify_one();
    stop_b.notify_one();
    let (ra, rb) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());

    log.assert_clean();
    let runs = log.runs();
    assert_eq!(runs.len(), sent as usize, "each update once");
    assert!(runs.iter().any(|r| r.0 == "b"), "b got work");
    assert!(ra.handed_over >= 2, "{ra:?}");
    assert!(rb.claimed >= 2, "{rb:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capacity_counts_what_every_process_enqueued_and_acked() {
    let dir = TempDir::new("capacity");
    let open_capped = || SqliteQueue::builder(dir.db()).capacity(3).open().unwrap();
    let (webhook, worker) = (open_capped(), open_capped());
    for id in 1..=3 {
        webhook.enqueue(&message(id, 1)).await.unwrap();
    }
    // The other process sees the queue full too.
    assert!(matches!(
        worker.enqueue(&message(4, 1)).await,
        Err(telehook_queue::QueueError::Full { capacity: 3 })
    ));
    // The worker process acks two: the webhook process has room for two again, not more.
    for item in worker.take(0, 0, 2, Duration::ZERO).await.unwrap() {
        worker.ack(item.seq, item.update_id).await.unwrap();
    }
    webhook.enqueue(&message(4, 1)).await.unwrap();
    worker.enqueue(&message(5, 1)).await.unwrap();
    assert!(matches!(
        webhook.enqueue(&message(6, 1)).await,
        Err(telehook_queue::QueueError::Full { capacity: 3 })
    ));
    assert_eq!(webhook.queued().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_stops_hands_everything_to_the_one_left() {
    let dir = TempDir::new("leave");
    let partitions = 4;
    let (qa, qb) = (open(&dir.db(), partitions), open(&dir.db(), partitions));
    let log = Log::default();
    let (stop_a, a) = spawn_workers(qa.clone(), "a", log.handler("a", |_| false));
    let (stop_b, b) = spawn_workers(qb.clone(), "b", log.handler("b", |_| false));
    let by = |o: &str| leases(&dir.db()).values().filter(|h| *h == o).count();
    let deadline = Deadline::new();
    while by("a") != 2 || by("b") != 2 {
        deadline.check("a 2/2 split");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in 1..=200u64 {
        qa.enqueue(&message(id, (id % 16) as i64)).await.unwrap();
    }
    // a stops gracefully while updates are queued: it drains, releases, leaves.
    stop_a.notify_one();
    let ra = a.await.unwrap().unwrap();
    assert_eq!(live_members(&dir.db()), 1);
    assert_eq!(by("a"), 0, "a released its leases");
    for id in 201..=400u64 {
        qa.enqueue(&message(id, (id % 16) as i64)).await.unwrap();
    }
    log.wait_until(|runs| runs.len() >= 400).await;
    // b takes every partition.
    let deadline = Deadline::new();
    while by("b") != 4 {
        deadline.check("b holding every partition");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_b.notify_one();
    let rb = b.await.unwrap().unwrap();

    log.assert_clean();
    assert_eq!(log.runs().len(), 400, "each update once");
    assert!(rb.claimed >= 4, "{rb:?}");
    assert!(!ra.runs.is_empty());
    assert_eq!(qb.queued().await.unwrap(), 0);
}

/// A queue whose engine goes "down" for lease calls: every `acquire` and `members` fails.
#[derive(Clone)]
struct Flaky {
    inner: SqliteQueue,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<(), telehook_queue::QueueError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(telehook_queue::QueueError::Engine(
                "the engine is down".into(),
            ));
        }
        Ok(())
    }
}

impl QueueBackend for Flaky {
    fn partitions(&self) -> u32 {
        self.inner.partitions()
    }
    async fn enqueue(
        &self,
        update: &Update,
    ) -> Result<telehook_queue::Enqueued, telehook_queue::QueueError> {
        self.inner.enqueue(update).await
    }
    async fn take(
        &self,
        partition: u32,
        from: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<telehook_queue::QueuedItem>, telehook_queue::QueueError> {
        self.inner.take(partition, from, limit, wait).await
    }
    async fn ack(&self, seq: u64, update_id: u64) -> Result<(), telehook_queue::QueueError> {
        self.inner.ack(seq, update_id).await
    }
    async fn fail(&self, seq: u64, error: &str) -> Result<u32, telehook_queue::QueueError> {
        self.inner.fail(seq, error).await
    }
    async fn dead_letter(&self, seq: u64) -> Result<(), telehook_queue::QueueError> {
        self.inner.dead_letter(seq).await
    }
    async fn dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<telehook_queue::DeadLetter>, telehook_queue::QueueError> {
        self.inner.dead_letters(limit).await
    }
    async fn redrive(
        &self,
        update_ids: Option<Vec<u64>>,
    ) -> Result<u64, telehook_queue::QueueError> {
        self.inner.redrive(update_ids).await
    }
    async fn acquire(
        &self,
        partition: u32,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, telehook_queue::QueueError> {
        self.check()?;
        self.inner.acquire(partition, owner, lease).await
    }
    async fn release(&self, partition: u32, owner: &str) -> Result<(), telehook_queue::QueueError> {
        self.inner.release(partition, owner).await
    }
    async fn members(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<u32, telehook_queue::QueueError> {
        self.check()?;
        self.inner.members(owner, lease).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_renew_its_lease_is_gone_before_another_can_claim_it() {
    let dir = TempDir::new("renewal");
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flaky = Flaky {
        inner: open(&dir.db(), 1),
        down: Arc::clone(&down),
    };
    let runs = Arc::new(AtomicU64::new(0));
    let active = Arc::new(AtomicU64::new(0));
    let handler = {
        let (runs, active) = (Arc::clone(&runs), Arc::clone(&active));
        move |_update: Update, _ctx: Context| {
            let (runs, active) = (Arc::clone(&runs), Arc::clone(&active));
            async move {
                active.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                runs.fetch_add(1, Ordering::SeqCst);
                active.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, HandlerError>(())
            }
        }
    };
    let stop = Arc::new(Notify::new());
    let a = tokio::spawn({
        let stop = Arc::clone(&stop);
        Workers::new(flaky)
            .owner("a")
            .lease(LEASE)
            .run(handler, config(), async move { stop.notified().await })
    });
    // Updates keep coming (through another process's handle) during the whole test.
    let webhook = open(&dir.db(), 1);
    let producing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let producer = tokio::spawn({
        let producing = Arc::clone(&producing);
        async move {
            let mut id = 1;
            while producing.load(Ordering::SeqCst) {
                webhook
                    .enqueue(&message(id, (id % 4) as i64))
                    .await
                    .unwrap();
                id += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let deadline = Deadline::new();
    while runs.load(Ordering::SeqCst) < 20 {
        deadline.check("a handling updates");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The engine goes down for a: it cannot renew. b claims the partition as soon as a's
    // lease has run out: a's worker must be gone by then, nothing of it running.
    down.store(true, Ordering::SeqCst);
    let b = open(&dir.db(), 1);
    let deadline = Deadline::new();
    while !b.acquire(0, "b", Duration::from_secs(60)).await.unwrap() {
        deadline.check("a's lease running out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(active.load(Ordering::SeqCst), 0, "a still runs a handler");
    let after_claim = runs.load(Ordering::SeqCst);
    // More updates arrive; a runs none of them (it may only claim again once b lets go).
    tokio::time::sleep(LEASE).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        after_claim,
        "a ran after b claimed"
    );
    producing.store(false, Ordering::SeqCst);
    producer.await.unwrap();
    stop.notify_one();
    let report = a.await.unwrap().unwrap();
    assert!(report.leases_lost >= 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_partition_count_is_refused_while_workers_are_live() {
    let dir = TempDir::new("count");
    let queue = open(&dir.db(), 2);
    queue.members("a", Duration::from_secs(60)).await.unwrap();
    // Empty, but a worker of the 2-partition layout is live: a 3-partition process would
    // route chats to partitions it does not serve.
    assert!(matches!(
        SqliteQueue::builder(dir.db()).partitions(3).open(),
        Err(telehook_queue::QueueError::PartitionsChanged {
            stored: 2,
            asked: 3
        })
    ));
    queue.members("a", Duration::ZERO).await.unwrap();
    drop(queue);
    // Nobody live and nothing queued: the count may change.
    assert_eq!(open(&dir.db(), 3).partitions(), 3);
}
