//! The relay client against a loopback stand-in that answers exactly as the reference server
//! (TRIGONIM/lua-long-polling: `examples/advanced/server.lua`, `lua/long-polling/init.lua`,
//! the `localtable` provider) does: `{"updates":{}}` when there is nothing (an empty Lua table
//! encodes as an object), keys in any order, the last 30 updates per channel, counts that
//! restart at 0 with the process, and an answer "nothing, and the (lower) count" for a `ts`
//! above the count. Also a channel name with `.`, `@` and a space, which the URL carries
//! percent-encoded.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telehook_core::{Context, ErrorPolicy, HandlerError, Update};
use telehook_polling::RunnerConfig;
use telehook_relay::RelayClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Notify, oneshot};

/// The reference's `CHANNEL_STORAGE_MAXSIZE` default.
const KEEP: usize = 30;

#[derive(Default)]
struct Channel {
    stored: VecDeque<String>,
    total: u64,
}

#[derive(Default)]
struct State {
    channels: HashMap<String, Channel>,
    /// Answer a `ts` above the count as telehook-relay does (from the start, `"reset":true`)
    /// instead of as the reference does.
    telehook_reset: bool,
    /// Channel names (percent-decoded) and `ts` of every GET.
    gets: Vec<(String, String)>,
}

#[derive(Clone)]
struct Reference {
    state: Arc<Mutex<State>>,
    published: Arc<Notify>,
    url: String,
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Lua's `tonumber(x) or 0`.
fn number(query: &HashMap<String, String>, key: &str) -> f64 {
    query
        .get(key)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

impl Reference {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let reference = Self {
            state: Arc::default(),
            published: Arc::default(),
            url,
        };
        let server = reference.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(server.clone().serve(stream));
            }
        });
        reference
    }

    /// `localtable`'s `add_update`.
    fn publish(&self, channel: &str, body: &str) -> u64 {
        let mut state = self.state.lock().unwrap();
        let channel = state.channels.entry(channel.to_owned()).or_default();
        channel.stored.push_back(body.to_owned());
        channel.total += 1;
        if channel.stored.len() > KEEP {
            channel.stored.pop_front();
        }
        let total = channel.total;
        drop(state);
        self.published.notify_waiters();
        total
    }

    /// The process restarts: every channel and count is gone.
    fn restart(&self) {
        self.state.lock().unwrap().channels.clear();
    }

    fn gets(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().gets.clone()
    }

    /// `localtable`'s `get_updates`: the last `total - offset` stored updates.
    fn get_updates(&self, channel: &str, offset: f64) -> (Vec<String>, u64) {
        let state = self.state.lock().unwrap();
        let Some(channel) = state.channels.get(channel) else {
            return (Vec::new(), 0);
        };
        let wanted = channel.total as f64 - offset;
        let data = if wanted <= 0.0 {
            Vec::new()
        } else {
            let skip = channel.stored.len().saturating_sub(wanted as usize);
            channel.stored.iter().skip(skip).cloned().collect()
        };
        (data, channel.total)
    }

    /// `get_news` and the `getUpdates` route.
    async fn get(&self, channel: &str, query: &HashMap<String, String>) -> String {
        let offset = number(query, "ts");
        let timeout = number(query, "sleep").clamp(0.0, 60.0);
        {
            let mut state = self.state.lock().unwrap();
            let ts = query.get("ts").cloned().unwrap_or_default();
            state.gets.push((channel.to_owned(), ts));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(timeout);
        let (mut data, mut total) = self.get_updates(channel, offset);
        if offset > total as f64 && self.state.lock().unwrap().telehook_reset {
            let (all, total) = self.get_updates(channel, 0.0);
            return format!(
                r#"{{"ok":true,"ts":{total},"reset":true,"updates":[{}]}}"#,
                all.join(",")
            );
        }
        while data.is_empty() && offset <= total as f64 {
            let published = self.published.notified();
            let (again, now) = self.get_updates(channel, offset);
            (data, total) = (again, now);
            if !data.is_empty() || tokio::time::timeout_at(deadline, published).await.is_err() {
                break;
            }
        }
        // cjson: an empty table is an object; key order is the hash table's, not ours.
        let updates = if data.is_empty() {
            "{}".to_owned()
        } else {
            format!("[{}]", data.join(","))
        };
        format!(r#"{{"updates":{updates},"ts":{total},"ok":true}}"#)
    }

    async fn serve(self, mut stream: tokio::net::TcpStream) {
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        let (head, body) = loop {
            let Ok(n) = stream.read(&mut buf).await else {
                return;
            };
            if n == 0 {
                return;
            }
            request.extend_from_slice(&buf[..n]);
            if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&request[..end]).into_owned();
                let length = head
                    .to_lowercase()
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:").map(str::to_owned))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    let body =
                        String::from_utf8_lossy(&request[end + 4..end + 4 + length]).into_owned();
                    break (head, body);
                }
            }
        };
        let mut words = head.split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query: HashMap<String, String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), percent_decode(v)))
            .collect();
        // express's `/:channel` (one segment; a trailing slash is the same route).
        let channel = percent_decode(path.trim_start_matches('/').trim_end_matches('/'));
        let (status, extra, body) = if method == "GET" {
            (200, String::new(), self.get(&channel, &query).await)
        } else if method == "POST" {
            let total = self.publish(&channel, &body);
            (
                200,
                format!("x-total-updates: {total}\r\n"),
                "OK".to_owned(),
            )
        } else {
            (404, String::new(), "{}".to_owned())
        };
        let answer = format!(
            "HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

fn update(id: u64, chat: i64) -> String {
    format!(
        r#"{{"update_id":{id},"message":{{"message_id":{id},"date":0,"chat":{{"id":{chat},"type":"private"}},"text":"m{id}"}}}}"#
    )
}

/// Records handled update ids.
#[derive(Clone, Default)]
struct Handled {
    ids: Arc<Mutex<Vec<u64>>>,
    changed: Arc<Notify>,
}

impl Handled {
    fn handler(
        &self,
    ) -> impl Fn(Update, Context) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
    {
        let handled = self.clone();
        move |update: Update, _: Context| {
            handled.ids.lock().unwrap().push(update.update_id());
            handled.changed.notify_waiters();
            std::future::ready(Ok(()))
        }
    }

    fn ids(&self) -> Vec<u64> {
        self.ids.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let changed = self.changed.notified();
                if self.ids.lock().unwrap().len() >= n {
                    return;
                }
                changed.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("only {:?} handled, waited for {n}", self.ids()));
    }
}

