//! The Bot API methods the emulator implements.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::answer::{Fail, Success};
use crate::params::Input;
use crate::state::{BotCell, Shared};

mod chats;
mod compose;
mod edits;
mod messages;
mod updates;

pub(crate) use updates::webhook_info;

/// Every method the emulator answers, as Telegram spells it.
const METHODS: &[&str] = &[
    "getMe",
    "logOut",
    "close",
    "getUpdates",
    "setWebhook",
    "deleteWebhook",
    "getWebhookInfo",
    "getChat",
    "getChatMember",
    "getChatAdministrators",
    "getChatMemberCount",
    "banChatMember",
    "unbanChatMember",
    "leaveChat",
    "sendMessage",
    "sendPhoto",
    "sendDocument",
    "sendAudio",
    "sendVoice",
    "sendVideo",
    "sendAnimation",
    "sendVideoNote",
    "sendSticker",
    "sendLocation",
    "sendPoll",
    "sendDice",
    "sendMediaGroup",
    "sendChatAction",
    "copyMessage",
    "copyMessages",
    "forwardMessage",
    "forwardMessages",
    "editMessageText",
    "editMessageCaption",
    "editMessageReplyMarkup",
    "deleteMessage",
    "deleteMessages",
    "setMessageReaction",
    "pinChatMessage",
    "unpinChatMessage",
    "answerCallbackQuery",
    "answerInlineQuery",
    "answerPreCheckoutQuery",
    "answerShippingQuery",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "setMyDescription",
    "setMyShortDescription",
    "setMyName",
    "getMyName",
    "getMyDescription",
    "getMyShortDescription",
    "setChatMenuButton",
    "getChatMenuButton",
    "getFile",
];

/// The documented spelling of `method` (Bot API method names are case-insensitive).
pub(crate) fn canonical(method: &str) -> Option<&'static str> {
    METHODS
        .iter()
        .copied()
        .find(|m| m.eq_ignore_ascii_case(method))
}

pub(crate) async fn call(
    shared: &Arc<Shared>,
    bot: &Arc<BotCell>,
    method: &'static str,
    input: &Input,
) -> Result<Success, Fail> {
    let params = &input.params;
    if method == "getUpdates" {
        return updates::get_updates(shared, bot, params).await;
    }
    check_common(method, params)?;
    let mut state = bot.state();
    let limits = &shared.limits;
    let result = match method {
        "getMe" => Ok(bot.user_json().into()),
        "logOut"
        | "close"
        | "setMyDescription"
        | "setMyShortDescription"
        | "setMyName"
        | "setChatMenuButton" => Ok(json!(true).into()),
        "getMyName" => Ok(json!({ "name": "telehook emulator" }).into()),
        "getMyDescription" => Ok(json!({ "description": "" }).into()),
        "getMyShortDescription" => Ok(json!({ "short_description": "" }).into()),
        "getChatMenuButton" => Ok(json!({ "type": "commands" }).into()),
        "setWebhook" => updates::set_webhook(&mut state, input),
        "deleteWebhook" => Ok(updates::delete_webhook(&mut state, params)),
        "getWebhookInfo" => Ok(updates::webhook_info(&state).into()),
        "setMyCommands" | "getMyCommands" | "deleteMyCommands" => {
            chats::commands(&mut state, method, params)
        }
        "getChat"
        | "getChatMember"
        | "getChatAdministrators"
        | "getChatMemberCount"
        | "banChatMember"
        | "unbanChatMember"
        | "leaveChat" => chats::chat_method(bot, &mut state, method, params),
        "answerCallbackQuery"
        | "answerInlineQuery"
        | "answerPreCheckoutQuery"
        | "answerShippingQuery" => chats::answer_query(&mut state, method, params),
        "getFile" => chats::get_file(&state, params),
        "copyMessage"
        | "forwardMessage"
        | "copyMessages"
        | "forwardMessages"
        | "editMessageText"
        | "editMessageCaption"
        | "editMessageReplyMarkup"
        | "deleteMessage"
        | "deleteMessages"
        | "setMessageReaction"
        | "pinChatMessage"
        | "unpinChatMessage" => edits::call(bot, &mut state, limits, method, input),
        _ => messages::call(bot, &mut state, limits, method, input),
    };
    drop(state);
    bot.bump();
    result
}

/// The most UTF-16 code units of a caption (Bot API, sendPhoto: "0-1024 characters").
const MAX_CAPTION: usize = 1024;
/// The most bytes of a button's `callback_data` (Bot API, InlineKeyboardButton: "1-64 bytes").
const MAX_CALLBACK_DATA: usize = 64;

