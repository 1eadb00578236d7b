#![doc = include_str!("../README.md")]

mod api;
mod config;
mod control;
mod emulator;
mod methods;
mod model;
mod state;
mod webhook;

pub use config::{Limits, Timing};
pub use emulator::{BotHandle, Emulator, EmulatorBuilder, EmulatorError, WaitTimeout};
pub use model::{
    CallOutcome, Chat, ChatType, DeliveryAttempt, DeliveryOutcome, Fault, Injected, PlannedFault,
    QueueKey, RecordedCall, Route, User,
};

/// The header that carries a webhook's `secret_token` in every delivery.
pub const SECRET_TOKEN_HEADER: &str = webhook::SECRET_TOKEN_HEADER;
