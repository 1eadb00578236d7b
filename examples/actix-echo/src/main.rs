//! `cargo run -p actix-echo`: serves the echo bot on `PORT` (default 8080), checking
//! `TELEHOOK_SECRET` if it is set.
//!
//! Hardened against slow clients (`client_request_timeout` = `HEADER_READ_TIMEOUT_MS`,
//! default 10 s; keep-alive `KEEP_ALIVE_MS`, default 30 s; at most 256 connections per
//! worker), and the secret is checked before `Expect: 100-continue` is answered. SIGTERM or
//! Ctrl-C stops accepting, lets the updates in flight finish and be answered, then closes the
//! idle kept-alive connections, within `SHUTDOWN_DEADLINE_MS` (default 20 s); a second signal
//! exits at once.

use actix_web::App;
use telehook_actix::ServerConfig;

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    echo_support::init_tracing();
    let port = echo_support::port(8080)?;
    let secret = echo_support::secret_token();
    let mut config = ServerConfig::default();
    if let Some(timeout) = actix_echo::env_ms("HEADER_READ_TIMEOUT_MS")? {
        config = config.client_request_timeout(timeout);
    }
    if let Some(idle) = actix_echo::env_ms("KEEP_ALIVE_MS")? {
        config = config.keep_alive(idle);
    }
    if let Some(deadline) = actix_echo::env_ms("SHUTDOWN_DEADLINE_MS")? {
        config = config.shutdown_deadline(deadline);
    }
    let state = actix_echo::AppState {
        delay: actix_echo::env_ms("ECHO_DELAY_MS")?.unwrap_or_default(),
        ..Default::default()
    };
    let (routes, webhook) = actix_echo::build(state, secret.as_deref())?;
    let listener = std::net::TcpListener::bind(("0.0.0.0", port))?;
    tracing::info!(address = %listener.local_addr()?, path = actix_echo::WEBHOOK_PATH, "actix-echo listening");
    let server = telehook_actix::server(
        move || App::new().configure(routes.clone()),
        &webhook,
        actix_echo::WEBHOOK_PATH,
        listener,
        &config,
    )?;
    let report = telehook_actix::run_until(
        server,
        &webhook,
        actix_echo::shutdown_signal(),
        config.shutdown_deadline,
    )
    .await?;
    tracing::info!(?report, "stopped");
    Ok(())
}
