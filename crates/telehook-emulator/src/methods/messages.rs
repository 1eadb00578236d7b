//! Sending messages: text, files, locations, polls, dice, media groups.

use serde_json::{Value, json};

use super::compose::{finish, new_message};
use super::{boolean, chat_of, json_param, string};
use crate::answer::{Fail, Success};
use crate::config::Limits;
use crate::files::StoredFile;
use crate::objects::{file_field, media};
use crate::params::Input;
use crate::state::{BotCell, BotState};

pub(super) fn call(
    bot: &BotCell,
    state: &mut BotState,
    limits: &Limits,
    method: &'static str,
    input: &Input,
) -> Result<Success, Fail> {
    let params = &input.params;
    let result = match method {
        "sendChatAction" => chat_of(state, params, "chat_id").map(|_| json!(true)),
        "sendMessage" => send_message(bot, state, limits, input),
        "sendLocation" => send_location(bot, state, limits, input),
        "sendPoll" => send_poll(bot, state, limits, input),
        "sendDice" => send_dice(bot, state, limits, input),
        "sendMediaGroup" => send_media_group(bot, state, limits, input),
        _ => match file_field(method) {
            Some((field, folder)) => send_file(bot, state, limits, method, field, folder, input),
            None => Err(Fail::new(404, "Not Found: method not found")),
        },
    };
    result.map(Success::from)
}

fn send_message(
    bot: &BotCell,
    state: &mut BotState,
    limits: &Limits,
    input: &Input,
) -> Result<Value, Fail> {
    let chat_id = chat_of(state, &input.params, "chat_id")?;
    let text = string(&input.params, "text").unwrap_or_default();
    if text.trim().is_empty() {
        return Err(Fail::bad_request("message text is empty"));
    }
    if text.encode_utf16().count() > 4096 {
        return Err(Fail::bad_request("message is too long"));
    }
    let mut message = new_message(bot, state, chat_id, input);
    message["text"] = json!(text);
    finish(state, limits, message)
}

/// The file a `send*` call names in `value`: an upload (the field itself, or `attach://name`),
/// a `file_id` the emulator gave, or an HTTP URL.
fn resolve_file(
    bot: &BotCell,
    state: &mut BotState,
    limits: &Limits,
    input: &Input,
    field: &str,
    folder: &str,
) -> Result<StoredFile, Fail> {
    let upload = |name: &str| input.file(name).cloned();
    let (part, url) = match input.params.get(field) {
        None => match upload(field) {
            Some(part) => (part, None),
            None => {
                return Err(Fail::bad_request(&format!(
                    "there is no {field} in the request"
                )));
            }
        },
        Some(Value::String(value)) => {
            if let Some(name) = value.strip_prefix("attach://") {
                let part = upload(name).ok_or_else(|| {
                    Fail::bad_request(&format!("can't find attached file \"{name}\""))
                })?;
                (part, None)
            } else if let Some(known) = state.files.get(value) {
                return Ok(known.clone());
            } else if value.starts_with("http://") || value.starts_with("https://") {
                let part = crate::params::Part {
                    file_name: value.rsplit('/').next().map(str::to_owned),
                    content_type: None,
                    bytes: axum::body::Bytes::new(),
                };
                (part, Some(value.clone()))
            } else {
                return Err(Fail::bad_request(
                    "wrong file identifier/HTTP URL specified",
                ));
            }
        }
        Some(_) => return Err(Fail::bad_request(&format!("can't parse {field}"))),
    };
    if let Some(url) = url {
        tracing::debug!(%url, "a file sent by URL is stored without its bytes (no network)");
    }
    Ok(state.files.add(
        bot.id,
        folder,
        part.bytes,
        part.file_name,
        part.content_type,
        limits.max_stored_files,
        limits.max_stored_file_bytes,
    ))
}

fn send_file(
    bot: &BotCell,
    state: &mut BotState,
    limits: &Limits,
    method: &str,
    field: &str,
    folder: &str,
    input: &Input,
) -> Result<Value, Fail> {
    let chat_id = chat_of(state, &input.params, "chat_id")?;
    let file = resolve_file(bot, state, limits, input, field, folder)?;
    let mut message = new_message(bot, state, chat_id, input);
    for (key, value) in media(method, &file) {
        message[key] = value;
    }
    finish(state, limits, message)
}

