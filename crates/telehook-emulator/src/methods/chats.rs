//! Chats and members, commands, queries and files.

use serde_json::{Map, Value, json};

use super::{boolean, chat_of, int, json_param, string};
use crate::answer::{Fail, Success};
use crate::objects::{bot_sender, chat_full_info, chat_member};
use crate::state::{BotCell, BotState};

/// Bans kept per bot (the oldest goes first).
const MAX_BANS: usize = 10_000;
/// setMyCommands lists kept per bot: one per scope and language.
const MAX_COMMAND_LISTS: usize = 1_000;

pub(super) fn chat_method(
    bot: &BotCell,
    state: &mut BotState,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Success, Fail> {
    let chat_id = chat_of(state, params, "chat_id")?;
    let chat = state.chats[&chat_id].json.clone();
    let private = chat["type"] == "private";
    let result = match method {
        "getChat" => chat_full_info(&chat),
        "getChatMemberCount" => json!(if private { 2 } else { state.users.len() + 1 }),
        "leaveChat" if private => {
            return Err(Fail::bad_request(
                "chat member status can't be changed in private chats",
            ));
        }
        "leaveChat" => json!(true),
        "getChatAdministrators" => {
            if private {
                return Err(Fail::bad_request(
                    "there are no administrators in the private chat",
                ));
            }
            // The emulator does not know who owns a group: it answers with the bot as an
            // administrator, which a bot must be to read or manage a group anyway.
            json!([chat_member(
                "administrator",
                &bot_sender(bot.id, &bot.username),
                0
            )])
        }
        "getChatMember" => {
            let user_id = int(params, "user_id")
                .ok_or_else(|| Fail::bad_request("user_id is not specified"))?;
            let user = if user_id == bot.id {
                bot_sender(bot.id, &bot.username)
            } else {
                state
                    .users
                    .get(&user_id)
                    .cloned()
                    .ok_or_else(|| Fail::bad_request("user not found"))?
            };
            match state.bans.get(&(chat_id, user_id)) {
                Some(until) => chat_member("kicked", &user, *until),
                None if private && user_id == chat_id => chat_member("member", &user, 0),
                None if private && user_id != bot.id => {
                    return Err(Fail::bad_request("user not found"));
                }
                None => chat_member("member", &user, 0),
            }
        }
        "banChatMember" | "unbanChatMember" => {
            if private {
                return Err(Fail::bad_request(
                    "chat member status can't be changed in private chats",
                ));
            }
            let user_id = int(params, "user_id")
                .ok_or_else(|| Fail::bad_request("user_id is not specified"))?;
            if user_id == bot.id {
                return Err(Fail::bad_request("can't remove chat owner"));
            }
            if method == "banChatMember" {
                let until = int(params, "until_date").unwrap_or(0);
                if state.bans.len() >= MAX_BANS
                    && !state.bans.contains_key(&(chat_id, user_id))
                    && let Some(evicted) = state.bans.keys().next().copied()
                {
                    state.bans.remove(&evicted);
                }
                state.bans.insert((chat_id, user_id), until);
            } else {
                state.bans.remove(&(chat_id, user_id));
            }
            json!(true)
        }
        _ => return Err(Fail::new(404, "Not Found: method not found")),
    };
    Ok(result.into())
}

fn command_key(params: &Map<String, Value>) -> (String, String) {
    let scope = json_param(params, "scope")
        .and_then(|s| s.get("type").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "default".to_owned());
    let language = string(params, "language_code").unwrap_or_default();
    (scope, language)
}

pub(super) fn commands(
    state: &mut BotState,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Success, Fail> {
    let key = command_key(params);
    match method {
        "getMyCommands" => Ok(state
            .commands
            .get(&key)
            .cloned()
            .unwrap_or_else(|| json!([]))
            .into()),
        "deleteMyCommands" => {
            state.commands.remove(&key);
            Ok(json!(true).into())
        }
        _ => {
            let Some(Value::Array(list)) = json_param(params, "commands") else {
                return Err(Fail::bad_request("can't parse commands JSON object"));
            };
            if list.len() > 100 {
                return Err(Fail::bad_request("too many commands specified"));
            }
            let mut kept = Vec::with_capacity(list.len());
            for command in &list {
                let name = command["command"].as_str().unwrap_or_default();
                let description = command["description"].as_str().unwrap_or_default();
                let valid_name = (1..=32).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !valid_name {
                    return Err(Fail::bad_request("BOT_COMMAND_INVALID"));
                }
                if !(1..=256).contains(&description.chars().count()) {
                    return Err(Fail::bad_request("BOT_COMMAND_DESCRIPTION_INVALID"));
                }
                kept.push(json!({ "command": name, "description": description }));
            }
            if state.commands.len() >= MAX_COMMAND_LISTS && !state.commands.contains_key(&key) {
                return Err(Fail::bad_request("too many command lists"));
            }
            state.commands.insert(key, Value::Array(kept));
            Ok(json!(true).into())
        }
    }
}

pub(super) fn answer_query(
    state: &mut BotState,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Success, Fail> {
    let field = match method {
        "answerCallbackQuery" => "callback_query_id",
        "answerInlineQuery" => "inline_query_id",
        "answerPreCheckoutQuery" => "pre_checkout_query_id",
        _ => "shipping_query_id",
    };
    if method == "answerInlineQuery"
        && !matches!(json_param(params, "results"), Some(Value::Array(_)))
    {
        return Err(Fail::bad_request(
            "can't parse inline query results JSON object",
        ));
    }
    if matches!(method, "answerPreCheckoutQuery" | "answerShippingQuery") {
        if !params.contains_key("ok") {
            return Err(Fail::bad_request("parameter \"ok\" is required"));
        }
        if !boolean(params, "ok") && string(params, "error_message").is_none_or(|m| m.is_empty()) {
            return Err(Fail::bad_request("error_message must be non-empty"));
        }
    }
    let id = string(params, field).unwrap_or_default();
    if !state.close_query(&id) {
        return Err(Fail::bad_request(
            "query is too old and response timeout expired or query ID is invalid",
        ));
    }
    Ok(json!(true).into())
}

pub(super) fn get_file(state: &BotState, params: &Map<String, Value>) -> Result<Success, Fail> {
    let file_id = string(params, "file_id").unwrap_or_default();
    if file_id.is_empty() {
        return Err(Fail::bad_request("file_id is empty"));
    }
    state
        .files
        .get(&file_id)
        .map(|file| file.file_object().into())
        .ok_or_else(|| Fail::bad_request("invalid file_id"))
}
