#![doc = include_str!("../README.md")]

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use poem::{Endpoint, Request, Response, Route};
use telehook_core::{RequestHead, Webhook};

/// Mounts a [`Webhook`] on an existing [`Route`], keeping its other endpoints and middleware.
pub trait RouteExt {
    /// Serves `webhook` at `path` for every method (the dispatcher answers `405` to anything
    /// but `POST`, with `Allow: POST`).
    #[must_use]
    fn telegram_webhook(self, path: &str, webhook: Webhook) -> Self;
}

impl RouteExt for Route {
    fn telegram_webhook(self, path: &str, webhook: Webhook) -> Self {
        self.at(path, WebhookEndpoint::new(webhook))
    }
}

/// The webhook as a poem [`Endpoint`]: `Route::new().at("/telegram", WebhookEndpoint::new(webhook))`.
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    webhook: Webhook,
}

impl WebhookEndpoint {
    /// Wraps `webhook`.
    pub fn new(webhook: Webhook) -> Self {
        Self { webhook }
    }
}

impl Endpoint for WebhookEndpoint {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        Ok(handle(&self.webhook, request).await)
    }
}

/// Handles one request from inside a poem handler of your own, for when the webhook is one
/// step of a larger route. The body is streamed to the dispatcher, which applies its limit.
pub async fn handle(webhook: &Webhook, mut request: Request) -> Response {
    let body: BoxBody<Bytes, std::io::Error> = request.take_body().into();
    let mut extensions = std::mem::take(request.extensions_mut());
    // The connection's peer, for a `SourceAllowlist` (poem's `RemoteAddr`; none on a Unix
    // socket or a custom listener, where an allowlist refuses with 403).
    if extensions.get::<telehook_core::PeerAddr>().is_none()
        && let Some(peer) = request.remote_addr().as_socket_addr()
    {
        extensions.insert(telehook_core::PeerAddr(*peer));
    }
    let head = RequestHead::from_http(request.method(), request.headers());
    let (status, headers, body, _error) = webhook
        .handle_with_extensions(head, extensions, body)
        .await
        .into_parts();
    let mut response = Response::from(body);
    response.set_status(status);
    *response.headers_mut() = headers;
    response
}

/// A graceful shutdown with a deadline, as for every telehook adapter: pass
/// [`Drain::signal`] to `Server::run_with_graceful_shutdown`, run the server with
/// [`Drain::run`]; the handler runs still going after the server stopped (a run that outlived
/// its delivery's timeout) get what is left of the deadline.
pub use telehook_hyper::{Drain, ShutdownReport};
