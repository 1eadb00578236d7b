//! `cargo run -p queue-workers`: the webhook on `PORT` (default 8080, path `/telegram`,
//! checking `TELEHOOK_SECRET` if set) storing updates in the SQLite queue at `QUEUE_PATH`
//! (default `queue-workers.sqlite3`), and `WORKERS` workers (default 3) handling them. SIGTERM
//! or Ctrl-C stops the webhook, then drains the workers; what is not handled stays queued for
//! the next start.

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
    let workers: u32 = match std::env::var("WORKERS") {
        Ok(n) => n
            .parse()
            .map_err(|e| format!("WORKERS={n:?} is not a number: {e}"))?,
        Err(_) => 3,
    };
    let path = std::env::var("QUEUE_PATH").unwrap_or_else(|_| "queue-workers.sqlite3".into());
    let secret = std::env::var("TELEHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let queue = queue_workers::open_queue(path.as_ref(), workers)?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(address = %listener.local_addr()?, path = queue_workers::WEBHOOK_PATH, queue = %path, workers, "queue-workers listening");
    let mut runner = telehook_polling::RunnerConfig::default();
    runner.error_policy = telehook_core::ErrorPolicy::BoundedRetry { max_attempts: 3 };
    let reports = queue_workers::run(
        listener,
        queue,
        secret.as_deref(),
        queue_workers::handle,
        runner,
        shutdown(),
    )
    .await?;
    tracing::info!(?reports, "stopped");
    Ok(())
}

/// The first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down: the webhook first, then the workers drain");
}
