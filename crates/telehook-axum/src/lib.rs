#![doc = include_str!("../README.md")]

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use telehook_core::Webhook;

/// Mounts a [`Webhook`] on an existing [`Router`], keeping its routes, layers and state.
pub trait RouterExt {
    /// Serves `webhook` at `path` for every method (the dispatcher answers `405` to anything
    /// but `POST`, with `Allow: POST`).
    #[must_use]
    fn telegram_webhook(self, path: &str, webhook: Webhook) -> Self;
}

impl<S: Clone + Send + Sync + 'static> RouterExt for Router<S> {
    fn telegram_webhook(self, path: &str, webhook: Webhook) -> Self {
        self.route_service(path, webhook)
    }
}

/// A router that serves only `webhook` at `path`; merge or nest it where you like.
pub fn router(path: &str, webhook: Webhook) -> Router {
    Router::new().telegram_webhook(path, webhook)
}

/// Handles one request from inside an axum handler of your own, for when the webhook is one
/// step of a larger route.
pub async fn handle(webhook: &Webhook, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let head = telehook_core::RequestHead::from_http(&parts.method, &parts.headers);
    webhook.handle(head, body).await.into_http().into_response()
}
