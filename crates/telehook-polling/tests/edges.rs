//! Long polling at the edges, over real HTTP on loopback: a stop while getUpdates answers 502,
//! 429 with a long `retry_after`, or hangs (the emulator's faults); and the bytes a handler
//! gets under long polling (a stand-in Bot API answering a fixture byte for byte).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use telehook_api::Bot;
use telehook_core::{Context, HandlerError, Update};
use telehook_emulator::{BotHandle, Emulator, Fault, Timing, User};
use telehook_polling::{Polling, StopReport};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Notify, oneshot};

const TOKEN: &str = "123456:edges-test-token";

async fn emulator() -> (Emulator, BotHandle) {
    let emu = Emulator::builder()
        .bot(TOKEN)
        .timing(Timing::scaled(0.01))
        .start()
        .await
        .expect("emulator");
    let tg = emu.bot(TOKEN).expect("bot");
    (emu, tg)
}

fn polling(base_url: &str) -> Polling {
    let bot = Bot::builder(TOKEN).base_url(base_url).build();
    Polling::new(bot)
        .timeout(Duration::from_secs(30))
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
}

#[derive(Clone, Default)]
struct Seen {
    ids: Arc<Mutex<Vec<u64>>>,
    changed: Arc<Notify>,
}

impl Seen {
    fn handler(
        &self,
    ) -> impl Fn(Update, Context) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
    {
        let seen = self.clone();
        move |update: Update, _: Context| {
            seen.ids.lock().unwrap().push(update.update_id());
            seen.changed.notify_waiters();
            std::future::ready(Ok(()))
        }
    }

    async fn wait_for(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let changed = self.changed.notified();
                if self.ids.lock().unwrap().len() >= n {
                    return;
                }
                changed.await;
            }
        })
        .await
        .expect("updates handled in time");
    }

    fn ids(&self) -> Vec<u64> {
        self.ids.lock().unwrap().clone()
    }
}

