//! `axum-echo-struct`: the echo with telehook, its handler taking a small struct of its own
//! as the update type (`benches/http/echo_struct/telehook.rs`) — the same work and answer
//! bytes as `axum-echo-bare-struct`. Served by `axum::serve` like the bare one, so the HTTP
//! benchmark (`benches/http`) compares the webhook dispatcher with a bare handler, nothing
//! else. Serves `POST /telegram` on `PORT` (default 8080) and checks `TELEHOOK_SECRET` if it
//! is set.

#[path = "../../../../benches/http/echo_struct/telehook.rs"]
mod telehook_struct;

use axum::Router;
use axum::routing::get;
use telehook::axum::RouterExt as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .telegram_webhook("/telegram", telehook_struct::webhook()?);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", telehook_struct::port())).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
