//! `cargo run -p salvo-echo`: serves the echo bot on `PORT` (default 8080; 0 picks a free
//! port), checking `TELEHOOK_SECRET` if it is set.
//!
//! SIGTERM or Ctrl-C stops accepting and lets the updates in flight finish and be answered,
//! within `SHUTDOWN_DEADLINE_MS` (default 20 s); a second signal exits at once.
//! `ECHO_DELAY_MS` makes each echo wait (a slow handler, for trying the shutdown);
//! `HEADER_READ_TIMEOUT_MS` (default 10 s) closes connections that stall in their request head
//! or sit idle.

use std::time::Duration;

use salvo::conn::tcp::TcpAcceptor;
use salvo::fuse::FuseConfig;
use salvo::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    echo_support::init_tracing();
    let port = echo_support::port(8080)?;
    let secret = echo_support::secret_token();
    let deadline = salvo_echo::env_ms("SHUTDOWN_DEADLINE_MS")?.unwrap_or(Duration::from_secs(20));
    let state = salvo_echo::AppState {
        delay: salvo_echo::env_ms("ECHO_DELAY_MS")?.unwrap_or_default(),
        ..Default::default()
    };
    let (router, webhook) = salvo_echo::build(state, secret.as_deref())?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(address = %listener.local_addr()?, path = salvo_echo::WEBHOOK_PATH, "salvo-echo listening");
    // Salvo's fuse bounds a slow client's request head and an idle kept-alive connection.
    let header_read_timeout =
        salvo_echo::env_ms("HEADER_READ_TIMEOUT_MS")?.unwrap_or(Duration::from_secs(10));
    let fuse = FuseConfig::default()
        .with_http1_header_timeout(header_read_timeout)
        .with_connection_idle_timeout(header_read_timeout);
    let server = Server::new(TcpAcceptor::try_from(listener)?).fuse_config(fuse);
    let handle = server.handle();
    let drain = telehook::salvo::Drain::new(&webhook, deadline);
    let signal = drain.signal(salvo_echo::shutdown_signal());
    tokio::spawn(async move {
        signal.await;
        handle.stop_graceful(deadline);
    });
    let (_served, report) = drain.run(server.serve(router)).await;
    tracing::info!(?report, "stopped");
    Ok(())
}
