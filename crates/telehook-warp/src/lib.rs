#![doc = include_str!("../README.md")]

use futures_util::StreamExt as _;
use http_body::Frame;
use http_body_util::StreamBody;
use telehook_core::http::{HeaderMap, Method};
use telehook_core::{RequestHead, Webhook};
use warp::reply::{Reply as _, Response};
use warp::{Buf, Filter, Rejection};

/// A filter that answers every request it sees with `webhook`, whatever the method (the
/// dispatcher answers `405` to anything but `POST`, with `Allow: POST`). Put your path in
/// front of it (`warp::path!("telegram").and(webhook(w))`) and your own filters beside it
/// with `.or()`.
///
/// The body is streamed to the dispatcher, which applies its own `max_body_bytes`; add no
/// `warp::body::content_length_limit` in front. A failure answer (timeout, handler failure,
/// redelivery store, overload) is still a reply, so `.or()` never tries another route for it;
/// its [`telehook_core::WebhookError`] rides in the response's extensions.
///
/// The filter rejects only if an earlier filter already took the body (warp's `500`).
pub fn webhook(webhook: Webhook) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::method()
        .and(warp::addr::remote())
        .and(warp::ext::optional::<telehook_core::PeerAddr>())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  remote: Option<std::net::SocketAddr>,
                  inserted: Option<telehook_core::PeerAddr>,
                  headers: HeaderMap,
                  body| {
                let webhook = webhook.clone();
                // The peer for a `SourceAllowlist`: what `serve` inserted, else warp's own.
                let peer = inserted
                    .map(|telehook_core::PeerAddr(peer)| peer)
                    .or(remote);
                async move { handle(&webhook, &method, &headers, peer, body).await }
            },
        )
}

async fn handle<S, D>(
    webhook: &Webhook,
    method: &Method,
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
    body: S,
) -> Response
where
    S: futures_util::Stream<Item = Result<D, warp::Error>> + 'static,
    D: Buf,
{
    let body = StreamBody::new(
        body.map(|chunk| chunk.map(|mut data| Frame::data(data.copy_to_bytes(data.remaining())))),
    );
    let mut head = RequestHead::from_http(method, headers);
    if let Some(peer) = peer {
        head = head.with_peer(peer);
    }
    let response = webhook.handle(head, body).await;
    let (status, headers, body, error) = response.into_parts();
    let mut reply = telehook_core::http::Response::new(body);
    *reply.status_mut() = status;
    *reply.headers_mut() = headers;
    if let Some(error) = error {
        reply.extensions_mut().insert(error);
    }
    reply.into_response()
}

pub use telehook_hyper::{Drain, ServeConfig, ShutdownReport};

/// Serves `filter` (your routes with the webhook in them) until `shutdown` resolves, hardened
/// against slow and stalled clients, then shuts down gracefully and drains `webhook`.
///
/// warp's own server (`warp::serve`) has no header-read timeout and no connection limit, so
/// this serves the same filter with hyper-util's server instead
/// (`telehook_hyper::serve_with_config`): a header-read timeout that is also the idle timeout
/// of kept-alive connections, a connection limit, and at shutdown the deadline of
/// [`ServeConfig::shutdown_deadline`] for open requests and handler runs. To keep
/// `warp::serve(..).graceful(..)`, use [`Drain`] instead (see the README).
pub async fn serve<F, R>(
    listener: tokio::net::TcpListener,
    filter: F,
    webhook: &Webhook,
    shutdown: impl std::future::Future<Output = ()>,
    config: &ServeConfig,
) -> ShutdownReport
where
    F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
    F::Future: Send,
    R: warp::Reply,
{
    let service = telehook_hyper::TowerToHyperService::new(warp::service(filter));
    telehook_hyper::serve_with_config(listener, service, webhook, shutdown, config).await
}
