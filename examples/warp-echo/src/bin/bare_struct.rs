//! `warp-echo-bare-struct`: the echo written straight in warp, without telehook, parsing the
//! body into a small borrowed struct as a hand-written handler does (`benches/http/
//! echo_struct/bare.rs`). The baseline of `warp-echo-struct` in the HTTP benchmark
//! (`benches/http`). Serves `POST /telegram` on `PORT` (default 8080) and checks
//! `TELEHOOK_SECRET` if it is set.

#[path = "../../../../benches/http/echo_struct/bare.rs"]
mod bare;

use std::sync::Arc;

use warp::Filter;
use warp::http::StatusCode;
use warp::hyper::body::Bytes;
use warp::reply::{Reply as _, Response};

fn telegram(secret: Option<&str>, given: Option<&[u8]>, body: &[u8]) -> Response {
    if secret.is_some_and(|secret| given != Some(secret.as_bytes())) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match bare::echo(body) {
        Ok(Some(reply)) => {
            warp::reply::with_header(reply, "content-type", "application/json").into_response()
        }
        Ok(None) => StatusCode::OK.into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let secret = Arc::new(bare::secret());
    let hook = warp::post()
        .and(warp::path!("telegram"))
        .and(warp::header::optional::<String>(
            "x-telegram-bot-api-secret-token",
        ))
        .and(warp::body::bytes())
        .map(move |given: Option<String>, body: Bytes| {
            telegram(
                secret.as_deref(),
                given.as_deref().map(str::as_bytes),
                &body,
            )
        });
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok");
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", bare::port())).await?;
    warp::serve(hook.or(healthz)).incoming(listener).run().await;
    Ok(())
}
