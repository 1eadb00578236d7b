//! setWebhook, getWebhookInfo and the delivery engine: queues, concurrency, retries, replies.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{WAIT, emulator, fast, json_response, status, webhook};
use serde_json::json;
use telehook_api::SetWebhook;
use telehook_emulator::{CallOutcome, Chat, DeliveryOutcome, Route, SequenceKey, Timing, User};

#[tokio::test]
async fn a_delivery_is_a_json_post_with_the_secret_token_header() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let (url, received) = webhook(|_| async { status(200) }).await;
    bot.set_webhook(&SetWebhook::new(&url).secret_token("s3cr3t_T0ken-for-tests"))
        .await
        .unwrap();

    let injected = telegram.private_text(&User::new(42, "Ann"), "hello");
    let attempt = telegram
        .wait_for_delivered(injected.update_id, WAIT)
        .await
        .unwrap();
    assert_eq!(attempt.attempt, 1);
    assert_eq!(attempt.sequence_key, Some(SequenceKey::Chat(42)));
    assert_eq!(attempt.outcome, DeliveryOutcome::Delivered { status: 200 });

    let request = received.lock().unwrap()[0].clone();
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(
        request.headers["x-telegram-bot-api-secret-token"],
        "s3cr3t_T0ken-for-tests"
    );
    assert_eq!(request.update, injected.update);
    assert_eq!(telegram.webhook_info()["ip_address"], "127.0.0.1");
    telegram.wait_until_idle(WAIT).await.unwrap();
    assert_eq!(
        bot.get_webhook_info().await.unwrap().pending_update_count,
        0
    );
}

#[tokio::test]
async fn set_webhook_refuses_what_telegram_refuses() {
    let (_emulator, _telegram, bot) = emulator(fast()).await;
    let refused = |params: SetWebhook| {
        let bot = bot.clone();
        async move { bot.set_webhook(&params).await.unwrap_err().to_string() }
    };
    let bad_chars =
        refused(SetWebhook::new("http://127.0.0.1:1/h").secret_token("no spaces")).await;
    assert!(
        bad_chars.contains("Bad Request: secret token contains unallowed characters"),
        "{bad_chars}"
    );
    let too_long =
        refused(SetWebhook::new("http://127.0.0.1:1/h").secret_token("a".repeat(257))).await;
    assert!(
        too_long.contains("Bad Request: secret token is too long"),
        "{too_long}"
    );
    let plain_http = refused(SetWebhook::new("http://example.com/h")).await;
    assert!(
        plain_http.contains("Bad Request: bad webhook: HTTPS url must be provided for webhook"),
        "{plain_http}"
    );
    let port = refused(SetWebhook::new("https://example.com:8080/h")).await;
    assert!(port.contains("ports 80, 88, 443 or 8443"), "{port}");

    assert!(
        bot.set_webhook(
            &SetWebhook::new("https://example.com:8443/h").secret_token("a".repeat(256))
        )
        .await
        .unwrap()
    );
}

#[tokio::test]
async fn get_webhook_info_reports_the_webhook_and_clamps_max_connections() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let info = bot.get_webhook_info().await.unwrap();
    assert_eq!(info.url, "");
    assert_eq!(info.max_connections, None);

    let params = SetWebhook::new("http://127.0.0.1:9/hook")
        .max_connections(0)
        .allowed_updates(["message"]);
    bot.set_webhook(&params).await.unwrap();
    let info = bot.get_webhook_info().await.unwrap();
    assert_eq!(info.url, "http://127.0.0.1:9/hook");
    assert!(!info.has_custom_certificate);
    assert_eq!(
        info.max_connections,
        Some(1),
        "Telegram clamps max_connections to 1..=100"
    );
    assert_eq!(info.allowed_updates, Some(vec!["message".to_owned()]));
    assert_eq!(telegram.webhook_info()["url"], "http://127.0.0.1:9/hook");
}

