//! `cargo run -p warp-echo`: serves the echo bot on `PORT` (default 8080), checking
//! `TELEHOOK_SECRET` if it is set.
//!
//! Hardened against slow clients (header-read/idle timeout `HEADER_READ_TIMEOUT_MS`, default
//! 10 s; at most 256 connections); SIGTERM or Ctrl-C stops accepting, lets the updates in
//! flight finish and be answered, within `SHUTDOWN_DEADLINE_MS` (default 20 s); a second
//! signal exits at once.

use telehook_warp::ServeConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    echo_support::init_tracing();
    let port = echo_support::port(8080)?;
    let secret = echo_support::secret_token();
    let mut config = ServeConfig::default();
    if let Some(timeout) = warp_echo::env_ms("HEADER_READ_TIMEOUT_MS")? {
        config = config.header_read_timeout(timeout);
    }
    if let Some(deadline) = warp_echo::env_ms("SHUTDOWN_DEADLINE_MS")? {
        config = config.shutdown_deadline(deadline);
    }
    let state = warp_echo::AppState {
        delay: warp_echo::env_ms("ECHO_DELAY_MS")?.unwrap_or_default(),
        ..Default::default()
    };
    let (routes, webhook) = warp_echo::build(state, secret.as_deref())?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(address = %listener.local_addr()?, path = warp_echo::WEBHOOK_PATH, "warp-echo listening");
    let report = telehook_warp::serve(
        listener,
        routes,
        &webhook,
        warp_echo::shutdown_signal(),
        &config,
    )
    .await;
    tracing::info!(?report, "stopped");
    Ok(())
}
