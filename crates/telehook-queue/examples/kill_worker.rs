//! Fault cycles: `kill -9` a worker process while updates from many chats keep coming.
//!
//! The driver (this program without arguments) is the webhook side: it enqueues updates over
//! `chats` chats into one SQLite queue (4 partitions), about 2,000 a second, each retried until
//! stored, as Telegram does. Two worker processes (this program with `worker ...`) run
//! `Workers` on the same file, each handler run taking about 1 ms and logging
//! `start end update_id chat` (nanoseconds) to its process's file when it ends. Every cycle
//! one worker is killed with `SIGKILL` and a new one started in its place. At the end the
//! driver drains the queue and reads the logs:
//!
//! - lost: stored (acknowledged) updates no run finished — must be 0;
//! - duplicate runs: runs beyond one per update (a run whose handler finished but whose ack
//!   had not committed when its process died runs again: at least once);
//! - order violations: a run that started before the chat's previous update had finished;
//! - overlapping runs: two runs of one chat at the same time (two holders of a partition);
//! - time to resume: from the kill until every partition is held by a live process again
//!   (bounded below by the lease, 2 s here).
//!
//! `cargo run --release -p telehook-queue --example kill_worker -- [cycles] [chats]`
//! (defaults 20 and 1,000).

#![allow(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use telehook_core::{Context, HandlerError, Update};
use telehook_polling::RunnerConfig;
use telehook_queue::{QueueBackend, SqliteQueue, Workers};

const PARTITIONS: u32 = 4;
const LEASE: Duration = Duration::from_secs(2);

fn message(update_id: u64, chat: u64) -> Update {
    Update::from_bytes(format!(
        r#"{{"update_id":{update_id},"message":{{"message_id":{update_id},"date":1,"chat":{{"id":{chat},"type":"private"}},"text":"hi"}}}}"#
    ))
    .expect("valid update")
}

fn open(db: &Path) -> SqliteQueue {
    SqliteQueue::builder(db)
        .partitions(PARTITIONS)
        .capacity(1_000_000)
        .poll_interval(Duration::from_millis(20))
        .open()
        .expect("open the queue")
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A worker process: `Workers` on the queue until killed.
fn worker(db: &Path, owner: &str, log: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let log = Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file"),
    ));
    let handler = move |update: Update, _ctx: Context| {
        let log = Arc::clone(&log);
        async move {
            let start = nanos();
            tokio::time::sleep(Duration::from_millis(1)).await;
            let line = format!(
                "{start} {} {} {}\n",
                nanos(),
                update.update_id(),
                update.chat_id().unwrap_or(0)
            );
            // One write(2) per run: in the kernel at once, so it survives the kill.
            log.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .write_all(line.as_bytes())
                .map_err(|e| -> HandlerError { Box::new(e) })
        }
    };
    let mut config = RunnerConfig::default();
    config.concurrency = 32;
    let queue = open(db);
    runtime
        .block_on(Workers::new(queue).owner(owner).lease(LEASE).run(
            handler,
            config,
            std::future::pending(),
        ))
        .expect("workers");
}

struct Slot {
    child: Child,
    owner: String,
}

