//! `axum-echo-bare-struct`: the echo written straight in axum, without telehook, parsing the
//! body into a small borrowed struct as a hand-written handler does (`benches/http/echo_struct/
//! bare.rs`). The baseline of `axum-echo-struct` in the HTTP benchmark (`benches/http`).
//! Serves `POST /telegram` on `PORT` (default 8080) and checks `TELEHOOK_SECRET` if it is set.

#[path = "../../../../benches/http/echo_struct/bare.rs"]
mod bare;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, body::Bytes, extract::State};

async fn telegram(
    State(secret): State<Option<String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(secret) = &secret {
        let given = headers.get("x-telegram-bot-api-secret-token");
        if given.map(|v| v.as_bytes()) != Some(secret.as_bytes()) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    match bare::echo(&body) {
        Ok(Some(reply)) => ([(header::CONTENT_TYPE, "application/json")], reply).into_response(),
        Ok(None) => StatusCode::OK.into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/telegram", post(telegram))
        .with_state(bare::secret());
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", bare::port())).await?;
    axum::serve(listener, app).await
}
