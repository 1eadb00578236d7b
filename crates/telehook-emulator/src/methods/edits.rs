//! Copying, forwarding, editing and deleting messages the emulator keeps.

use serde_json::{Value, json};

use super::compose::{finish, new_message};
use super::{chat_of, int, json_param, string};
use crate::answer::{Fail, Success};
use crate::config::Limits;
use crate::objects::message_markup;
use crate::params::Input;
use crate::state::{BotCell, BotState, unix_now};

/// The kept message `message_id` in `chat_id`.
pub(super) fn call(
    bot: &BotCell,
    state: &mut BotState,
    limits: &Limits,
    method: &'static str,
    input: &Input,
) -> Result<Success, Fail> {
    let params = &input.params;
    let result = match method {
        "copyMessage" | "forwardMessage" => copy(bot, state, limits, method, input, None),
        "copyMessages" | "forwardMessages" => copy_many(bot, state, limits, method, input),
        "editMessageText" | "editMessageCaption" | "editMessageReplyMarkup" => {
            edit(bot, state, limits, method, input)
        }
        "deleteMessage" => delete(state, params, None),
        "deleteMessages" => delete_many(state, params),
        "setMessageReaction" | "pinChatMessage" => {
            existing(state, params, "react to").map(|_| json!(true))
        }
        "unpinChatMessage" => chat_of(state, params, "chat_id").map(|_| json!(true)),
        _ => Err(Fail::new(404, "Not Found: method not found")),
    };
    result.map(Success::from)
}

fn existing(
    state: &BotState,
    params: &serde_json::Map<String, Value>,
    what: &str,
) -> Result<(i64, i64, Value), Fail> {
    let chat_id = chat_of(state, params, "chat_id")?;
    let message_id = int(params, "message_id")
        .ok_or_else(|| Fail::bad_request("message identifier is not specified"))?;
    state
        .messages
        .get(&(chat_id, message_id))
        .map(|m| (chat_id, message_id, m.clone()))
        .ok_or_else(|| Fail::bad_request(&format!("message to {what} not found")))
}

