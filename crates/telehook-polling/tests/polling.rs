//! Long polling against the Bot API emulator over real HTTP on loopback.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telehook_api::Bot;
use telehook_core::{Context, HandlerError, Update};
use telehook_emulator::{BotHandle, Emulator, Fault, Timing, User};
use telehook_polling::{ConflictCause, Delivery, HandlerTimeout, Polling, PollingError};
use tokio::sync::Notify;

const TOKEN: &str = "123456:polling-test-token";

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

fn polling(emu: &Emulator) -> Polling {
    let bot = Bot::builder(TOKEN).base_url(emu.base_url()).build();
    Polling::new(bot)
        .timeout(Duration::from_secs(30))
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
}

/// Records every handled update and checks that no chat ever has two in flight.
#[derive(Clone, Default)]
struct Log {
    handled: Arc<Mutex<Vec<(i64, u64)>>>,
    in_flight: Arc<Mutex<HashSet<i64>>>,
    overlaps: Arc<AtomicUsize>,
    count: Arc<AtomicUsize>,
    reached: Arc<Notify>,
}

impl Log {
    async fn handle(&self, update: &Update, delay: Duration) {
        let chat = update.chat_id().expect("chat");
        if !self.in_flight.lock().unwrap().insert(chat) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(delay).await;
        self.handled
            .lock()
            .unwrap()
            .push((chat, update.update_id()));
        self.in_flight.lock().unwrap().remove(&chat);
        self.count.fetch_add(1, Ordering::SeqCst);
        self.reached.notify_waiters();
    }

    async fn wait_for(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let notified = self.reached.notified();
                if self.count.load(Ordering::SeqCst) >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} of {n} updates handled in 60 s",
                self.count.load(Ordering::SeqCst)
            )
        });
    }

    fn ids(&self) -> Vec<u64> {
        self.handled
            .lock()
            .unwrap()
            .iter()
            .map(|(_, id)| *id)
            .collect()
    }
}

/// A pseudo-random delay in 0..4 ms, fixed per update.
fn delay_for(update_id: u64) -> Duration {
    Duration::from_micros(update_id.wrapping_mul(2_654_435_761) % 4_000)
}