#[tokio::test]
async fn a_failed_delivery_is_retried_at_once_then_after_growing_delays() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let (url, received) = webhook(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { status(if n < 3 { 500 } else { 200 }) }
    })
    .await;
    bot.set_webhook(&SetWebhook::new(&url)).await.unwrap();
    let injected = telegram.private_text(&User::new(42, "Ann"), "hi");
    telegram
        .wait_for_delivered(injected.update_id, WAIT)
        .await
        .unwrap();

    let log = telegram.deliveries();
    assert_eq!(
        log.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(
        log[0].outcome,
        DeliveryOutcome::Failed {
            status: Some(500),
            error: "Wrong response from the webhook: 500 Internal Server Error".into()
        }
    );
    let info = bot.get_webhook_info().await.unwrap();
    assert_eq!(
        info.last_error_message.as_deref(),
        Some("Wrong response from the webhook: 500 Internal Server Error")
    );
    assert!(info.last_error_date.is_some());

    // Retry 2 follows at once; then 2 s and 4 s, scaled by 0.01, are the least gaps.
    let at: Vec<_> = received.lock().unwrap().iter().map(|r| r.at).collect();
    assert!(
        at[2] - at[1] >= Duration::from_millis(20),
        "{:?}",
        at[2] - at[1]
    );
    assert!(
        at[3] - at[2] >= Duration::from_millis(40),
        "{:?}",
        at[3] - at[2]
    );
}

#[tokio::test]
async fn retry_after_in_the_webhook_response_is_honoured() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let (url, received) = webhook(move |_| {
        let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                axum::response::Response::builder()
                    .status(429)
                    .header("retry-after", "30")
                    .body(axum::body::Body::empty())
                    .unwrap()
            } else {
                status(200)
            }
        }
    })
    .await;
    bot.set_webhook(&SetWebhook::new(&url)).await.unwrap();
    let injected = telegram.private_text(&User::new(42, "Ann"), "hi");
    telegram
        .wait_for_delivered(injected.update_id, WAIT)
        .await
        .unwrap();
    let at: Vec<_> = received.lock().unwrap().iter().map(|r| r.at).collect();
    assert!(
        at[1] - at[0] >= Duration::from_millis(300),
        "30 s scaled by 0.01, not an immediate retry"
    );
}

#[tokio::test]
async fn a_failing_update_holds_back_its_chat_but_not_other_chats() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let failures = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&failures);
    let (url, _received) = webhook(move |request| {
        let fail = request.update_id() == 1 && counter.fetch_add(1, Ordering::SeqCst) < 3;
        async move { status(if fail { 502 } else { 200 }) }
    })
    .await;
    let ann = User::new(1, "Ann");
    let first = telegram.private_text(&ann, "first");
    let second = telegram.private_text(&ann, "second");
    let other_chat = telegram.private_text(&User::new(2, "Bo"), "elsewhere");
    bot.set_webhook(&SetWebhook::new(&url)).await.unwrap();

    telegram
        .wait_for_delivered(second.update_id, WAIT)
        .await
        .unwrap();
    let log = telegram.deliveries();
    let position = |id: u64| {
        log.iter()
            .position(|a| a.update_id == id && a.is_delivered())
            .unwrap()
    };
    let first_try_of_second = log
        .iter()
        .position(|a| a.update_id == second.update_id)
        .unwrap();
    assert!(
        first_try_of_second > position(first.update_id),
        "the chat's next update waits for its head"
    );
    assert!(
        position(other_chat.update_id) < position(first.update_id),
        "another chat is not held back"
    );
    assert_eq!(
        log.iter()
            .filter(|a| a.update_id == first.update_id)
            .count(),
        4
    );
}

#[tokio::test]
async fn no_more_than_max_connections_deliveries_run_at_once() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (Arc::clone(&running), Arc::clone(&peak));
    let (url, _received) = webhook(move |_| {
        let (running, peak) = (Arc::clone(&r), Arc::clone(&p));
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            // Hold the connection until a second one overlaps (or long enough to be sure none will).
            for _ in 0..100 {
                if peak.load(Ordering::SeqCst) >= 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            status(200)
        }
    })
    .await;
    for chat in 1..=6 {
        telegram.private_text(&User::new(chat, "U"), "hi");
    }
    bot.set_webhook(&SetWebhook::new(&url).max_connections(2))
        .await
        .unwrap();
    telegram.wait_until_idle(WAIT).await.unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(
        telegram
            .deliveries()
            .iter()
            .filter(|a| a.is_delivered())
            .count(),
        6
    );
}

