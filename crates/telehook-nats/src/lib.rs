#![doc = include_str!("../README.md")]

mod backend;
mod builder;
mod error;
mod handed;
mod leases;
mod queue;
#[cfg(feature = "testing")]
pub mod testing;

pub use builder::NatsQueueBuilder;
pub use error::NatsError;
pub use queue::NatsQueue;
