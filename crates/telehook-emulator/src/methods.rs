//! The Bot API methods the emulator implements.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::api::{Fail, Success};
use crate::state::{BotCell, BotState, Shared, WebhookConfig, unix_now};

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
    "sendMessage",
    "sendPhoto",
    "sendDocument",
    "sendChatAction",
    "editMessageText",
    "editMessageReplyMarkup",
    "deleteMessage",
    "answerCallbackQuery",
    "answerInlineQuery",
    "setMyCommands",
    "deleteMyCommands",
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
    params: &Map<String, Value>,
) -> Result<Success, Fail> {
    if method == "getUpdates" {
        return get_updates(shared, bot, params).await;
    }
    let mut state = bot.state();
    let result = match method {
        "getMe" => Ok(bot.user_json().into()),
        "logOut" | "close" | "setMyCommands" | "deleteMyCommands" => Ok(json!(true).into()),
        "setWebhook" => set_webhook(&mut state, params),
        "deleteWebhook" => Ok(delete_webhook(&mut state, params)),
        "getWebhookInfo" => Ok(webhook_info(&state).into()),
        "getChat" => chat_of(&state, params).map(|id| state.chats[&id].json.clone().into()),
        "sendChatAction" => chat_of(&state, params).map(|_| json!(true).into()),
        "sendMessage" => send_message(bot, &mut state, params),
        "sendPhoto" | "sendDocument" => send_file(bot, &mut state, method, params),
        "editMessageText" | "editMessageReplyMarkup" => {
            edit_message(bot, &mut state, method, params)
        }
        "deleteMessage" => delete_message(&state, params),
        "answerCallbackQuery" | "answerInlineQuery" => answer_query(&mut state, method, params),
        _ => Err(Fail::new(404, "Not Found: method not found")),
    };
    drop(state);
    bot.bump();
    result
}

// ---- parameters: JSON values, or strings when form-encoded ------------------------------------

