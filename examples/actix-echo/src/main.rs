//! `cargo run -p actix-echo`: serves the echo bot on `PORT` (default 8080), checking
//! `TELEHOOK_SECRET` if it is set.

use actix_web::{App, HttpServer};
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|e| format!("PORT={port:?} is not a port number: {e}"))?,
        Err(_) => 8080,
    };
    let secret = std::env::var("TELEHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let routes = actix_echo::configure(actix_echo::AppState::default(), secret.as_deref())?;
    let server =
        HttpServer::new(move || App::new().configure(routes.clone())).bind(("0.0.0.0", port))?;
    for address in server.addrs() {
        tracing::info!(%address, path = actix_echo::WEBHOOK_PATH, "actix-echo listening");
    }
    // actix-web stops gracefully on Ctrl-C / SIGTERM by itself.
    server.run().await?;
    Ok(())
}
