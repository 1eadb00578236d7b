//! [`Bot`]: the HTTP client for one bot token.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::types::{ChatId, GetUpdates, SetWebhook, WebhookInfo};

/// Where the Bot API lives unless told otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.telegram.org";

/// How long one call may take (connect, send, answer) unless told otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a `getUpdates` call may take beyond its long-poll `timeout` before it counts as lost.
pub const DEFAULT_LONG_POLL_MARGIN: Duration = Duration::from_secs(10);

/// A Bot API client for one bot token. Cheap to clone: clones share one connection pool.
///
/// Its `Debug` output, its logs and its errors never contain the token.
#[derive(Clone)]
pub struct Bot {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    token: String,
    base_url: String,
    request_timeout: Duration,
    long_poll_margin: Duration,
}

impl fmt::Debug for Bot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bot")
            .field("bot_id", &self.bot_id())
            .field("token", &"<redacted>")
            .field("base_url", &self.inner.base_url)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Bot`]: base URL, timeouts, HTTP client.
#[must_use = "a builder does nothing until `build` is called"]
pub struct BotBuilder {
    token: String,
    base_url: String,
    request_timeout: Duration,
    long_poll_margin: Duration,
    client: Option<reqwest::Client>,
}

impl fmt::Debug for BotBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotBuilder")
            .field("token", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("request_timeout", &self.request_timeout)
            .field("long_poll_margin", &self.long_poll_margin)
            .finish_non_exhaustive()
    }
}

impl BotBuilder {
    /// The Bot API's address, e.g. `http://127.0.0.1:8081` for a local Bot API server or the
    /// telehook emulator. Default: [`DEFAULT_BASE_URL`].
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into().trim_end_matches('/').to_owned();
        self
    }

    /// The most one call may take. Default: [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The time a `getUpdates` call may take beyond its `timeout`. Default: [`DEFAULT_LONG_POLL_MARGIN`].
    pub fn long_poll_margin(mut self, margin: Duration) -> Self {
        self.long_poll_margin = margin;
        self
    }

    /// Uses this HTTP client (proxies, TLS settings, a shared pool). Its own timeout, if any,
    /// also applies and may cut long polls short.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Builds the [`Bot`].
    ///
    /// # Panics
    ///
    /// When no client was given and reqwest cannot initialise its TLS backend (as
    /// `reqwest::Client::new` does).
    pub fn build(self) -> Bot {
        Bot {
            inner: Arc::new(Inner {
                client: self.client.unwrap_or_default(),
                token: self.token,
                base_url: self.base_url,
                request_timeout: self.request_timeout,
                long_poll_margin: self.long_poll_margin,
            }),
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    ok: bool,
    #[serde(default, borrow)]
    result: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ResponseParameters>,
}

#[derive(Deserialize)]
struct ResponseParameters {
    #[serde(default)]
    retry_after: Option<u64>,
    #[serde(default)]
    migrate_to_chat_id: Option<i64>,
}

impl Bot {
    /// A client for `token` on the real Bot API (enable the `rustls` feature for HTTPS).
    pub fn new(token: impl Into<String>) -> Self {
        Self::builder(token).build()
    }

    /// A builder, to set the base URL (emulator, local Bot API server) or timeouts.
    pub fn builder(token: impl Into<String>) -> BotBuilder {
        BotBuilder {
            token: token.into(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            long_poll_margin: DEFAULT_LONG_POLL_MARGIN,
            client: None,
        }
    }

    /// The base URL calls go to.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The bot's user id: the part of the token before `:` (not secret).
    pub fn bot_id(&self) -> Option<u64> {
        self.inner
            .token
            .split_once(':')
            .and_then(|(id, _)| id.parse().ok())
    }

    /// Calls any Bot API `method` with `params` (anything that serializes to a JSON object,
    /// e.g. `serde_json::json!({...})` or `()` for none) and returns its `result`.
    pub async fn call<P>(&self, method: &str, params: &P) -> Result<Value, ApiError>
    where
        P: Serialize + ?Sized,
    {
        self.call_with_timeout(method, params, self.inner.request_timeout)
            .await
    }

    /// Like [`Bot::call`], deserializing the `result` into `T`.
    pub async fn call_as<T, P>(&self, method: &str, params: &P) -> Result<T, ApiError>
    where
        T: DeserializeOwned,
        P: Serialize + ?Sized,
    {
        let result = self.call(method, params).await?;
        decode(method, result)
    }

    async fn call_with_timeout<P>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<Value, ApiError>
    where
        P: Serialize + ?Sized,
    {
        let raw = self.call_raw_with_timeout(method, params, timeout).await?;
        serde_json::from_slice(&raw).map_err(|e| ApiError::BadResponse {
            method: method.to_owned(),
            status: 200,
            reason: format!("unexpected `result`: {e}"),
        })
    }

    /// Calls `method` and returns its `result` as the exact bytes of the answer (a slice of
    /// the response body, no copy).
    async fn call_raw_with_timeout<P>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<telehook_core::Bytes, ApiError>
    where
        P: Serialize + ?Sized,
    {
        let invalid = |reason: String| ApiError::InvalidRequest {
            method: method.to_owned(),
            reason,
        };
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid(
                "a method name is a non-empty ASCII word like `sendMessage`".into(),
            ));
        }
        let body = match serde_json::to_value(params) {
            Ok(Value::Object(object)) => serde_json::to_vec(&object),
            Ok(Value::Null) => Ok(b"{}".to_vec()),
            Ok(_) => return Err(invalid("parameters must serialize to a JSON object".into())),
            Err(e) => return Err(invalid(e.to_string())),
        }
        .map_err(|e| invalid(e.to_string()))?;

        let url = format!("{}/bot{}/{}", self.inner.base_url, self.inner.token, method);
        tracing::debug!(method, bot_id = self.bot_id(), "calling the Bot API");
        let network = |e: reqwest::Error| ApiError::Network {
            method: method.to_owned(),
            source: e.without_url(),
        };
        let response = self
            .inner
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(network)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(network)?;
        let bad = |reason: String| ApiError::BadResponse {
            method: method.to_owned(),
            status,
            reason,
        };
        let envelope: Envelope<'_> = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("not a Bot API response: {e}")))?;
        if envelope.ok {
            return envelope
                .result
                .map(|raw| bytes.slice_ref(raw.get().as_bytes()))
                .ok_or_else(|| bad("`ok` is true but `result` is missing".into()));
        }
        let parameters = envelope.parameters;
        let error = ApiError::Api {
            method: method.to_owned(),
            error_code: envelope.error_code.unwrap_or(i64::from(status)),
            description: envelope.description.unwrap_or_default(),
            retry_after: parameters.as_ref().and_then(|p| p.retry_after),
            migrate_to_chat_id: parameters.as_ref().and_then(|p| p.migrate_to_chat_id),
        };
        tracing::debug!(method, error = %error, "the Bot API refused a call");
        Err(error)
    }

    /// `getMe`: the bot's own `User` object.
    pub async fn get_me(&self) -> Result<Value, ApiError> {
        self.call("getMe", &()).await
    }

    /// `getUpdates`: the next updates as raw JSON objects (kinds this crate does not know pass
    /// through untouched). The request timeout is the long-poll `timeout` plus the long-poll margin.
    pub async fn get_updates(&self, params: &GetUpdates) -> Result<Vec<Value>, ApiError> {
        let timeout = Duration::from_secs(u64::from(params.timeout.unwrap_or(0)))
            + self.inner.long_poll_margin;
        let result = self
            .call_with_timeout("getUpdates", params, timeout)
            .await?;
        decode("getUpdates", result)
    }

    /// `getUpdates`, returning its `result` (a JSON array of updates) as the exact bytes the
    /// server sent, so each update can be handed on byte for byte (`Update::raw`). The request
    /// timeout is the long-poll `timeout` plus the long-poll margin.
    pub async fn get_updates_raw(
        &self,
        params: &GetUpdates,
    ) -> Result<telehook_core::Bytes, ApiError> {
        let timeout = Duration::from_secs(u64::from(params.timeout.unwrap_or(0)))
            + self.inner.long_poll_margin;
        self.call_raw_with_timeout("getUpdates", params, timeout)
            .await
    }

    /// `setWebhook`: Telegram starts delivering updates to `params.url`.
    pub async fn set_webhook(&self, params: &SetWebhook) -> Result<bool, ApiError> {
        self.call_as("setWebhook", params).await
    }

    /// `deleteWebhook`: back to long polling, optionally dropping the pending updates.
    pub async fn delete_webhook(&self, drop_pending_updates: bool) -> Result<bool, ApiError> {
        self.call_as(
            "deleteWebhook",
            &json!({ "drop_pending_updates": drop_pending_updates }),
        )
        .await
    }

    /// `getWebhookInfo`: the webhook's URL, pending updates and last delivery error.
    pub async fn get_webhook_info(&self) -> Result<WebhookInfo, ApiError> {
        self.call_as("getWebhookInfo", &()).await
    }

    /// `sendMessage` with plain text; returns the sent `Message` object. Use [`Bot::call`] for
    /// the other parameters (`parse_mode`, `reply_markup`, …).
    pub async fn send_message(
        &self,
        chat_id: impl Into<ChatId>,
        text: &str,
    ) -> Result<Value, ApiError> {
        self.call(
            "sendMessage",
            &json!({ "chat_id": chat_id.into(), "text": text }),
        )
        .await
    }
}

fn decode<T: DeserializeOwned>(method: &str, result: Value) -> Result<T, ApiError> {
    serde_json::from_value(result).map_err(|e| ApiError::BadResponse {
        method: method.to_owned(),
        status: 200,
        reason: format!("unexpected `result`: {e}"),
    })
}
