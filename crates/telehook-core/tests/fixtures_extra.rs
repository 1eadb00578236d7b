//! The fixtures for shapes Telegram sends that are easy to get wrong (see `docs/telegram.md`):
//! an `update_id` after the quiet-week reset, a supergroup with `-100…` ids, a forum topic
//! message, a business message, and a body full of escapes whose bytes must stay exact.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use telehook_conformance::fixture;
use telehook_core::{Context, HandlerError, RequestHead, SequenceKey, Update, UpdateType, Webhook};

fn update(name: &str) -> (Bytes, Update) {
    let raw = fixture(&format!("updates/{name}"));
    let update = Update::from_bytes(raw.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    (raw, update)
}

/// `serde_json::Value` as an update type sees the same id and queue as [`Update`].
fn value_agrees(update: &Update) {
    let value: serde_json::Value = UpdateType::from_update(update.clone()).unwrap();
    assert_eq!(UpdateType::update_id(&value), update.update_id());
    assert_eq!(
        UpdateType::sequence_key(&value).as_ref(),
        update.sequence_key()
    );
}

#[test]
fn update_after_an_id_reset_parses_with_its_low_id() {
    let (raw, reset) = update("message_after_id_reset.json");
    let (_, before) = update("message_text_private.json");
    assert_eq!(reset.update_id(), 7340);
    assert!(reset.update_id() < before.update_id());
    assert_eq!(reset.kind(), Some("message"));
    assert_eq!(reset.sequence_key(), Some(&SequenceKey::Chat(111_111_111)));
    assert_eq!(reset.raw(), &raw);
    value_agrees(&reset);
}

#[test]
fn supergroup_ids_are_negative_and_beyond_32_bits() {
    let (raw, u) = update("message_supergroup_anonymous_admin.json");
    assert_eq!(u.kind(), Some("message"));
    assert_eq!(u.chat_id(), Some(-1_001_876_543_210));
    assert!(u.chat_id().unwrap() < i64::from(i32::MIN));
    // Sent by an anonymous admin: `from` is Telegram's stand-in bot, the queue is still the chat.
    assert_eq!(u.sender_id(), Some(1_087_968_824));
    assert_eq!(
        u.sequence_key(),
        Some(&SequenceKey::Chat(-1_001_876_543_210))
    );
    assert_eq!(u.raw(), &raw);
    value_agrees(&u);
}

#[test]
fn forum_topic_message_is_keyed_by_its_chat_not_its_topic() {
    let (raw, u) = update("message_forum_topic.json");
    assert_eq!(u.kind(), Some("message"));
    assert_eq!(u.chat_id(), Some(-1_002_233_445_566));
    assert_eq!(u.sender_id(), Some(222_222_222));
    assert_eq!(
        u.sequence_key(),
        Some(&SequenceKey::Chat(-1_002_233_445_566))
    );
    let value: serde_json::Value = u.deserialize().unwrap();
    assert_eq!(value["message"]["message_thread_id"], 880);
    assert_eq!(value["message"]["is_topic_message"], true);
    assert_eq!(u.raw(), &raw);
    value_agrees(&u);
}

#[test]
fn business_message_is_keyed_by_the_customers_chat() {
    let (raw, u) = update("business_message.json");
    assert_eq!(u.kind(), Some("business_message"));
    assert_eq!(u.chat_id(), Some(444_444_444));
    assert_eq!(u.sender_id(), Some(444_444_444));
    assert_eq!(u.sequence_key(), Some(&SequenceKey::Chat(444_444_444)));
    let value: serde_json::Value = u.deserialize().unwrap();
    assert_eq!(
        value["business_message"]["business_connection_id"],
        "AbCdEfGh1234567_business"
    );
    assert_eq!(u.raw(), &raw);
    value_agrees(&u);
}

#[test]
fn escaped_body_keeps_its_bytes_and_decodes_right() {
    let (raw, u) = update("message_escaped_unicode.json");
    // The file is written to stress this: escapes, CRLF and tabs, update_id last, no newline.
    assert!(
        raw.windows(6).any(|w| w == b"\\ud83c"),
        "surrogate pair escape"
    );
    assert!(raw.windows(2).any(|w| w == b"\\/"), "escaped slash");
    assert!(raw.windows(2).any(|w| w == b"\r\n"), "CRLF between tokens");
    assert!(raw.ends_with(b"}"), "no final newline");
    assert_eq!(u.update_id(), 100_000_017);
    assert_eq!(u.kind(), Some("message"));
    assert_eq!(u.sequence_key(), Some(&SequenceKey::Chat(111_111_111)));
    assert_eq!(u.raw(), &raw);
    assert_eq!(u.raw_str().as_bytes(), raw.as_ref());
    let value: serde_json::Value = u.deserialize().unwrap();
    let text = value["message"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("café 🍦 Мороженое 冰淇淋 🍨 https://t.me/"),
        "{text}"
    );
    assert!(text.contains("\u{2028}line\u{0}nul 𝄞"), "{text:?}");
    assert_eq!(value["message"]["chat"]["first_name"], "Alice");
    value_agrees(&u);
}

/// Through the dispatcher: the handler gets each body byte for byte, and a low id that comes
/// after high ones (the reset) is a new update, not taken for a redelivery.
#[tokio::test]
async fn dispatcher_hands_every_new_fixture_over_unchanged() {
    let seen: Arc<Mutex<Vec<(u64, Bytes)>>> = Arc::default();
    let log = seen.clone();
    let webhook = Webhook::builder()
        .build(move |update: Update, _: Context| {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push((update.update_id(), update.raw().clone()));
                Ok::<(), HandlerError>(())
            }
        })
        .unwrap();
    let names = [
        "message_text_private.json",
        "message_supergroup_anonymous_admin.json",
        "message_forum_topic.json",
        "business_message.json",
        "message_escaped_unicode.json",
        "message_after_id_reset.json",
    ];
    for name in names {
        let raw = fixture(&format!("updates/{name}"));
        let response = webhook
            .handle_bytes(RequestHead::new("POST", |_| None), raw)
            .await;
        assert_eq!(response.status(), 200, "{name}");
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), names.len());
    for ((_, got), name) in seen.iter().zip(names) {
        assert_eq!(got, &fixture(&format!("updates/{name}")), "{name}");
    }
    assert_eq!(seen.last().unwrap().0, 7340);
}

/// A `getUpdates` answer after the reset: the ids are far below the `offset` a client that saw
/// the old ids would send, and they go on growing from there.
#[test]
fn get_updates_answer_after_a_reset_holds_low_ids() {
    #[derive(serde::Deserialize)]
    struct Answer {
        ok: bool,
        result: Vec<Update>,
    }
    let raw = fixture("updates/getupdates_after_id_reset.json");
    let answer: Answer = serde_json::from_slice(&raw).unwrap();
    assert!(answer.ok);
    let ids: Vec<u64> = answer.result.iter().map(Update::update_id).collect();
    assert_eq!(ids, [7340, 7341]);
    let (_, last_before) = update("message_supergroup_anonymous_admin.json");
    assert!(ids.iter().all(|&id| id < last_before.update_id()));
    assert_eq!(
        answer.result[1].sequence_key(),
        Some(&SequenceKey::User(222_222_222))
    );
    let (_, reset) = update("message_after_id_reset.json");
    assert_eq!(
        answer.result[0].deserialize::<serde_json::Value>().unwrap(),
        reset.deserialize::<serde_json::Value>().unwrap()
    );
}
