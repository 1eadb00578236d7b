//! `hyper-echo-struct`: the echo with telehook, its handler taking a small struct of its own
//! as the update type (`benches/http/echo_struct/telehook.rs`) — the same work and answer
//! bytes as `hyper-echo-bare-struct`. Served by the same hyper connection loop as the bare
//! one (`telehook::hyper::handle` in a `service_fn`), so the HTTP benchmark (`benches/http`)
//! compares the webhook dispatcher with a bare handler, nothing else. Serves
//! `POST /telegram` on `PORT` (default 8080) and checks `TELEHOOK_SECRET` if it is set.

#[path = "../../../../benches/http/echo_struct/telehook.rs"]
mod telehook_struct;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use telehook::Webhook;

async fn route(
    webhook: Webhook,
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    match request.uri().path() {
        "/telegram" => telehook::hyper::handle(&webhook, request).await,
        "/healthz" => Ok(http::Response::new(Full::new(Bytes::from_static(b"ok")))),
        _ => {
            let mut response = http::Response::new(Full::default());
            *response.status_mut() = http::StatusCode::NOT_FOUND;
            Ok(response)
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let webhook = telehook_struct::webhook()?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", telehook_struct::port())).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let webhook = webhook.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| route(webhook.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
