//! Sending, editing and answering, the test API's injections, and planned faults.

mod common;

use std::time::Duration;

use common::{TOKEN, WAIT, emulator, fast};
use serde_json::{Value, json};
use telehook_api::{GetUpdates, SetWebhook};
use telehook_emulator::{CallOutcome, Chat, Emulator, EmulatorError, Fault, Limits, User};

#[tokio::test]
async fn message_ids_grow_per_chat() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let (ann, bo) = (User::new(1, "Ann"), User::new(2, "Bo"));
    telegram.private_text(&ann, "hi");
    telegram.private_text(&bo, "hi");
    let a = bot.send_message(1, "one").await.unwrap();
    let b = bot.send_message(1, "two").await.unwrap();
    let c = bot.send_message(2, "three").await.unwrap();
    assert_eq!(
        [&a["message_id"], &b["message_id"], &c["message_id"]],
        [2, 3, 2]
    );
    assert_eq!(a["from"]["id"], 123_456);
    assert_eq!(a["chat"]["first_name"], "Ann");
}

#[tokio::test]
async fn sending_to_a_chat_the_bot_never_saw_fails_like_telegram() {
    let (_emulator, _telegram, bot) = emulator(fast()).await;
    let error = bot.send_message(999, "hello?").await.unwrap_err();
    assert_eq!(error.error_code(), Some(400));
    assert!(error.to_string().contains("Bad Request: chat not found"));
}

#[tokio::test]
async fn an_empty_text_is_refused() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    telegram.private_text(&User::new(1, "Ann"), "hi");
    let error = bot.send_message(1, " ").await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("Bad Request: message text is empty")
    );
}

#[tokio::test]
async fn a_button_press_can_be_answered_once_and_its_message_edited() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let ann = User::new(1, "Ann");
    telegram.private_text(&ann, "/start");
    let keyboard = json!({ "inline_keyboard": [[{ "text": "Yes", "callback_data": "yes" }]] });
    let sent = bot
        .call(
            "sendMessage",
            &json!({ "chat_id": 1, "text": "Sure?", "reply_markup": keyboard }),
        )
        .await
        .unwrap();
    assert_eq!(sent["reply_markup"], keyboard);

    let press = telegram.press_button(&ann, &sent, "yes");
    let query = &press.update["callback_query"];
    assert_eq!(query["data"], "yes");
    assert_eq!(query["message"]["message_id"], sent["message_id"]);

    let answer = json!({ "callback_query_id": query["id"], "text": "Done" });
    assert_eq!(
        bot.call("answerCallbackQuery", &answer).await.unwrap(),
        true
    );
    let again = bot.call("answerCallbackQuery", &answer).await.unwrap_err();
    assert!(again.to_string().contains("query is too old"));

    let edit = json!({ "chat_id": 1, "message_id": sent["message_id"], "text": "Done!" });
    let edited = bot.call("editMessageText", &edit).await.unwrap();
    assert_eq!(
        (&edited["message_id"], &edited["text"]),
        (&sent["message_id"], &json!("Done!"))
    );
    assert!(edited["edit_date"].is_i64());
    let missing = bot
        .call(
            "editMessageText",
            &json!({ "chat_id": 1, "message_id": 99, "text": "x" }),
        )
        .await;
    assert!(
        missing
            .unwrap_err()
            .to_string()
            .contains("message to edit not found")
    );
}

#[tokio::test]
async fn an_inline_query_is_answered_with_results() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let injected = telegram.inline_query(&User::new(1, "Ann"), "cats");
    assert_eq!(injected.update["inline_query"]["query"], "cats");
    let params = json!({ "inline_query_id": injected.update["inline_query"]["id"], "results": [] });
    assert_eq!(bot.call("answerInlineQuery", &params).await.unwrap(), true);
}

#[tokio::test]
async fn a_command_carries_a_bot_command_entity() {
    let (_emulator, telegram, _bot) = emulator(fast()).await;
    let injected = telegram.send_text(&Chat::group(-5, "Team"), &User::new(1, "Ann"), "/help me");
    let message = &injected.update["message"];
    assert_eq!(
        message["entities"],
        json!([{ "type": "bot_command", "offset": 0, "length": 5 }])
    );
    assert_eq!(
        message["chat"],
        json!({ "id": -5, "type": "group", "title": "Team" })
    );
    assert_eq!(message["from"]["id"], 1);
}

