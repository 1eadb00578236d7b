//! The per-update [`Context`] and the webhook reply slot it carries.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

/// Where an update came from; handlers rarely need to care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// A webhook delivery: a webhook reply may be possible.
    Webhook,
    /// Long polling, a relay or a test: calls go through the Bot API over HTTP.
    Detached,
}

/// Why a webhook reply was not taken. Every variant means: send the call over HTTP instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookReplyError {
    /// The update did not come from a webhook delivery (long polling, relay, tests).
    #[error(
        "no webhook reply is possible: the update did not come from a webhook delivery \
         (long polling, a relay or a test); call the method over HTTP instead, e.g. with \
         telehook-api's `Bot::send_or_reply`, which uses the webhook reply when it can"
    )]
    NotAWebhook,
    /// The context already carries a webhook reply: a delivery response holds only one call.
    #[error(
        "a webhook reply was already set for update {update_id}: only one call fits in a response"
    )]
    AlreadyUsed {
        /// The update whose response is taken.
        update_id: u64,
    },
    /// The response for this update has already been sent (after an `on_timeout = Return`),
    /// so the call would be lost.
    #[error("the response for update {update_id} was already sent; send `{method}` over HTTP")]
    ResponseSent {
        /// The update whose response has left.
        update_id: u64,
        /// The method that was attempted.
        method: String,
    },
    /// Telegram ignores this method in a webhook reply (`get*`, `setWebhook`, `deleteWebhook`,
    /// `close`, `logOut`).
    #[error("Telegram ignores `{method}` in a webhook reply; call it over HTTP")]
    IgnoredMethod {
        /// The method that was attempted.
        method: String,
    },
    /// The parameters do not serialize to a JSON object, or already hold a `method` field.
    #[error("webhook reply parameters for `{method}` are invalid: {reason}")]
    InvalidParams {
        /// The method that was attempted.
        method: String,
        /// What is wrong with them.
        reason: String,
    },
}

/// True if `method` has the shape of a Bot API method name: a non-empty ASCII word such as
/// `sendMessage` (<https://core.telegram.org/bots/api#making-requests>). The one check every
/// crate uses before putting a name into a URL or a webhook reply.
pub fn is_valid_method_name(method: &str) -> bool {
    !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// True if Telegram ignores `method` in a webhook reply (method names are case-insensitive).
pub fn is_ignored_in_webhook_reply(method: &str) -> bool {
    let starts_with_get = method.len() >= 3 && method[..3].eq_ignore_ascii_case("get");
    starts_with_get
        || ["setWebhook", "deleteWebhook", "close", "logOut"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method))
}

#[derive(Debug)]
enum SlotState {
    Open,
    Taken(Bytes),
    Sent,
}

/// The one place a handler's webhook reply waits until the dispatcher writes the response.
#[derive(Debug)]
pub(crate) struct ReplySlot {
    state: Mutex<SlotState>,
}

impl ReplySlot {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SlotState::Open),
        })
    }

    /// Takes the reply (if any) and closes the slot: later attempts get `ResponseSent`.
    pub(crate) fn close(&self) -> Option<Bytes> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match std::mem::replace(&mut *state, SlotState::Sent) {
            SlotState::Taken(body) => Some(body),
            SlotState::Open | SlotState::Sent => None,
        }
    }
}

