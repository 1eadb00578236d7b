//! Sending a call in the webhook response when the update allows it, over HTTP otherwise.

use serde::Serialize;
use serde_json::Value;
use telehook_core::Context;

use crate::{ApiError, Bot};

/// How a call sent with [`Bot::send_or_reply`] left.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Sent {
    /// In the webhook response: Telegram executes it but never returns its result or error.
    WebhookReply,
    /// Over HTTP, with the method's `result`.
    Http(Value),
}

impl Bot {
    /// Sends `method` as a webhook reply when `ctx` allows one (a webhook delivery whose
    /// response holds no call yet), else over HTTP. Any [`telehook_core::WebhookReplyError`]
    /// means HTTP; only the HTTP call can fail.
    ///
    /// A webhook reply saves a round trip but hides the call's result and errors, so use it for
    /// calls whose result the handler does not need.
    pub async fn send_or_reply<P>(
        &self,
        ctx: &Context,
        method: &str,
        params: &P,
    ) -> Result<Sent, ApiError>
    where
        P: Serialize + ?Sized,
    {
        match ctx.webhook_reply(method, params) {
            Ok(()) => Ok(Sent::WebhookReply),
            Err(reason) => {
                tracing::debug!(update_id = ctx.update_id(), method, %reason, "sending over HTTP");
                self.call(method, params).await.map(Sent::Http)
            }
        }
    }
}
