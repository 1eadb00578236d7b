//! `actix-echo-struct`: the echo with telehook, its handler taking a small struct of its own
//! as the update type (`benches/http/echo_struct/telehook.rs`) — the same work and answer
//! bytes as `actix-echo-bare-struct`. Served by actix-web's `HttpServer` like the bare one,
//! so the HTTP benchmark (`benches/http`) compares the webhook dispatcher with a bare
//! handler, nothing else. Serves `POST /telegram` on `PORT` (default 8080) and checks
//! `TELEHOOK_SECRET` if it is set.

#[path = "../../../../benches/http/echo_struct/telehook.rs"]
mod telehook_struct;

use actix_web::{App, HttpServer, web};

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let webhook = telehook_struct::webhook()?;
    HttpServer::new(move || {
        App::new()
            .route("/healthz", web::get().to(|| async { "ok" }))
            .service(telehook_actix::webhook_service(
                "/telegram",
                webhook.clone(),
            ))
    })
    .bind(("0.0.0.0", telehook_struct::port()))?
    .run()
    .await?;
    Ok(())
}
