//! The light [`Update`] view, the [`SequenceKey`] Telegram orders deliveries by, and the
//! [`UpdateType`] trait that lets handlers take their own update type.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer};

use crate::invalid::InvalidUpdate;
use crate::scan::{self, Payload};

/// The queue an update belongs to: Telegram delivers one update per queue at a time, so updates
/// with the same key must be handled one after another (see `docs/timeouts.md`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SequenceKey {
    /// The chat id: messages, edits, channel posts, business messages, the bot's own member
    /// changes (`my_chat_member`), reactions, boosts.
    Chat(i64),
    /// The user id: callback queries, inline queries, chosen inline results, shipping and
    /// pre-checkout queries, join requests, paid media purchases, business connections, and
    /// `chat_member` (the member whose status changed).
    User(i64),
    /// The poll id: `poll` and `poll_answer` updates.
    Poll(String),
}

impl fmt::Display for SequenceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chat(id) => write!(f, "chat:{id}"),
            Self::User(id) => write!(f, "user:{id}"),
            Self::Poll(id) => write!(f, "poll:{id}"),
        }
    }
}

/// A Telegram update: the original JSON, untouched, plus the few facts a dispatcher needs.
///
/// Unknown fields and unknown update kinds pass through: [`Update::raw`] is exactly the body
/// Telegram sent, and [`Update::deserialize`] turns it into any type you like.
#[derive(Clone)]
pub struct Update {
    raw: Bytes,
    update_id: u64,
    pub(crate) kind: Option<Cow<'static, str>>,
    chat_id: Option<i64>,
    sender_id: Option<i64>,
    sequence_key: Option<SequenceKey>,
}

impl fmt::Debug for Update {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Update")
            .field("update_id", &self.update_id)
            .field("kind", &self.kind())
            .field("chat_id", &self.chat_id)
            .field("sender_id", &self.sender_id)
            .field("sequence_key", &self.sequence_key)
            .field("raw_len", &self.raw.len())
            .finish()
    }
}

impl Update {
    /// Parses and validates a JSON body: it must be an object with a positive integer
    /// `update_id`. The bytes are kept as they are, without a copy.
    pub fn from_bytes(raw: impl Into<Bytes>) -> Result<Self, InvalidUpdate> {
        let raw = raw.into();
        let probe = parse_probe(&raw)?;
        Ok(Self::from_probe(raw, probe))
    }

    fn from_probe(raw: Bytes, probe: Probe) -> Self {
        let (chat_id, sender_id, sequence_key) = match &probe.kind {
            Some(kind) => keys_for(kind, probe.payload),
            None => (None, None, None),
        };
        Self {
            raw,
            update_id: probe.update_id,
            kind: probe.kind,
            chat_id,
            sender_id,
            sequence_key,
        }
    }

    /// The update's unique identifier (`update_id`).
    pub fn update_id(&self) -> u64 {
        self.update_id
    }

    /// The name of the field that holds the payload (`"message"`, `"callback_query"`, or a kind
    /// newer than this crate). `None` only if the object holds nothing but `update_id`.
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    /// The chat the update happened in, where the payload names one (`chat.id`, or the chat of
    /// the message a callback query belongs to).
    pub fn chat_id(&self) -> Option<i64> {
        self.chat_id
    }

    /// The user who caused the update (`from.id`, or `user.id` for poll answers and reactions).
    pub fn sender_id(&self) -> Option<i64> {
        self.sender_id
    }

    /// The queue Telegram puts this update in; updates with equal keys are delivered in order,
    /// one at a time. `None` for kinds Telegram does not order (or that this crate does not know).
    pub fn sequence_key(&self) -> Option<&SequenceKey> {
        self.sequence_key.as_ref()
    }

    /// The redelivery guard's key for this update.
    pub(crate) fn key(&self) -> crate::UpdateKey {
        crate::UpdateKey::new(self.update_id, &self.raw)
    }

    /// The JSON exactly as received.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The JSON exactly as received, as text.
    pub fn raw_str(&self) -> &str {
        // `from_bytes` ran a JSON parser over these bytes, and JSON text is UTF-8.
        std::str::from_utf8(&self.raw).unwrap_or_default()
    }

    /// Deserializes the update into any type: `serde_json::Value`, a struct of your own, or a
    /// library's `Update` type.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Update {
    /// Reads one update out of a larger document (a `getUpdates` answer, a relay batch),
    /// keeping its JSON text intact. Works with `serde_json` only, as it needs raw values.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        let bytes = Bytes::from(raw.get().to_owned());
        Self::from_bytes(bytes).map_err(de::Error::custom)
    }
}

