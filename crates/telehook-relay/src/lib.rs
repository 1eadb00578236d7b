#![doc = include_str!("../README.md")]

pub mod channel;
pub mod client;
pub mod config;
pub mod error;
mod follow;
pub mod ratelimit;
mod server;
pub mod store;

pub use channel::ChannelName;
pub use client::{ClientError, Polled, RelayClient};
pub use config::{AccessConfig, ChannelAccess, RateLimit, RelayConfig, Retention, StoreLimits};
pub use error::{RelayError, StoreError};
pub use server::{Relay, SECRET_TOKEN_HEADER, TOTAL_UPDATES_HEADER};
pub use store::sqlite::SqliteStore;
pub use store::{Notifier, Page, Store, StoredUpdate};
