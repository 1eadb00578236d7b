//! `warp-echo-bare`: the same echo as `warp-echo` written straight in warp, without telehook,
//! as the baseline of the benchmark. Serves `POST /telegram` on `PORT` (default 8080) and
//! checks `TELEHOOK_SECRET` if it is set.

use std::sync::Arc;

use warp::Filter;
use warp::http::StatusCode;
use warp::hyper::body::Bytes;
use warp::reply::{Reply, Response};

fn telegram(secret: Option<&str>, given: Option<&[u8]>, body: &[u8]) -> Response {
    if secret.is_some_and(|secret| given != Some(secret.as_bytes())) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(update) = serde_json::from_slice::<serde_json::Value>(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match (
        update.pointer("/message/chat/id"),
        update
            .pointer("/message/text")
            .filter(|text| text.is_string()),
    ) {
        // The same bytes telehook's webhook reply has: `method` first, then the parameters.
        (Some(chat_id), Some(text)) => warp::reply::with_header(
            format!(r#"{{"method":"sendMessage","chat_id":{chat_id},"text":{text}}}"#),
            "content-type",
            "application/json",
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
    let secret: Arc<Option<String>> = Arc::new(
        std::env::var("TELEHOOK_SECRET")
            .ok()
            .filter(|s| !s.is_empty()),
    );
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
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    warp::serve(hook.or(healthz)).incoming(listener).run().await;
    Ok(())
}
