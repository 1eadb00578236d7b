#![doc = include_str!("../README.md")]

use std::future::Future;

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
        self.route(
            path,
            axum::routing::any(move |request: Request| {
                let webhook = webhook.clone();
                async move { handle(&webhook, request).await }
            }),
        )
    }
}

/// A router that serves only `webhook` at `path`; merge or nest it where you like.
pub fn router(path: &str, webhook: Webhook) -> Router {
    Router::new().telegram_webhook(path, webhook)
}

/// Handles one request from inside an axum handler of your own, for when the webhook is one
/// step of a larger route.
pub async fn handle(webhook: &Webhook, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    // Served with `into_make_service_with_connect_info::<SocketAddr>()`, axum knows the peer:
    // pass it on for a `SourceAllowlist` (telehook_axum::serve inserts `PeerAddr` itself).
    if parts.extensions.get::<telehook_core::PeerAddr>().is_none()
        && let Some(axum::extract::ConnectInfo(peer)) = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .copied()
    {
        parts.extensions.insert(telehook_core::PeerAddr(peer));
    }
    let head = telehook_core::RequestHead::from_http(&parts.method, &parts.headers);
    webhook
        .handle_with_extensions(head, parts.extensions, body)
        .await
        .into_http()
        .into_response()
}

pub use telehook_hyper::{Drain, ServeConfig, ShutdownReport};

/// Serves `app` (routes with the webhook mounted) until `shutdown` resolves, hardened against
/// slow and stalled clients, then shuts down gracefully and drains `webhook`.
///
/// `axum::serve` has no header-read timeout and no connection limit (axum's docs point to
/// hyper-util for any configuration), so this serves the same `Router` with hyper-util's
/// server instead (`telehook_hyper::serve_with_config`): a header-read timeout that is also
/// the idle timeout of kept-alive connections, a connection limit, and at shutdown the
/// deadline of [`ServeConfig::shutdown_deadline`] for open requests and handler runs. To
/// keep `axum::serve`, use [`Drain`] instead (see the README).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    webhook: &Webhook,
    shutdown: impl Future<Output = ()>,
    config: &ServeConfig,
) -> ShutdownReport {
    let service = telehook_hyper::TowerToHyperService::new(app);
    telehook_hyper::serve_with_config(listener, service, webhook, shutdown, config).await
}