#[tokio::test]
async fn a_planned_429_answers_the_next_calls_then_stops() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    telegram.private_text(&User::new(1, "Ann"), "hi");
    telegram.inject_fault("sendMessage", 2, Fault::TooManyRequests { retry_after: 7 });
    for _ in 0..2 {
        let error = bot.send_message(1, "x").await.unwrap_err();
        assert_eq!(error.error_code(), Some(429));
        assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
        assert!(
            error
                .to_string()
                .contains("Too Many Requests: retry after 7")
        );
    }
    bot.send_message(1, "x").await.unwrap();
    let outcomes: Vec<_> = telegram
        .calls_to("sendMessage")
        .into_iter()
        .map(|c| c.outcome)
        .collect();
    assert!(matches!(
        outcomes[0],
        CallOutcome::Error {
            error_code: 429,
            ..
        }
    ));
    assert!(matches!(outcomes[2], CallOutcome::Ok { .. }));
}

#[tokio::test]
async fn a_dropped_connection_is_a_network_error_for_the_client() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    telegram.inject_fault("getUpdates", 1, Fault::DropConnection);
    let error = bot.get_updates(&GetUpdates::default()).await.unwrap_err();
    assert!(
        matches!(error, telehook_api::ApiError::Network { .. }),
        "{error:?}"
    );
    assert!(
        bot.get_updates(&GetUpdates::default())
            .await
            .unwrap()
            .is_empty(),
        "only the next call drops"
    );
    assert_eq!(
        telegram.calls_to("getUpdates")[0].outcome,
        CallOutcome::Dropped
    );
}

#[tokio::test]
async fn a_planned_error_and_a_delay_apply_to_any_method_with_a_star() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    telegram.inject_fault(
        "*",
        1,
        Fault::Error {
            error_code: 403,
            description: "Forbidden: bot was blocked by the user".into(),
        },
    );
    telegram.inject_fault("getMe", 1, Fault::Delay(Duration::from_millis(1)));
    let error = bot.get_me().await.unwrap_err();
    assert_eq!(error.error_code(), Some(403));
    assert_eq!(
        bot.get_me().await.unwrap()["is_bot"],
        true,
        "the delayed call answers normally"
    );
}

#[tokio::test]
async fn the_recorded_call_log_is_bounded() {
    let limits = Limits::default().max_recorded_calls(3);
    let emulator = Emulator::builder()
        .bot(TOKEN)
        .limits(limits)
        .start()
        .await
        .unwrap();
    let telegram = emulator.bot(TOKEN).unwrap();
    let bot = telehook_api::Bot::builder(TOKEN)
        .base_url(emulator.base_url())
        .build();
    for _ in 0..5 {
        bot.get_me().await.unwrap();
    }
    let calls = telegram.wait_for_calls(5, WAIT).await.unwrap();
    assert_eq!(calls.iter().map(|c| c.seq).collect::<Vec<_>>(), [2, 3, 4]);
}

#[tokio::test]
async fn the_pending_queue_is_bounded_and_drops_the_oldest() {
    let limits = Limits::default().max_pending_updates(2);
    let emulator = Emulator::builder()
        .bot(TOKEN)
        .limits(limits)
        .start()
        .await
        .unwrap();
    let telegram = emulator.bot(TOKEN).unwrap();
    for text in ["a", "b", "c"] {
        telegram.private_text(&User::new(1, "Ann"), text);
    }
    assert_eq!(telegram.pending_update_count(), 2);
    assert_eq!(telegram.dropped_update_count(), 1);
}

#[tokio::test]
async fn a_wait_that_times_out_says_what_it_saw() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    bot.get_me().await.unwrap();
    let error = telegram
        .wait_for_calls_to("sendMessage", 1, Duration::from_millis(20))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("1 calls to sendMessage") && text.contains("getMe"),
        "{text}"
    );
}

#[tokio::test]
async fn tokens_are_checked_and_bots_are_separate() {
    let emulator = Emulator::builder().bot(TOKEN).start().await.unwrap();
    assert!(matches!(
        emulator.add_bot("not a token"),
        Err(EmulatorError::InvalidToken)
    ));
    assert!(matches!(
        emulator.add_bot("123456:other"),
        Err(EmulatorError::DuplicateBot { bot_id: 123_456 })
    ));
    let other = emulator.add_bot("777:second-bot").unwrap();
    emulator
        .bot(TOKEN)
        .unwrap()
        .private_text(&User::new(1, "Ann"), "hi");
    assert_eq!(other.pending_update_count(), 0);
    let first = other.private_text(&User::new(1, "Ann"), "hi");
    assert_eq!(first.update_id, 1, "update ids count per bot");
}

