#![doc = include_str!("../README.md")]

pub use telehook_core::*;

/// The axum adapter (feature `axum`): `Router::telegram_webhook(path, webhook)`.
#[cfg(feature = "axum")]
pub mod axum {
    pub use telehook_axum::*;
}

/// The actix-web adapter (feature `actix`): `App::service(webhook_service(path, webhook))`.
#[cfg(feature = "actix")]
pub mod actix {
    pub use telehook_actix::*;
}

/// The warp adapter (feature `warp`): `warp::path!(..).and(webhook(webhook))`.
#[cfg(feature = "warp")]
pub mod warp {
    pub use telehook_warp::*;
}

/// The hyper adapter (feature `hyper`): `serve(listener, webhook, shutdown, deadline)`.
#[cfg(feature = "hyper")]
pub mod hyper {
    pub use telehook_hyper::*;
}

/// The AWS Lambda adapter (feature `lambda`): `run(webhook)`.
#[cfg(feature = "lambda")]
pub mod lambda {
    pub use telehook_lambda::*;
}
