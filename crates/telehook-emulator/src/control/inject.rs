//! Injecting what users do, over HTTP: texts in any chat, button presses, inline queries, any
//! update; and adding bots.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Problem, bot_or_401, ok, parse_body, problem};
use crate::handle::add_bot_to;
use crate::model::{Chat, ChatType, Injected, User};
use crate::state::Shared;

/// A `User` as the test API takes it.
#[derive(Debug, Deserialize)]
struct UserSpec {
    id: i64,
    #[serde(default = "default_first_name")]
    first_name: String,
    username: Option<String>,
    language_code: Option<String>,
}

fn default_first_name() -> String {
    "User".to_owned()
}

impl From<UserSpec> for User {
    fn from(spec: UserSpec) -> Self {
        let mut user = Self::new(spec.id, spec.first_name);
        user.username = spec.username;
        user.language_code = spec.language_code;
        user
    }
}

/// A `Chat` as the test API takes it.
#[derive(Debug, Deserialize)]
struct ChatSpec {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    title: Option<String>,
    username: Option<String>,
    first_name: Option<String>,
}

impl TryFrom<ChatSpec> for Chat {
    type Error = Problem;

    fn try_from(spec: ChatSpec) -> Result<Self, Problem> {
        let kind = match spec.kind.as_str() {
            "private" => ChatType::Private,
            "group" => ChatType::Group,
            "supergroup" => ChatType::Supergroup,
            "channel" => ChatType::Channel,
            other => {
                return Err(Problem(
                    StatusCode::BAD_REQUEST,
                    format!("Bad Request: unknown chat type {other:?}"),
                ));
            }
        };
        Ok(Self {
            id: spec.id,
            kind,
            title: spec.title,
            username: spec.username,
            first_name: spec.first_name,
        })
    }
}

fn injected(injected: &Injected) -> Response {
    ok(
        &json!({ "update_id": injected.update_id, "update": injected.update, "queued": injected.queued }),
    )
}

macro_rules! try_response {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(problem) => return problem.into_response(),
        }
    };
}

/// `POST /updates {"message":{…}}`: any update; the emulator sets `update_id`.
pub(super) async fn update(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    let body: Value = try_response!(parse_body(&body));
    let Some(object) = body.as_object() else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad Request: an Update object is expected",
        );
    };
    let mut kinds = object.iter().filter(|(key, _)| key.as_str() != "update_id");
    let (Some((kind, payload)), None) = (kinds.next(), kinds.next()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad Request: an Update holds exactly one field beside update_id",
        );
    };
    injected(&bot.inject(kind, payload.clone()))
}

#[derive(Debug, Deserialize)]
struct PrivateText {
    user_id: i64,
    #[serde(default = "default_first_name")]
    first_name: String,
    username: Option<String>,
    text: String,
}

/// `POST /private_text {"user_id":42,"first_name":"Ann","text":"hi"}`.
pub(super) async fn private_text(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    let body: PrivateText = try_response!(parse_body(&body));
    let mut user = User::new(body.user_id, body.first_name);
    user.username = body.username;
    injected(&bot.private_text(&user, &body.text))
}

#[derive(Debug, Deserialize)]
struct MessageSpec {
    chat: ChatSpec,
    from: Option<UserSpec>,
    text: String,
}

/// `POST /messages {"chat":{"id":-100,"type":"group","title":"Team"},"from":{"id":7,
/// "first_name":"Bo"},"text":"/start"}`: a text in any chat (a channel post without `from`).
pub(super) async fn message(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    let body: MessageSpec = try_response!(parse_body(&body));
    let chat = try_response!(Chat::try_from(body.chat));
    match body.from {
        Some(from) => injected(&bot.send_text(&chat, &User::from(from), &body.text)),
        None if chat.kind == ChatType::Channel => injected(&bot.channel_post(&chat, &body.text)),
        None => problem(
            StatusCode::BAD_REQUEST,
            "Bad Request: from is required outside channels",
        ),
    }
}

/// The user of a press or an inline query: `"from":{…}`, or flat `user_id` and `first_name`.
#[derive(Debug, Deserialize)]
struct Who {
    from: Option<UserSpec>,
    user_id: Option<i64>,
    first_name: Option<String>,
    username: Option<String>,
}

impl Who {
    fn user(self) -> Result<User, Problem> {
        match (self.from, self.user_id) {
            (Some(from), _) => Ok(User::from(from)),
            (None, Some(id)) => {
                let mut user = User::new(id, self.first_name.unwrap_or_else(default_first_name));
                user.username = self.username;
                Ok(user)
            }
            (None, None) => Err(Problem(
                StatusCode::BAD_REQUEST,
                "Bad Request: give from (a User) or user_id".to_owned(),
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
struct PressSpec {
    #[serde(flatten)]
    who: Who,
    /// The message the keyboard is under, or …
    message: Option<Value>,
    /// … its chat and id (a message the emulator keeps).
    chat_id: Option<i64>,
    message_id: Option<i64>,
    data: String,
}

/// `POST /press_button {"from":{"id":42},"chat_id":42,"message_id":2,"data":"yes"}` (or
/// `"user_id":42,"first_name":"Ann"` instead of `from`).
pub(super) async fn press_button(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    let body: PressSpec = try_response!(parse_body(&body));
    let message = match (body.message, body.chat_id, body.message_id) {
        (Some(message), _, _) => message,
        (None, Some(chat_id), Some(message_id)) => match bot.message(chat_id, message_id) {
            Some(message) => message,
            None => return problem(StatusCode::NOT_FOUND, "Not Found: no such message"),
        },
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Bad Request: give message, or chat_id and message_id",
            );
        }
    };
    let user = try_response!(body.who.user());
    injected(&bot.press_button(&user, &message, &body.data))
}

#[derive(Debug, Deserialize)]
struct InlineSpec {
    #[serde(flatten)]
    who: Who,
    query: String,
}

/// `POST /inline_query {"from":{"id":42},"query":"cats"}`.
pub(super) async fn inline_query(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    let body: InlineSpec = try_response!(parse_body(&body));
    let user = try_response!(body.who.user());
    injected(&bot.inline_query(&user, &body.query))
}

#[derive(Debug, Deserialize)]
struct NewBot {
    token: String,
}

/// `POST /_emulator/bots {"token":"654321:ABC"}`: serves another bot.
pub(super) async fn add_bot(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let body: NewBot = try_response!(parse_body(&body));
    match add_bot_to(&shared, body.token) {
        Ok(bot) => ok(&bot.bot_user()),
        Err(error) => problem(StatusCode::BAD_REQUEST, &format!("Bad Request: {error}")),
    }
}