fn int(params: &Map<String, Value>, key: &str) -> Option<i64> {
    match params.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn string(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn boolean(params: &Map<String, Value>, key: &str) -> bool {
    match params.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "True" | "1"),
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// A parameter that is JSON in a JSON body and a JSON-serialized string in a form.
fn json_param(params: &Map<String, Value>, key: &str) -> Option<Value> {
    match params.get(key)? {
        Value::String(s) => serde_json::from_str(s).ok(),
        other => Some(other.clone()),
    }
}

fn string_list(params: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, Fail> {
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

// ---- getUpdates ---------------------------------------------------------------------------------

const CONFLICT_WEBHOOK: &str = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
const CONFLICT_OTHER_POLL: &str = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";

async fn get_updates(
    shared: &Arc<Shared>,
    bot: &Arc<BotCell>,
    params: &Map<String, Value>,
) -> Result<Success, Fail> {
    let offset = int(params, "offset").unwrap_or(0);
    let limit = match int(params, "limit") {
        Some(n @ 1..=100) => usize::try_from(n).unwrap_or(100),
        _ => 100,
    };
    let timeout = u64::try_from(int(params, "timeout").unwrap_or(0).max(0)).unwrap_or(0);
    let allowed_updates = string_list(params, "allowed_updates")?;

    let mut changed = bot.subscribe();
    let generation = {
        let mut state = bot.state();
        if state.webhook.is_some() {
            return Err(Fail::new(409, CONFLICT_WEBHOOK));
        }
        if let Some(kinds) = allowed_updates {
            state.allowed_updates = Some(kinds);
        }
        confirm(&mut state, offset);
        state.poll_generation += 1;
        state.poll_generation
    };
    // Wakes an earlier getUpdates still waiting, which then answers 409.
    bot.bump();
    let deadline = Instant::now() + shared.timing.scale(Duration::from_secs(timeout));
    let mut shutdown = shared.shutdown.subscribe();
    let mut parked: Option<Parked<'_>> = None;
    loop {
        changed.borrow_and_update();
        {
            let state = bot.state();
            if state.poll_generation != generation {
                return Err(Fail::new(409, CONFLICT_OTHER_POLL));
            }
            if state.webhook.is_some() {
                return Err(Fail::new(409, CONFLICT_WEBHOOK));
            }
            if !state.pending.is_empty() || Instant::now() >= deadline {
                let updates: Vec<Value> = state
                    .pending
                    .iter()
                    .take(limit)
                    .map(|u| u.json.clone())
                    .collect();
                return Ok(Value::Array(updates).into());
            }
        }
        if parked.is_none() {
            parked = Some(Parked::new(bot));
        }
        tokio::select! {
            _ = changed.changed() => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
            _ = shutdown.wait_for(|stop| *stop) => return Ok(json!([]).into()),
        }
    }
}

/// Counts a long poll as waiting while it lives (also when the client goes away mid-poll).
struct Parked<'a>(&'a BotCell);

impl<'a> Parked<'a> {
    fn new(bot: &'a BotCell) -> Self {
        bot.state().long_polls_waiting += 1;
        bot.bump();
        Self(bot)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.state().long_polls_waiting -= 1;
    }
}

/// How far past the queue's tail an offset may be before the official server calls it "in the
/// future" (tdlib `TQueue::get`: `from_id > tail_id + 10`).
const FUTURE_SLACK: u64 = 10;
/// How far behind the tail an offset may be before it is "in the past" (tdlib `TQueue::get`:
/// `from_id < tail_id - 2 * MAX_QUEUE_EVENTS`, with `MAX_QUEUE_EVENTS` = 1 000 000).
const PAST_SLACK: u64 = 2_000_000;

/// Applies getUpdates' `offset` as the official server does (tdlib/telegram-bot-api,
/// `Client::do_get_updates`, and tdlib's `TQueue::get`):
/// - a negative offset keeps only the last `-offset` updates;
/// - a positive offset within reach of the queue (at most 10 past its tail, the next
///   `update_id` to be given) confirms every update below it;
/// - an offset "in the future" (more than 10 past the tail, e.g. the bot's old offset after
///   `update_id`s were reset by a quiet week) or "in the past" (2 000 000 below) is ignored:
///   the answer starts at the head of the queue and nothing is confirmed.
///
/// Returns true if the offset was ignored.
pub(crate) fn confirm(state: &mut BotState, offset: i64) -> bool {
    if offset > 0 {
        let offset = offset.unsigned_abs();
        let tail = state.next_update_id;
        if offset > tail.saturating_add(FUTURE_SLACK) || offset < tail.saturating_sub(PAST_SLACK) {
            tracing::debug!(
                offset,
                tail,
                "getUpdates offset out of the queue's reach: answered from the head, nothing confirmed"
            );
            return true;
        }
        while state.pending.front().is_some_and(|u| u.update_id < offset) {
            if let Some(update) = state.pending.pop_front() {
                state.retries.remove(&update.update_id);
            }
        }
    } else if offset < 0 {
        let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
        while state.pending.len() > keep {
            if let Some(update) = state.pending.pop_front() {
                state.retries.remove(&update.update_id);
            }
        }
    }
    false
}

// ---- webhook -----------------------------------------------------------------------------------

fn set_webhook(state: &mut BotState, params: &Map<String, Value>) -> Result<Success, Fail> {
    let url = string(params, "url").unwrap_or_default();
    if url.is_empty() {
        return Ok(delete_webhook(state, params));
    }
    check_webhook_url(&url)?;
    let secret_token = string(params, "secret_token").filter(|s| !s.is_empty());
    if let Some(secret) = &secret_token {
        if secret.len() > 256 {
            return Err(Fail::bad_request("secret token is too long"));
        }
        if !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Fail::bad_request(
                "secret token contains unallowed characters",
            ));
        }
    }
    // Telegram clamps max_connections to 1..=100 rather than refusing other values.
    let max_connections =
        usize::try_from(int(params, "max_connections").unwrap_or(40).clamp(1, 100)).unwrap_or(40);
    let allowed_updates = string_list(params, "allowed_updates")?;
    if boolean(params, "drop_pending_updates") {
        state.drop_pending();
    }
    if let Some(kinds) = allowed_updates {
        state.allowed_updates = Some(kinds);
    }
    let unchanged = state.webhook.as_ref().is_some_and(|hook| {
        hook.url == url
            && hook.secret_token == secret_token
            && hook.max_connections == max_connections
    });
    if state.webhook.as_ref().is_none_or(|hook| hook.url != url) {
        state.last_error = None;
    }
    tracing::info!(
        max_connections,
        has_secret_token = secret_token.is_some(),
        "webhook set"
    );
    state.webhook = Some(WebhookConfig {
        url,
        secret_token,
        max_connections,
    });
    Ok(Success {
        result: json!(true),
        description: Some(if unchanged {
            "Webhook is already set"
        } else {
            "Webhook was set"
        }),
    })
}

/// Accepts what Telegram accepts, plus `http://` on a loopback address (the emulator's one
/// departure, so tests need no TLS).
fn check_webhook_url(url: &str) -> Result<(), Fail> {
    let parsed =
        reqwest::Url::parse(url).map_err(|_| Fail::bad_request("invalid webhook URL specified"))?;
    let Some(host) = parsed.host_str() else {
        return Err(Fail::bad_request("invalid webhook URL specified"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "http" if loopback => Ok(()),
        "https"
            if matches!(parsed.port_or_known_default(), Some(80 | 88 | 443 | 8443)) || loopback =>
        {
            Ok(())
        }
        "https" => Err(Fail::bad_request(
            "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
        )),
        _ => Err(Fail::bad_request(
            "bad webhook: HTTPS url must be provided for webhook",
        )),
    }
}

fn delete_webhook(state: &mut BotState, params: &Map<String, Value>) -> Success {
    if boolean(params, "drop_pending_updates") {
        state.drop_pending();
    }
    let was_set = state.webhook.take().is_some();
    if was_set {
        tracing::info!("webhook deleted");
    }
    Success {
        result: json!(true),
        description: Some(if was_set {
            "Webhook was deleted"
        } else {
            "Webhook is already deleted"
        }),
    }
}

pub(crate) fn webhook_info(state: &BotState) -> Value {
    let mut info = json!({
        "url": state.webhook.as_ref().map_or("", |hook| hook.url.as_str()),
        "has_custom_certificate": false,
        "pending_update_count": state.pending.len(),
    });
    if let Some((date, message)) = &state.last_error {
        info["last_error_date"] = json!(date);
        info["last_error_message"] = json!(message);
    }
    if let Some(hook) = &state.webhook {
        info["max_connections"] = json!(hook.max_connections);
        if let Some(kinds) = &state.allowed_updates {
            info["allowed_updates"] = json!(kinds);
        }
    }
    info
}

// ---- messages ------------------------------------------------------------------------------------

fn chat_of(state: &BotState, params: &Map<String, Value>) -> Result<i64, Fail> {
    let Some(chat_id) = string(params, "chat_id").filter(|s| !s.is_empty()) else {
        return Err(Fail::bad_request("chat_id is empty"));
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

fn new_message(
    bot: &BotCell,
    state: &mut BotState,
    chat_id: i64,
    params: &Map<String, Value>,
) -> Value {
    let message_id = state.next_message_id(chat_id).unwrap_or(1);
    message(bot, state, chat_id, message_id, params)
}

fn message(
    bot: &BotCell,
    state: &BotState,
    chat_id: i64,
    message_id: i64,
    params: &Map<String, Value>,
) -> Value {
    let chat = state
        .chats
        .get(&chat_id)
        .map_or(Value::Null, |chat| chat.json.clone());
    let mut message = json!({ "message_id": message_id, "date": unix_now(), "chat": chat });
    if chat["type"] == "channel" {
        message["sender_chat"] = chat;
    } else {
        message["from"] = bot.user_json();
    }
    if let Some(markup) =
        json_param(params, "reply_markup").filter(|m| m.get("inline_keyboard").is_some())
    {
        message["reply_markup"] = markup;
    }
    message
}

fn send_message(
    bot: &BotCell,
    state: &mut BotState,
    params: &Map<String, Value>,
) -> Result<Success, Fail> {
    let chat_id = chat_of(state, params)?;
    let text = string(params, "text").unwrap_or_default();
    if text.trim().is_empty() {
        return Err(Fail::bad_request("message text is empty"));
    }
    if text.chars().count() > 4096 {
        return Err(Fail::bad_request("message is too long"));
    }
    let mut message = new_message(bot, state, chat_id, params);
    message["text"] = json!(text);
    Ok(message.into())
}

fn send_file(
    bot: &BotCell,
    state: &mut BotState,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Success, Fail> {
    let chat_id = chat_of(state, params)?;
    let field = if method == "sendPhoto" {
        "photo"
    } else {
        "document"
    };
    let Some(file) = string(params, field).filter(|s| !s.is_empty()) else {
        return Err(Fail::bad_request(&format!(
            "there is no {field} in the request"
        )));
    };
    let mut message = new_message(bot, state, chat_id, params);
    let unique = format!("AQAD{}", message["message_id"]);
    if field == "photo" {
        message["photo"] =
            json!([{ "file_id": file, "file_unique_id": unique, "width": 800, "height": 600 }]);
    } else {
        message["document"] = json!({ "file_id": file, "file_unique_id": unique });
    }
    if let Some(caption) = string(params, "caption") {
        message["caption"] = json!(caption);
    }
    Ok(message.into())
}

fn existing_message(
    state: &BotState,
    params: &Map<String, Value>,
    what: &str,
) -> Result<(i64, i64), Fail> {
    let chat_id = chat_of(state, params)?;
    let message_id = int(params, "message_id")
        .ok_or_else(|| Fail::bad_request("message identifier is not specified"))?;
    let next = state
        .chats
        .get(&chat_id)
        .map_or(1, |chat| chat.next_message_id);
    if message_id < 1 || message_id >= next {
        return Err(Fail::bad_request(&format!("message to {what} not found")));
    }
    Ok((chat_id, message_id))
}

fn edit_message(
    bot: &BotCell,
    state: &mut BotState,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Success, Fail> {
    if params.contains_key("inline_message_id") {
        return Ok(json!(true).into());
    }
    let (chat_id, message_id) = existing_message(state, params, "edit")?;
    let mut message = message(bot, state, chat_id, message_id, params);
    message["edit_date"] = json!(unix_now());
    if method == "editMessageText" {
        let text = string(params, "text").unwrap_or_default();
        if text.trim().is_empty() {
            return Err(Fail::bad_request("message text is empty"));
        }
        message["text"] = json!(text);
    }
    Ok(message.into())
}

fn delete_message(state: &BotState, params: &Map<String, Value>) -> Result<Success, Fail> {
    existing_message(state, params, "delete").map(|_| json!(true).into())
}

fn answer_query(
    state: &mut BotState,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Success, Fail> {
    let field = if method == "answerCallbackQuery" {
        "callback_query_id"
    } else {
        "inline_query_id"
    };
    if method == "answerInlineQuery"
        && !matches!(json_param(params, "results"), Some(Value::Array(_)))
    {
        return Err(Fail::bad_request(
            "can't parse inline query results JSON object",
        ));
    }
    let id = string(params, field).unwrap_or_default();
    if !state.close_query(&id) {
        return Err(Fail::bad_request(
            "query is too old and response timeout expired or query ID is invalid",
        ));
    }
    Ok(json!(true).into())
}
