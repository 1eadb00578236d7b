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
    RecordedCall, Route, User,
};
pub use params::Upload;

/// The header that carries a webhook's `secret_token` in every delivery (telehook-core's).
pub use telehook_core::SECRET_TOKEN_HEADER;
/// The `sequence_key` of a webhook delivery (telehook-core's), as [`DeliveryAttempt::sequence_key`].
pub use telehook_core::SequenceKey;
