//! The things a test handles: users and chats to inject updates as, recorded calls, delivery
//! attempts, faults.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};
use telehook_core::SequenceKey;

/// A Telegram user who talks to the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's id (positive).
    pub id: i64,
    /// `first_name`.
    pub first_name: String,
    /// `username`, without `@`.
    pub username: Option<String>,
    /// `language_code`, e.g. `en`.
    pub language_code: Option<String>,
}

impl User {
    /// A user with this id and first name.
    pub fn new(id: i64, first_name: impl Into<String>) -> Self {
        Self {
            id,
            first_name: first_name.into(),
            username: None,
            language_code: None,
        }
    }

    /// Sets `username`.
    #[must_use]
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets `language_code`.
    #[must_use]
    pub fn language_code(mut self, code: impl Into<String>) -> Self {
        self.language_code = Some(code.into());
        self
    }

    /// The Bot API `User` object.
    pub fn to_json(&self) -> Value {
        let mut user = json!({ "id": self.id, "is_bot": false, "first_name": self.first_name });
        if let Some(username) = &self.username {
            user["username"] = json!(username);
        }
        if let Some(code) = &self.language_code {
            user["language_code"] = json!(code);
        }
        user
    }
}

/// The type of a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatType {
    /// A one-to-one chat with a user; its id is the user's id.
    Private,
    /// A basic group.
    Group,
    /// A supergroup.
    Supergroup,
    /// A channel.
    Channel,
}

impl ChatType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Group => "group",
            Self::Supergroup => "supergroup",
            Self::Channel => "channel",
        }
    }
}

/// A chat in which updates happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    /// The chat id (a user's id for a private chat, negative for groups).
    pub id: i64,
    /// Its type.
    pub kind: ChatType,
    /// The title of a group or channel.
    pub title: Option<String>,
    /// `username` of a private chat or a public group or channel.
    pub username: Option<String>,
    /// `first_name` of a private chat.
    pub first_name: Option<String>,
}

impl Chat {
    /// The private chat between `user` and the bot.
    pub fn private(user: &User) -> Self {
        Self {
            id: user.id,
            kind: ChatType::Private,
            title: None,
            username: user.username.clone(),
            first_name: Some(user.first_name.clone()),
        }
    }

    /// A basic group (`id` negative, e.g. `-100`).
    pub fn group(id: i64, title: impl Into<String>) -> Self {
        Self {
            id,
            kind: ChatType::Group,
            title: Some(title.into()),
            username: None,
            first_name: None,
        }
    }

    /// A supergroup (`id` like `-1001234567890`).
    pub fn supergroup(id: i64, title: impl Into<String>) -> Self {
        Self {
            id,
            kind: ChatType::Supergroup,
            title: Some(title.into()),
            username: None,
            first_name: None,
        }
    }

    /// A channel (`id` like `-1001234567890`).
    pub fn channel(id: i64, title: impl Into<String>) -> Self {
        Self {
            id,
            kind: ChatType::Channel,
            title: Some(title.into()),
            username: None,
            first_name: None,
        }
    }

    /// The Bot API `Chat` object.
    pub fn to_json(&self) -> Value {
        let mut chat = json!({ "id": self.id, "type": self.kind.as_str() });
        if let Some(title) = &self.title {
            chat["title"] = json!(title);
        }
        if let Some(username) = &self.username {
            chat["username"] = json!(username);
        }
        if let Some(first_name) = &self.first_name {
            chat["first_name"] = json!(first_name);
        }
        chat
    }
}

/// The queue an update waits in for webhook delivery: one update per queue is in flight, so a
/// failing update holds back the rest of its queue. Keyed by telehook-core's [`SequenceKey`];
/// an update the emulator cannot place (an unknown kind) has a queue of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Lane {
    /// The server's queue tag (see `QUEUES`) and the key.
    Key(u8, SequenceKey),
    Alone(u64),
}

impl Lane {
    pub(crate) fn sequence_key(&self) -> Option<SequenceKey> {
        match self {
            Self::Key(_, key) => Some(key.clone()),
            Self::Alone(_) => None,
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(_, key) => key.fmt(f),
            Self::Alone(id) => write!(f, "update:{id}"),
        }
    }
}

