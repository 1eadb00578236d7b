//! The reference: what a body is, decided by `serde_json` alone plus the documented rules of an
//! update, written out here from the docs (not from telehook's code):
//!
//! - it is JSON as `serde_json::from_slice::<serde_json::Value>` reads it (UTF-8, RFC 8259,
//!   numbers in `f64` range as serde_json rounds them, 128 levels at most);
//! - it is an object (not the `raw_value` feature's `{"$serde_json::private::RawValue":…}`
//!   wrapper, which `Value` unwraps) whose top-level keys are all different (`docs/telegram.md`: a repeated
//!   key has no single reading, serde_json's `Value` keeps the last copy, a derived struct
//!   refuses it);
//! - `update_id` is a positive integer that fits `u64` (serde_json reads `-0`, `1.0`, `1e3`
//!   and integers beyond `u64` as floats: not an update id);
//! - at most one other key, the update's kind (Bot API `Update`: "at most one of the optional
//!   parameters can be present"), unless `FUZZ_SEVERAL_KINDS=first`;
//! - chat id = `<kind>.chat.id`, else `<kind>.message.chat.id`; sender = `<kind>.from.id`, else
//!   `<kind>.user.id`, each an integer serde_json reads as `i64` (so `-0` is none);
//! - the queue (`docs/telegram.md`, "Ordering"): by user for the user kinds, by poll for `poll`
//!   (`id`) and `poll_answer` (`poll_id`), by the member for `chat_member`, by chat otherwise.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use telehook_core::SequenceKey;

/// Whether a body with two different update kinds is refused (the Bot API says an update has
/// at most one). `FUZZ_SEVERAL_KINDS=first` models "the first kind counts" instead.
pub fn several_kinds_refused() -> bool {
    static RULE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *RULE.get_or_init(|| std::env::var("FUZZ_SEVERAL_KINDS").as_deref() != Ok("first"))
}

/// The key serde_json's `RawValue` uses to carry JSON text through a `Deserializer`.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Kinds Telegram queues by the user (docs/telegram.md, "Ordering").
const USER_KINDS: &[&str] = &[
    "callback_query",
    "inline_query",
    "chosen_inline_result",
    "shipping_query",
    "pre_checkout_query",
    "chat_join_request",
    "business_connection",
    "purchased_paid_media",
];

/// What the reference says an update is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// `update_id`.
    pub update_id: u64,
    /// The first key other than `update_id`.
    pub kind: Option<String>,
    /// The chat id.
    pub chat_id: Option<i64>,
    /// The sender id.
    pub sender_id: Option<i64>,
    /// The queue.
    pub sequence_key: Option<SequenceKey>,
}

/// The reference's verdict on a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// serde_json refuses it.
    NotJson,
    /// JSON, but not an update (why).
    NotAnUpdate(&'static str),
    /// An update.
    Update(Expected),
}

impl Verdict {
    /// The expected update, if the body is one.
    pub fn update(&self) -> Option<&Expected> {
        match self {
            Self::Update(e) => Some(e),
            _ => None,
        }
    }
}

/// The top-level members of an object in document order, duplicates kept.
struct Entries(Option<Vec<(String, Value)>>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Entries(Some(out)))
            }
        }
        d.deserialize_map(V)
    }
}

/// The reference verdict for `body`.
pub fn reference(body: &[u8]) -> Verdict {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Verdict::NotJson;
    };
    if !value.is_object() {
        return Verdict::NotAnUpdate("not an object");
    }
    let entries = match serde_json::from_slice::<Entries>(body) {
        Ok(Entries(Some(entries))) => entries,
        // serde_json took it as a Value object: reading its members in order cannot fail.
        _ => unreachable!("an object serde_json parsed does not parse as a map"),
    };
    // With serde_json's `raw_value` feature (on in telehook-core), an object whose first key is
    // this token reads, as a `Value`, as the JSON text in its string. telehook refuses that at
    // the top level (an update is never written so); inside a payload it reads as `Value` does.
    if entries.first().is_some_and(|(k, _)| k == RAW_VALUE_TOKEN) {
        return Verdict::NotAnUpdate("raw-value token as the first top-level key");
    }
    for (i, (key, _)) in entries.iter().enumerate() {
        if entries[..i].iter().any(|(k, _)| k == key) {
            return Verdict::NotAnUpdate("duplicate top-level key");
        }
    }
    let Some((_, id)) = entries.iter().find(|(k, _)| k == "update_id") else {
        return Verdict::NotAnUpdate("no update_id");
    };
    let update_id = match id.as_u64() {
        Some(id) if id > 0 => id,
        _ => return Verdict::NotAnUpdate("update_id not a positive integer"),
    };
    let mut kinds = entries.iter().filter(|(k, _)| k != "update_id");
    let first = kinds.next();
    if several_kinds_refused() && kinds.next().is_some() {
        return Verdict::NotAnUpdate("more than one kind");
    }
    let Some((kind, payload)) = first else {
        return Verdict::Update(Expected {
            update_id,
            kind: None,
            chat_id: None,
            sender_id: None,
            sequence_key: None,
        });
    };
    let (chat_id, sender_id, sequence_key) = keys(kind, payload);
    Verdict::Update(Expected {
        update_id,
        kind: Some(kind.clone()),
        chat_id,
        sender_id,
        sequence_key,
    })
}

/// Chat id, sender id and queue of a payload, per the rules above.
pub fn keys(kind: &str, payload: &Value) -> (Option<i64>, Option<i64>, Option<SequenceKey>) {
    if !payload.is_object() {
        return (None, None, None);
    }
    let id_of = |v: Option<&Value>| v.and_then(|o| o.get("id")).and_then(Value::as_i64);
    let chat_id = id_of(payload.get("chat"))
        .or_else(|| id_of(payload.get("message").and_then(|m| m.get("chat"))));
    let sender_id = id_of(payload.get("from")).or_else(|| id_of(payload.get("user")));
    let key = if USER_KINDS.contains(&kind) {
        sender_id.map(SequenceKey::User)
    } else if kind == "poll" {
        payload
            .get("id")
            .and_then(Value::as_str)
            .map(|s| SequenceKey::Poll(s.to_owned()))
    } else if kind == "poll_answer" {
        payload
            .get("poll_id")
            .and_then(Value::as_str)
            .map(|s| SequenceKey::Poll(s.to_owned()))
    } else if kind == "chat_member" {
        id_of(payload.get("new_chat_member").and_then(|m| m.get("user"))).map(SequenceKey::User)
    } else {
        chat_id.map(SequenceKey::Chat)
    };
    (chat_id, sender_id, key)
}
