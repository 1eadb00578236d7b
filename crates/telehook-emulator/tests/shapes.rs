//! Every object the emulator returns carries every field the Bot API marks as required.
//!
//! The table below is written from the Bot API documentation, version 10.0
//! (<https://core.telegram.org/bots/api>), checked against what the official server always
//! writes (tdlib/telegram-bot-api 10.0, `Client::Json*`). Each method's result is checked
//! against it, recursively through the fields whose type the table knows.

mod common;

use common::{TOKEN, emulator, fast};
use serde_json::{Value, json};
use telehook_emulator::{Chat, User};

/// Bot API 10.0: the required fields of each type the emulator returns.
const REQUIRED: &[(&str, &[&str])] = &[
    ("User", &["id", "is_bot", "first_name"]),
    ("Chat", &["id", "type"]),
    (
        "ChatFullInfo",
        &[
            "id",
            "type",
            "accent_color_id",
            "max_reaction_count",
            "accepted_gift_types",
        ],
    ),
    (
        "AcceptedGiftTypes",
        &[
            "unlimited_gifts",
            "limited_gifts",
            "unique_gifts",
            "premium_subscription",
            "gifts_from_channels",
        ],
    ),
    ("Message", &["message_id", "date", "chat"]),
    ("MessageId", &["message_id"]),
    (
        "PhotoSize",
        &["file_id", "file_unique_id", "width", "height"],
    ),
    ("Document", &["file_id", "file_unique_id"]),
    ("Audio", &["file_id", "file_unique_id", "duration"]),
    ("Voice", &["file_id", "file_unique_id", "duration"]),
    (
        "Video",
        &["file_id", "file_unique_id", "width", "height", "duration"],
    ),
    (
        "Animation",
        &["file_id", "file_unique_id", "width", "height", "duration"],
    ),
    (
        "VideoNote",
        &["file_id", "file_unique_id", "length", "duration"],
    ),
    (
        "Sticker",
        &[
            "file_id",
            "file_unique_id",
            "type",
            "width",
            "height",
            "is_animated",
            "is_video",
        ],
    ),
    ("Location", &["latitude", "longitude"]),
    (
        "Poll",
        &[
            "id",
            "question",
            "options",
            "total_voter_count",
            "is_closed",
            "is_anonymous",
            "type",
            "allows_multiple_answers",
        ],
    ),
    ("PollOption", &["text", "voter_count"]),
    ("Dice", &["emoji", "value"]),
    ("File", &["file_id", "file_unique_id"]),
    ("MessageOrigin", &["type", "date"]),
    ("InlineKeyboardMarkup", &["inline_keyboard"]),
    ("InlineKeyboardButton", &["text"]),
    ("BotCommand", &["command", "description"]),
    (
        "WebhookInfo",
        &["url", "has_custom_certificate", "pending_update_count"],
    ),
    ("ChatMember", &["status", "user"]),
    ("ChatMemberOwner", &["status", "user", "is_anonymous"]),
    (
        "ChatMemberAdministrator",
        &[
            "status",
            "user",
            "can_be_edited",
            "is_anonymous",
            "can_manage_chat",
            "can_delete_messages",
            "can_manage_video_chats",
            "can_restrict_members",
            "can_promote_members",
            "can_change_info",
            "can_invite_users",
            "can_post_stories",
            "can_edit_stories",
            "can_delete_stories",
        ],
    ),
    ("ChatMemberBanned", &["status", "user", "until_date"]),
    ("BotName", &["name"]),
    ("BotDescription", &["description"]),
    ("BotShortDescription", &["short_description"]),
    ("MenuButton", &["type"]),
];

/// Fields whose type the table knows: (type, field, field type); `[]` = an array of it.
const NESTED: &[(&str, &str, &str)] = &[
    ("ChatFullInfo", "accepted_gift_types", "AcceptedGiftTypes"),
    ("Message", "from", "User"),
    ("Message", "chat", "Chat"),
    ("Message", "sender_chat", "Chat"),
    ("Message", "reply_to_message", "Message"),
    ("Message", "forward_origin", "MessageOrigin"),
    ("Message", "photo", "[]PhotoSize"),
    ("Message", "document", "Document"),
    ("Message", "audio", "Audio"),
    ("Message", "voice", "Voice"),
    ("Message", "video", "Video"),
    ("Message", "animation", "Animation"),
    ("Message", "video_note", "VideoNote"),
    ("Message", "sticker", "Sticker"),
    ("Message", "location", "Location"),
    ("Message", "poll", "Poll"),
    ("Message", "dice", "Dice"),
    ("Message", "reply_markup", "InlineKeyboardMarkup"),
    ("Poll", "options", "[]PollOption"),
    ("ChatMember", "user", "User"),
    ("ChatMemberOwner", "user", "User"),
    ("ChatMemberAdministrator", "user", "User"),
    ("ChatMemberBanned", "user", "User"),
];

