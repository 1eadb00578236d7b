//! The shapes of the objects the emulator returns, with every field the Bot API marks as
//! required (see `tests/shapes.rs` for the table, written from the Bot API documentation).

use serde_json::{Map, Value, json};

use crate::files::StoredFile;

/// The bot as the sender of a message: a `User` without the fields only `getMe` returns
/// (`can_join_groups`, `can_read_all_group_messages`, `supports_inline_queries`, …).
pub(crate) fn bot_sender(id: i64, username: &str) -> Value {
    json!({ "id": id, "is_bot": true, "first_name": "telehook emulator", "username": username })
}

/// `getChat`'s `ChatFullInfo`: the `Chat` plus `accent_color_id`, `max_reaction_count` and
/// `accepted_gift_types`, as the official server fills them (tdlib/telegram-bot-api
/// `Client::JsonChat` with `is_full`).
pub(crate) fn chat_full_info(chat: &Value) -> Value {
    let mut full = chat.clone();
    let private = chat["type"] == "private";
    full["accent_color_id"] = json!(chat["id"].as_i64().unwrap_or(0).rem_euclid(7));
    full["max_reaction_count"] = json!(11);
    // Private chats accept gifts; groups report none accepted, as the official server does.
    full["accepted_gift_types"] = json!({
        "unlimited_gifts": private,
        "limited_gifts": private,
        "unique_gifts": private,
        "premium_subscription": private,
        "gifts_from_channels": private,
    });
    if chat["type"] == "private" {
        full["can_send_gift"] = json!(true);
    }
    full
}

/// The fields of an `InlineKeyboardButton` (Bot API 10.0; tdlib/telegram-bot-api
/// `Client::JsonInlineKeyboardButton`).
const BUTTON_FIELDS: &[&str] = &[
    "text",
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
    "style",
    "icon_custom_emoji_id",
];

/// The `reply_markup` a sent message carries: only an inline keyboard, with only the fields
/// Telegram knows (other keyboards are not part of a `Message`).
pub(crate) fn message_markup(markup: &Value) -> Option<Value> {
    let rows = markup.get("inline_keyboard")?.as_array()?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            let buttons = row.as_array().map_or_else(Vec::new, |buttons| {
                buttons
                    .iter()
                    .filter_map(Value::as_object)
                    .map(|button| {
                        let known: Map<String, Value> = button
                            .iter()
                            .filter(|(key, value)| {
                                BUTTON_FIELDS.contains(&key.as_str()) && !value.is_null()
                            })
                            .map(|(key, value)| (key.clone(), value.clone()))
                            .collect();
                        Value::Object(known)
                    })
                    .collect()
            });
            Value::Array(buttons)
        })
        .collect();
    Some(json!({ "inline_keyboard": rows }))
}

/// What a message carries for a file sent by `method`, keyed by the message field.
pub(crate) fn media(method: &str, file: &StoredFile) -> Vec<(&'static str, Value)> {
    let mut base = file.base();
    let named = |mut value: Value| {
        if let Some(name) = &file.file_name {
            value["file_name"] = json!(name);
        }
        if let Some(mime) = &file.mime_type {
            value["mime_type"] = json!(mime);
        }
        value
    };
    match method {
        "sendPhoto" => {
            let mut small = base.clone();
            small["width"] = json!(90);
            small["height"] = json!(67);
            small["file_unique_id"] = json!(format!("{}s", file.file_unique_id));
            small["file_id"] = json!(format!("{}s", file.file_id));
            base["width"] = json!(800);
            base["height"] = json!(600);
            vec![("photo", json!([small, base]))]
        }
        "sendAudio" => {
            base["duration"] = json!(1);
            vec![("audio", named(base))]
        }
        "sendVoice" => {
            base["duration"] = json!(1);
            vec![("voice", base)]
        }
        "sendVideo" => {
            base["width"] = json!(640);
            base["height"] = json!(360);
            base["duration"] = json!(1);
            vec![("video", named(base))]
        }
        "sendAnimation" => {
            base["width"] = json!(320);
            base["height"] = json!(240);
            base["duration"] = json!(1);
            // Telegram sends an animation as both `animation` and `document`.
            let document = named(file.base());
            vec![("animation", named(base)), ("document", document)]
        }
        "sendVideoNote" => {
            base["length"] = json!(240);
            base["duration"] = json!(1);
            vec![("video_note", base)]
        }
        "sendSticker" => {
            base["type"] = json!("regular");
            base["width"] = json!(512);
            base["height"] = json!(512);
            base["is_animated"] = json!(false);
            base["is_video"] = json!(false);
            vec![("sticker", base)]
        }
        _ => vec![("document", named(base))],
    }
}

/// The parameter that carries the file of a `send*` method, and the folder its path uses.
pub(crate) fn file_field(method: &str) -> Option<(&'static str, &'static str)> {
    Some(match method {
        "sendPhoto" => ("photo", "photos"),
        "sendDocument" => ("document", "documents"),
        "sendAudio" => ("audio", "music"),
        "sendVoice" => ("voice", "voice"),
        "sendVideo" => ("video", "videos"),
        "sendAnimation" => ("animation", "animations"),
        "sendVideoNote" => ("video_note", "video_notes"),
        "sendSticker" => ("sticker", "stickers"),
        _ => return None,
    })
}

/// A `ChatMember` of `status` for `user`.
pub(crate) fn chat_member(status: &str, user: &Value, until_date: i64) -> Value {
    match status {
        "creator" => json!({ "status": "creator", "user": user, "is_anonymous": false }),
        "administrator" => json!({
            "status": "administrator", "user": user, "can_be_edited": false, "is_anonymous": false,
            "can_manage_chat": true, "can_delete_messages": true, "can_manage_video_chats": true,
            "can_restrict_members": true, "can_promote_members": false, "can_change_info": true,
            "can_invite_users": true, "can_post_stories": false, "can_edit_stories": false,
            "can_delete_stories": false,
        }),
        "kicked" => json!({ "status": "kicked", "user": user, "until_date": until_date }),
        _ => json!({ "status": "member", "user": user }),
    }
}