/// Where the official server queues each kind for webhook delivery: the id it keys by, and a
/// tag that keeps kinds with the same id in separate queues (tdlib/telegram-bot-api
/// `Client::add_update_*`: `webhook_queue_id = id + (tag << 33)`), with the update's lifetime
/// in seconds.
const QUEUES: &[(&str, Keyed, u8, u64)] = &[
    ("message", Keyed::Chat, 0, 86_400),
    ("edited_message", Keyed::Chat, 0, 86_400),
    ("channel_post", Keyed::Chat, 0, 86_400),
    ("edited_channel_post", Keyed::Chat, 0, 86_400),
    ("inline_query", Keyed::From, 1, 30),
    ("chosen_inline_result", Keyed::From, 2, 600),
    ("callback_query", Keyed::From, 3, 150),
    ("shipping_query", Keyed::From, 4, 150),
    ("pre_checkout_query", Keyed::From, 4, 150),
    ("my_chat_member", Keyed::Chat, 5, 86_400),
    ("chat_member", Keyed::MemberUser, 6, 86_400),
    ("chat_join_request", Keyed::From, 6, 86_400),
    ("chat_boost", Keyed::Chat, 7, 86_400),
    ("removed_chat_boost", Keyed::Chat, 7, 86_400),
    ("message_reaction", Keyed::Chat, 8, 86_400),
    ("message_reaction_count", Keyed::Chat, 9, 86_400),
    ("business_connection", Keyed::User, 10, 86_400),
    ("business_message", Keyed::Chat, 11, 86_400),
    ("edited_business_message", Keyed::Chat, 11, 86_400),
    ("deleted_business_messages", Keyed::Chat, 11, 86_400),
    ("purchased_paid_media", Keyed::From, 12, 86_400),
    ("poll", Keyed::PollId, 0, 86_400),
    ("poll_answer", Keyed::AnswerPollId, 0, 86_400),
];

/// Which id of a payload keys its queue.
#[derive(Debug, Clone, Copy)]
enum Keyed {
    /// `chat.id`.
    Chat,
    /// `from.id`.
    From,
    /// `user.id`.
    User,
    /// `new_chat_member.user.id` (`chat_member`).
    MemberUser,
    /// `id` (`poll`).
    PollId,
    /// `poll_id` (`poll_answer`).
    AnswerPollId,
}

/// Kinds Telegram sends only when asked for in `allowed_updates`.
pub(crate) const OPT_IN_KINDS: &[&str] =
    &["chat_member", "message_reaction", "message_reaction_count"];

/// The queue of an update of `kind` with this `payload`.
pub(crate) fn lane(update_id: u64, kind: &str, payload: &Value) -> Lane {
    let id_at = |pointer: &str| payload.pointer(pointer).and_then(Value::as_i64);
    let key = QUEUES
        .iter()
        .find(|(k, ..)| *k == kind)
        .and_then(|(_, keyed, tag, _)| {
            let key = match keyed {
                Keyed::Chat => id_at("/chat/id").map(SequenceKey::Chat),
                Keyed::From => id_at("/from/id").map(SequenceKey::User),
                Keyed::User => id_at("/user/id").map(SequenceKey::User),
                Keyed::MemberUser => id_at("/new_chat_member/user/id").map(SequenceKey::User),
                Keyed::PollId => payload
                    .get("id")
                    .and_then(Value::as_str)
                    .map(|id| SequenceKey::Poll(id.to_owned())),
                Keyed::AnswerPollId => payload
                    .get("poll_id")
                    .and_then(Value::as_str)
                    .map(|id| SequenceKey::Poll(id.to_owned())),
            };
            key.map(|key| (*tag, key))
        });
    key.map_or(Lane::Alone(update_id), |(tag, key)| Lane::Key(tag, key))
}

/// How long an undelivered webhook update of `kind` lives (before scaling), as the official
/// server keeps it; kinds it does not name live a day.
pub(crate) fn lifetime(kind: &str) -> Duration {
    let secs = QUEUES
        .iter()
        .find(|(k, ..)| *k == kind)
        .map_or(86_400, |(.., secs)| *secs);
    Duration::from_secs(secs)
}

/// An update the test injected.
#[derive(Debug, Clone, PartialEq)]
pub struct Injected {
    /// Its `update_id`.
    pub update_id: u64,
    /// The whole Update object, as getUpdates or a webhook delivery hands it over.
    pub update: Value,
    /// False if the bot's `allowed_updates` filtered it out: the bot will never see it.
    pub queued: bool,
}

/// How a recorded call reached the emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Route {
    /// An HTTP request to `/bot{token}/{method}`.
    Http,
    /// A webhook reply: the call came in the response to the delivery of `update_id`.
    WebhookReply {
        /// The update whose delivery response carried the call.
        update_id: u64,
    },
}

/// What the emulator answered to a recorded call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CallOutcome {
    /// `{"ok":true,"result":…}`.
    Ok {
        /// The `result`.
        result: Value,
    },
    /// `{"ok":false,…}`.
    Error {
        /// `error_code`.
        error_code: u16,
        /// `description`.
        description: String,
    },
    /// No answer: a [`Fault::DropConnection`] closed the connection.
    Dropped,
    /// No answer: a [`Fault::Hang`] holds the call until the client gives up.
    Hung,
    /// A webhook reply Telegram ignores (`deleteWebhook`, `setWebhook`, `close`, `logOut`,
    /// `get*`): not executed.
    Ignored,
}

