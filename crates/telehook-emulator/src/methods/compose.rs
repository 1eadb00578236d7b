//! A new message from the bot, and keeping it.

use serde_json::{Value, json};

use super::{int, json_param, string};
use crate::answer::Fail;
use crate::config::Limits;
use crate::objects::{bot_sender, message_markup};
use crate::params::Input;
use crate::state::{BotCell, BotState, unix_now};

/// A new message from the bot in `chat_id`, with `reply_markup` and `caption` from `params`.
pub(super) fn new_message(
    bot: &BotCell,
    state: &mut BotState,
    chat_id: i64,
    input: &Input,
) -> Value {
    let message_id = state.next_message_id(chat_id).unwrap_or(1);
    let chat = state
        .chats
        .get(&chat_id)
        .map_or(Value::Null, |chat| chat.json.clone());
    let mut message = json!({ "message_id": message_id, "date": unix_now(), "chat": chat });
    if chat["type"] == "channel" {
        message["sender_chat"] = chat;
    } else {
        message["from"] = bot_sender(bot.id, &bot.username);
    }
    let params = &input.params;
    if let Some(markup) = json_param(params, "reply_markup").and_then(|m| message_markup(&m)) {
        message["reply_markup"] = markup;
    }
    if let Some(caption) = string(params, "caption").filter(|c| !c.is_empty()) {
        message["caption"] = json!(caption);
    }
    if let Some(reply_to) = int(params, "reply_to_message_id").or_else(|| {
        json_param(params, "reply_parameters").and_then(|r| r.get("message_id")?.as_i64())
    }) && let Some(replied) = state.messages.get(&(chat_id, reply_to))
    {
        message["reply_to_message"] = replied.clone();
    }
    message
}

pub(super) fn finish(state: &mut BotState, limits: &Limits, message: Value) -> Result<Value, Fail> {
    state.remember_message(&message, limits);
    Ok(message)
}
