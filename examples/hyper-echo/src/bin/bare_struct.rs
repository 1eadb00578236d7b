//! `hyper-echo-bare-struct`: the echo written straight in hyper, without telehook, parsing
//! the body into a small borrowed struct as a hand-written handler does (`benches/http/
//! echo_struct/bare.rs`). The baseline of `hyper-echo-struct` in the HTTP benchmark
//! (`benches/http`). Serves `POST /telegram` on `PORT` (default 8080) and checks
//! `TELEHOOK_SECRET` if it is set.

#[path = "../../../../benches/http/echo_struct/bare.rs"]
mod bare;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;

async fn telegram(
    secret: Arc<Option<String>>,
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let status = |code: u16| {
        let mut response = http::Response::new(Full::default());
        *response.status_mut() = http::StatusCode::from_u16(code).unwrap_or_default();
        Ok(response)
    };
    match request.uri().path() {
        "/healthz" => return Ok(http::Response::new(Full::new(Bytes::from_static(b"ok")))),
        "/telegram" => {}
        _ => return status(404),
    }
    if let Some(secret) = secret.as_ref() {
        let given = request.headers().get("x-telegram-bot-api-secret-token");
        if given.map(|v| v.as_bytes()) != Some(secret.as_bytes()) {
            return status(401);
        }
    }
    let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
        return status(400);
    };
    match bare::echo(&body) {
        Ok(Some(reply)) => {
            let mut response = http::Response::new(Full::new(Bytes::from(reply)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        Ok(None) => status(200),
        Err(_) => status(400),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let secret = Arc::new(bare::secret());
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", bare::port())).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let secret = Arc::clone(&secret);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| telegram(Arc::clone(&secret), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