/// The fields a `User` has outside `getMe` (Bot API 10.0, `User`).
const USER_FIELDS: &[&str] = &[
    "id",
    "is_bot",
    "first_name",
    "last_name",
    "username",
    "language_code",
    "is_premium",
    "added_to_attachment_menu",
];

fn check(kind: &str, value: &Value, path: &str, problems: &mut Vec<String>) {
    if let Some(item) = kind.strip_prefix("[]") {
        match value.as_array() {
            Some(items) => {
                for (i, v) in items.iter().enumerate() {
                    check(item, v, &format!("{path}[{i}]"), problems);
                }
            }
            None => problems.push(format!("{path}: not an array of {item}")),
        }
        return;
    }
    let kind = match (kind, value["status"].as_str()) {
        ("ChatMember", Some("creator")) => "ChatMemberOwner",
        ("ChatMember", Some("administrator")) => "ChatMemberAdministrator",
        ("ChatMember", Some("kicked")) => "ChatMemberBanned",
        _ => kind,
    };
    let Some(required) = REQUIRED.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f) else {
        panic!("no table entry for {kind}");
    };
    let Some(object) = value.as_object() else {
        problems.push(format!("{path}: {kind} is not an object: {value}"));
        return;
    };
    for field in required {
        if object.get(*field).is_none_or(Value::is_null) {
            problems.push(format!("{path}: {kind} lacks required `{field}`"));
        }
    }
    if kind == "InlineKeyboardMarkup" {
        for (r, row) in value["inline_keyboard"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            check(
                "[]InlineKeyboardButton",
                row,
                &format!("{path}.inline_keyboard[{r}]"),
                problems,
            );
        }
    }
    if kind == "User" && path.ends_with(".from") {
        for key in object.keys() {
            if !USER_FIELDS.contains(&key.as_str()) {
                problems.push(format!("{path}: `{key}` is returned only by getMe"));
            }
        }
    }
    for (_, field, sub) in NESTED.iter().filter(|(k, _, _)| *k == kind) {
        if let Some(v) = object.get(*field) {
            check(sub, v, &format!("{path}.{field}"), problems);
        }
    }
}

