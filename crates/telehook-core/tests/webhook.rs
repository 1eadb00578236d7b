//! Dispatcher behaviour that is not about HTTP: configuration checks, secrets in `Debug`,
//! draining, handler update types.
//!
//! One test binary, its tests in topic modules under `tests/webhook/`; the helpers every
//! module uses are here.

// A test crate root resolves `mod x;` to `tests/x.rs`, which cargo would build as a test
// binary of its own: the paths keep the modules under `tests/webhook/`.
#[path = "webhook/config.rs"]
mod config;
#[path = "webhook/deadline.rs"]
mod deadline;
#[path = "webhook/drain.rs"]
mod drain;
#[path = "webhook/handler_rules.rs"]
mod handler_rules;
#[path = "webhook/refusals.rs"]
mod refusals;
#[path = "webhook/typed.rs"]
mod typed;

use bytes::Bytes;
use telehook_core::{Context, HandlerError, RequestHead, Update, Webhook};

fn ok_handler(_: Update, _: Context) -> std::future::Ready<Result<(), HandlerError>> {
    std::future::ready(Ok(()))
}

fn post(
    webhook: &Webhook,
    body: &str,
) -> impl std::future::Future<Output = telehook_core::WebhookResponse> {
    webhook.handle_bytes(
        RequestHead::new("POST", |_| None),
        Bytes::from(body.to_owned()),
    )
}