fn send_location(
    bot: &BotCell,
    state: &mut BotState,
    limits: &Limits,
    input: &Input,
) -> Result<Value, Fail> {
    let chat_id = chat_of(state, &input.params, "chat_id")?;
    let coordinate = |key: &str| -> Option<f64> {
        match input.params.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    let (Some(latitude), Some(longitude)) = (coordinate("latitude"), coordinate("longitude"))
    else {
        return Err(Fail::bad_request("latitude and longitude must be numbers"));
    };
    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
        return Err(Fail::bad_request("wrong latitude or longitude"));
    }
    let mut message = new_message(bot, state, chat_id, input);
    message["location"] = json!({ "latitude": latitude, "longitude": longitude });
    finish(state, limits, message)
}

fn send_poll(
    bot: &BotCell,
    state: &mut BotState,
    limits: &Limits,
    input: &Input,
) -> Result<Value, Fail> {
    let params = &input.params;
    let chat_id = chat_of(state, params, "chat_id")?;
    let question = string(params, "question").unwrap_or_default();
    if question.trim().is_empty() {
        return Err(Fail::bad_request("poll question must be non-empty"));
    }
    let Some(Value::Array(options)) = json_param(params, "options") else {
        return Err(Fail::bad_request("can't parse options JSON object"));
    };
    let options: Vec<Value> = options
        .iter()
        .filter_map(|o| o.as_str().or_else(|| o.get("text")?.as_str()))
        .map(|text| json!({ "text": text, "voter_count": 0 }))
        .collect();
    if !(2..=12).contains(&options.len()) {
        return Err(Fail::bad_request("poll must have 2-12 options"));
    }
    let kind = string(params, "type").unwrap_or_else(|| "regular".to_owned());
    let anonymous = params.get("is_anonymous").is_none() || boolean(params, "is_anonymous");
    let mut message = new_message(bot, state, chat_id, input);
    let poll_id = format!(
        "{}{:06}",
        bot.id,
        message["message_id"].as_i64().unwrap_or(0)
    );
    message["poll"] = json!({
        "id": poll_id, "question": question, "options": options, "total_voter_count": 0,
        "is_closed": false, "is_anonymous": anonymous, "type": kind,
        "allows_multiple_answers": boolean(params, "allows_multiple_answers"),
    });
    finish(state, limits, message)
}

fn send_dice(
    bot: &BotCell,
    state: &mut BotState,
    limits: &Limits,
    input: &Input,
) -> Result<Value, Fail> {
    let chat_id = chat_of(state, &input.params, "chat_id")?;
    let emoji = string(&input.params, "emoji").unwrap_or_else(|| "🎲".to_owned());
    let mut message = new_message(bot, state, chat_id, input);
    let value = message["message_id"].as_i64().unwrap_or(0).rem_euclid(6) + 1;
    message["dice"] = json!({ "emoji": emoji, "value": value });
    finish(state, limits, message)
}

fn send_media_group(
    bot: &BotCell,
    state: &mut BotState,
    limits: &Limits,
    input: &Input,
) -> Result<Value, Fail> {
    let chat_id = chat_of(state, &input.params, "chat_id")?;
    let Some(Value::Array(items)) = json_param(&input.params, "media") else {
        return Err(Fail::bad_request("can't parse media JSON object"));
    };
    if !(2..=10).contains(&items.len()) {
        return Err(Fail::bad_request(
            "wrong number of media specified: must be 2-10",
        ));
    }
    let group_id = format!("{}{}", bot.id, state.calls_total);
    let mut messages = Vec::with_capacity(items.len());
    for item in &items {
        let method = match item["type"].as_str() {
            Some("photo") => "sendPhoto",
            Some("video") => "sendVideo",
            Some("audio") => "sendAudio",
            Some("document") => "sendDocument",
            _ => {
                return Err(Fail::bad_request(
                    "unsupported media type in the media group",
                ));
            }
        };
        let (_, folder) = file_field(method).unwrap_or(("document", "documents"));
        let mut one = Input {
            params: serde_json::Map::new(),
            files: input.files.clone(),
        };
        one.params.insert("media".into(), item["media"].clone());
        let file = resolve_file(bot, state, limits, &one, "media", folder)?;
        if let Some(caption) = item.get("caption") {
            one.params.insert("caption".into(), caption.clone());
        }
        let mut message = new_message(bot, state, chat_id, &one);
        message["media_group_id"] = json!(group_id);
        for (key, value) in media(method, &file) {
            message[key] = value;
        }
        messages.push(finish(state, limits, message)?);
    }
    Ok(Value::Array(messages))
}
