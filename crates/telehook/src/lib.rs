#![doc = include_str!("../README.md")]

pub use telehook_core::*;

/// The axum adapter (feature `axum`): `Router::telegram_webhook(path, webhook)`.
#[cfg(feature = "axum")]
pub mod axum {
    pub use telehook_axum::*;
}