/// The content of a message, without who sent it, where and when.
fn content(message: &Value) -> serde_json::Map<String, Value> {
    const ENVELOPE: &[&str] = &[
        "message_id",
        "date",
        "chat",
        "from",
        "sender_chat",
        "reply_markup",
        "edit_date",
        "reply_to_message",
        "forward_origin",
        "media_group_id",
    ];
    message
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !ENVELOPE.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn copy(
    bot: &BotCell,
    state: &mut BotState,
    limits: &Limits,
    method: &str,
    input: &Input,
    message_id: Option<i64>,
) -> Result<Value, Fail> {
    let params = &input.params;
    let to = chat_of(state, params, "chat_id")?;
    let from = chat_of(state, params, "from_chat_id")?;
    let id = message_id
        .or_else(|| int(params, "message_id"))
        .ok_or_else(|| Fail::bad_request("message identifier is not specified"))?;
    let what = if method.starts_with("copy") {
        "copy"
    } else {
        "forward"
    };
    let source = state
        .messages
        .get(&(from, id))
        .cloned()
        .ok_or_else(|| Fail::bad_request(&format!("message to {what} not found")))?;
    let mut message = new_message(bot, state, to, input);
    for (key, value) in content(&source) {
        message[key] = value;
    }
    if what == "copy" {
        if let Some(caption) = string(params, "caption") {
            message["caption"] = json!(caption);
        }
        let message_id = message["message_id"].clone();
        finish(state, limits, message)?;
        return Ok(json!({ "message_id": message_id }));
    }
    let date = source["date"].clone();
    message["forward_origin"] = match (source.get("from"), source.get("sender_chat")) {
        (Some(user), _) => json!({ "type": "user", "date": date, "sender_user": user }),
        (None, Some(chat)) if chat["type"] == "channel" => json!({
            "type": "channel", "date": date, "chat": chat, "message_id": source["message_id"],
        }),
        (None, Some(chat)) => json!({ "type": "chat", "date": date, "sender_chat": chat }),
        (None, None) => {
            json!({ "type": "hidden_user", "date": date, "sender_user_name": "Hidden" })
        }
    };
    finish(state, limits, message)
}

fn copy_many(
    bot: &BotCell,
    state: &mut BotState,
    limits: &Limits,
    method: &str,
    input: &Input,
) -> Result<Value, Fail> {
    let Some(Value::Array(ids)) = json_param(&input.params, "message_ids") else {
        return Err(Fail::bad_request(
            "can't parse message identifiers JSON object",
        ));
    };
    if !(1..=100).contains(&ids.len()) {
        return Err(Fail::bad_request("too many messages to copy"));
    }
    let single = if method == "copyMessages" {
        "copyMessage"
    } else {
        "forwardMessage"
    };
    let mut copied = Vec::new();
    for id in ids.iter().filter_map(Value::as_i64) {
        let message = copy(bot, state, limits, single, input, Some(id))?;
        copied.push(json!({ "message_id": message["message_id"] }));
    }
    Ok(Value::Array(copied))
}

fn edit(
    bot: &BotCell,
    state: &mut BotState,
    limits: &Limits,
    method: &str,
    input: &Input,
) -> Result<Value, Fail> {
    let params = &input.params;
    if params.contains_key("inline_message_id") {
        return Ok(json!(true));
    }
    let (_, _, old) = existing(state, params, "edit")?;
    if old.pointer("/from/id").and_then(Value::as_i64) != Some(bot.id)
        && old.get("sender_chat").is_none()
    {
        return Err(Fail::bad_request("message can't be edited"));
    }
    let mut message = old.clone();
    match method {
        "editMessageText" => {
            let text = string(params, "text").unwrap_or_default();
            if text.trim().is_empty() {
                return Err(Fail::bad_request("message text is empty"));
            }
            if old.get("text").is_none() {
                return Err(Fail::bad_request("there is no text in the message to edit"));
            }
            message["text"] = json!(text);
        }
        "editMessageCaption" => match string(params, "caption").filter(|c| !c.is_empty()) {
            Some(caption) => message["caption"] = json!(caption),
            None => {
                if let Some(object) = message.as_object_mut() {
                    object.remove("caption");
                }
            }
        },
        _ => {}
    }
    match json_param(params, "reply_markup").and_then(|m| message_markup(&m)) {
        Some(markup) => message["reply_markup"] = markup,
        None => {
            if let Some(object) = message.as_object_mut() {
                object.remove("reply_markup");
            }
        }
    }
    let unchanged = {
        let mut old = old;
        if let Some(o) = old.as_object_mut() {
            o.remove("edit_date");
        }
        let mut new = message.clone();
        if let Some(n) = new.as_object_mut() {
            n.remove("edit_date");
        }
        old == new
    };
    if unchanged {
        return Err(Fail::bad_request(
            "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        ));
    }
    message["edit_date"] = json!(unix_now());
    finish(state, limits, message)
}

fn delete(
    state: &mut BotState,
    params: &serde_json::Map<String, Value>,
    id: Option<i64>,
) -> Result<Value, Fail> {
    let chat_id = chat_of(state, params, "chat_id")?;
    let id = id
        .or_else(|| int(params, "message_id"))
        .ok_or_else(|| Fail::bad_request("message identifier is not specified"))?;
    if state.forget_message(chat_id, id) {
        Ok(json!(true))
    } else {
        Err(Fail::bad_request("message to delete not found"))
    }
}

fn delete_many(
    state: &mut BotState,
    params: &serde_json::Map<String, Value>,
) -> Result<Value, Fail> {
    let Some(Value::Array(ids)) = json_param(params, "message_ids") else {
        return Err(Fail::bad_request(
            "can't parse message identifiers JSON object",
        ));
    };
    for id in ids.iter().filter_map(Value::as_i64) {
        let _ = delete(state, params, Some(id));
    }
    Ok(json!(true))
}