#[tokio::test]
async fn the_http_test_api_injects_and_reads() {
    let (emulator, _telegram, bot) = emulator(fast()).await;
    let client = reqwest::Client::new();
    let base = format!("{}/_emulator/{TOKEN}", emulator.base_url());
    let injected: Value = client
        .post(format!("{base}/private_text"))
        .body(r#"{"user_id": 5, "first_name": "Cy", "text": "hey"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(injected["result"]["update"]["update_id"], 1);
    let raw: Value = client
        .post(format!("{base}/updates"))
        .body(r#"{"unknown_future_kind": {"x": 1}}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        raw["result"]["update"],
        json!({ "update_id": 2, "unknown_future_kind": { "x": 1 } })
    );

    bot.send_message(5, "hello Cy").await.unwrap();
    let calls: Value = client
        .get(format!("{base}/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls["result"][0]["method"], "sendMessage");
    assert_eq!(calls["result"][0]["route"]["type"], "http");
    assert_eq!(calls["result"][0]["outcome"]["result"]["text"], "hello Cy");

    bot.set_webhook(&SetWebhook::new("http://127.0.0.1:9/x"))
        .await
        .unwrap();
    let info: Value = client
        .get(format!("{base}/webhook_info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["result"]["url"], "http://127.0.0.1:9/x");
    let unknown = client
        .get(format!("{}/_emulator/1:x/calls", emulator.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
}

#[tokio::test]
async fn payments_reactions_edits_and_deletes_answer_as_telegram_does() {
    let (emulator, telegram, _bot) = emulator(fast()).await;
    let ann = User::new(42, "Ann");
    telegram.private_text(&ann, "hi");
    let client = reqwest::Client::new();
    let api = format!("{}/bot{TOKEN}", emulator.base_url());
    let call = |method: &str, params: Value| {
        let (client, url) = (client.clone(), format!("{api}/{method}"));
        async move {
            let body: Value = client
                .post(url)
                .json(&params)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body
        }
    };

    // A pre-checkout query: answered once; ok=false needs an error_message.
    telegram.inject(
        "pre_checkout_query",
        json!({ "id": "pcq-1", "from": ann.to_json(), "currency": "XTR", "total_amount": 1, "invoice_payload": "p" }),
    );
    let refused = call(
        "answerPreCheckoutQuery",
        json!({ "pre_checkout_query_id": "pcq-1", "ok": false }),
    )
    .await;
    assert_eq!(
        refused["description"],
        "Bad Request: error_message must be non-empty"
    );
    let ok = call(
        "answerPreCheckoutQuery",
        json!({ "pre_checkout_query_id": "pcq-1", "ok": true }),
    )
    .await;
    assert_eq!(ok["result"], true);
    let again = call(
        "answerPreCheckoutQuery",
        json!({ "pre_checkout_query_id": "pcq-1", "ok": true }),
    )
    .await;
    assert_eq!(again["error_code"], 400);

    // A reaction needs the message; an edit that changes nothing is refused.
    let sent =
        call("sendMessage", json!({ "chat_id": 42, "text": "same" })).await["result"].clone();
    let id = sent["message_id"].clone();
    let reacted = call("setMessageReaction", json!({ "chat_id": 42, "message_id": id, "reaction": [{ "type": "emoji", "emoji": "👍" }] })).await;
    assert_eq!(reacted["result"], true);
    let missing = call(
        "setMessageReaction",
        json!({ "chat_id": 42, "message_id": 999 }),
    )
    .await;
    assert_eq!(missing["error_code"], 400);
    let unchanged = call(
        "editMessageText",
        json!({ "chat_id": 42, "message_id": id, "text": "same" }),
    )
    .await;
    assert!(
        unchanged["description"]
            .as_str()
            .unwrap()
            .starts_with("Bad Request: message is not modified")
    );
    let not_mine = call(
        "editMessageText",
        json!({ "chat_id": 42, "message_id": 1, "text": "x" }),
    )
    .await;
    assert_eq!(
        not_mine["description"],
        "Bad Request: message can't be edited"
    );

    // Deleted once; then it is gone, for the bot and for the test API.
    assert_eq!(
        call("deleteMessage", json!({ "chat_id": 42, "message_id": id })).await["result"],
        true
    );
    assert_eq!(
        call("deleteMessage", json!({ "chat_id": 42, "message_id": id })).await["description"],
        "Bad Request: message to delete not found"
    );
    assert!(telegram.message(42, id.as_i64().unwrap()).is_none());
    let refusals = telegram
        .calls()
        .iter()
        .filter(|c| matches!(c.outcome, CallOutcome::Error { .. }))
        .count();
    assert_eq!(refusals, 6, "every refusal is recorded");
}
