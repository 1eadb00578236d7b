//! What can go wrong: a configuration the builder refused ([`BuildError`]), a request refused
//! before the handler ran ([`Rejection`]), and a run that failed ([`WebhookError`]). Each
//! answer's status and short body text come from here, as axum-core's rejections do.

use std::borrow::Cow;
use std::time::Duration;

use http::StatusCode;

use super::policy::ErrorPolicy;
use crate::guard::StoreError;
use crate::invalid::InvalidUpdate;

/// A configuration a [`WebhookBuilder`](crate::WebhookBuilder) refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The secret token breaks Telegram's rule; the message says how (never what it is).
    /// The detail states the rule too, so the `Debug` form alone says what to change.
    #[error("invalid secret_token: {0}")]
    InvalidSecretToken(&'static str),
    /// A limit was set to zero.
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
    /// telehook-core was built without its `tokio-rt` feature and no
    /// [`Runtime`](crate::rt::Runtime) was given to
    /// [`WebhookBuilder::runtime`](crate::WebhookBuilder::runtime).
    #[error(
        "no async runtime: telehook-core's `tokio-rt` feature is off, so give the platform's \
         timer and spawn with `WebhookBuilder::runtime` (see docs/edge.md)"
    )]
    NoRuntime,
    /// The handler only works under one error policy
    /// ([`UpdateHandler::required_error_policy`](crate::UpdateHandler::required_error_policy))
    /// and the builder was given another. Leave
    /// [`WebhookBuilder::error_policy`](crate::WebhookBuilder::error_policy) unset (the
    /// handler's is then used) or set it to the handler's.
    #[error(
        "error_policy {configured:?} was set, but the handler requires {required:?} (it could \
         lose updates otherwise): leave error_policy unset or set it to {required:?}"
    )]
    ErrorPolicyConflict {
        /// The policy given to the builder.
        configured: ErrorPolicy,
        /// The policy the handler requires.
        required: ErrorPolicy,
    },
    /// [`OnTimeout::Return`](crate::OnTimeout::Return) was set, but the handler's update
    /// must not be acknowledged before its run ends
    /// ([`UpdateHandler::acknowledge_only_after_run`](crate::UpdateHandler::acknowledge_only_after_run)):
    /// a `200` at the timeout followed by a failed run would lose the update. Leave
    /// [`WebhookBuilder::on_timeout`](crate::WebhookBuilder::on_timeout) at
    /// [`OnTimeout::Throw`](crate::OnTimeout::Throw) (the default).
    #[error(
        "on_timeout = Return answers 200 while the handler still runs, but this handler's \
         update must not be acknowledged before its run ends (it could be lost): use \
         OnTimeout::Throw (the default)"
    )]
    AcknowledgeBeforeRunEnds,
    /// A limit was set above the largest value the dispatcher supports.
    #[error("`{name}` is {value}: the allowed range is 1..={max}")]
    TooLarge {
        /// The setting.
        name: &'static str,
        /// The value given.
        value: usize,
        /// The largest allowed value.
        max: usize,
    },
}

/// Why a request was refused before the handler ran (`4xx`, or `503` while draining).
/// [`Rejection::status`] and
/// [`Rejection::body_text`] are what the dispatcher answers (a plain-text body); the
/// `Display` text is the same, with detail for the log where there is any.
///
/// Telegram treats every answer other than `2xx` as a failed delivery and retries it later
/// (<https://core.telegram.org/bots/api#setwebhook>); a refused request never reaches the
/// handler, so nothing is lost by refusing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// `405`: the method is not `POST` (the answer carries `Allow: POST`).
    #[error("method not allowed: Telegram delivers updates with POST")]
    MethodNotAllowed,
    /// `401`: the `X-Telegram-Bot-Api-Secret-Token` header is missing or wrong.
    #[error("unauthorized: wrong or missing secret token")]
    WrongSecretToken,
    /// `403`: a [`SourceAllowlist`](crate::SourceAllowlist) is set and the request does not
    /// come from an allowed address (or its address cannot be told).
    #[error("forbidden: not from an allowed source address")]
    ForbiddenSource,
    /// `404`: [`Bots`](crate::Bots) has no bot of the name in the path.
    #[error("not found: no bot of that name")]
    UnknownBot,
    /// `400`: the `Content-Length` header is not a number.
    #[error("bad request: invalid Content-Length")]
    InvalidContentLength,
    /// `413`: the body (declared or read) is larger than `max_body_bytes`.
    #[error("payload too large: the limit is {limit} bytes")]
    PayloadTooLarge {
        /// The configured `max_body_bytes`.
        limit: usize,
    },
    /// `408`: the body did not arrive within `body_read_timeout` (a stalled or trickling
    /// client).
    #[error("request timeout: the body did not arrive within {} ms", limit.as_millis())]
    BodyTimeout {
        /// The configured `body_read_timeout`.
        limit: Duration,
    },
    /// `400`: the transport failed while the body was read.
    #[error("bad request: the body could not be read ({message})")]
    BodyUnreadable {
        /// The transport's error.
        message: String,
    },
    /// `400`: the body is not a Telegram update.
    #[error("bad request: {0}")]
    NotAnUpdate(#[source] InvalidUpdate),
    /// `503`: the dispatcher is draining ([`Webhook::begin_drain`](crate::Webhook::begin_drain)
    /// or [`Webhook::drain`](crate::Webhook::drain)); a new delivery is not started, and
    /// Telegram delivers it again, to this instance's successor.
    #[error("service unavailable: shutting down")]
    Draining,
}

