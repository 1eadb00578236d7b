#![doc = include_str!("../README.md")]

mod bots;
mod context;
pub mod guard;
mod handler;
mod invalid;
pub mod rt;
mod scan;
mod service;
mod update;
mod webhook;

pub use bots::{Bots, BotsError};
pub use context::{
    Context, Source, WebhookReplyError, is_ignored_in_webhook_reply, is_valid_method_name,
};
pub use guard::{MemoryStore, RedeliveryStore, UpdateKey};
pub use handler::{ErasedHandler, HandlerError, HandlerFuture, UpdateHandler};
pub use invalid::InvalidUpdate;
pub use update::{SequenceKey, Update, UpdateType};
pub use webhook::{
    BuildError, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT, ErrorPolicy, ForwardedHeader, InvalidRange,
    InvocationDeadline, MAX_IN_FLIGHT_LIMIT, OnTimeout, PeerAddr, Rejection, RequestHead,
    SECRET_TOKEN_HEADER, SourceAllowlist, TELEGRAM_SOURCE_RANGES, TimeoutAction, TimeoutEvent,
    Webhook, WebhookBuilder, WebhookError, WebhookResponse, validate_secret_token,
};

/// The names of the metrics the dispatcher records through the [`metrics`](https://docs.rs/metrics)
/// facade, with their labels (see `docs/operations.md`).
pub use webhook::telemetry as metric_names;

/// Re-exported so adapters and users name the same versions.
pub use bytes::Bytes;
pub use http;
