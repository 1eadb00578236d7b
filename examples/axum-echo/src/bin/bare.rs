//! `axum-echo-bare`: the same echo as `axum-echo` written straight in axum, without telehook,
//! as the baseline of the HTTP benchmark (`benches/http`). Serves `POST /telegram` on `PORT`
//! (default 8080) and checks `TELEHOOK_SECRET` if it is set.

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
    let Ok(update) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match (
        update.pointer("/message/chat/id"),
        update.pointer("/message/text").filter(|t| t.is_string()),
    ) {
        (Some(chat_id), Some(text)) => (
            [(header::CONTENT_TYPE, "application/json")],
            format!(r#"{{"method":"sendMessage","chat_id":{chat_id},"text":{text}}}"#),
        )
            .into_response(),
        _ => StatusCode::OK.into_response(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080u16);
    let secret = std::env::var("TELEHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/telegram", post(telegram))
        .with_state(secret);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    axum::serve(listener, app).await
}
