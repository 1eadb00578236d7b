//! End-to-end: the Bot API emulator delivers webhooks with Telegram's semantics (per-chat
//! queues, retries, timeouts) to each adapter on a real loopback server.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telehook_api::{Bot, SetWebhook};
use telehook_core::{Context, HandlerError, OnTimeout, Update, Webhook};
use telehook_e2e::{Adapter, serve};
use telehook_emulator::{BotHandle, DeliveryOutcome, Emulator, Route, Timing, User};

const TOKEN: &str = "424242:e2e-token";
const SECRET: &str = "e2e_S3cret-token";

async fn emulator() -> (Emulator, BotHandle, Bot) {
    let emu = Emulator::builder()
        .bot(TOKEN)
        .timing(Timing::scaled(0.01))
        .start()
        .await
        .expect("emulator");
    let tg = emu.bot(TOKEN).expect("bot");
    let bot = Bot::builder(TOKEN).base_url(emu.base_url()).build();
    (emu, tg, bot)
}

async fn set_webhook(bot: &Bot, url: &str, secret: &str) {
    bot.set_webhook(
        &SetWebhook::new(url)
            .secret_token(secret)
            .max_connections(40),
    )
    .await
    .expect("setWebhook");
}

#[derive(Clone, Default)]
struct Seen {
    calls: Arc<Mutex<Vec<(i64, u64)>>>,
    in_flight: Arc<Mutex<HashSet<i64>>>,
    overlaps: Arc<AtomicUsize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_updates_over_fifty_chats_are_handled_once_in_chat_order() {
    for adapter in Adapter::ALL {
        let (_emu, tg, bot) = emulator().await;
        let seen = Seen::default();
        let handler_seen = seen.clone();
        let webhook = Webhook::builder()
            .secret_token(SECRET)
            .build(move |update: Update, _ctx: Context| {
                let seen = handler_seen.clone();
                async move {
                    let chat = update.chat_id().ok_or("no chat")?;
                    if !seen.in_flight.lock().unwrap().insert(chat) {
                        seen.overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_micros(update.update_id() * 7_919 % 2_000))
                        .await;
                    seen.calls.lock().unwrap().push((chat, update.update_id()));
                    seen.in_flight.lock().unwrap().remove(&chat);
                    Ok::<_, HandlerError>(())
                }
            })
            .unwrap();
        let server = serve(adapter, webhook).await.expect("server");
        set_webhook(&bot, &server.url(), SECRET).await;

        let mut injected = Vec::new();
        for i in 0..1_000i64 {
            let chat = (i * 13 + i / 7) % 50;
            injected.push(
                tg.private_text(&User::new(5_000 + chat, "U"), &format!("m{i}"))
                    .update_id,
            );
        }
        tg.wait_until_idle(Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{adapter:?}: {e}"));

        let calls = seen.calls.lock().unwrap().clone();
        let mut ids: Vec<u64> = calls.iter().map(|(_, id)| *id).collect();
        assert_eq!(ids.len(), 1_000, "{adapter:?}: handler runs");
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids, injected, "{adapter:?}: every update exactly once");
        let mut last: HashMap<i64, u64> = HashMap::new();
        for (chat, id) in &calls {
            let previous = last.insert(*chat, *id);
            assert!(
                previous.is_none_or(|p| p < *id),
                "{adapter:?}: chat {chat} got {id} after {previous:?}"
            );
        }
        assert_eq!(
            seen.overlaps.load(Ordering::SeqCst),
            0,
            "{adapter:?}: two updates of one chat at once"
        );
        let failed = tg.deliveries().iter().filter(|d| !d.is_delivered()).count();
        assert_eq!(failed, 0, "{adapter:?}: failed deliveries");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_with_throw_is_retried_by_telegram_but_runs_once() {
    for adapter in Adapter::ALL {
        let (_emu, tg, bot) = emulator().await;
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let webhook = Webhook::builder()
            .secret_token(SECRET)
            .timeout(Duration::from_millis(60))
            .build(move |update: Update, ctx: Context| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    let chat_id = update.chat_id().ok_or("no chat")?;
                    ctx.webhook_reply(
                        "sendMessage",
                        serde_json::json!({"chat_id": chat_id, "text": "done"}),
                    )?;
                    Ok::<_, HandlerError>(())
                }
            })
            .unwrap();
        let server = serve(adapter, webhook).await.expect("server");
        set_webhook(&bot, &server.url(), SECRET).await;

        let user = User::new(77, "Slow");
        let slow = tg.private_text(&user, "slow").update_id;
        let next = tg.private_text(&user, "next").update_id;
        tg.wait_until_idle(Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{adapter:?}: {e}"));

        let attempts: Vec<_> = tg
            .deliveries()
            .into_iter()
            .filter(|d| d.update_id == slow)
            .collect();
        assert!(
            attempts.len() >= 2,
            "{adapter:?}: Telegram should have retried the slow update: {attempts:?}"
        );
        assert!(
            attempts.iter().any(|d| matches!(
                &d.outcome,
                DeliveryOutcome::Failed {
                    status: Some(503),
                    ..
                }
            )),
            "{adapter:?}: the timeout answer is a 503: {attempts:?}"
        );
        assert!(
            attempts.last().unwrap().is_delivered(),
            "{adapter:?}: finally delivered"
        );
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "{adapter:?}: the slow update ran once, the next once"
        );
        // The reply the slow handler set after the timeout rode on a redelivery's 200.
        let replies: Vec<_> = tg
            .calls_to("sendMessage")
            .into_iter()
            .filter(|c| matches!(c.route, Route::WebhookReply { update_id } if update_id == slow))
            .collect();
        assert_eq!(
            replies.len(),
            1,
            "{adapter:?}: the late reply was executed exactly once"
        );
        // Order kept: the next update was delivered only after the slow one.
        let order: Vec<u64> = tg
            .deliveries()
            .iter()
            .filter(|d| d.is_delivered())
            .map(|d| d.update_id)
            .collect();
        assert_eq!(order, vec![slow, next], "{adapter:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_with_return_is_acknowledged_and_its_late_reply_goes_over_http() {
    let (_emu, tg, bot) = emulator().await;
    let http_bot = bot.clone();
    let webhook = Webhook::builder()
        .secret_token(SECRET)
        .timeout(Duration::from_millis(60))
        .on_timeout(OnTimeout::Return)
        .build(move |update: Update, ctx: Context| {
            let bot = http_bot.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let chat_id = update.chat_id().ok_or("no chat")?;
                // The response already left: the webhook reply is refused and the call falls
                // back to HTTP, as docs/webhook-reply.md promises.
                let sent = bot
                    .send_or_reply(
                        &ctx,
                        "sendMessage",
                        &serde_json::json!({"chat_id": chat_id, "text": "late"}),
                    )
                    .await?;
                assert!(matches!(sent, telehook_api::Sent::Http(_)), "{sent:?}");
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    let server = serve(Adapter::Axum, webhook).await.expect("server");
    set_webhook(&bot, &server.url(), SECRET).await;
    let id = tg.private_text(&User::new(5, "R"), "slow").update_id;
    tg.wait_for_calls_to("sendMessage", 1, Duration::from_secs(10))
        .await
        .expect("the late sendMessage");
    let attempts: Vec<_> = tg
        .deliveries()
        .into_iter()
        .filter(|d| d.update_id == id)
        .collect();
    assert_eq!(
        attempts.len(),
        1,
        "acknowledged at the timeout, no retry: {attempts:?}"
    );
    assert!(attempts[0].is_delivered());
    assert!(
        attempts[0].duration < Duration::from_millis(290),
        "answered at the timeout: {:?}",
        attempts[0].duration
    );
    let calls = tg.calls_to("sendMessage");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].route, Route::Http);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_reply_reaches_the_emulator_as_an_executed_call() {
    for adapter in Adapter::ALL {
        let (_emu, tg, bot) = emulator().await;
        let webhook = Webhook::builder()
            .secret_token(SECRET)
            .build(|update: Update, ctx: Context| async move {
                let value: serde_json::Value = update.deserialize()?;
                let text = value.pointer("/message/text").cloned().unwrap_or_default();
                ctx.webhook_reply(
                    "sendMessage",
                    serde_json::json!({"chat_id": update.chat_id(), "text": text}),
                )?;
                Ok::<_, HandlerError>(())
            })
            .unwrap();
        let server = serve(adapter, webhook).await.expect("server");
        set_webhook(&bot, &server.url(), SECRET).await;
        let id = tg
            .private_text(&User::new(9, "Echo"), "héllo, 世界")
            .update_id;
        let calls = tg
            .wait_for_calls_to("sendMessage", 1, Duration::from_secs(10))
            .await
            .expect("reply executed");
        assert_eq!(
            calls[0].route,
            Route::WebhookReply { update_id: id },
            "{adapter:?}"
        );
        assert_eq!(calls[0].params["text"], "héllo, 世界", "{adapter:?}");
        assert_eq!(calls[0].params["chat_id"], 9, "{adapter:?}");
        assert!(
            calls[0].result().is_some(),
            "{adapter:?}: the emulator executed it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_shows_in_get_webhook_info() {
    for adapter in Adapter::ALL {
        let (_emu, tg, bot) = emulator().await;
        let webhook = Webhook::builder()
            .secret_token(SECRET)
            .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
            .unwrap();
        let server = serve(adapter, webhook).await.expect("server");
        set_webhook(&bot, &server.url(), "not-the-right-secret").await;
        tg.private_text(&User::new(1, "X"), "hi");
        tg.wait_for_deliveries(1, Duration::from_secs(10))
            .await
            .expect("a delivery attempt");
        let info = bot.get_webhook_info().await.expect("getWebhookInfo");
        let message = info.last_error_message.clone().unwrap_or_default();
        assert!(
            message.contains("401"),
            "{adapter:?}: last_error_message = {message:?}"
        );
        assert!(
            info.pending_update_count >= 1,
            "{adapter:?}: the update is still pending"
        );
    }
}
