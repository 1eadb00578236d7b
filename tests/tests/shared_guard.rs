//! End-to-end for issue 16 §1: three axum webhook instances share one redelivery guard on a
//! real Redis (`telehook-redis`), behind a real haproxy balancing round-robin; the Bot API
//! emulator delivers through haproxy with Telegram's retries, response timeout and per-chat
//! queues. Some handlers are slower than the webhook timeout (Telegram gets `503` and delivers
//! again, usually to another instance), some fail (`500`, delivered again), one always fails
//! (given up after the bounded retries, counted across instances). Every update must be
//! handled exactly once, in its chat's order, with no two updates of one chat at once.
//!
//! Needs `redis-server` and `haproxy` on PATH (or `/usr/sbin/haproxy`); `.ci/test` installs
//! them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telehook_api::{Bot, SetWebhook};
use telehook_core::guard::{Claim, RunResult, StoreError, StoreFuture};
use telehook_core::{
    Context, ErrorPolicy, HandlerError, RedeliveryStore, Update, UpdateKey, Webhook,
};
use telehook_emulator::{Emulator, Timing, User};
use telehook_redis::RedisStore;

const TOKEN: &str = "161616:shared-guard";
const SECRET: &str = "shared_guard-secret";
const INSTANCES: usize = 3;
const CHATS: i64 = 20;
const UPDATES: i64 = 300;
/// The webhook timeout; slow handlers take `SLOW`, well past it.
const TIMEOUT: Duration = Duration::from_millis(100);
const SLOW: Duration = Duration::from_millis(300);

/// A child process killed (and its files removed) when dropped.
struct Process {
    child: Child,
    dir: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn temp_dir(tag: &str, port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "telehook-shared-guard-{tag}-{}-{port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// Waits until `port` accepts connections; false if the process exited first.
async fn listening(child: &mut Child, port: u16) -> bool {
    for _ in 0..500 {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nothing listens on port {port}");
}

/// Starts `program` with the arguments `args(port, dir)` on a free port, retrying when another
/// test took the port between our probe and the bind.
async fn start(
    tag: &str,
    program: &str,
    args: impl Fn(u16, &PathBuf) -> Vec<String>,
) -> (Process, u16) {
    for _ in 0..10 {
        let port = free_port();
        let dir = temp_dir(tag, port);
        let child = Command::new(program)
            .args(args(port, &dir))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {program} ({e}): install it (`apt-get install -y {tag}`; .ci/test does)")
            });
        let mut process = Process { child, dir };
        if listening(&mut process.child, port).await {
            return (process, port);
        }
    }
    panic!("{program} did not start on any of 10 free ports");
}

fn haproxy_program() -> String {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("haproxy").is_file()));
    if on_path {
        "haproxy".into()
    } else {
        "/usr/sbin/haproxy".into()
    }
}

/// haproxy in the foreground, balancing each request round-robin over `backends`.
async fn haproxy(backends: &[u16]) -> (Process, u16) {
    let program = haproxy_program();
    start("haproxy", &program, |port, dir| {
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, backend)| format!("  server instance{i} 127.0.0.1:{backend}\n"))
            .collect();
        let config = format!(
            "global\n  maxconn 512\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
             frontend telegram\n  bind 127.0.0.1:{port}\n  default_backend bots\n\
             backend bots\n  balance roundrobin\n  option http-server-close\n{servers}"
        );
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config).expect("haproxy.cfg");
        vec!["-db".into(), "-f".into(), file.display().to_string()]
    })
    .await
}

async fn redis() -> (Process, u16) {
    start("redis-server", "redis-server", |port, dir| {
        [
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--port",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([port.to_string(), "--dir".into(), dir.display().to_string()])
        .collect()
    })
    .await
}

/// What the handlers saw, across all instances.
#[derive(Default)]
struct Seen {
    /// (chat, update_id, instance) of every successful run, in the order they ended.
    handled: Mutex<Vec<(i64, u64, usize)>>,
    /// Runs per update_id, failed ones included.
    runs: Mutex<HashMap<u64, u32>>,
    /// Chats with a run in progress.
    busy: Mutex<HashMap<i64, u64>>,
    overlaps: AtomicUsize,
    /// Redeliveries that waited for a run in flight, per instance.
    waits: [AtomicUsize; INSTANCES],
}

/// The instance's store, counting the redeliveries that wait for a run in flight.
struct Counting {
    inner: RedisStore,
    seen: Arc<Seen>,
    instance: usize,
}

impl RedeliveryStore for Counting {
    fn claim(&self, key: UpdateKey) -> StoreFuture<'_, Result<Claim, StoreError>> {
        self.inner.claim(key)
    }

    fn wait(&self, key: UpdateKey) -> StoreFuture<'_, Result<RunResult, StoreError>> {
        self.seen.waits[self.instance].fetch_add(1, Ordering::SeqCst);
        self.inner.wait(key)
    }

    fn finish(&self, key: UpdateKey, result: RunResult) -> StoreFuture<'_, Result<(), StoreError>> {
        self.inner.finish(key, result)
    }
}

/// Which updates misbehave: every 9th is slow, every 7th fails its first run, one always fails.
fn is_slow(update_id: u64) -> bool {
    update_id % 9 == 4
}
fn fails_once(update_id: u64) -> bool {
    update_id % 7 == 3
}
const ALWAYS_FAILS: u64 = 100;