fn spawn_worker(dir: &Path, db: &Path, owner: String) -> Slot {
    let child = Command::new(std::env::current_exe().expect("own path"))
        .arg("worker")
        .arg(db)
        .arg(&owner)
        .arg(dir.join(format!("{owner}.log")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a worker");
    Slot { child, owner }
}

/// partition → owner of the live leases.
fn leases(db: &Path) -> BTreeMap<u32, String> {
    let conn = rusqlite::Connection::open(db).expect("open");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut stmt = conn
        .prepare("SELECT partition, owner FROM leases WHERE expires_at > ?1")
        .expect("query");
    stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") && args.len() == 5 {
        worker(Path::new(&args[2]), &args[3], Path::new(&args[4]));
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(drive(&args));
}

async fn drive(args: &[String]) {
    let cycles: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(20);
    let chats: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1_000);
    let dir: PathBuf =
        std::env::temp_dir().join(format!("telehook-queue-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("q.sqlite3");
    let queue = open(&db);

    let mut incarnation = 0;
    let mut next_owner = || {
        incarnation += 1;
        format!("worker-{incarnation}")
    };
    let mut slots = [
        spawn_worker(&dir, &db, next_owner()),
        spawn_worker(&dir, &db, next_owner()),
    ];

    // The webhook side: ~2,000 updates/s, each retried until stored.
    let stored = Arc::new(AtomicU64::new(0));
    let producing = Arc::new(AtomicBool::new(true));
    let producer = tokio::spawn({
        let (queue, stored, producing) =
            (queue.clone(), Arc::clone(&stored), Arc::clone(&producing));
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut id = 1;
            while producing.load(Ordering::Relaxed) {
                tick.tick().await;
                for _ in 0..2 {
                    while queue.enqueue(&message(id, id % chats)).await.is_err() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    stored.store(id, Ordering::Relaxed);
                    id += 1;
                }
            }
        }
    });

    let mut resume = Vec::new();
    for cycle in 0..cycles {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let slot = &mut slots[cycle % 2];
        let dead = slot.owner.clone();
        slot.child.kill().expect("kill -9");
        let _ = slot.child.wait();
        let killed = Instant::now();
        *slot = spawn_worker(&dir, &db, next_owner());
        let deadline = killed + Duration::from_secs(60);
        loop {
            let held = leases(&db);
            if held.len() == PARTITIONS as usize && held.values().all(|o| *o != dead) {
                break;
            }
            assert!(Instant::now() < deadline, "no resume within 60 s");
            for slot in &mut slots {
                assert!(
                    matches!(slot.child.try_wait(), Ok(None)),
                    "worker {} exited",
                    slot.owner
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        resume.push(killed.elapsed());
    }
    producing.store(false, Ordering::Relaxed);
    producer.await.expect("producer");
    let total = stored.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(120);
    while queue.queued().await.expect("count") > 0 {
        assert!(Instant::now() < deadline, "queue not drained within 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Everything is acked: stopping the workers now loses nothing.
    for slot in &mut slots {
        let _ = slot.child.kill();
        let _ = slot.child.wait();
    }

    // The runs, from every process's log.
    let mut runs: Vec<(u128, u128, u64, u64)> = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).expect("log");
            for line in text.lines() {
                let f: Vec<&str> = line.split(' ').collect();
                if let [s, e, id, chat] = f[..] {
                    runs.push((
                        s.parse().expect("start"),
                        e.parse().expect("end"),
                        id.parse().expect("id"),
                        chat.parse().expect("chat"),
                    ));
                }
            }
        }
    }
    let mut first_end: HashMap<u64, u128> = HashMap::new();
    for &(_, end, id, _) in &runs {
        let e = first_end.entry(id).or_insert(end);
        *e = (*e).min(end);
    }
    let lost = (1..=total).filter(|id| !first_end.contains_key(id)).count();
    let duplicates = runs.len() - first_end.len();
    let mut per_chat: BTreeMap<u64, Vec<(u128, u128, u64)>> = BTreeMap::new();
    for &(start, end, id, chat) in &runs {
        per_chat.entry(chat).or_default().push((start, end, id));
    }
    let (mut order_violations, mut overlaps) = (0, 0);
    for list in per_chat.values_mut() {
        let mut ids: Vec<u64> = list.iter().map(|r| r.2).collect();
        ids.sort_unstable();
        ids.dedup();
        let previous: HashMap<u64, u64> = ids.windows(2).map(|w| (w[1], w[0])).collect();
        for &(start, _, id) in list.iter() {
            if let Some(prev) = previous.get(&id)
                && first_end[prev] > start
            {
                order_violations += 1;
            }
        }
        list.sort_unstable();
        overlaps += list.windows(2).filter(|w| w[1].0 < w[0].1).count();
    }
    resume.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| cycles | chats | lease | updates acknowledged | lost | duplicate runs | order violations | overlapping runs | time to resume p50 | max |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {cycles} | {chats} | {} s | {total} | {lost} | {duplicates} | {order_violations} | {overlaps} | {:.0} ms | {:.0} ms |",
        LEASE.as_secs(),
        resume.get(resume.len() / 2).copied().map_or(0.0, ms),
        resume.last().copied().map_or(0.0, ms),
    );
    drop(queue);
    let _ = std::fs::remove_dir_all(&dir);
}
