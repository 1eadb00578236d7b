//! `cargo run -p axum-echo`: serves the echo bot on `PORT` (default 8080), checking
//! `TELEHOOK_SECRET` if it is set.
//!
//! Hardened against slow clients (header-read/idle timeout `HEADER_READ_TIMEOUT_MS`, default
//! 10 s; at most 256 connections); SIGTERM or Ctrl-C stops accepting, lets the updates in
//! flight finish and be answered, within `SHUTDOWN_DEADLINE_MS` (default 20 s); a second
//! signal exits at once.

use telehook::axum::ServeConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    echo_support::init_tracing();
    let port = echo_support::port(8080)?;
    let secret = echo_support::secret_token();
    let mut config = ServeConfig::default();
    if let Some(timeout) = axum_echo::env_ms("HEADER_READ_TIMEOUT_MS")? {
        config = config.header_read_timeout(timeout);
    }
    if let Some(deadline) = axum_echo::env_ms("SHUTDOWN_DEADLINE_MS")? {
        config = config.shutdown_deadline(deadline);
    }
    let state = axum_echo::AppState {
        delay: axum_echo::env_ms("ECHO_DELAY_MS")?.unwrap_or_default(),
        ..Default::default()
    };
    let (app, webhook) = axum_echo::build(state, secret.as_deref())?;
    // The metrics recorder (Prometheus text at GET /metrics), and its upkeep: histograms are
    // drained into their summaries every few seconds.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let app = app.merge(axum_echo::operations(&webhook, metrics));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(address = %listener.local_addr()?, path = axum_echo::WEBHOOK_PATH, "axum-echo listening");
    let report = telehook::axum::serve(
        listener,
        app,
        &webhook,
        axum_echo::shutdown_signal(),
        &config,
    )
    .await;
    tracing::info!(?report, "stopped");
    Ok(())
}
