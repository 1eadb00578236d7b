#![doc = include_str!("../README.md")]

mod error;
mod handed;
mod queue;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::NatsError;
pub use queue::{NatsQueue, NatsQueueBuilder};