async fn instance(redis_url: &str, index: usize, seen: Arc<Seen>) -> u16 {
    let store = RedisStore::builder(redis_url)
        .key_prefix("shared-guard-e2e:")
        .build()
        .expect("a Redis store");
    let webhook = Webhook::builder()
        .secret_token(SECRET)
        .timeout(TIMEOUT)
        .error_policy(ErrorPolicy::BoundedRetry { max_attempts: 3 })
        .redelivery_store(Arc::new(Counting {
            inner: store,
            seen: seen.clone(),
            instance: index,
        }))
        .build(move |update: Update, ctx: Context| {
            let seen = seen.clone();
            async move {
                let id = update.update_id();
                let chat = update.chat_id().ok_or("no chat")?;
                *seen.runs.lock().unwrap().entry(id).or_default() += 1;
                if let Some(other) = seen.busy.lock().unwrap().insert(chat, id) {
                    seen.overlaps.fetch_add(1, Ordering::SeqCst);
                    eprintln!("chat {chat}: {id} started while {other} ran");
                }
                if is_slow(id) {
                    tokio::time::sleep(SLOW).await;
                }
                seen.busy.lock().unwrap().remove(&chat);
                if id == ALWAYS_FAILS || (fails_once(id) && ctx.failed_attempts() == 0) {
                    return Err::<(), HandlerError>(format!("update {id} fails").into());
                }
                seen.handled.lock().unwrap().push((chat, id, index));
                Ok(())
            }
        })
        .expect("a webhook");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback listener");
    let port = listener.local_addr().expect("its address").port();
    tokio::spawn(async move {
        axum::serve(listener, telehook_axum::router("/telegram", webhook))
            .await
            .expect("instance serves");
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_haproxy_run_each_update_once_in_chat_order() {
    let (_redis, redis_port) = redis().await;
    let redis_url = format!("redis://127.0.0.1:{redis_port}/");
    let seen = Arc::new(Seen::default());
    let mut ports = Vec::new();
    for index in 0..INSTANCES {
        ports.push(instance(&redis_url, index, seen.clone()).await);
    }
    let (_haproxy, balancer) = haproxy(&ports).await;

    // Telegram's 60 s response timeout becomes 600 ms, its retry delays 20, 40, 80 … ms.
    let emulator = Emulator::builder()
        .bot(TOKEN)
        .timing(Timing::scaled(0.01))
        .start()
        .await
        .expect("emulator");
    let telegram = emulator.bot(TOKEN).expect("bot");
    Bot::builder(TOKEN)
        .base_url(emulator.base_url())
        .build()
        .set_webhook(
            &SetWebhook::new(format!("http://127.0.0.1:{balancer}/telegram"))
                .secret_token(SECRET)
                .max_connections(40),
        )
        .await
        .expect("setWebhook");

    let mut injected = Vec::new();
    for i in 0..UPDATES {
        let chat = 7_000 + (i * 11 + i / 5) % CHATS;
        injected.push(
            telegram
                .private_text(&User::new(chat, "U"), &format!("m{i}"))
                .update_id,
        );
    }
    assert!(injected.contains(&ALWAYS_FAILS));
    telegram
        .wait_until_idle(Duration::from_secs(60))
        .await
        .expect("every update delivered");

    let handled = seen.handled.lock().unwrap().clone();
    let runs = seen.runs.lock().unwrap().clone();

    // Every update handled, none twice: the given-up one aside, each succeeded exactly once.
    let mut handled_ids: Vec<u64> = handled.iter().map(|(_, id, _)| *id).collect();
    handled_ids.sort_unstable();
    let expected: Vec<u64> = injected
        .iter()
        .copied()
        .filter(|id| *id != ALWAYS_FAILS)
        .collect();
    assert_eq!(handled_ids, expected, "each update handled exactly once");
    // Zero duplicate runs: a run per failure planned, plus the successful one.
    for id in &injected {
        let planned = if *id == ALWAYS_FAILS {
            3
        } else if fails_once(*id) {
            2
        } else {
            1
        };
        assert_eq!(runs.get(id), Some(&planned), "runs of update {id}");
    }
    // Chat order and no overlap.
    let mut last: HashMap<i64, u64> = HashMap::new();
    for (chat, id, _) in &handled {
        let previous = last.insert(*chat, *id);
        assert!(
            previous.is_none_or(|p| p < *id),
            "chat {chat}: {id} after {previous:?}"
        );
    }
    assert_eq!(
        seen.overlaps.load(Ordering::SeqCst),
        0,
        "two runs of one chat at once"
    );

    // The set-up did what it claims: all three instances ran handlers, Telegram redelivered,
    // and redeliveries waited for runs in flight through the shared guard.
    for index in 0..INSTANCES {
        assert!(
            handled.iter().any(|(_, _, i)| *i == index),
            "instance {index} handled nothing: is haproxy balancing?"
        );
    }
    let deliveries = telegram.deliveries();
    assert!(
        deliveries.iter().any(|d| d.attempt > 1),
        "no update was delivered twice"
    );
    let waits: usize = seen.waits.iter().map(|w| w.load(Ordering::SeqCst)).sum();
    assert!(waits > 0, "no redelivery waited for a run in flight");
    let info = telegram.webhook_info();
    assert_eq!(info["pending_update_count"], 0, "{info}");
}