/// Checks parameters many methods share, with the official server's texts: `reply_markup`
/// must be a JSON object (tdlib/telegram-bot-api `Client::get_reply_markup`), a `caption` at
/// most 1024 characters, a button's `callback_data` at most 64 bytes (Telegram's
/// `BUTTON_DATA_INVALID`).
fn check_common(method: &str, params: &Map<String, Value>) -> Result<(), Fail> {
    if let Some(raw) = params.get("reply_markup").filter(|v| !v.is_null()) {
        let markup = match raw {
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(
                serde_json::from_str::<Value>(s)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| {
                        Fail::bad_request("can't parse reply keyboard markup JSON object")
                    })?,
            ),
            Value::Object(_) => Some(raw.clone()),
            _ => {
                return Err(Fail::bad_request(
                    "can't parse reply keyboard markup JSON object",
                ));
            }
        };
        let too_long = markup
            .as_ref()
            .and_then(|m| m.get("inline_keyboard")?.as_array().cloned())
            .into_iter()
            .flatten()
            .filter_map(|row| row.as_array().cloned())
            .flatten()
            .filter_map(|button| button.get("callback_data")?.as_str().map(str::len))
            .any(|len| len > MAX_CALLBACK_DATA);
        if too_long {
            return Err(Fail::bad_request("BUTTON_DATA_INVALID"));
        }
    }
    let takes_caption = matches!(
        method,
        "sendPhoto"
            | "sendDocument"
            | "sendAudio"
            | "sendVoice"
            | "sendVideo"
            | "sendAnimation"
            | "copyMessage"
            | "copyMessages"
            | "editMessageCaption"
    );
    if takes_caption
        && let Some(caption) = params.get("caption").and_then(Value::as_str)
        && caption.encode_utf16().count() > MAX_CAPTION
    {
        return Err(Fail::bad_request("message caption is too long"));
    }
    Ok(())
}

// ---- parameters: JSON values, or strings when form-encoded ------------------------------------

pub(crate) fn int(params: &Map<String, Value>, key: &str) -> Option<i64> {
    match params.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(crate) fn string(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn boolean(params: &Map<String, Value>, key: &str) -> bool {
    match params.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "True" | "1"),
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// A parameter that is JSON in a JSON body and a JSON-serialized string in a form.
pub(crate) fn json_param(params: &Map<String, Value>, key: &str) -> Option<Value> {
    match params.get(key)? {
        Value::String(s) => serde_json::from_str(s).ok(),
        other => Some(other.clone()),
    }
}

pub(crate) fn string_list(
    params: &Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, Fail> {
    let Some(value) = json_param(params, key) else {
        return match params.get(key) {
            Some(Value::String(s)) if !s.is_empty() => {
                Err(Fail::bad_request(&format!("can't parse {key} JSON array")))
            }
            _ => Ok(None),
        };
    };
    match value {
        Value::Array(items) => Ok(Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        )),
        Value::Null => Ok(None),
        _ => Err(Fail::bad_request(&format!("can't parse {key} JSON array"))),
    }
}

/// The chat `chat_id` names (an id, or `@username` of a known chat); it must be known.
pub(crate) fn chat_of(
    state: &crate::state::BotState,
    params: &Map<String, Value>,
    key: &str,
) -> Result<i64, Fail> {
    if let Some(value) = params.get(key)
        && !(value.is_string() || value.is_i64() || value.is_u64() || value.is_null())
    {
        return Err(Fail::bad_request(&format!(
            "{key} must be an Integer or a String, not {}",
            match value {
                Value::Bool(_) => "a Boolean",
                Value::Number(_) => "a fractional number",
                Value::Array(_) => "an Array",
                _ => "an Object",
            }
        )));
    }
    let Some(chat_id) = string(params, key).filter(|s| !s.is_empty()) else {
        return Err(Fail::bad_request(&format!("{key} is empty")));
    };
    let found = match chat_id.parse::<i64>() {
        Ok(id) => state.chats.contains_key(&id).then_some(id),
        Err(_) => {
            let username = chat_id.trim_start_matches('@');
            state
                .chats
                .iter()
                .find(|(_, chat)| {
                    chat.json.get("username").and_then(Value::as_str) == Some(username)
                })
                .map(|(id, _)| *id)
        }
    };
    found.ok_or_else(|| Fail::bad_request("chat not found"))
}