/// Handles two updates while the third one's handler hangs, then makes getUpdates fail with
/// `fault` and stops: the stop must return within (well within) the bound, whatever
/// getUpdates answers, cancel the hung run and report the offset it could not confirm. Before,
/// the final confirmation retried without a deadline (a 429 waited its whole `retry_after`).
async fn stop_during(fault: Fault) -> (Emulator, BotHandle, Vec<u64>, StopReport) {
    let (emu, tg) = emulator().await;
    let injected: Vec<u64> = (0..3)
        .map(|i| tg.private_text(&User::new(50 + i, "U"), "hi").update_id)
        .collect();
    let seen = Seen::default();
    let hung = injected[2];
    let handler = seen.handler();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(
        polling(&emu.base_url())
            .stop_deadline(Duration::from_millis(500))
            .run(
                move |update: Update, ctx: Context| {
                    let done = (update.update_id() != hung).then(|| handler(update, ctx));
                    async move {
                        match done {
                            Some(done) => done.await,
                            None => std::future::pending().await,
                        }
                    }
                },
                async move {
                    let _ = stopped.await;
                },
            ),
    );
    seen.wait_for(2).await;
    tg.inject_fault("getUpdates", 10_000, fault);
    stop.send(()).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(8), run)
        .await
        .expect("the stop outlived its 0.5 s deadline by far")
        .unwrap()
        .expect("a clean stop");
    assert_eq!(report.handled, 2);
    assert_eq!(report.unfinished, [hung]);
    assert_eq!(report.confirmed_offset, Some(hung));
    assert!(
        !report.confirmed,
        "the confirmation cannot have succeeded: {report:?}"
    );
    (emu, tg, injected, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_get_updates_answers_502_returns_within_the_deadline_and_loses_nothing() {
    let (emu, tg, injected, _) = stop_during(Fault::Error {
        error_code: 502,
        description: "Bad Gateway".into(),
    })
    .await;
    // At least once across the restart: the update that did not finish comes again (and so
    // may the ones whose confirmation the faults swallowed).
    tg.clear_faults();
    let seen = Seen::default();
    let waiter = seen.clone();
    let hung = injected[2];
    polling(&emu.base_url())
        .run(seen.handler(), async move {
            while !waiter.ids().contains(&hung) {
                waiter.wait_for(waiter.ids().len() + 1).await;
            }
        })
        .await
        .expect("second run");
    // The three updates are in three chats, so they run concurrently and finish in any order:
    // the guarantee is about which ones come again, not in what order they end.
    let mut again = seen.ids();
    assert!(
        again.contains(&hung),
        "the unfinished update {hung} did not come again: {again:?}"
    );
    again.sort_unstable();
    let before = again.len();
    again.dedup();
    assert_eq!(
        again.len(),
        before,
        "an update was handled twice in one run: {again:?}"
    );
    assert!(
        again.iter().all(|id| injected.contains(id)),
        "{again:?} holds an update that was never sent ({injected:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_get_updates_answers_429_with_a_long_retry_after_returns_within_the_deadline()
{
    stop_during(Fault::TooManyRequests { retry_after: 60 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_get_updates_hangs_returns_within_the_deadline() {
    stop_during(Fault::Delay(Duration::from_secs(60))).await;
}

/// A one-connection-at-a-time Bot API stand-in: answers `deleteWebhook` with `true`, the first
/// `getUpdates` with `result` spliced in byte for byte, and later ones with an empty list
/// after a short wait (a long poll).
async fn stand_in(result: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut served = false;
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head and the body (Content-Length).
            loop {
                let n = stream.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let head = String::from_utf8_lossy(&request);
            let body: Vec<u8> = if head.contains("/deleteWebhook") {
                br#"{"ok":true,"result":true}"#.to_vec()
            } else if !served {
                served = true;
                let mut body = br#"{"ok":true,"result":"#.to_vec();
                body.extend_from_slice(&result);
                body.push(b'}');
                body
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                br#"{"ok":true,"result":[]}"#.to_vec()
            };
            let mut answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            answer.extend_from_slice(&body);
            let _ = stream.write_all(&answer).await;
            let _ = stream.shutdown().await;
        }
    });
    format!("http://{addr}")
}

/// `Update::raw()` under long polling is exactly what the server sent: key order, escapes
/// (`\u00e9`, `\/`, surrogate pairs), whitespace and number spellings survive. Before, each
/// update was re-serialized from a `serde_json::Value` (keys sorted, escapes rewritten).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_under_long_polling_are_the_bytes_the_server_sent() {
    let fixture = std::fs::read(
        telehook_conformance::fixtures_dir().join("updates/message_escaped_unicode.json"),
    )
    .expect("fixture");
    let fixture = fixture.trim_ascii().to_vec();
    let plain = br#"{"update_id":900000002, "message":{"text":"z\/a","date":1,"chat":{"type":"private","id":2}}}"#;
    let mut result = b"[ ".to_vec();
    result.extend_from_slice(&fixture);
    result.extend_from_slice(b" ,\n\t");
    result.extend_from_slice(plain);
    result.extend_from_slice(b"]");
    let base = stand_in(result).await;

    let raws = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let got = raws.clone();
    let done = Arc::new(Notify::new());
    let (notify, wait) = (done.clone(), done.clone());
    let report = polling(&base)
        .run(
            move |update: Update, _: Context| {
                let mut raws = got.lock().unwrap();
                raws.push(update.raw().to_vec());
                if raws.len() == 2 {
                    notify.notify_one();
                }
                std::future::ready(Ok::<_, HandlerError>(()))
            },
            async move { wait.notified().await },
        )
        .await
        .expect("polling");
    assert_eq!(report.handled, 2);
    let raws = raws.lock().unwrap();
    assert!(
        raws.iter().any(|r| r == &fixture),
        "the escaped fixture changed on the way:\n{}",
        String::from_utf8_lossy(&raws[0])
    );
    assert!(raws.iter().any(|r| r == plain));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_a_proxy_answers_502_in_html_returns_within_the_deadline() {
    stop_during(Fault::BadGateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_get_updates_never_answers_returns_within_the_deadline() {
    stop_during(Fault::Hang).await;
}

/// End to end with the emulator's "a quiet week passed" control: the next update_id jumps far
/// below the last, the poller's old offset is "in the future" for the server, which answers
/// from the head of its queue. The poller handles the new updates, confirms them, and does not
/// spin (before: it dropped them as already seen and re-asked hundreds of times a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_update_ids_start_over_lower_polling_goes_on_and_confirms() {
    let (emu, tg) = emulator().await;
    tg.set_next_update_id(900_000).expect("jump up");
    let before: Vec<u64> = (0..3)
        .map(|i| {
            tg.private_text(&User::new(60, "U"), &format!("before {i}"))
                .update_id
        })
        .collect();
    assert_eq!(before, [900_000, 900_001, 900_002]);
    let seen = Seen::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(polling(&emu.base_url()).run(seen.handler(), async move {
        let _ = stopped.await;
    }));
    seen.wait_for(3).await;
    tg.wait_for_long_poll(Duration::from_secs(10))
        .await
        .expect("the poller waits with offset 900003");
    assert_eq!(tg.pending_update_count(), 0);
    tg.set_next_update_id(5)
        .expect("a quiet week: ids start over lower");
    let after: Vec<u64> = (0..2)
        .map(|i| {
            tg.private_text(&User::new(60, "U"), &format!("after {i}"))
                .update_id
        })
        .collect();
    assert_eq!(after, [5, 6]);
    seen.wait_for(5).await;
    tg.wait_for_long_poll(Duration::from_secs(10))
        .await
        .expect("the poller waits again");
    assert_eq!(tg.pending_update_count(), 0, "the new ids were confirmed");
    stop.send(()).unwrap();
    let report = run.await.unwrap().expect("clean stop");
    assert_eq!(seen.ids(), [900_000, 900_001, 900_002, 5, 6]);
    assert_eq!(report.sequence_resets, 1);
    assert_eq!(report.confirmed_offset, Some(7));
    let calls = tg.calls_to("getUpdates").len();
    assert!(calls < 20, "{calls} getUpdates calls: a tight loop");
}
