#![doc = include_str!("../README.md")]

pub use telehook_core::*;

pub mod docs;

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

/// The poem adapter (feature `poem`): `Route::telegram_webhook(path, webhook)`.
#[cfg(feature = "poem")]
pub mod poem {
    pub use telehook_poem::*;
}

/// The salvo adapter (feature `salvo`): `Router::push(telehook::salvo::router(path, webhook))`.
#[cfg(feature = "salvo")]
pub mod salvo {
    pub use telehook_salvo::*;
}

/// The Rocket adapter (feature `rocket`): `rocket.mount(path, telehook::rocket::routes(webhook))`.
#[cfg(feature = "rocket")]
pub mod rocket {
    pub use telehook_rocket::*;
}

/// The Vercel Functions adapter (feature `vercel`): `run(webhook, max_duration)`.
#[cfg(feature = "vercel")]
pub mod vercel {
    pub use telehook_vercel::*;
}

/// Long polling with `getUpdates` (feature `polling`): the same handler, without a public URL.
#[cfg(feature = "polling")]
pub mod polling {
    pub use telehook_polling::*;
}

/// The Bot API client (feature `api`): `setWebhook`, `getUpdates`, sending messages.
#[cfg(feature = "api")]
pub mod api {
    pub use telehook_api::*;
}

/// The self-hosted relay's client (feature `relay-client`): receive updates that a relay
/// buffered for you, with the same handler.
#[cfg(feature = "relay-client")]
pub mod relay {
    pub use telehook_relay::*;
}

/// The Bot API emulator (feature `emulator`), for tests: a fake Telegram on loopback.
#[cfg(feature = "emulator")]
pub mod emulator {
    pub use telehook_emulator::*;
}

/// A redelivery guard shared by several webhook instances through Redis (feature `redis`):
/// a redelivery that lands on another instance is absorbed there too (`docs/scaling.md`).
#[cfg(feature = "redis")]
pub mod redis {
    pub use telehook_redis::*;
}

/// Queue mode (feature `queue`): the webhook answers once an update is durably enqueued, and
/// workers in one or several processes handle each chat in order (`docs/scaling.md`).
#[cfg(feature = "queue")]
pub mod queue {
    pub use telehook_queue::*;
}

/// Queue mode on NATS JetStream (feature `nats`): a replicated stream, so losing one node of
/// a cluster loses nothing acknowledged.
#[cfg(feature = "nats")]
pub mod nats {
    pub use telehook_nats::*;
}
