#![doc = include_str!("../README.md")]

use std::pin::pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::{Either, select};
use http_body::Frame;
use http_body_util::StreamBody;
use rocket::data::{ByteUnit, Data};
use rocket::fairing::AdHoc;
use rocket::http::{Method, Status};
use rocket::route::{Handler, Outcome, Route};
use rocket::{Request, Response};
use telehook_core::{RequestHead, Webhook};
use tokio::io::AsyncReadExt as _;

/// Routes that serve `webhook` for every method (the dispatcher answers `405` to anything but
/// `POST`, with `Allow: POST`): `rocket.mount("/telegram", telehook_rocket::routes(webhook))`.
pub fn routes(webhook: Webhook) -> Vec<Route> {
    use Method::{Connect, Delete, Get, Head, Options, Patch, Post, Put, Trace};
    let handler = WebhookHandler { webhook };
    [Get, Put, Post, Delete, Options, Head, Trace, Connect, Patch]
        .into_iter()
        .map(|method| Route::new(method, "/", handler.clone()))
        .collect()
}

/// A shutdown fairing: once Rocket's graceful shutdown starts, waits up to `deadline` for the
/// handler runs of `webhook` to end, including runs that outlived their delivery's timeout.
/// Attach it beside the routes: `.attach(telehook_rocket::drain_on_shutdown(webhook, grace))`.
pub fn drain_on_shutdown(webhook: Webhook, deadline: Duration) -> AdHoc {
    AdHoc::on_shutdown("telehook: drain handler runs", move |_| {
        Box::pin(async move {
            let _ = webhook.drain(deadline).await;
        })
    })
}

/// The webhook as a Rocket [`Handler`] (see [`routes`]).
#[derive(Debug, Clone)]
struct WebhookHandler {
    webhook: Webhook,
}

#[rocket::async_trait]
impl Handler for WebhookHandler {
    async fn handle<'r>(&self, request: &'r Request<'_>, data: Data<'r>) -> Outcome<'r> {
        Outcome::Success(handle(&self.webhook, request, data).await)
    }
}

/// Handles one request from inside a Rocket [`Handler`] of your own. The body is streamed to the
/// dispatcher (which applies its own limit) through a channel of one chunk, since Rocket's
/// body borrows the request.
pub async fn handle<'r>(
    webhook: &Webhook,
    request: &'r Request<'_>,
    data: Data<'r>,
) -> Response<'r> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Frame<Bytes>>>(1);
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut head = RequestHead::new(request.method().as_str(), |name| {
        request.headers().get_one(name).map(str::as_bytes)
    });
    // The connection's peer, for a `SourceAllowlist`: `Request::remote`, never
    // `client_ip` (which believes Rocket's `ip_header` from anyone; the allowlist reads
    // forwarding headers only from its trusted proxies).
    if let Some(peer) = request.remote() {
        head = head.with_peer(peer);
    }
    let mut answer = pin!(webhook.handle(head, StreamBody::new(chunks)));
    let pump = pin!(async move {
        let mut stream = data.open(ByteUnit::max_value());
        loop {
            let mut chunk = BytesMut::with_capacity(16 * 1024);
            let chunk = match stream.read_buf(&mut chunk).await {
                Ok(0) => return,
                Ok(_) => Ok(Frame::data(chunk.freeze())),
                Err(error) => Err(error),
            };
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    // The dispatcher may answer without reading the body (401, 405, 413 by length): then the
    // pump is dropped with it.
    let answer = match select(answer.as_mut(), pump).await {
        Either::Left((answer, _)) => answer,
        Either::Right(((), _)) => answer.await,
    };
    let (status, headers, body, _error) = answer.into_parts();
    let mut response = Response::build();
    response.status(Status::new(status.as_u16()));
    for (name, value) in &headers {
        if let Ok(value) = value.to_str() {
            response.raw_header_adjoin(name.as_str().to_owned(), value.to_owned());
        }
    }
    if !body.is_empty() {
        response.sized_body(body.len(), std::io::Cursor::new(body));
    }
    response.finalize()
}