/// How to get what the dispatcher and the long-polling runner need out of an update type.
///
/// Implemented for [`Update`] and `serde_json::Value`, and behind the `frankenstein` and
/// `teloxide` features for those crates' `Update` types. For a struct of your own, implement
/// [`UpdateType::update_id`] (required) and, if you like, [`UpdateType::sequence_key`]
/// (only the `telehook.update` tracing span reads it, see there);
/// [`UpdateType::from_update`] deserializes it from the original JSON. The crate README has
/// an example.
///
/// Under a webhook the body is parsed once, straight into the type with `serde_json` (not
/// through `from_update`), and that parse is the validation: values the type ignores are
/// checked as `serde_json::Value` checks them, and the top level as [`Update::from_bytes`]
/// checks it (one positive `update_id`, at most one kind), with `update_id` and the kind noted
/// on the way. A body that does not parse into the type is run through the validator: not an
/// update → `400`; an update the type does not fit → the handler's error, as under polling.
pub trait UpdateType: DeserializeOwned + Send + 'static {
    /// Builds the value from an already validated update. The default deserializes the JSON.
    fn from_update(update: Update) -> Result<Self, serde_json::Error> {
        update.deserialize()
    }

    /// The update's `update_id`.
    fn update_id(&self) -> u64;

    /// The queue Telegram orders this update in, as shown in the `sequence_key` field of the
    /// `telehook.update` tracing span; `None` (the default) leaves the field empty.
    ///
    /// Nothing else reads it: ordering never depends on it. The long-polling runner orders
    /// runs by [`Update::sequence_key`] (telehook-polling's `RunnerConfig::key_fn`, which
    /// sees the light [`Update`] whatever type the handler takes), telehook-queue partitions
    /// by [`Update::sequence_key`] too, and a webhook leaves ordering to Telegram (one
    /// delivery per queue at a time). Implement it to see the key in traces, or to read it
    /// from your own type; keep it equal to [`Update::sequence_key`] for the same body.
    fn sequence_key(&self) -> Option<SequenceKey> {
        None
    }
}

impl UpdateType for Update {
    fn from_update(update: Update) -> Result<Self, serde_json::Error> {
        Ok(update)
    }

    fn update_id(&self) -> u64 {
        self.update_id
    }

    fn sequence_key(&self) -> Option<SequenceKey> {
        self.sequence_key.clone()
    }
}

impl UpdateType for serde_json::Value {
    fn update_id(&self) -> u64 {
        self.get("update_id")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    }

    fn sequence_key(&self) -> Option<SequenceKey> {
        let (kind, payload) = self
            .as_object()?
            .iter()
            .find(|(k, _)| k.as_str() != "update_id")?;
        keys_for(kind, Payload::from_value(payload)).2
    }
}

#[cfg(feature = "frankenstein")]
mod frankenstein_impl {
    use super::{Payload, SequenceKey, UpdateType, keys_for};

    impl UpdateType for frankenstein::updates::Update {
        fn update_id(&self) -> u64 {
            u64::from(self.update_id)
        }

        fn sequence_key(&self) -> Option<SequenceKey> {
            // The payload is an externally tagged enum: its one key is the kind's name.
            let value = serde_json::to_value(&self.content).ok()?;
            let (kind, payload) = value.as_object()?.iter().next()?;
            keys_for(kind, Payload::from_value(payload)).2
        }
    }
}

#[cfg(feature = "teloxide")]
mod teloxide_impl {
    use super::{SequenceKey, UpdateType};
    use teloxide_core::types::{Update, UpdateKind};

    impl UpdateType for Update {
        fn update_id(&self) -> u64 {
            u64::from(self.id.0)
        }

        fn sequence_key(&self) -> Option<SequenceKey> {
            match &self.kind {
                UpdateKind::Poll(poll) => Some(SequenceKey::Poll(poll.id.to_string())),
                UpdateKind::PollAnswer(answer) => Some(SequenceKey::Poll(answer.poll_id.0.clone())),
                UpdateKind::ChatMember(change) => i64::try_from(change.new_chat_member.user.id.0)
                    .ok()
                    .map(SequenceKey::User),
                UpdateKind::CallbackQuery(_)
                | UpdateKind::InlineQuery(_)
                | UpdateKind::ChosenInlineResult(_)
                | UpdateKind::ShippingQuery(_)
                | UpdateKind::PreCheckoutQuery(_)
                | UpdateKind::ChatJoinRequest(_) => self
                    .from()
                    .and_then(|user| i64::try_from(user.id.0).ok())
                    .map(SequenceKey::User),
                _ => self.chat().map(|chat| SequenceKey::Chat(chat.id.0)),
            }
        }
    }
}