#[tokio::test]
async fn a_webhook_that_does_not_answer_in_time_fails_with_read_timeout_expired() {
    // 60 s scaled by 0.001: the emulator gives up after 60 ms.
    let (_emulator, telegram, bot) = emulator(Timing::scaled(0.001)).await;
    let (url, _received) = webhook(|_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        status(200)
    })
    .await;
    bot.set_webhook(&SetWebhook::new(&url)).await.unwrap();
    telegram.private_text(&User::new(42, "Ann"), "hi");
    let log = telegram.wait_for_deliveries(1, WAIT).await.unwrap();
    assert_eq!(
        log[0].outcome,
        DeliveryOutcome::Failed {
            status: None,
            error: "Read timeout expired".into()
        }
    );
}

#[tokio::test]
async fn a_closed_port_fails_with_connection_refused() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    bot.set_webhook(&SetWebhook::new(&url)).await.unwrap();
    telegram.private_text(&User::new(42, "Ann"), "hi");
    let log = telegram.wait_for_deliveries(1, WAIT).await.unwrap();
    assert_eq!(
        log[0].outcome,
        DeliveryOutcome::Failed {
            status: None,
            error: "Connection refused".into()
        }
    );
    let info = telegram.webhook_info();
    assert_eq!(info["last_error_message"], "Connection refused");
    assert_eq!(info["pending_update_count"], 1);
}

#[tokio::test]
async fn a_webhook_reply_is_executed_and_recorded_with_its_update() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let (url, _received) = webhook(|request| async move {
        let chat_id = request.update["message"]["chat"]["id"].clone();
        json_response(&json!({ "method": "sendMessage", "chat_id": chat_id, "text": "pong" }))
    })
    .await;
    bot.set_webhook(&SetWebhook::new(&url)).await.unwrap();
    let injected = telegram.send_text(&Chat::group(-7, "Team"), &User::new(42, "Ann"), "ping");

    let sent = telegram
        .wait_for_calls_to("sendMessage", 1, WAIT)
        .await
        .unwrap();
    assert_eq!(
        sent[0].route,
        Route::WebhookReply {
            update_id: injected.update_id
        }
    );
    assert_eq!(sent[0].text().as_deref(), Some("pong"));
    assert_eq!(sent[0].result().unwrap()["message_id"], 2);
    assert_eq!(sent[0].result().unwrap()["chat"]["id"], -7);
}

#[tokio::test]
async fn webhook_replies_telegram_ignores_are_recorded_but_not_executed() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let (url, _received) = webhook(|_| async {
        json_response(&json!({ "method": "DELETEWEBHOOK", "drop_pending_updates": true }))
    })
    .await;
    bot.set_webhook(&SetWebhook::new(&url)).await.unwrap();
    telegram.private_text(&User::new(42, "Ann"), "hi");
    let calls = telegram
        .wait_for_calls_to("deleteWebhook", 1, WAIT)
        .await
        .unwrap();
    assert_eq!(calls[0].outcome, CallOutcome::Ignored);
    assert_eq!(
        bot.get_webhook_info().await.unwrap().url,
        url,
        "the webhook is still set"
    );
}

#[tokio::test]
async fn delete_webhook_can_drop_pending_updates() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    bot.set_webhook(&SetWebhook::new("http://127.0.0.1:9/never"))
        .await
        .unwrap();
    telegram.private_text(&User::new(42, "Ann"), "lost");
    assert!(bot.delete_webhook(true).await.unwrap());
    assert_eq!(telegram.pending_update_count(), 0);
    let info = bot.get_webhook_info().await.unwrap();
    assert_eq!((info.url.as_str(), info.pending_update_count), ("", 0));
}