const CHANNEL: &str = "my.bot@SomeS3cret P";

fn client(reference: &Reference) -> RelayClient {
    RelayClient::new(&reference.url, CHANNEL)
        .unwrap()
        .sleep(Duration::from_secs(2))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
}

/// An empty answer from the reference is `"updates":{}`; the client reads it as no updates.
/// Before, it failed with "unexpected answer" on every empty poll.
#[tokio::test]
async fn an_empty_answer_encoded_as_an_object_is_no_updates() {
    let reference = Reference::start().await;
    let polled = client(&reference)
        .sleep(Duration::ZERO)
        .poll(0)
        .await
        .expect("an empty Lua table is an empty list");
    assert!(polled.updates.is_empty());
    assert_eq!(polled.ts, 0);
    // The name went over the wire percent-encoded and came out whole.
    assert_eq!(reference.gets(), [(CHANNEL.to_owned(), "0".to_owned())]);
}

/// The client receives every update from a reference server, in order, through the runner,
/// with a channel name the reference accepts, and resumes after a restart of the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_update_from_a_reference_server_arrives_once_and_a_restart_resumes() {
    let reference = Reference::start().await;
    let dir = std::env::temp_dir().join(format!("telehook-ref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state_file = dir.join("ts-resume");
    let _ = std::fs::remove_file(&state_file);
    let handled = Handled::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(client(&reference).state_file(&state_file).run(
        handled.handler(),
        async move {
            let _ = stopped.await;
        },
    ));
    // First polls meet an empty channel: `{}`.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for id in 1..=3 {
        reference.publish(CHANNEL, &update(id, 7));
    }
    handled.wait_for(3).await;
    stop.send(()).unwrap();
    let report = run.await.unwrap().expect("clean stop");
    assert_eq!(handled.ids(), [1, 2, 3]);
    assert_eq!(report.ts, 3);
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), "3");
    assert_eq!(report.run.failures, 0);

    // Published while the bot is down: delivered once after the restart, nothing twice.
    reference.publish(CHANNEL, &update(4, 7));
    let again = Handled::default();
    let waiter = again.clone();
    let report = client(&reference)
        .state_file(&state_file)
        .run(again.handler(), async move { waiter.wait_for(1).await })
        .await
        .unwrap();
    assert_eq!(again.ids(), [4]);
    assert_eq!(report.ts, 4);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The reference restarts (its counts start over at 0) and gets two new updates: asked with
/// the old `ts`, it answers "nothing, count 2". The client must read the channel from the
/// start and say so, not adopt the lower count and skip the two (silent loss, before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_that_starts_over_is_read_from_the_start_and_reported() {
    for telehook_reset in [false, true] {
        let reference = Reference::start().await;
        reference.state.lock().unwrap().telehook_reset = telehook_reset;
        for id in 1..=5 {
            reference.publish(CHANNEL, &update(id, 1));
        }
        let handled = Handled::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let run = tokio::spawn(client(&reference).run(handled.handler(), async move {
            let _ = stopped.await;
        }));
        handled.wait_for(5).await;
        reference.restart();
        reference.publish(CHANNEL, &update(6, 1));
        reference.publish(CHANNEL, &update(7, 1));
        handled.wait_for(7).await;
        stop.send(()).unwrap();
        let report = run.await.unwrap().unwrap();
        assert_eq!(
            handled.ids(),
            [1, 2, 3, 4, 5, 6, 7],
            "reset={telehook_reset}"
        );
        assert_eq!(report.count_restarts, 1, "reset={telehook_reset}");
        assert_eq!(report.ts, 2);
    }
}

