//! [`ApiError`]: what can go wrong with a Bot API call.

use std::time::Duration;

/// A failed Bot API call. It never contains the bot token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The Bot API answered `{"ok":false,…}`.
    #[error("{method} failed: {error_code} {description}")]
    Api {
        /// The method that was called.
        method: String,
        /// Telegram's `error_code` (e.g. 400, 401, 403, 409, 429).
        error_code: i64,
        /// Telegram's `description`, e.g. "Bad Request: chat not found".
        description: String,
        /// `parameters.retry_after`: seconds to wait before calling again (429).
        retry_after: Option<u64>,
        /// `parameters.migrate_to_chat_id`: the group became a supergroup with this id.
        migrate_to_chat_id: Option<i64>,
    },
    /// The request did not get an answer: connection refused or dropped, timeout, DNS.
    #[error("{method} failed: network error: {source}")]
    Network {
        /// The method that was called.
        method: String,
        /// The transport error, with the URL (which holds the token) removed.
        #[source]
        source: reqwest::Error,
    },
    /// An answer came but is not a Bot API response (not JSON, no `ok`, no `result`).
    #[error("{method} failed: bad response (HTTP {status}): {reason}")]
    BadResponse {
        /// The method that was called.
        method: String,
        /// The HTTP status of the answer.
        status: u16,
        /// What is wrong with it.
        reason: String,
    },
    /// The call was never sent: its method name or parameters are not valid.
    #[error("{method} was not sent: {reason}")]
    InvalidRequest {
        /// The method that was attempted.
        method: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ApiError {
    /// The method whose call failed.
    pub fn method(&self) -> &str {
        match self {
            Self::Api { method, .. }
            | Self::Network { method, .. }
            | Self::BadResponse { method, .. }
            | Self::InvalidRequest { method, .. } => method,
        }
    }

    /// Telegram's `error_code`, for [`ApiError::Api`].
    pub fn error_code(&self) -> Option<i64> {
        match self {
            Self::Api { error_code, .. } => Some(*error_code),
            _ => None,
        }
    }

    /// How long Telegram asks to wait before the next call (a 429's `retry_after`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api {
                retry_after: Some(secs),
                ..
            } => Some(Duration::from_secs(*secs)),
            _ => None,
        }
    }

    /// True for `401 Unauthorized`: the token is wrong or revoked; retrying cannot help.
    pub fn is_unauthorized(&self) -> bool {
        self.error_code() == Some(401)
    }

    /// True for `409 Conflict`: a webhook is set, or another getUpdates is running.
    pub fn is_conflict(&self) -> bool {
        self.error_code() == Some(409)
    }

    /// True if the request timed out (for getUpdates: the long poll outlived its margin).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Network { source, .. } if source.is_timeout())
    }
}
