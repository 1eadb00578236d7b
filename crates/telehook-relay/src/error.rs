//! The relay's errors and how each one is answered over HTTP.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// A failure of the storage backend (SQLite or Redis).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A bound of [`crate::StoreLimits`] is outside its allowed range.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// SQLite reported an error.
    #[cfg(feature = "sqlite")]
    #[error("sqlite: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// Redis reported an error.
    #[cfg(feature = "redis")]
    #[error("redis: {0}")]
    Redis(#[source] redis::RedisError),
    /// The backend cannot be reached right now (Redis down, connection lost); the relay
    /// reconnects by itself.
    #[error("store unreachable: {0}")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store has no room left (disk full, database size limit); nothing was written.
    #[error("store is full: {0}")]
    Full(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store refuses writes (read-only file system or database, I/O error).
    #[error("store cannot write: {0}")]
    CannotWrite(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The channel limit is reached and this update would open a new channel.
    #[error("too many channels: the relay holds its limit of {limit}")]
    TooManyChannels {
        /// The configured limit.
        limit: usize,
    },
    /// The ingest queue stayed full for too long.
    #[error("ingest queue is full ({capacity} updates waiting to be committed)")]
    IngestQueueFull {
        /// The configured capacity of the queue.
        capacity: usize,
    },
    /// The store's writer is gone (the relay is shutting down or the writer failed).
    #[error("the store's writer has stopped")]
    WriterStopped,
    /// Opening the store failed.
    #[error("cannot open store at {path}: {source}")]
    Open {
        /// Where the store was to be opened.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Data in the store is not what the relay wrote.
    #[error("corrupt data in store: {0}")]
    Corrupt(String),
}

/// Everything a relay request can fail with; each variant maps to one HTTP status and a JSON body
/// `{"ok":false,"error_code":N,"description":"…","error_description":"…"}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The body is not valid JSON.
    #[error("Bad Request: body is not valid JSON: {0}")]
    BadJson(#[source] serde_json::Error),
    /// Query parameters were given but the body is not a JSON object, so they cannot be merged.
    #[error("Bad Request: query parameters can only be merged into a JSON object body")]
    NotAnObject,
    /// The body is larger than the configured limit.
    #[error("Payload Too Large: body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// Reading the body failed.
    #[error("Bad Request: cannot read body: {0}")]
    BodyRead(#[source] axum::Error),
    /// The body did not arrive within the body-read time limit.
    #[error("Request Timeout: the body did not arrive within {} ms", limit.as_millis())]
    BodyTimeout {
        /// The configured limit.
        limit: std::time::Duration,
    },
    /// The channel name is invalid.
    #[error("Bad Request: {0}")]
    BadChannel(#[from] crate::channel::ChannelNameError),
    /// The path could not be read (e.g. it is not valid UTF-8 once percent-decoded).
    #[error("Bad Request: {0}")]
    BadPath(String),
    /// A query parameter (`ts`, `sleep`) or a WebSocket command is invalid.
    #[error("Bad Request: bad parameter {name}: {reason}")]
    BadParameter {
        /// Which parameter.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No token or a wrong token for a channel that requires one.
    #[error("Unauthorized: missing or wrong {kind} token for this channel")]
    Unauthorized {
        /// `read` or `write`.
        kind: &'static str,
    },
    /// The channel is not listed in the access file and unlisted channels are refused.
    #[error("Forbidden: channel is not configured on this relay")]
    Forbidden,
    /// The client IP spent its request budget.
    #[error("Too Many Requests: retry after {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// When a request will be accepted again.
        retry_after: Duration,
    },
    /// The channel already has as many waiting clients as allowed.
    #[error("Service Unavailable: too many waiting clients on this channel (limit {limit})")]
    TooManyWaiters {
        /// The configured limit.
        limit: usize,
    },
    /// The relay already has as many open connections as allowed.
    #[error("Service Unavailable: too many open connections (limit {limit})")]
    TooManyConnections {
        /// The configured limit.
        limit: usize,
    },
    /// The WebSocket already has as many subscriptions as allowed.
    #[error("Bad Request: too many subscriptions on this WebSocket (limit {limit})")]
    TooManySubscriptions {
        /// The configured limit.
        limit: usize,
    },
    /// No such route.
    #[error("Not Found")]
    NotFound,
    /// The route exists but not for this method.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RelayError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadJson(_)
            | Self::NotAnObject
            | Self::BodyRead(_)
            | Self::BadChannel(_)
            | Self::BadPath(_)
            | Self::BadParameter { .. }
            | Self::TooManySubscriptions { .. } => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::TooManyWaiters { .. } | Self::TooManyConnections { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Store(StoreError::TooManyChannels { .. } | StoreError::Full(_)) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            Self::Store(
                StoreError::IngestQueueFull { .. }
                | StoreError::WriterStopped
                | StoreError::Unreachable(_)
                | StoreError::CannotWrite(_),
            ) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds after which a retry may succeed, for errors that are temporary.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            Self::TooManyWaiters { .. }
            | Self::TooManyConnections { .. }
            | Self::Store(
                StoreError::IngestQueueFull { .. }
                | StoreError::WriterStopped
                | StoreError::Unreachable(_),
            ) => Some(1),
            // Room may come back when retention prunes or an operator frees disk.
            Self::Store(StoreError::Full(_) | StoreError::CannotWrite(_)) => Some(30),
            _ => None,
        }
    }

    /// The JSON body `{"ok":false,"error_code":N,"description":"…","error_description":"…"}`:
    /// `description` as the Bot API names it, `error_description` (the same text) as the
    /// reference relay names it, so clients of either read it.
    pub fn to_json(&self) -> String {
        let text = self.to_string();
        let mut body = serde_json::json!({
            "ok": false,
            "error_code": self.status().as_u16(),
            "description": text,
            "error_description": text,
        });
        if let Some(secs) = self.retry_after() {
            body["parameters"] = serde_json::json!({ "retry_after": secs });
        }
        body.to_string()
    }
}

impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request refused");
        }
        let mut response = (status, self.to_json()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for StoreError {
    /// Sorts SQLite's failures: no room (`SQLITE_FULL`) and no write access (read-only, I/O,
    /// permission) are conditions an operator can fix, answered 507/503 with `Retry-After`.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => Self::Full(Box::new(e)),
            Some(
                ErrorCode::ReadOnly
                | ErrorCode::SystemIoFailure
                | ErrorCode::PermissionDenied
                | ErrorCode::CannotOpen
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked,
            ) => Self::CannotWrite(Box::new(e)),
            _ => Self::Sqlite(e),
        }
    }
}

#[cfg(feature = "redis")]
impl From<redis::RedisError> for StoreError {
    /// Sorts Redis's failures: a lost or refused connection is temporary (503, `Retry-After`).
    fn from(e: redis::RedisError) -> Self {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
        {
            Self::Unreachable(Box::new(e))
        } else if e.code() == Some("OOM") {
            Self::Full(Box::new(e))
        } else if matches!(e.code(), Some("READONLY" | "MISCONF")) {
            Self::CannotWrite(Box::new(e))
        } else {
            Self::Redis(e)
        }
    }
}
