//! Real worker processes on one SQLite file: this test binary starts copies of itself as
//! workers (`child_worker_process` does the work when `TELEHOOK_QUEUE_CHILD_DB` is set) and
//! kills one with `SIGKILL` while both share the partitions.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use telehook_core::{Context, HandlerError, Update};
use telehook_polling::RunnerConfig;
use telehook_queue::{QueueBackend, SqliteQueue, Workers};

const PARTITIONS: u32 = 4;
const CONCURRENCY: usize = 4;
const LEASE: Duration = Duration::from_secs(2);

fn message(update_id: u64, chat: u64) -> Update {
    Update::from_bytes(format!(
        r#"{{"update_id":{update_id},"message":{{"message_id":{update_id},"date":1,"chat":{{"id":{chat},"type":"private"}},"text":"hi"}}}}"#
    ))
    .unwrap()
}

fn open(db: &Path) -> SqliteQueue {
    SqliteQueue::builder(db)
        .partitions(PARTITIONS)
        .poll_interval(Duration::from_millis(20))
        .open()
        .unwrap()
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The worker process's body: `Workers` until killed, each run logged when it ends
/// (`start end update_id chat`, one `write(2)` each, so a kill loses no finished line).
#[test]
fn child_worker_process() {
    let (Ok(db), Ok(owner), Ok(log)) = (
        std::env::var("TELEHOOK_QUEUE_CHILD_DB"),
        std::env::var("TELEHOOK_QUEUE_CHILD_OWNER"),
        std::env::var("TELEHOOK_QUEUE_CHILD_LOG"),
    ) else {
        return; // Not started as a child: nothing to do.
    };
    let log = Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap(),
    ));
    let handler = move |update: Update, _ctx: Context| {
        let log = Arc::clone(&log);
        async move {
            let start = nanos();
            tokio::time::sleep(Duration::from_millis(2)).await;
            let line = format!(
                "{start} {} {} {}\n",
                nanos(),
                update.update_id(),
                update.chat_id().unwrap_or(0)
            );
            log.lock()
                .unwrap()
                .write_all(line.as_bytes())
                .map_err(|e| -> HandlerError { Box::new(e) })
        }
    };
    let mut config = RunnerConfig::default();
    config.concurrency = CONCURRENCY;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
        .block_on(
            Workers::new(open(Path::new(&db)))
                .owner(owner)
                .lease(LEASE)
                .run(handler, config, std::future::pending()),
        )
        .unwrap();
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills the child when dropped (a failing test leaves no process behind).
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path, owner: &str) -> Worker {
    Worker(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_worker_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TELEHOOK_QUEUE_CHILD_DB", dir.join("queue.sqlite3"))
            .env("TELEHOOK_QUEUE_CHILD_OWNER", owner)
            .env("TELEHOOK_QUEUE_CHILD_LOG", dir.join(format!("{owner}.log")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// (start, end, update_id, chat, owner) of every finished run.
fn runs(dir: &Path) -> Vec<(u128, u128, u64, u64, String)> {
    let mut runs = Vec::new();
    for owner in ["a", "b"] {
        let Ok(text) = std::fs::read_to_string(dir.join(format!("{owner}.log"))) else {
            continue;
        };
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if let [s, e, id, chat] = f[..] {
                runs.push((
                    s.parse().unwrap(),
                    e.parse().unwrap(),
                    id.parse().unwrap(),
                    chat.parse().unwrap(),
                    owner.to_owned(),
                ));
            }
        }
    }
    runs
}

fn lease_owners(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut stmt = conn
        .prepare("SELECT owner FROM leases WHERE expires_at > ?1 ORDER BY partition")
        .unwrap();
    stmt.query_map([now], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

async fn wait_for(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready().await {
        assert!(
            Instant::now() < deadline,
            "gave up waiting (60 s) for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_the_queue_and_a_killed_ones_updates_run_again_in_order() {
    let dir =
        Dir(std::env::temp_dir().join(format!("telehook-queue-processes-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let db = dir.0.join("queue.sqlite3");
    let queue = open(&db);

    let a = spawn(&dir.0, "a");
    let mut b = spawn(&dir.0, "b");
    wait_for("a 2/2 split", async || {
        let owners = lease_owners(&db);
        owners.iter().filter(|o| *o == "a").count() == 2
            && owners.iter().filter(|o| *o == "b").count() == 2
    })
    .await;
    // 40 chats, 1,600 updates: both processes at work, then b is killed mid-way.
    let total = 1_600u64;
    for id in 1..=total {
        queue.enqueue(&message(id, id % 40)).await.unwrap();
    }
    wait_for("b's first runs", async || {
        runs(&dir.0).iter().filter(|r| r.4 == "b").count() >= 100
    })
    .await;
    b.0.kill().unwrap();
    b.0.wait().unwrap();
    // a takes b's partitions over once b's leases run out, and finishes everything.
    wait_for("a holding every partition", async || {
        lease_owners(&db) == vec!["a"; 4]
    })
    .await;
    wait_for("every update handled", async || {
        queue.queued().await.unwrap() == 0
    })
    .await;
    drop(a);

    let runs = runs(&dir.0);
    let mut first_end: HashMap<u64, u128> = HashMap::new();
    for r in &runs {
        let e = first_end.entry(r.2).or_insert(r.1);
        *e = (*e).min(r.1);
    }
    let lost: Vec<u64> = (1..=total)
        .filter(|id| !first_end.contains_key(id))
        .collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    // A run of b whose handler finished but whose ack had not committed runs again on a: at
    // most what b had in flight.
    let duplicates = runs.len() - first_end.len();
    eprintln!(
        "runs: a {}, b {}; duplicate runs {duplicates}",
        runs.iter().filter(|r| r.4 == "a").count(),
        runs.iter().filter(|r| r.4 == "b").count()
    );
    assert!(
        duplicates <= CONCURRENCY * PARTITIONS as usize,
        "{duplicates} duplicate runs"
    );
    let mut per_chat: BTreeMap<u64, Vec<(u128, u128, u64)>> = BTreeMap::new();
    for r in &runs {
        per_chat.entry(r.3).or_default().push((r.0, r.1, r.2));
    }
    for (chat, list) in &mut per_chat {
        let mut ids: Vec<u64> = list.iter().map(|r| r.2).collect();
        ids.sort_unstable();
        ids.dedup();
        for w in ids.windows(2) {
            // Every run of an update starts after the chat's previous update first finished.
            for run in list.iter().filter(|r| r.2 == w[1]) {
                assert!(
                    first_end[&w[0]] <= run.0,
                    "chat {chat}: {} started before {} finished",
                    w[1],
                    w[0]
                );
            }
        }
        // Never two runs of the chat at once, in any process.
        list.sort_unstable();
        for w in list.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "chat {chat}: runs of {} and {} overlap",
                w[0].2,
                w[1].2
            );
        }
    }
    assert!(runs.iter().any(|r| r.4 == "a") && runs.iter().any(|r| r.4 == "b"));
}
