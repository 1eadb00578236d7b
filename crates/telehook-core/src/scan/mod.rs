//! The update probe: one pass over a webhook body that validates it exactly as strictly as
//! `serde_json` parsing it into a `serde_json::Value`, and picks out the few fields the
//! dispatcher needs (`update_id`, the kind, the ids in the kind's payload), without building
//! anything for the rest.
//!
//! The pass is serde_json's own parser driven by a few visitors (`visit.rs`): numbers, strings,
//! escapes and nesting are checked by the code that checks them for a `Value`, so the two
//! cannot disagree. A hand-written scanner did the same for about 13 % fewer instructions per
//! dispatch, not enough to keep a second JSON parser (issue 14: it disagreed with serde_json on
//! four kinds of input; the measurements are in the crate README). `tests.rs` compares the probe
//! with `serde_json::Value` on every fixture and on tens of thousands of mutated bodies,
//! `tests/edge_cases.rs` on hand-written edge cases.
//!
//! `strict.rs` (and its modules in `strict/`) holds the same rules for a handler's own type: one
//! parse into it (`strict_from_slice`) that is also the validation; `strict_tests.rs` compares
//! it with the probe and with the type's own parse.

use std::borrow::Cow;

use crate::invalid::InvalidUpdate;

mod strict;
mod visit;

pub(crate) use strict::{StrictError, from_slice as strict_from_slice};
pub(crate) use visit::{has_top_level_key, probe};

/// What the probe found in a valid body that is an object.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Probe<'a> {
    /// `update_id`: `Some(Ok)` for a non-negative integer, `Some(Err)` for another value or a
    /// duplicate.
    pub(crate) update_id: Option<Result<u64, InvalidUpdate>>,
    /// The first key other than `update_id`, decoded.
    pub(crate) kind: Option<Cow<'a, [u8]>>,
    /// The fields of that key's value, if it is an object.
    pub(crate) payload: Option<Payload>,
}

/// The fields of a payload that name its chat, its sender or its own id. A field of another
/// shape than expected is `None`: an odd payload is still an update.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Payload {
    /// `chat.id`
    pub(crate) chat: Option<i64>,
    /// `from.id`
    pub(crate) from: Option<i64>,
    /// `user.id`
    pub(crate) user: Option<i64>,
    /// `message.chat.id` (callback queries)
    pub(crate) message_chat: Option<i64>,
    /// `id` when it is a string (polls)
    pub(crate) id: Option<String>,
    /// `poll_id` when it is a string (poll answers)
    pub(crate) poll_id: Option<String>,
    /// `new_chat_member.user.id` (member changes)
    pub(crate) member: Option<i64>,
}

impl Payload {
    /// The same fields read from a parsed payload; `None` if it is not an object.
    pub(crate) fn from_value(payload: &serde_json::Value) -> Option<Self> {
        use serde_json::Value;
        let p = payload.as_object()?;
        let id = |name: &str| {
            p.get(name)
                .and_then(|o| o.get("id"))
                .and_then(Value::as_i64)
        };
        Some(Self {
            chat: id("chat"),
            from: id("from"),
            user: id("user"),
            message_chat: p
                .get("message")
                .and_then(|m| m.get("chat"))
                .and_then(|c| c.get("id"))
                .and_then(Value::as_i64),
            id: p.get("id").and_then(Value::as_str).map(str::to_owned),
            poll_id: p.get("poll_id").and_then(Value::as_str).map(str::to_owned),
            member: p
                .get("new_chat_member")
                .and_then(|m| m.get("user"))
                .and_then(|u| u.get("id"))
                .and_then(Value::as_i64),
        })
    }
}

#[cfg(test)]
mod tests;
