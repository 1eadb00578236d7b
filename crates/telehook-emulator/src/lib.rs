#![doc = include_str!("../README.md")]

mod answer;
mod api;
mod config;
mod control;
mod emulator;
mod error;
mod files;
mod handle;
mod methods;
mod model;
mod objects;
mod params;
mod state;
mod tls;
mod webhook;

pub use config::{Limits, Timing};
pub use emulator::{Emulator, EmulatorBuilder};
pub use error::{EmulatorError, WaitTimeout};
pub use handle::BotHandle;
pub use model::{
    CallOutcome, Chat, ChatType, DeliveryAttempt, DeliveryOutcome, Fault, Injected, PlannedFault,
    QueueKey, RecordedCall, Route, User,
};
pub use params::Upload;

/// The header that carries a webhook's `secret_token` in every delivery.
pub const SECRET_TOKEN_HEADER: &str = webhook::SECRET_TOKEN_HEADER;