fn inject_round_robin(tg: &BotHandle, chats: i64, total: usize) -> Vec<u64> {
    (0..total)
        .map(|i| {
            // A scrambled but deterministic chat order.
            let chat = (i as i64 * 7 + i as i64 / 3) % chats;
            tg.private_text(&User::new(10_000 + chat, "User"), &format!("message {i}"))
                .update_id
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_updates_over_forty_chats_each_once_in_chat_order() {
    let (emu, tg) = emulator().await;
    let injected = inject_round_robin(&tg, 40, 2_000);
    let log = Log::default();
    let handler_log = log.clone();
    let stop_log = log.clone();
    let report = polling(&emu)
        .concurrency(16)
        .run(
            move |update: Update, _ctx: Context| {
                let log = handler_log.clone();
                async move {
                    log.handle(&update, delay_for(update.update_id())).await;
                    Ok::<_, HandlerError>(())
                }
            },
            async move { stop_log.wait_for(2_000).await },
        )
        .await
        .expect("polling");

    let mut ids = log.ids();
    assert_eq!(ids.len(), 2_000, "every update handled once");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, injected, "no update lost or handled twice");
    let mut last: HashMap<i64, u64> = HashMap::new();
    for (chat, id) in log.handled.lock().unwrap().iter() {
        let previous = last.insert(*chat, *id);
        assert!(
            previous.is_none_or(|p| p < *id),
            "chat {chat}: update {id} after {previous:?}"
        );
    }
    assert_eq!(
        log.overlaps.load(Ordering::SeqCst),
        0,
        "two updates of one chat were in flight at once"
    );
    assert_eq!(report.handled, 2_000);
    assert_eq!(report.confirmed_offset, Some(injected.last().unwrap() + 1));
    assert_eq!(
        tg.pending_update_count(),
        0,
        "the last offset was confirmed when stopping"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_in_the_middle_then_restart_loses_nothing_and_repeats_nothing() {
    let (emu, tg) = emulator().await;
    let injected = inject_round_robin(&tg, 10, 300);
    let first = Log::default();
    let (handler_log, stop_log) = (first.clone(), first.clone());
    let report = polling(&emu)
        .concurrency(8)
        .run(
            move |update: Update, _ctx: Context| {
                let log = handler_log.clone();
                async move {
                    log.handle(&update, Duration::from_millis(2)).await;
                    Ok::<_, HandlerError>(())
                }
            },
            async move { stop_log.wait_for(100).await },
        )
        .await
        .expect("first run");
    let handled_first = first.ids();
    assert!(
        handled_first.len() >= 100 && handled_first.len() < 300,
        "stopped mid-way: {}",
        handled_first.len()
    );
    assert!(
        report.unfinished.is_empty() && report.not_started.is_empty(),
        "{report:?}"
    );

    let second = Log::default();
    let (handler_log, stop_log) = (second.clone(), second.clone());
    let remaining = 300 - handled_first.len();
    polling(&emu)
        .concurrency(8)
        .skip_update_ids(report.handled_beyond_offset.clone())
        .run(
            move |update: Update, _ctx: Context| {
                let log = handler_log.clone();
                async move {
                    log.handle(&update, Duration::ZERO).await;
                    Ok::<_, HandlerError>(())
                }
            },
            async move { stop_log.wait_for(remaining).await },
        )
        .await
        .expect("second run");
    let mut all: Vec<u64> = handled_first.into_iter().chain(second.ids()).collect();
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        total,
        "an update was handled twice across the restart"
    );
    assert_eq!(all, injected, "an update was lost across the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_server_errors_and_dropped_connections_are_survived() {
    let (emu, tg) = emulator().await;
    tg.inject_fault("getUpdates", 1, Fault::TooManyRequests { retry_after: 1 });
    tg.inject_fault(
        "getUpdates",
        2,
        Fault::Error {
            error_code: 502,
            description: "Bad Gateway".into(),
        },
    );
    tg.inject_fault("getUpdates", 2, Fault::DropConnection);
    let injected = inject_round_robin(&tg, 3, 20);
    let log = Log::default();
    let (handler_log, stop_log) = (log.clone(), log.clone());
    let started = std::time::Instant::now();
    polling(&emu)
        .run(
            move |update: Update, _ctx: Context| {
                let log = handler_log.clone();
                async move {
                    log.handle(&update, Duration::ZERO).await;
                    Ok::<_, HandlerError>(())
                }
            },
            async move { stop_log.wait_for(20).await },
        )
        .await
        .expect("polling recovers");
    let mut ids = log.ids();
    ids.sort_unstable();
    assert_eq!(ids, injected);
    // retry_after is honoured: nothing could be fetched for the first second.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retry_after was not honoured"
    );
    let get_updates = tg.calls_to("getUpdates").len();
    assert!(
        get_updates >= 6,
        "the five faults should each have cost a call, saw {get_updates}"
    );
}

#[tokio::test]
async fn a_wrong_token_stops_with_unauthorized() {
    let (emu, _tg) = emulator().await;
    let bot = Bot::builder("999:not-a-known-token")
        .base_url(emu.base_url())
        .build();
    let result = Polling::new(bot)
        .run(
            |_: Update, _: Context| async { Ok::<_, HandlerError>(()) },
            std::future::pending(),
        )
        .await;
    let error = result.expect_err("401 must stop polling");
    assert!(matches!(error, PollingError::Unauthorized), "{error:?}");
    assert!(error.to_string().contains("BotFather"), "{error}");
    assert!(
        !format!("{error:?}").contains("not-a-known-token"),
        "the token leaked into the error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_poller_stops_the_first_with_other_instance_conflict() {
    let (emu, _tg) = emulator().await;
    let first = tokio::spawn(polling(&emu).run(
        |_: Update, _: Context| async { Ok::<_, HandlerError>(()) },
        std::future::pending(),
    ));
    emu.bot(TOKEN)
        .unwrap()
        .wait_for_long_poll(Duration::from_secs(10))
        .await
        .expect("first poller waiting");
    let stop_second = Arc::new(Notify::new());
    let stopper = stop_second.clone();
    let second = tokio::spawn(polling(&emu).run(
        |_: Update, _: Context| async { Ok::<_, HandlerError>(()) },
        async move { stopper.notified().await },
    ));
    let error = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("first stops")
        .unwrap()
        .unwrap_err();
    match &error {
        PollingError::Conflict {
            cause: ConflictCause::OtherInstance,
            ..
        } => {}
        other => panic!("expected OtherInstance conflict, got {other:?}"),
    }
    assert!(error.to_string().contains("only one instance"), "{error}");
    stop_second.notify_one();
    second
        .await
        .unwrap()
        .expect("the second poller stops cleanly");
}

/// `delete_webhook_at_start(false)`: a webhook that is set stays set, and `run` stops at once
/// with the webhook conflict (what `telehook dev` relies on without `--take-over`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_delete_at_start_a_set_webhook_is_kept_and_polling_stops_with_conflict() {
    let (emu, _tg) = emulator().await;
    let bot = Bot::builder(TOKEN).base_url(emu.base_url()).build();
    bot.set_webhook(&telehook_api::SetWebhook::new("http://127.0.0.1:9/prod"))
        .await
        .expect("setWebhook");
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        polling(&emu).delete_webhook_at_start(false).run(
            |_: Update, _: Context| async { Ok::<_, HandlerError>(()) },
            std::future::pending(),
        ),
    )
    .await
    .expect("polling stops")
    .unwrap_err();
    assert!(
        matches!(
            error,
            PollingError::Conflict {
                cause: ConflictCause::WebhookActive,
                ..
            }
        ),
        "{error:?}"
    );
    let info = bot.get_webhook_info().await.expect("getWebhookInfo");
    assert_eq!(
        info.url, "http://127.0.0.1:9/prod",
        "the webhook was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_set_while_polling_stops_with_webhook_conflict() {
    let (emu, tg) = emulator().await;
    let poller = tokio::spawn(polling(&emu).run(
        |_: Update, _: Context| async { Ok::<_, HandlerError>(()) },
        std::future::pending(),
    ));
    tg.wait_for_long_poll(Duration::from_secs(10))
        .await
        .expect("poller waiting");
    let bot = Bot::builder(TOKEN).base_url(emu.base_url()).build();
    bot.set_webhook(&telehook_api::SetWebhook::new(
        "http://127.0.0.1:9/telegram",
    ))
    .await
    .expect("setWebhook");
    let error = tokio::time::timeout(Duration::from_secs(10), poller)
        .await
        .expect("poller stops")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            error,
            PollingError::Conflict {
                cause: ConflictCause::WebhookActive,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_handler_blocks_only_its_own_chat() {
    let (emu, tg) = emulator().await;
    let stuck_user = User::new(1, "Stuck");
    let first_stuck = tg.private_text(&stuck_user, "hang").update_id;
    let others: Vec<u64> = (0..50)
        .map(|i| {
            tg.private_text(&User::new(100 + i % 5, "Other"), "hi")
                .update_id
        })
        .collect();
    let second_stuck = tg.private_text(&stuck_user, "after the hang").update_id;

    let release = Arc::new(Notify::new());
    let log = Log::default();
    let (handler_log, handler_release) = (log.clone(), release.clone());
    let done = Arc::new(Notify::new());
    let stop = done.clone();
    let poller = tokio::spawn(polling(&emu).concurrency(4).run(
        move |update: Update, _ctx: Context| {
            let (log, release) = (handler_log.clone(), handler_release.clone());
            async move {
                if update.update_id() == first_stuck {
                    release.notified().await;
                }
                log.handle(&update, Duration::ZERO).await;
                Ok::<_, HandlerError>(())
            }
        },
        async move { stop.notified().await },
    ));
    log.wait_for(50).await;
    let handled: HashSet<u64> = log.ids().into_iter().collect();
    assert!(
        others.iter().all(|id| handled.contains(id)),
        "other chats were delayed by the hung one"
    );
    assert!(
        !handled.contains(&second_stuck),
        "the stuck chat's next update overtook the hung one"
    );
    release.notify_one();
    log.wait_for(52).await;
    let ids = log.ids();
    let pos = |id: u64| ids.iter().position(|x| *x == id).unwrap();
    assert!(pos(first_stuck) < pos(second_stuck));
    done.notify_one();
    poller.await.unwrap().expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_timeout_with_move_on_lets_the_chat_continue() {
    let (emu, tg) = emulator().await;
    let user = User::new(7, "Slow");
    let slow = tg.private_text(&user, "slow").update_id;
    let next = tg.private_text(&user, "next").update_id;
    let log = Log::default();
    let (handler_log, stop_log) = (log.clone(), log.clone());
    let report = polling(&emu)
        .handler_timeout(Duration::from_millis(50), HandlerTimeout::MoveOn)
        .run(
            move |update: Update, _ctx: Context| {
                let log = handler_log.clone();
                async move {
                    if update.update_id() == slow {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    }
                    log.handle(&update, Duration::ZERO).await;
                    Ok::<_, HandlerError>(())
                }
            },
            async move { stop_log.wait_for(2).await },
        )
        .await
        .expect("polling");
    let ids = log.ids();
    assert_eq!(
        ids,
        vec![next, slow],
        "the next update should run while the slow one is still going"
    );
    assert_eq!(report.confirmed_offset, Some(next + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handler_is_retried_then_given_up_and_confirmed() {
    let (emu, tg) = emulator().await;
    let id = tg.private_text(&User::new(3, "Err"), "fail").update_id;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let report = polling(&emu)
        .retry_delay(Duration::from_millis(5))
        .run(
            move |_: Update, _: Context| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Err::<(), HandlerError>("always fails".into())
                }
            },
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
            },
        )
        .await
        .expect("polling");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "default bounded retry: 3 attempts"
    );
    assert_eq!(report.given_up, 1);
    assert_eq!(report.confirmed_offset, Some(id + 1));
}

/// A source that checks the runner never holds more updates than allowed.
struct CheckingSource {
    inner: telehook_polling::MemorySource,
    /// The highest id handed out, and how many distinct updates were handed out.
    max_id: u64,
    handed_out: usize,
    handled: Arc<AtomicUsize>,
    max_outstanding: Arc<AtomicUsize>,
    max_limit: Arc<AtomicUsize>,
}

impl telehook_polling::UpdateSource for CheckingSource {
    type Error = std::convert::Infallible;

    async fn fetch(
        &mut self,
        offset: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Delivery>, Self::Error> {
        self.max_limit.fetch_max(limit, Ordering::SeqCst);
        let updates = self.inner.fetch(offset, limit).await?;
        for delivery in &updates {
            let update = delivery.update();
            if update.update_id() > self.max_id {
                self.max_id = update.update_id();
                self.handed_out += 1;
            }
        }
        // Handed out but not yet handled: what the runner holds (or less, as the handler counts
        // itself done a moment before the runner hears of it).
        let outstanding = self.handed_out - self.handled.load(Ordering::SeqCst);
        self.max_outstanding
            .fetch_max(outstanding, Ordering::SeqCst);
        Ok(updates)
    }

    async fn confirm(&mut self, offset: u64) -> Result<(), Self::Error> {
        self.inner.confirm(offset).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_never_holds_more_than_max_held() {
    let updates: Vec<Update> = (1..=500u64)
        .map(|id| {
            Update::from_bytes(format!(
                r#"{{"update_id":{id},"message":{{"chat":{{"id":{}}}}}}}"#,
                id % 7
            ))
            .unwrap()
        })
        .collect();
    let max_outstanding = Arc::new(AtomicUsize::new(0));
    let max_limit = Arc::new(AtomicUsize::new(0));
    let log = Log::default();
    let source = CheckingSource {
        inner: telehook_polling::MemorySource::new(updates),
        max_id: 0,
        handed_out: 0,
        handled: log.count.clone(),
        max_outstanding: max_outstanding.clone(),
        max_limit: max_limit.clone(),
    };
    let (handler_log, stop_log) = (log.clone(), log.clone());
    let mut config = telehook_polling::RunnerConfig::default();
    config.concurrency = 4;
    config.max_held = 20;
    let report = telehook_polling::run(
        source,
        move |update: Update, _: Context| {
            let log = handler_log.clone();
            async move {
                log.handle(&update, Duration::from_micros(200)).await;
                Ok::<_, HandlerError>(())
            }
        },
        config,
        async move { stop_log.wait_for(500).await },
    )
    .await
    .unwrap();
    assert_eq!(report.handled, 500);
    assert_eq!(log.overlaps.load(Ordering::SeqCst), 0);
    assert!(max_limit.load(Ordering::SeqCst) <= 100);
    let outstanding = max_outstanding.load(Ordering::SeqCst);
    assert!(
        outstanding <= 20,
        "the runner held {outstanding} unhandled updates, more than max_held 20"
    );
    assert!(
        outstanding >= 10,
        "the runner should fill its room, held at most {outstanding}"
    );
}
