#![doc = include_str!("../README.md")]

use salvo::http::ResBody;
use salvo::{Depot, FlowCtrl, Handler, Request, Response, Router, async_trait};
use telehook_core::{RequestHead, Webhook};

/// A router that serves `webhook` at `path` for every method (the dispatcher answers `405` to
/// anything but `POST`, with `Allow: POST`); `push` it into your own [`Router`].
pub fn router(path: &str, webhook: Webhook) -> Router {
    Router::with_path(path).goal(WebhookHandler::new(webhook))
}

/// The webhook as a salvo [`Handler`], for `Router::goal` or your own routing.
#[derive(Debug, Clone)]
pub struct WebhookHandler {
    webhook: Webhook,
}

impl WebhookHandler {
    /// Wraps `webhook`.
    pub fn new(webhook: Webhook) -> Self {
        Self { webhook }
    }
}

#[async_trait]
impl Handler for WebhookHandler {
    async fn handle(
        &self,
        request: &mut Request,
        _depot: &mut Depot,
        response: &mut Response,
        _ctrl: &mut FlowCtrl,
    ) {
        handle(&self.webhook, request, response).await;
    }
}

/// Handles one request from inside a salvo handler of your own, for when the webhook is one
/// step of a larger route. The body is streamed to the dispatcher, which applies its limit.
pub async fn handle(webhook: &Webhook, request: &mut Request, response: &mut Response) {
    let body = request.take_body();
    let mut extensions = request.extensions().clone();
    // The connection's peer, for a `SourceAllowlist` (none on a Unix socket, where an
    // allowlist refuses with 403).
    if extensions.get::<telehook_core::PeerAddr>().is_none()
        && let Some(peer) = request.remote_addr().clone().into_std()
    {
        extensions.insert(telehook_core::PeerAddr(peer));
    }
    let head = RequestHead::from_http(request.method(), request.headers());
    let (status, headers, body, _error) = webhook
        .handle_with_extensions(head, extensions, body)
        .await
        .into_parts();
    response.status_code(status);
    response.set_headers(headers);
    response.replace_body(if body.is_empty() {
        ResBody::None
    } else {
        ResBody::Once(body)
    });
}

/// A graceful shutdown with a deadline, as for every telehook adapter: when the
/// [`Drain::signal`] future resolves, call `ServerHandle::stop_graceful(deadline)`, and run
/// the server's `serve` future with [`Drain::run`]; the handler runs still going after the
/// server stopped (a run that outlived its delivery's timeout) get what is left of the deadline.
pub use telehook_hyper::{Drain, ShutdownReport};
