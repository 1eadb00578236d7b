//! Errors of the emulator's Rust API.

use std::net::SocketAddr;
use std::time::Duration;

/// Why the emulator could not start or add a bot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// A bot token must look like `123456:ABC-DEF_ghi` (digits, a colon, then `A-Z a-z 0-9 _ -`).
    #[error(
        "a bot token must look like `123456:ABC-DEF_ghi` (the bot id, a colon, then A-Z a-z 0-9 _ -)"
    )]
    InvalidToken,
    /// Another bot with the same id is already served.
    #[error("a bot with id {bot_id} is already served")]
    DuplicateBot {
        /// The bot id (the token's part before `:`).
        bot_id: i64,
    },
    /// [`crate::BotHandle::set_next_update_id`]: Telegram's `update_id`s are positive 32-bit integers.
    #[error("an update_id must be between 1 and 2147483647, not {update_id}")]
    InvalidUpdateId {
        /// The id asked for.
        update_id: u64,
    },
    /// [`crate::BotHandle::set_next_update_id`] would go below an update still pending: the ids in a
    /// queue only grow (Telegram resets them only after a quiet week, with nothing pending).
    #[error(
        "update {pending} is still pending: the next update_id must be above it, not {update_id}"
    )]
    UpdateIdBelowPending {
        /// The id asked for.
        update_id: u64,
        /// The last pending update.
        pending: u64,
    },
    /// One emulator serves at most this many bots.
    #[error("the emulator already serves {max} bots")]
    TooManyBots {
        /// The most bots one emulator serves.
        max: usize,
    },
    /// [`crate::Timing::scale`] is not a number between [`crate::Timing::MIN_SCALE`] and
    /// [`crate::Timing::MAX_SCALE`].
    #[error(
        "the time scale (Timing::scale, --time-scale) must be a number from {min} to {max}, not {scale}",
        min = crate::Timing::MIN_SCALE,
        max = crate::Timing::MAX_SCALE
    )]
    InvalidTimeScale {
        /// The scale given.
        scale: f64,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A `wait_for_*` deadline passed before the condition held.
#[derive(Debug, Clone, thiserror::Error)]
#[error("waited {timeout:?} for {waited_for}; saw {seen}")]
pub struct WaitTimeout {
    /// What was awaited.
    pub waited_for: String,
    /// How long.
    pub timeout: Duration,
    /// What was there when the deadline passed.
    pub seen: String,
}