#[tokio::test]
async fn an_undelivered_inline_query_expires() {
    // 30 s scaled by 0.001: 30 ms; the webhook answers 500 until then.
    let (_emulator, telegram, bot) = emulator(Timing::scaled(0.001)).await;
    let (url, _received) = webhook(|_| async { status(500) }).await;
    bot.set_webhook(&SetWebhook::new(&url)).await.unwrap();
    let injected = telegram.inline_query(&User::new(42, "Ann"), "cats");
    telegram.wait_until_idle(WAIT).await.unwrap();
    let last = telegram.deliveries().last().cloned().unwrap();
    assert_eq!(last.update_id, injected.update_id);
    assert_eq!(last.outcome, DeliveryOutcome::Expired);
    assert_eq!(last.sequence_key, Some(SequenceKey::User(42)));
}

#[tokio::test]
async fn updates_are_queued_per_chat_user_and_poll() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let (url, _received) = webhook(|_| async { status(200) }).await;
    bot.set_webhook(&SetWebhook::new(&url)).await.unwrap();
    let ann = User::new(42, "Ann");
    telegram.send_text(&Chat::supergroup(-1001, "Big"), &ann, "hi");
    telegram.inline_query(&ann, "q");
    telegram.inject(
        "poll",
        json!({ "id": "5001", "question": "?", "options": [] }),
    );
    telegram.wait_for_deliveries(3, WAIT).await.unwrap();
    let mut keys: Vec<_> = telegram
        .deliveries()
        .into_iter()
        .filter_map(|a| a.sequence_key)
        .collect();
    keys.sort_by_key(|k| format!("{k}"));
    assert_eq!(
        keys,
        [
            SequenceKey::Chat(-1001),
            SequenceKey::Poll("5001".into()),
            SequenceKey::User(42)
        ]
    );
}

#[tokio::test]
async fn kinds_keyed_by_the_same_user_wait_in_separate_queues_as_on_the_official_server() {
    // The official server tags each kind family's queue (`id + (tag << 33)`): a failing inline
    // query of user 42 does not hold back that user's callback query.
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let (url, _received) = webhook(|request| async move {
        if request.update.get("inline_query").is_some() {
            status(500)
        } else {
            status(200)
        }
    })
    .await;
    bot.set_webhook(&SetWebhook::new(&url)).await.unwrap();
    let ann = User::new(42, "Ann");
    telegram.inline_query(&ann, "stuck");
    let message = json!({ "message_id": 1, "date": 0, "chat": { "id": 42, "type": "private" } });
    let press = telegram.press_button(&ann, &message, "go");
    let delivered = telegram
        .wait_for_delivered(press.update_id, WAIT)
        .await
        .unwrap();
    assert_eq!(delivered.sequence_key, Some(SequenceKey::User(42)));

    // chat_member: by the member's user; poll_answer: by the poll.
    let member = telegram.inject(
        "chat_member",
        json!({ "chat": { "id": -5, "type": "group" }, "from": { "id": 1, "is_bot": false, "first_name": "A" },
                "date": 0, "old_chat_member": { "status": "left", "user": { "id": 9, "is_bot": false, "first_name": "N" } },
                "new_chat_member": { "status": "member", "user": { "id": 9, "is_bot": false, "first_name": "N" } } }),
    );
    assert!(!member.queued, "chat_member is opt-in");
    bot.set_webhook(&SetWebhook::new(&url).allowed_updates(["chat_member", "poll_answer"]))
        .await
        .unwrap();
    let member = telegram.inject(
        "chat_member",
        json!({ "chat": { "id": -5, "type": "group" }, "from": { "id": 1, "is_bot": false, "first_name": "A" },
                "date": 0, "old_chat_member": { "status": "left", "user": { "id": 9, "is_bot": false, "first_name": "N" } },
                "new_chat_member": { "status": "member", "user": { "id": 9, "is_bot": false, "first_name": "N" } } }),
    );
    let answer = telegram.inject(
        "poll_answer",
        json!({ "poll_id": "77", "user": { "id": 42, "is_bot": false, "first_name": "Ann" }, "option_ids": [0] }),
    );
    let member = telegram
        .wait_for_delivered(member.update_id, WAIT)
        .await
        .unwrap();
    let answer = telegram
        .wait_for_delivered(answer.update_id, WAIT)
        .await
        .unwrap();
    assert_eq!(member.sequence_key, Some(SequenceKey::User(9)));
    assert_eq!(answer.sequence_key, Some(SequenceKey::Poll("77".into())));
}