impl Rejection {
    /// The status the dispatcher answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::WrongSecretToken => StatusCode::UNAUTHORIZED,
            Self::ForbiddenSource => StatusCode::FORBIDDEN,
            Self::UnknownBot => StatusCode::NOT_FOUND,
            Self::InvalidContentLength | Self::BodyUnreadable { .. } | Self::NotAnUpdate(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Draining => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short stable name for the refusal, as the `reason` label of
    /// `telehook_requests_refused_total` (see `docs/operations.md`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed => "method_not_allowed",
            Self::WrongSecretToken => "wrong_secret_token",
            Self::ForbiddenSource => "forbidden_source",
            Self::UnknownBot => "unknown_bot",
            Self::InvalidContentLength => "invalid_content_length",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::BodyUnreadable { .. } => "body_unreadable",
            Self::NotAnUpdate(_) => "not_an_update",
            Self::Draining => "draining",
        }
    }

    /// The short plain-text body the dispatcher answers with; it never holds a secret.
    pub fn body_text(&self) -> Cow<'static, str> {
        match self {
            Self::BodyUnreadable { .. } => Cow::Borrowed("bad request: the body could not be read"),
            Self::MethodNotAllowed => {
                Cow::Borrowed("method not allowed: Telegram delivers updates with POST")
            }
            Self::WrongSecretToken => Cow::Borrowed("unauthorized: wrong or missing secret token"),
            Self::ForbiddenSource => Cow::Borrowed("forbidden: not from an allowed source address"),
            Self::InvalidContentLength => Cow::Borrowed("bad request: invalid Content-Length"),
            Self::Draining => Cow::Borrowed("service unavailable: shutting down"),
            other => Cow::Owned(other.to_string()),
        }
    }
}

/// How a run went wrong, or why the update could not be run. Carried by a
/// [`WebhookResponse`](crate::WebhookResponse) so adapters can hand it to a framework's error
/// channel. Every variant asks Telegram to deliver the update again (`5xx`).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The handler was still running at the timeout and the answer was a failure.
    #[error(
        "update {update_id}: handler still running after {elapsed:?} (timeout); Telegram will deliver it again"
    )]
    Timeout {
        /// The update.
        update_id: u64,
        /// How long it had run.
        elapsed: Duration,
    },
    /// The handler returned `Err` or panicked and Telegram should deliver the update again.
    #[error("update {update_id}: handler failed ({failed_attempts} failed attempt(s)): {message}")]
    HandlerFailed {
        /// The update.
        update_id: u64,
        /// Failed runs so far, this one included.
        failed_attempts: u32,
        /// The handler's error message.
        message: String,
    },
    /// The redelivery store failed.
    #[error("update {update_id}: {source}")]
    Store {
        /// The update.
        update_id: u64,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// Too many handler runs are in flight.
    #[error(
        "update {update_id}: {limit} handler runs already in flight; Telegram will deliver it again"
    )]
    Overloaded {
        /// The update.
        update_id: u64,
        /// The configured `max_in_flight`.
        limit: usize,
    },
    /// The run ended without reporting how: the runtime is shutting down.
    #[error("update {update_id}: the run was cut short (the runtime is shutting down)")]
    Interrupted {
        /// The update.
        update_id: u64,
    },
}

impl WebhookError {
    /// The update the error is about.
    pub fn update_id(&self) -> u64 {
        match self {
            Self::Timeout { update_id, .. }
            | Self::HandlerFailed { update_id, .. }
            | Self::Store { update_id, .. }
            | Self::Overloaded { update_id, .. }
            | Self::Interrupted { update_id } => *update_id,
        }
    }

    /// The status the dispatcher answers with: `500` for a failed handler, `503` otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::HandlerFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Timeout { .. }
            | Self::Store { .. }
            | Self::Overloaded { .. }
            | Self::Interrupted { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The short plain-text body the dispatcher answers with (the detail stays in the log).
    pub fn body_text(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "service unavailable: the handler timed out",
            Self::HandlerFailed { .. } => "internal server error: the handler failed",
            Self::Store { .. } => "service unavailable: redelivery store failed",
            Self::Overloaded { .. } => "service unavailable: too many updates in flight",
            Self::Interrupted { .. } => "service unavailable: shutting down",
        }
    }
}