/// One Bot API call the bot made, over HTTP or as a webhook reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedCall {
    /// Position among all calls this bot made (0, 1, 2 …), even after old ones were dropped.
    pub seq: u64,
    /// The method, spelled as Telegram documents it (e.g. `sendMessage`) when the emulator
    /// knows it, else as sent.
    pub method: String,
    /// The parameters as received: form-encoded and multipart values are strings, JSON keeps
    /// its types.
    pub params: Map<String, Value>,
    /// The files uploaded with a `multipart/form-data` call.
    pub uploads: Vec<crate::params::Upload>,
    /// How the call arrived.
    pub route: Route,
    /// What the emulator answered.
    pub outcome: CallOutcome,
}

impl RecordedCall {
    /// The `result` of a successful call (for a webhook reply: what Telegram would have
    /// returned, though the bot never sees it).
    pub fn result(&self) -> Option<&Value> {
        match &self.outcome {
            CallOutcome::Ok { result } => Some(result),
            _ => None,
        }
    }

    /// A parameter as a string, whether it came as a JSON string, a number or form-encoded.
    pub fn param_str(&self, name: &str) -> Option<String> {
        match self.params.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    /// The `text` parameter.
    pub fn text(&self) -> Option<String> {
        self.param_str("text")
    }

    /// The `chat_id` parameter as a number, if it is one.
    pub fn chat_id(&self) -> Option<i64> {
        self.param_str("chat_id")?.parse().ok()
    }
}

/// How one webhook delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The webhook answered 2xx: the update is delivered.
    Delivered {
        /// The HTTP status.
        status: u16,
    },
    /// The attempt failed; the update will be sent again.
    Failed {
        /// The HTTP status, if the webhook answered at all.
        status: Option<u16>,
        /// As `getWebhookInfo.last_error_message` reads, e.g. "Read timeout expired".
        error: String,
    },
    /// The update expired before it could be delivered and was dropped (no request was made).
    Expired,
}

/// One entry of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryAttempt {
    /// The update sent.
    pub update_id: u64,
    /// Its queue: `None` for an update the emulator cannot place (an unknown kind), which is
    /// a queue of its own.
    #[serde(serialize_with = "sequence_key")]
    pub sequence_key: Option<SequenceKey>,
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
    /// How it ended.
    pub outcome: DeliveryOutcome,
    /// From sending the request to the end of the response (real time, not scaled). In JSON:
    /// `duration_ms`, milliseconds with microsecond precision (e.g. `5.57`).
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
}

impl DeliveryAttempt {
    /// True if the webhook answered 2xx.
    pub fn is_delivered(&self) -> bool {
        matches!(self.outcome, DeliveryOutcome::Delivered { .. })
    }
}

fn sequence_key<S: serde::Serializer>(
    key: &Option<SequenceKey>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let value = match key {
        Some(SequenceKey::Chat(id)) => json!({ "type": "chat", "id": id }),
        Some(SequenceKey::User(id)) => json!({ "type": "user", "id": id }),
        Some(SequenceKey::Poll(id)) => json!({ "type": "poll", "id": id }),
        None => Value::Null,
    };
    value.serialize(serializer)
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    // Whole microseconds, so the number is short and exact in decimal (`5.569`).
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    #[allow(clippy::cast_precision_loss)]
    let millis = micros as f64 / 1000.0;
    serializer.serialize_f64(millis)
}

/// A fault still planned by [`crate::BotHandle::inject_fault`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlannedFault {
    /// The method it applies to (`*` = any).
    pub method: String,
    /// How many more calls it plays for.
    pub remaining: usize,
    /// The fault.
    pub fault: Fault,
}

/// A failure the emulator plays instead of answering a call normally.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// `429 Too Many Requests: retry after N` with `parameters.retry_after`.
    TooManyRequests {
        /// Seconds, as reported to the bot (not scaled).
        retry_after: u64,
    },
    /// Any Bot API error, e.g. `403` "Forbidden: bot was blocked by the user".
    Error {
        /// `error_code`, also the HTTP status: from 400 to 599 (the HTTP test API refuses
        /// others; through the Rust API another is answered with HTTP status 400).
        error_code: u16,
        /// `description`.
        description: String,
    },
    /// Answers normally, but only after this long (real time, not scaled).
    Delay(Duration),
    /// Closes the connection without an answer: the client sees a network error.
    DropConnection,
    /// `502 Bad Gateway` with the HTML page of Telegram's front-end (nginx), not a JSON body:
    /// what a bot sees while Telegram's Bot API servers restart.
    BadGateway,
    /// Never answers: the call hangs until the client gives up (or the emulator stops).
    Hang,
}
