//! getUpdates as Telegram serves it, and the Bot API's HTTP surface.

mod common;

use common::{TOKEN, WAIT, emulator, fast};
use serde_json::{Value, json};
use telehook_api::{GetUpdates, SetWebhook};
use telehook_emulator::{CallOutcome, Chat, Route, User};

fn ids(updates: &[Value]) -> Vec<u64> {
    updates
        .iter()
        .map(|u| u["update_id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn update_ids_grow_by_one_per_bot_starting_at_one() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let ann = User::new(42, "Ann");
    let first = telegram.private_text(&ann, "one");
    let second = telegram.private_text(&ann, "two");
    assert_eq!((first.update_id, second.update_id), (1, 2));

    let updates = bot.get_updates(&GetUpdates::default()).await.unwrap();
    assert_eq!(ids(&updates), [1, 2]);
    assert_eq!(updates[0]["message"]["text"], "one");
    assert_eq!(
        updates[0]["message"]["chat"],
        json!({ "id": 42, "type": "private", "first_name": "Ann" })
    );
}

#[tokio::test]
async fn an_offset_above_an_update_id_confirms_it_for_good() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let ann = User::new(42, "Ann");
    for text in ["a", "b", "c"] {
        telegram.private_text(&ann, text);
    }
    let updates = bot
        .get_updates(&GetUpdates {
            offset: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&updates), [3]);
    let again = bot.get_updates(&GetUpdates::default()).await.unwrap();
    assert_eq!(
        ids(&again),
        [3],
        "updates 1 and 2 were confirmed and never come back"
    );
}

#[tokio::test]
async fn a_negative_offset_keeps_only_the_last_updates() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    for text in ["a", "b", "c", "d"] {
        telegram.private_text(&User::new(42, "Ann"), text);
    }
    let updates = bot
        .get_updates(&GetUpdates {
            offset: Some(-2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&updates), [3, 4]);
    assert_eq!(telegram.pending_update_count(), 2);
}

#[tokio::test]
async fn limit_caps_the_batch_and_defaults_to_100() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    for i in 0..105 {
        telegram.private_text(&User::new(42, "Ann"), &format!("{i}"));
    }
    let two = bot
        .get_updates(&GetUpdates {
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&two), [1, 2]);
    let default = bot.get_updates(&GetUpdates::default()).await.unwrap();
    assert_eq!(default.len(), 100);
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_an_update_arrives() {
    // Scale 1: the poll would last 50 real seconds if the update did not end it.
    let (_emulator, telegram, bot) = emulator(telehook_emulator::Timing::real()).await;
    let poll = tokio::spawn(async move {
        bot.get_updates(&GetUpdates {
            timeout: Some(50),
            ..Default::default()
        })
        .await
    });
    telegram.wait_for_long_poll(WAIT).await.unwrap();
    telegram.private_text(&User::new(42, "Ann"), "wake up");
    let updates = tokio::time::timeout(WAIT, poll)
        .await
        .expect("the poll ended")
        .unwrap()
        .unwrap();
    assert_eq!(ids(&updates), [1]);
}

#[tokio::test]
async fn a_long_poll_without_updates_ends_empty_after_its_scaled_timeout() {
    let (_emulator, _telegram, bot) = emulator(telehook_emulator::Timing::scaled(0.001)).await;
    let updates = tokio::time::timeout(
        WAIT,
        bot.get_updates(&GetUpdates {
            timeout: Some(5),
            ..Default::default()
        }),
    )
    .await
    .expect("5 s scaled by 0.001 is 5 ms")
    .unwrap();
    assert!(updates.is_empty());
}

#[tokio::test]
async fn get_updates_conflicts_with_an_active_webhook() {
    let (_emulator, _telegram, bot) = emulator(fast()).await;
    bot.set_webhook(&SetWebhook::new("http://127.0.0.1:9/hook"))
        .await
        .unwrap();
    let error = bot.get_updates(&GetUpdates::default()).await.unwrap_err();
    assert_eq!(error.error_code(), Some(409));
    assert!(error.to_string().contains(
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
    ));
    bot.delete_webhook(false).await.unwrap();
    assert!(
        bot.get_updates(&GetUpdates::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_earlier_of_two_overlapping_long_polls_gets_409() {
    let (_emulator, telegram, bot) = emulator(telehook_emulator::Timing::real()).await;
    let first_bot = bot.clone();
    let first = tokio::spawn(async move {
        first_bot
            .get_updates(&GetUpdates {
                timeout: Some(50),
                ..Default::default()
            })
            .await
    });
    telegram.wait_for_long_poll(WAIT).await.unwrap();
    let second_bot = bot.clone();
    let second = tokio::spawn(async move {
        second_bot
            .get_updates(&GetUpdates {
                timeout: Some(50),
                ..Default::default()
            })
            .await
    });
    let error = tokio::time::timeout(WAIT, first)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(error.error_code(), Some(409));
    assert!(error.to_string().contains(
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
    ));
    telegram.private_text(&User::new(1, "A"), "x");
    let updates = tokio::time::timeout(WAIT, second)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ids(&updates), [1], "the later poll goes on");
}

#[tokio::test]
async fn allowed_updates_is_remembered_until_changed() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let ann = User::new(42, "Ann");
    let only_callbacks = GetUpdates {
        allowed_updates: Some(vec!["callback_query".into()]),
        ..Default::default()
    };
    bot.get_updates(&only_callbacks).await.unwrap();

    let text = telegram.private_text(&ann, "ignored");
    assert!(!text.queued);
    let message = json!({ "message_id": 1, "date": 0, "chat": { "id": 42, "type": "private" } });
    let press = telegram.press_button(&ann, &message, "yes");
    assert!(press.queued);

    let updates = bot.get_updates(&GetUpdates::default()).await.unwrap();
    assert_eq!(
        ids(&updates),
        [press.update_id],
        "the filter holds without being repeated"
    );
}

#[tokio::test]
async fn opt_in_kinds_are_not_sent_by_default() {
    let (_emulator, telegram, _bot) = emulator(fast()).await;
    let member = telegram.inject(
        "chat_member",
        json!({ "chat": { "id": -5, "type": "group" } }),
    );
    assert!(!member.queued);
    let unknown = telegram.inject("unknown_future_kind", json!({ "anything": true }));
    assert!(
        unknown.queued,
        "kinds the emulator does not know pass through"
    );
}

#[tokio::test]
async fn an_unknown_token_is_401_and_an_unknown_method_is_404() {
    let (emulator, telegram, _bot) = emulator(fast()).await;
    let client = reqwest::Client::new();
    let base = emulator.base_url();

    let wrong = client
        .post(format!("{base}/bot999:nope/getMe"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "ok": false, "error_code": 401, "description": "Unauthorized" })
    );

    let unknown = client
        .post(format!("{base}/bot{TOKEN}/sendTelepathy"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["description"], "Not Found: method not found");
    let recorded = telegram.calls_to("sendTelepathy");
    assert_eq!(recorded.len(), 1, "failed calls are recorded too");
}

#[tokio::test]
async fn form_encoded_and_query_parameters_work_and_methods_are_case_insensitive() {
    let (emulator, telegram, _bot) = emulator(fast()).await;
    telegram.send_text(
        &Chat::group(-100, "Team"),
        &User::new(7, "Bo"),
        "/start@bot",
    );
    let client = reqwest::Client::new();
    let base = emulator.base_url();
    let body: Value = client
        .post(format!("{base}/bot{TOKEN}/SENDMESSAGE?chat_id=-100"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("text=hi+there")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["ok"], true);
    assert_eq!(body["result"]["text"], "hi there");
    assert_eq!(body["result"]["chat"]["type"], "group");
    assert_eq!(
        body["result"]["message_id"], 2,
        "the user's message was 1 in this chat"
    );

    let call = &telegram.calls()[0];
    assert_eq!(call.method, "sendMessage");
    assert_eq!(call.route, Route::Http);
    assert_eq!(call.chat_id(), Some(-100));
    assert!(matches!(call.outcome, CallOutcome::Ok { .. }));
}

#[tokio::test]
async fn get_me_describes_the_bot() {
    let (_emulator, telegram, bot) = emulator(fast()).await;
    let me = bot.get_me().await.unwrap();
    assert_eq!(me["id"], 123_456);
    assert_eq!(me["is_bot"], true);
    assert_eq!(me, telegram.bot_user());
}

#[tokio::test]
async fn limit_and_timeout_are_clamped_as_the_official_server_clamps_them() {
    let (emulator, telegram, bot) = emulator(telehook_emulator::Timing::scaled(0.001)).await;
    for text in ["a", "b"] {
        telegram.private_text(&User::new(42, "Ann"), text);
    }
    let zero = bot
        .get_updates(&GetUpdates {
            limit: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&zero), [1], "limit 0 is clamped to 1");
    // 100 000 s scaled by 0.001 would be 100 s; clamped to 50 s it is 50 ms.
    let client = reqwest::Client::new();
    let base = emulator.base_url();
    let empty: Value = tokio::time::timeout(
        WAIT,
        client
            .get(format!(
                "{base}/bot{TOKEN}/getUpdates?offset=3&timeout=100000"
            ))
            .send(),
    )
    .await
    .expect("the long poll is clamped to 50 s (50 ms here)")
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(empty["result"], json!([]));
}
