//! `warp-echo-struct`: the echo with telehook, its handler taking a small struct of its own
//! as the update type (`benches/http/echo_struct/telehook.rs`) — the same work and answer
//! bytes as `warp-echo-bare-struct`. Served by `warp::serve` like the bare one, so the HTTP
//! benchmark (`benches/http`) compares the webhook dispatcher with a bare handler, nothing
//! else. Serves `POST /telegram` on `PORT` (default 8080) and checks `TELEHOOK_SECRET` if it
//! is set.

#[path = "../../../../benches/http/echo_struct/telehook.rs"]
mod telehook_struct;

use warp::Filter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hook = warp::path!("telegram").and(telehook_warp::webhook(telehook_struct::webhook()?));
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok");
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", telehook_struct::port())).await?;
    warp::serve(hook.or(healthz)).incoming(listener).run().await;
    Ok(())
}