/// What a handler learns about the update it is handling, and its way to answer with a
/// webhook reply. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    update_id: u64,
    failed_attempts: u32,
    received_at: Instant,
    timeout: Option<Duration>,
    reply: Option<Arc<ReplySlot>>,
    extensions: Option<Arc<http::Extensions>>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("update_id", &self.update_id)
            .field("source", &self.source())
            .field("failed_attempts", &self.failed_attempts)
            .field("elapsed", &self.received_at.elapsed())
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn webhook(
        update_id: u64,
        failed_attempts: u32,
        received_at: Instant,
        timeout: Duration,
        reply: Arc<ReplySlot>,
    ) -> Self {
        Self {
            update_id,
            failed_attempts,
            received_at,
            timeout: Some(timeout),
            reply: Some(reply),
            extensions: None,
        }
    }

    /// A context for an update that did not come from a webhook delivery (long polling, a
    /// relay, a test): no webhook reply is possible.
    pub fn detached(update_id: u64) -> Self {
        Self {
            update_id,
            failed_attempts: 0,
            received_at: Instant::now(),
            timeout: None,
            reply: None,
            extensions: None,
        }
    }

    /// Sets how many earlier attempts at this update failed, for a context a queue worker
    /// builds: the count the queue kept, so [`Context::failed_attempts`] means the same under
    /// a queue as under a webhook.
    #[must_use]
    pub fn with_failed_attempts(mut self, failed_attempts: u32) -> Self {
        self.failed_attempts = failed_attempts;
        self
    }

    /// Attaches what the transport knows about the request (an adapter's or a platform's
    /// typed values), for the handler to read with [`Context::extension`]. Replaces any
    /// extensions attached before; an empty set costs nothing.
    #[must_use]
    pub fn with_extensions(mut self, extensions: http::Extensions) -> Self {
        self.extensions = (!extensions.is_empty()).then(|| Arc::new(extensions));
        self
    }

    /// A typed value the adapter attached to the request: the framework's request extensions
    /// (for `tower`-based servers) and what the platform provides (telehook-lambda attaches
    /// the invocation's request id and deadline). `None` if there is no value of type `T`.
    ///
    /// ```
    /// use telehook_core::Context;
    ///
    /// #[derive(Clone, Debug, PartialEq)]
    /// struct RequestId(String);
    ///
    /// let mut extensions = telehook_core::http::Extensions::new();
    /// extensions.insert(RequestId("abc".into()));
    /// let ctx = Context::detached(1).with_extensions(extensions);
    /// assert_eq!(ctx.extension::<RequestId>(), Some(&RequestId("abc".into())));
    /// assert_eq!(ctx.extension::<u32>(), None);
    /// ```
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.extensions.as_deref()?.get::<T>()
    }

    /// The `update_id` being handled.
    pub fn update_id(&self) -> u64 {
        self.update_id
    }

    /// Where the update came from.
    pub fn source(&self) -> Source {
        if self.reply.is_some() {
            Source::Webhook
        } else {
            Source::Detached
        }
    }

    /// How many earlier deliveries of this update ended with the handler failing.
    pub fn failed_attempts(&self) -> u32 {
        self.failed_attempts
    }

    /// Time since the update was received.
    pub fn elapsed(&self) -> Duration {
        self.received_at.elapsed()
    }

    /// Time left before the dispatcher's timeout fires, if there is one. Past it, a webhook
    /// reply may no longer reach Telegram.
    pub fn remaining(&self) -> Option<Duration> {
        self.timeout.map(|t| t.saturating_sub(self.elapsed()))
    }

    /// When the dispatcher's timeout fires, if there is one: the configured timeout after the
    /// run started, or earlier if the platform's [`InvocationDeadline`](crate::InvocationDeadline)
    /// comes first. Budget slow work against it.
    pub fn deadline(&self) -> Option<Instant> {
        self.timeout.map(|t| self.received_at + t)
    }

    /// True while a webhook reply could still be set (webhook delivery, none set yet, response
    /// not yet sent).
    pub fn can_webhook_reply(&self) -> bool {
        self.reply.as_ref().is_some_and(|slot| {
            matches!(
                *slot
                    .state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                SlotState::Open
            )
        })
    }

    /// Carries one Bot API call in the HTTP response to this delivery, saving a round trip.
    ///
    /// `params` must serialize to a JSON object (the method's parameters). Telegram never
    /// returns the call's result or error, so use this for fire-and-forget calls such as
    /// `sendMessage`. Any error means the call was not taken: send it over HTTP instead.
    pub fn webhook_reply<P: Serialize>(
        &self,
        method: &str,
        params: P,
    ) -> Result<(), WebhookReplyError> {
        let Some(slot) = &self.reply else {
            return Err(WebhookReplyError::NotAWebhook);
        };
        if is_ignored_in_webhook_reply(method) {
            return Err(WebhookReplyError::IgnoredMethod {
                method: method.to_owned(),
            });
        }
        let invalid = |reason: String| WebhookReplyError::InvalidParams {
            method: method.to_owned(),
            reason,
        };
        if !is_valid_method_name(method) {
            return Err(invalid(
                "a method name is a non-empty ASCII word like `sendMessage`".into(),
            ));
        }
        let body = reply_body(method, &params).map_err(invalid)?;

        let mut state = slot
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *state {
            SlotState::Open => {
                *state = SlotState::Taken(body);
                Ok(())
            }
            SlotState::Taken(_) => Err(WebhookReplyError::AlreadyUsed {
                update_id: self.update_id,
            }),
            SlotState::Sent => Err(WebhookReplyError::ResponseSent {
                update_id: self.update_id,
                method: method.to_owned(),
            }),
        }
    }
}

/// Serializes `params` once, straight after `{"method":"…"`, and turns the object's own `{`
/// into the separator: `{"method":"…",<params>}` in one buffer.
fn reply_body<P: Serialize>(method: &str, params: &P) -> Result<Bytes, String> {
    // The method name was checked to be ASCII alphanumeric, so it needs no escaping.
    let mut body = Vec::with_capacity(128);
    body.extend_from_slice(b"{\"method\":\"");
    body.extend_from_slice(method.as_bytes());
    body.push(b'"');
    let start = body.len();
    serde_json::to_writer(&mut body, params).map_err(|e| e.to_string())?;
    let params = &body[start..];
    match params.first() {
        Some(b'{') => {}
        Some(b'[') => return Err("expected a JSON object, got an array".into()),
        Some(b'"') => return Err("expected a JSON object, got a string".into()),
        _ => return Err("expected a JSON object".into()),
    }
    if may_name(params, b"method") && crate::scan::has_top_level_key(params, b"method") {
        return Err("the parameters already hold a `method` field".into());
    }
    if params.get(1) == Some(&b'}') {
        // No parameters: drop the `{` and keep the `}` that closes the body.
        body.remove(start);
    } else {
        body[start] = b',';
    }
    Ok(Bytes::from(body))
}

/// False if `json` surely holds no key `key`: neither the word nor any escape (`\\`) in it.
/// Eight bytes at a time, so the full check runs only for parameters that may hold the key
/// (most hold neither, and the full check walks the whole JSON).
fn may_name(json: &[u8], key: &[u8]) -> bool {
    let Some(&first) = key.first() else {
        return true;
    };
    let hit = |i: usize| json[i] == b'\\' || (json[i] == first && json[i..].starts_with(key));
    let (chunks, _) = json.as_chunks::<8>();
    for (n, chunk) in chunks.iter().enumerate() {
        let word = u64::from_le_bytes(*chunk);
        if (has_byte(word, first) || has_byte(word, b'\\')) && (n * 8..n * 8 + 8).any(hit) {
            return true;
        }
    }
    (chunks.len() * 8..json.len()).any(hit)
}

/// True if one of the eight bytes of `word` is `byte`.
const fn has_byte(word: u64, byte: u8) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let x = word ^ (ONES * byte as u64);
    x.wrapping_sub(ONES) & !x & HIGHS != 0
}

#[cfg(test)]
mod tests;
