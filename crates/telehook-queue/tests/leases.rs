//! Workers in several processes on one SQLite file: each "process" is its own `SqliteQueue`
//! handle (its own writer thread and connections, sharing nothing but the file) and, where a
//! process dies, its own tokio runtime, shut down without any cleanup (like `kill -9`).
//!
//! Leases: never two holders of a partition; the `take` contract (a new holder gets what the
//! last one left unacked, in order); a dead process's partitions taken over, its unacked
//! updates run again in per-chat order; rebalancing when a second process joins.
//!
//! One test binary, its tests in topic modules under `tests/leases/`; the helpers they share
//! (temp files, the handler log, spawning workers) are here.

// A test crate root resolves `mod x;` to `tests/x.rs`, which cargo would build as a test
// binary of its own: the paths keep the modules under `tests/leases/`.
#[path = "leases/handles.rs"]
mod handles;
#[path = "leases/renewal.rs"]
mod renewal;
#[path = "leases/sharing.rs"]
mod sharing;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telehook_core::{Context, HandlerError, Update};
use telehook_polling::RunnerConfig;
use telehook_queue::{SqliteQueue, Workers, WorkersReport};
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
