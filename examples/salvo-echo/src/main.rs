//! `cargo run -p salvo-echo`: serves the echo bot on `PORT` (default 8080), checking
//! `TELEHOOK_SECRET` if it is set. Ctrl-C or SIGTERM stops accepting, lets open requests and handler runs
//! finish within 20 s.

use std::time::Duration;

use salvo::prelude::*;
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
    let (router, webhook) = salvo_echo::build(salvo_echo::AppState::default(), secret.as_deref())?;
    let deadline = Duration::from_secs(20);
    let drain = telehook::salvo::Drain::new(&webhook, deadline);
    let acceptor = TcpListener::new(("0.0.0.0", port)).bind().await;
    let server = Server::new(acceptor);
    let handle = server.handle();
    let signal = drain.signal(shutdown_signal());
    tokio::spawn(async move {
        signal.await;
        handle.stop_graceful(deadline);
    });
    tracing::info!(
        port,
        path = salvo_echo::WEBHOOK_PATH,
        "salvo-echo listening"
    );
    let (_served, report) = drain.run(server.serve(router)).await;
    tracing::info!(?report, "stopped");
    Ok(())
}

/// Resolves on Ctrl-C, or on SIGTERM (what container platforms send before they stop a process).
async fn shutdown_signal() {
    let terminate = async {
        #[cfg(unix)]
        if let Ok(mut sigterm) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            sigterm.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