/// The reference keeps 30 updates: 35 published before the client reads leaves 5 dropped,
/// which its `ts` step shows (35 − 0 − 30). The client reports them.
#[tokio::test]
async fn updates_dropped_by_retention_are_reported_as_missed() {
    let reference = Reference::start().await;
    for id in 1..=35 {
        reference.publish(CHANNEL, &update(id, id as i64));
    }
    let handled = Handled::default();
    let waiter = handled.clone();
    let report = client(&reference)
        .run(handled.handler(), async move { waiter.wait_for(30).await })
        .await
        .unwrap();
    let mut ids = handled.ids();
    ids.sort_unstable();
    assert_eq!(ids, (6..=35).collect::<Vec<_>>());
    assert_eq!(report.missed, 5);
}

/// The reference stores a Telegram redelivery twice; the client handles it once. A handler
/// that panics on one update does not stop the others, and follows the error policy (here
/// two attempts, then given up); the panics are counted as failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_is_handled_once_and_a_panicking_handler_stops_nothing() {
    let reference = Reference::start().await;
    reference.publish(CHANNEL, &update(10, 1));
    reference.publish(CHANNEL, &update(11, 2)); // panics
    reference.publish(CHANNEL, &update(10, 1)); // Telegram sent it again
    reference.publish(CHANNEL, &update(12, 1));
    let handled = Handled::default();
    let record = handled.handler();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let mut config = RunnerConfig::default();
    config.error_policy = ErrorPolicy::BoundedRetry { max_attempts: 2 };
    config.retry_delay = Duration::from_millis(5);
    let waiter = handled.clone();
    let wait_attempts = attempts.clone();
    let report = client(&reference)
        .runner_config(config)
        .run(
            move |update: Update, ctx: Context| {
                if update.update_id() == 11 {
                    counted.fetch_add(1, Ordering::SeqCst);
                    panic!("a bug in the handler");
                }
                record(update, ctx)
            },
            async move {
                waiter.wait_for(2).await;
                while wait_attempts.load(Ordering::SeqCst) < 2 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
        )
        .await
        .unwrap();
    assert_eq!(handled.ids(), [10, 12]);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(report.run.panics, 2);
    assert_eq!(report.run.given_up, 1);
    assert_eq!(report.run.skipped, 1, "the redelivery");
    assert_eq!(report.ts, 4, "all four confirmed");
}

/// A stop while one update's handler hangs: the stop returns within its deadline, `ts` is
/// saved just before the unfinished update (the ones before it confirmed), and a restart
/// delivers it again — and only what was not confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_a_hung_handler_saves_the_ts_before_it_and_a_restart_resumes_there() {
    let reference = Reference::start().await;
    let dir = std::env::temp_dir().join(format!("telehook-ref-hung-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state_file = dir.join("ts");
    let _ = std::fs::remove_file(&state_file);
    // One chat: 1 and 2 are handled, 3 hangs, 4 waits behind it.
    for id in 1..=4 {
        reference.publish(CHANNEL, &update(id, 9));
    }
    let handled = Handled::default();
    let record = handled.handler();
    let waiter = handled.clone();
    let mut config = RunnerConfig::default();
    config.stop_deadline = Duration::from_millis(300);
    let report = tokio::time::timeout(
        Duration::from_secs(10),
        client(&reference)
            .state_file(&state_file)
            .runner_config(config)
            .run(
                move |update: Update, ctx: Context| {
                    let done = (update.update_id() != 3).then(|| record(update, ctx));
                    async move {
                        match done {
                            Some(done) => done.await,
                            None => std::future::pending().await,
                        }
                    }
                },
                async move { waiter.wait_for(2).await },
            ),
    )
    .await
    .expect("the stop kept its deadline")
    .unwrap();
    assert_eq!(handled.ids(), [1, 2]);
    assert_eq!(report.run.unfinished, [3]);
    assert_eq!(report.run.not_started, [4]);
    assert_eq!(report.ts, 2);
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), "2");

    let again = Handled::default();
    let waiter = again.clone();
    let report = client(&reference)
        .state_file(&state_file)
        .run(again.handler(), async move { waiter.wait_for(2).await })
        .await
        .unwrap();
    assert_eq!(again.ids(), [3, 4]);
    assert_eq!(report.ts, 4);
    let _ = std::fs::remove_dir_all(&dir);
}
