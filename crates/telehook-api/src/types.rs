//! Parameters and results of the typed helpers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A chat to send to: its numeric id, or `@username` of a public channel or supergroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ChatId {
    /// A numeric chat id (negative for groups and channels).
    Id(i64),
    /// `@channelusername`.
    Username(String),
}

impl From<i64> for ChatId {
    fn from(id: i64) -> Self {
        Self::Id(id)
    }
}

impl From<&str> for ChatId {
    fn from(username: &str) -> Self {
        Self::Username(username.to_owned())
    }
}

impl From<String> for ChatId {
    fn from(username: String) -> Self {
        Self::Username(username)
    }
}

/// Parameters of `getUpdates`. Every field is optional; `Default` asks for everything pending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GetUpdates {
    /// First update to return; calling with `offset` = last `update_id` + 1 confirms the earlier ones.
    /// Negative: that many updates from the end of the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// How many updates at most, 1–100 (Telegram's default 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u8>,
    /// Long-poll timeout in seconds (0 = short polling). The HTTP request timeout grows by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    /// Update kinds to receive; remembered by Telegram until changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_updates: Option<Vec<String>>,
}

/// Parameters of `setWebhook`. Its `Debug` output hides the `secret_token`.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[must_use]
pub struct SetWebhook {
    /// HTTPS URL to send updates to; an empty string removes the webhook.
    pub url: String,
    /// Sent back in `X-Telegram-Bot-Api-Secret-Token` with every delivery: 1–256 of `A-Z a-z 0-9 _ -`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_token: Option<String>,
    /// Deliveries in flight at once, 1–100 (Telegram's default 40).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u8>,
    /// Update kinds to receive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_updates: Option<Vec<String>>,
    /// Drop the updates waiting to be delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_pending_updates: Option<bool>,
    /// Fixed IP address to deliver to instead of resolving the URL's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
}

impl SetWebhook {
    /// `setWebhook` for `url` with Telegram's defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Sets `secret_token`.
    pub fn secret_token(mut self, secret_token: impl Into<String>) -> Self {
        self.secret_token = Some(secret_token.into());
        self
    }

    /// Sets `max_connections`.
    pub fn max_connections(mut self, max_connections: u8) -> Self {
        self.max_connections = Some(max_connections);
        self
    }

    /// Sets `allowed_updates`.
    pub fn allowed_updates<I, S>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_updates = Some(kinds.into_iter().map(Into::into).collect());
        self
    }

    /// Sets `drop_pending_updates`.
    pub fn drop_pending_updates(mut self, drop: bool) -> Self {
        self.drop_pending_updates = Some(drop);
        self
    }
}

impl fmt::Debug for SetWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetWebhook")
            .field("url", &self.url)
            .field(
                "secret_token",
                &self.secret_token.as_ref().map(|_| "<redacted>"),
            )
            .field("max_connections", &self.max_connections)
            .field("allowed_updates", &self.allowed_updates)
            .field("drop_pending_updates", &self.drop_pending_updates)
            .field("ip_address", &self.ip_address)
            .finish()
    }
}

/// The result of `getWebhookInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct WebhookInfo {
    /// The webhook URL; empty when no webhook is set (long polling).
    pub url: String,
    /// True if a custom certificate was uploaded.
    #[serde(default)]
    pub has_custom_certificate: bool,
    /// Updates waiting to be delivered.
    #[serde(default)]
    pub pending_update_count: u64,
    /// The IP address deliveries go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// Unix time of the last failed delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_date: Option<i64>,
    /// Why the last delivery failed, e.g. "Wrong response from the webhook: 500 Internal Server Error".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_message: Option<String>,
    /// Unix time of the last error syncing with Telegram's datacenters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synchronization_error_date: Option<i64>,
    /// Deliveries in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Update kinds subscribed to, when not the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_updates: Option<Vec<String>>,
}
