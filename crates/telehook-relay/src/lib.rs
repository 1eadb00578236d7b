#![doc = include_str!("../README.md")]

pub mod channel;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod metric_names;
#[cfg(feature = "server")]
pub mod ratelimit;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
pub mod store;

pub use channel::{ChannelName, ChannelNameError};
#[cfg(feature = "client")]
pub use client::{ClientError, Polled, RelayClient, RelayReport};
#[cfg(feature = "server")]
pub use config::{
    AccessConfig, ChannelAccess, ConfigError, RateLimit, RelayConfig, Retention, StoreLimits,
};
#[cfg(feature = "server")]
pub use error::{RelayError, StoreError};
#[cfg(feature = "server")]
pub use server::{Relay, SECRET_TOKEN_HEADER, TOTAL_UPDATES_HEADER};
#[cfg(feature = "sqlite")]
pub use store::sqlite::SqliteStore;
#[cfg(feature = "server")]
pub use store::{Appended, NewUpdate, Notifier, Page, Store, StoredUpdate};
