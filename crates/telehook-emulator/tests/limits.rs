//! Telegram's limits on parameters, refused with the official server's texts.

mod common;

use common::{TOKEN, emulator};
use serde_json::{Value, json};
use telehook_emulator::{Timing, User};

async fn call(base: &str, method: &str, params: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/bot{TOKEN}/{method}"))
        .json(params)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn telegrams_limits_on_captions_buttons_markup_and_chat_id_are_kept() {
    let (emulator, telegram, _bot) = emulator(Timing::scaled(0.01)).await;
    let base = emulator.base_url();
    telegram.private_text(&User::new(7, "Ann"), "hi");
    let keyboard =
        |data: &str| json!({ "inline_keyboard": [[{ "text": "b", "callback_data": data }]] });
    let cases = [
        (
            "sendMessage",
            json!({ "chat_id": 7, "text": "x", "reply_markup": keyboard(&"d".repeat(65)) }),
            Some("Bad Request: BUTTON_DATA_INVALID"),
        ),
        (
            "sendMessage",
            json!({ "chat_id": 7, "text": "x", "reply_markup": keyboard(&"d".repeat(64)) }),
            None,
        ),
        (
            "sendMessage",
            json!({ "chat_id": 7, "text": "x", "reply_markup": "{\"inline_keyboard\": [" }),
            Some("Bad Request: can't parse reply keyboard markup JSON object"),
        ),
        (
            "sendMessage",
            json!({ "chat_id": 7, "text": "x", "reply_markup": 5 }),
            Some("Bad Request: can't parse reply keyboard markup JSON object"),
        ),
        (
            "sendMessage",
            json!({ "chat_id": true, "text": "x" }),
            Some("Bad Request: chat_id must be an Integer or a String, not a Boolean"),
        ),
        (
            "sendMessage",
            json!({ "chat_id": { "id": 7 }, "text": "x" }),
            Some("Bad Request: chat_id must be an Integer or a String, not an Object"),
        ),
        (
            "sendPhoto",
            json!({ "chat_id": 7, "photo": "https://example.org/a.jpg", "caption": "c".repeat(1025) }),
            Some("Bad Request: message caption is too long"),
        ),
        (
            "sendMessage",
            json!({ "chat_id": 7, "text": "x", "caption": "c".repeat(1025) }),
            None,
        ),
    ];
    for (method, params, refused) in cases {
        let (status, body) = call(&base, method, &params).await;
        match refused {
            Some(description) => {
                assert_eq!(status, 400, "{method} {params}: {body}");
                assert_eq!(body["description"], description, "{method} {params}");
            }
            None => assert_eq!(status, 200, "{method} {params}: {body}"),
        }
    }
    // A caption of 1024 characters is accepted (on a photo the emulator knows).
    let (status, sent) = call(
        &base,
        "sendPhoto",
        &json!({ "chat_id": 7, "photo": "https://example.org/a.jpg" }),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let (status, body) = call(
        &base,
        "copyMessage",
        &json!({ "chat_id": 7, "from_chat_id": 7, "message_id": sent["result"]["message_id"], "caption": "c".repeat(1024) }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
