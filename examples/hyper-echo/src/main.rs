//! `cargo run -p hyper-echo`: serves the echo bot on `PORT` (default 8080), checking
//! `TELEHOOK_SECRET` if it is set; Ctrl-C shuts down gracefully.

use std::time::Duration;

use tracing_subscriber::EnvFilter;

#[tokio::main]
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
    let state = hyper_echo::AppState::default();
    let webhook = hyper_echo::webhook(state.clone(), secret.as_deref())?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(address = %listener.local_addr()?, path = hyper_echo::WEBHOOK_PATH, "hyper-echo listening");
    let app = hyper_echo::App {
        webhook: webhook.clone(),
        state,
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let report =
        telehook::hyper::serve_with(listener, app, &webhook, shutdown, Duration::from_secs(20))
            .await;
    tracing::info!(?report, "stopped");
    Ok(())
}
