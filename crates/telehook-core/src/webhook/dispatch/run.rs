//! What one run carries through [`Inner`](super::Inner) (its facts and its timeout probe),
//! and the answers built without logging. The helpers that log stay in `dispatch.rs`, so their
//! events keep the `telehook_core::webhook::dispatch` target.

use std::time::{Duration, Instant};

use crate::guard::{Outcome, UpdateKey};
use crate::handler::Prepared;
use crate::webhook::error::Rejection;
use crate::webhook::policy::TimeoutEvent;
use crate::webhook::response::WebhookResponse;
use crate::webhook::telemetry;

/// What [`Inner::conclude`](super::Inner::conclude) needs to know about a run besides how it ended.
#[derive(Clone, Copy)]
pub(super) struct RunFacts {
    pub(super) key: UpdateKey,
    pub(super) failed_attempts: u32,
    pub(super) started: Instant,
}

/// What a timeout event or a failure's log needs from the update, kept after the update moved
/// into the handler.
#[derive(Clone)]
pub(super) struct TimeoutProbe {
    pub(super) kind: Option<std::borrow::Cow<'static, str>>,
    pub(super) chat_id: Option<i64>,
    /// The body, when the chat was not read on the way in (a handler of its own type).
    pub(super) raw: Option<bytes::Bytes>,
}

impl TimeoutProbe {
    /// The chat, read from the body if it was not known (a cold path: timeouts, failures).
    pub(super) fn chat_id(&self) -> Option<i64> {
        Prepared::chat_id(self.chat_id, self.raw.as_ref())
    }

    pub(super) fn event(
        &self,
        update_id: u64,
        elapsed: Duration,
        redelivery: bool,
    ) -> TimeoutEvent {
        TimeoutEvent {
            update_id,
            kind: self.kind.as_deref().map(str::to_owned),
            chat_id: self.chat_id(),
            elapsed,
            redelivery,
        }
    }
}

/// `503` for a delivery that arrived or finished arriving while the dispatcher drains.
pub(super) fn refuse_draining() -> WebhookResponse {
    let rejection = Rejection::Draining;
    telemetry::refused(&rejection);
    WebhookResponse::rejected(rejection)
}

pub(super) fn outcome_response(outcome: Outcome) -> WebhookResponse {
    match outcome {
        Outcome::Handled { reply: Some(reply) } => WebhookResponse::json(reply),
        Outcome::Handled { reply: None } | Outcome::GaveUp => WebhookResponse::ok(),
    }
}

pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    format!("handler panicked: {text}")
}
