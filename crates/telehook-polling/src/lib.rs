#![doc = include_str!("../README.md")]

mod backoff;
pub mod metric_names;
pub mod runner;
mod source;
#[cfg(feature = "telegram")]
mod telegram;

pub use backoff::Backoff;
pub use runner::{HandlerTimeout, KeyFn, MAX_HELD, RunnerConfig, StopReport, run};
pub use source::{Delivery, MemorySource, UpdateSource};
#[cfg(feature = "telegram")]
pub use telegram::{GetUpdatesSource, Polling};

/// Which of the two `409 Conflict` causes stopped polling.
#[cfg(feature = "telegram")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictCause {
    /// A webhook is set for the bot: call `deleteWebhook` (polling does it at start unless
    /// `delete_webhook_at_start(false)`), or stop whatever sets it again.
    WebhookActive,
    /// Another process is calling `getUpdates` with the same token: run only one instance.
    OtherInstance,
}

/// Why polling stopped with an error.
#[cfg(feature = "telegram")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PollingError {
    /// `401 Unauthorized`: the token is wrong or was revoked. Get a new one from @BotFather.
    #[error(
        "the bot token was refused (401 Unauthorized): check TELEGRAM_BOT_TOKEN or get a new token from @BotFather"
    )]
    Unauthorized,
    /// `409 Conflict`.
    #[error("{}: {description}", match cause {
        ConflictCause::WebhookActive => "a webhook is set for this bot (409 Conflict): getUpdates is refused while it is; polling deletes it at start unless told not to (delete_webhook_at_start(false)), so either that was asked or something set it again: delete it, stop what sets it, or use the webhook instead",
        ConflictCause::OtherInstance => "another getUpdates is running for this bot (409 Conflict): make sure only one instance polls",
    })]
    Conflict {
        /// Which cause.
        cause: ConflictCause,
        /// Telegram's description.
        description: String,
    },
    /// Another error retrying cannot fix (such as `400 Bad Request` for bad parameters).
    #[error("getUpdates failed and retrying cannot help: {0}")]
    Api(#[from] telehook_api::ApiError),
}
