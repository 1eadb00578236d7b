#![doc = include_str!("../README.md")]

mod bot;
mod error;
mod reply;
mod types;

pub use bot::{
    Bot, BotBuilder, DEFAULT_BASE_URL, DEFAULT_LONG_POLL_MARGIN, DEFAULT_REQUEST_TIMEOUT,
};
pub use error::ApiError;
pub use reply::Sent;
pub use types::{ChatId, GetUpdates, SetWebhook, WebhookInfo};

/// Re-exported so callers name the same `serde_json` version.
pub use serde_json;