// --- parsing ------------------------------------------------------------------------------

/// The update kinds this version knows, written once: `with_known_kinds!(callback)` expands to
/// `callback! { "message", "edited_message", … }`. `KNOWN_KINDS` below and the metrics'
/// static `kind` keys (`webhook/telemetry.rs`, which needs the names as literals) are both
/// expanded from it, so the two cannot drift apart.
macro_rules! with_known_kinds {
    ($callback:ident) => {
        $callback! {
            "message",
            "edited_message",
            "channel_post",
            "edited_channel_post",
            "business_connection",
            "business_message",
            "edited_business_message",
            "deleted_business_messages",
            "message_reaction",
            "message_reaction_count",
            "inline_query",
            "chosen_inline_result",
            "callback_query",
            "shipping_query",
            "pre_checkout_query",
            "purchased_paid_media",
            "poll",
            "poll_answer",
            "my_chat_member",
            "chat_member",
            "chat_join_request",
            "chat_boost",
            "removed_chat_boost",
        }
    };
}
pub(crate) use with_known_kinds;

/// `const KNOWN_KINDS` from the list of `with_known_kinds!`.
macro_rules! known_kinds_const {
    ($($kind:literal),* $(,)?) => {
        /// The update kinds this version knows (the metrics' `kind` label values).
        const KNOWN_KINDS: &[&str] = &[$($kind),*];
    };
}
with_known_kinds!(known_kinds_const);

/// The kinds this version knows (the metrics' `kind` label values).
#[cfg(test)]
pub(crate) fn known_kinds() -> &'static [&'static str] {
    KNOWN_KINDS
}

struct Probe {
    update_id: u64,
    kind: Option<Cow<'static, str>>,
    payload: Option<Payload>,
}

pub(crate) fn kind_name(key: &[u8]) -> Cow<'static, str> {
    match KNOWN_KINDS.iter().find(|known| known.as_bytes() == key) {
        Some(known) => Cow::Borrowed(known),
        // Valid UTF-8: the body was checked, and escapes decode to UTF-8.
        None => Cow::Owned(String::from_utf8_lossy(key).into_owned()),
    }
}

/// Chat id, sender id and queue key for a payload of the given kind (`docs/telegram.md`, "Ordering").
fn keys_for(
    kind: &str,
    payload: Option<Payload>,
) -> (Option<i64>, Option<i64>, Option<SequenceKey>) {
    let Some(p) = payload else {
        return (None, None, None);
    };
    let chat_id = p.chat.or(p.message_chat);
    let sender_id = p.from.or(p.user);
    let key = match kind {
        "callback_query"
        | "inline_query"
        | "chosen_inline_result"
        | "shipping_query"
        | "pre_checkout_query"
        | "chat_join_request"
        | "purchased_paid_media"
        | "business_connection" => sender_id.map(SequenceKey::User),
        "poll" => p.id.map(SequenceKey::Poll),
        // The official server queues a poll answer by its poll and a member change by the
        // member (`Client::add_update_poll_answer`, `Client::add_update_chat_member`).
        "poll_answer" => p.poll_id.map(SequenceKey::Poll),
        "chat_member" => p.member.map(SequenceKey::User),
        // Every other kind, known or newer than this crate, is ordered by its chat.
        _ => chat_id.map(SequenceKey::Chat),
    };
    (chat_id, sender_id, key)
}

fn parse_probe(raw: &[u8]) -> Result<Probe, InvalidUpdate> {
    let probe = scan::probe(raw)?.ok_or(InvalidUpdate::NotAnObject)?;
    let update_id = match probe.update_id {
        None => return Err(InvalidUpdate::MissingUpdateId),
        Some(Err(e)) => return Err(e),
        Some(Ok(0)) => return Err(InvalidUpdate::BadUpdateId),
        Some(Ok(id)) => id,
    };
    Ok(Probe {
        update_id,
        kind: probe.kind.as_deref().map(kind_name),
        payload: probe.payload,
    })
}

#[cfg(test)]
mod tests;