#[tokio::test]
async fn every_result_carries_the_required_fields_of_its_type() {
    let (emulator, telegram, _bot) = emulator(fast()).await;
    let ann = User::new(42, "Ann").username("ann");
    telegram.private_text(&ann, "hello");
    telegram.send_text(&Chat::group(-100, "Team"), &ann, "hi all");
    let api = format!("{}/bot{TOKEN}", emulator.base_url());
    let client = reqwest::Client::new();
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
            assert_eq!(body["ok"], true, "{body}");
            body["result"].clone()
        }
    };
    let keyboard =
        json!({ "inline_keyboard": [[{ "text": "Yes", "callback_data": "yes", "bogus": 1 }]] });
    let sent = call(
        "sendMessage",
        json!({ "chat_id": 42, "text": "hi", "reply_markup": keyboard }),
    )
    .await;
    let photo = call(
        "sendPhoto",
        json!({ "chat_id": 42, "photo": "https://example.org/cat.jpg" }),
    )
    .await;
    let photo_id = photo["photo"][1]["file_id"].as_str().unwrap().to_owned();

    let mut results: Vec<(&str, &str, Value)> = vec![
        ("sendMessage", "Message", sent.clone()),
        ("sendPhoto", "Message", photo.clone()),
        ("getMe", "User", call("getMe", json!({})).await),
        (
            "getChat",
            "ChatFullInfo",
            call("getChat", json!({ "chat_id": 42 })).await,
        ),
        (
            "getChat",
            "ChatFullInfo",
            call("getChat", json!({ "chat_id": -100 })).await,
        ),
        (
            "getWebhookInfo",
            "WebhookInfo",
            call("getWebhookInfo", json!({})).await,
        ),
        (
            "getFile",
            "File",
            call("getFile", json!({ "file_id": photo_id })).await,
        ),
        (
            "getChatMember",
            "ChatMember",
            call("getChatMember", json!({ "chat_id": -100, "user_id": 42 })).await,
        ),
        (
            "getChatAdministrators",
            "[]ChatMember",
            call("getChatAdministrators", json!({ "chat_id": -100 })).await,
        ),
        (
            "copyMessage",
            "MessageId",
            call(
                "copyMessage",
                json!({ "chat_id": -100, "from_chat_id": 42, "message_id": 1 }),
            )
            .await,
        ),
        (
            "copyMessages",
            "[]MessageId",
            call(
                "copyMessages",
                json!({ "chat_id": -100, "from_chat_id": 42, "message_ids": [1, 2] }),
            )
            .await,
        ),
        (
            "forwardMessage",
            "Message",
            call(
                "forwardMessage",
                json!({ "chat_id": -100, "from_chat_id": 42, "message_id": 1 }),
            )
            .await,
        ),
        (
            "editMessageText",
            "Message",
            call(
                "editMessageText",
                json!({ "chat_id": 42, "message_id": sent["message_id"], "text": "edited" }),
            )
            .await,
        ),
        (
            "editMessageCaption",
            "Message",
            call(
                "editMessageCaption",
                json!({ "chat_id": 42, "message_id": photo["message_id"], "caption": "a cat" }),
            )
            .await,
        ),
        (
            "sendLocation",
            "Message",
            call(
                "sendLocation",
                json!({ "chat_id": 42, "latitude": 52.5, "longitude": 13.4 }),
            )
            .await,
        ),
        (
            "sendPoll",
            "Message",
            call(
                "sendPoll",
                json!({ "chat_id": -100, "question": "Lunch?", "options": ["Yes", "No"] }),
            )
            .await,
        ),
        (
            "sendDice",
            "Message",
            call("sendDice", json!({ "chat_id": 42 })).await,
        ),
        (
            "sendMediaGroup",
            "[]Message",
            call(
                "sendMediaGroup",
                json!({ "chat_id": 42, "media": [
            { "type": "photo", "media": "https://example.org/a.jpg" },
            { "type": "photo", "media": "https://example.org/b.jpg", "caption": "b" },
        ] }),
            )
            .await,
        ),
        ("getMyName", "BotName", call("getMyName", json!({})).await),
        (
            "getMyDescription",
            "BotDescription",
            call("getMyDescription", json!({})).await,
        ),
        (
            "getMyShortDescription",
            "BotShortDescription",
            call("getMyShortDescription", json!({})).await,
        ),
        (
            "getChatMenuButton",
            "MenuButton",
            call("getChatMenuButton", json!({})).await,
        ),
    ];
    for method in [
        "sendDocument",
        "sendAudio",
        "sendVoice",
        "sendVideo",
        "sendAnimation",
        "sendVideoNote",
        "sendSticker",
    ] {
        let field = match method {
            "sendVideoNote" => "video_note".to_owned(),
            m => m.trim_start_matches("send").to_ascii_lowercase(),
        };
        let result = call(
            method,
            json!({ "chat_id": 42, field: "https://example.org/file" }),
        )
        .await;
        results.push((method, "Message", result));
    }
    call(
        "setMyCommands",
        json!({ "commands": [{ "command": "start", "description": "Start" }] }),
    )
    .await;
    results.push((
        "getMyCommands",
        "[]BotCommand",
        call("getMyCommands", json!({})).await,
    ));
    call("banChatMember", json!({ "chat_id": -100, "user_id": 42 })).await;
    results.push((
        "getChatMember",
        "ChatMember",
        call("getChatMember", json!({ "chat_id": -100, "user_id": 42 })).await,
    ));

    let mut problems = Vec::new();
    for (method, kind, result) in &results {
        check(kind, result, method, &mut problems);
    }
    assert!(problems.is_empty(), "{problems:#?}");

    // Shapes as Telegram returns them.
    assert_eq!(
        sent["reply_markup"],
        json!({ "inline_keyboard": [[{ "text": "Yes", "callback_data": "yes" }]] }),
        "unknown button keys are not echoed"
    );
    assert_ne!(
        photo_id, "https://example.org/cat.jpg",
        "file ids are opaque"
    );
    let again = call(
        "sendPhoto",
        json!({ "chat_id": 42, "photo": "https://example.org/cat.jpg" }),
    )
    .await;
    assert_ne!(
        again["photo"][1]["file_id"], photo["photo"][1]["file_id"],
        "each upload gets its own id"
    );
    let resent = call("sendPhoto", json!({ "chat_id": 42, "photo": photo_id })).await;
    assert_eq!(
        resent["photo"][1]["file_unique_id"], photo["photo"][1]["file_unique_id"],
        "a file_id sends the same file"
    );
    let banned = results.last().unwrap();
    assert_eq!(banned.2["status"], "kicked");
}

#[test]
fn the_check_catches_what_the_issue_reported() {
    // getChat answering the stored Chat, and a getMe-shaped bot in `from`: both caught.
    let mut problems = Vec::new();
    check(
        "ChatFullInfo",
        &json!({ "id": 42, "type": "private" }),
        "getChat",
        &mut problems,
    );
    let message = json!({
        "message_id": 1, "date": 0, "chat": { "id": 42, "type": "private" },
        "from": { "id": 1, "is_bot": true, "first_name": "b", "can_join_groups": true },
        "photo": [{ "file_id": "x", "file_unique_id": "y" }],
    });
    check("Message", &message, "sendPhoto", &mut problems);
    assert_eq!(
        problems,
        [
            "getChat: ChatFullInfo lacks required `accent_color_id`",
            "getChat: ChatFullInfo lacks required `max_reaction_count`",
            "getChat: ChatFullInfo lacks required `accepted_gift_types`",
            "sendPhoto.from: `can_join_groups` is returned only by getMe",
            "sendPhoto.photo[0]: PhotoSize lacks required `width`",
            "sendPhoto.photo[0]: PhotoSize lacks required `height`",
        ]
    );
}
