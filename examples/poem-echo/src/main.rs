//! `cargo run -p poem-echo`: serves the echo bot on `PORT` (default 8080; 0 picks a free port),
//! checking `TELEHOOK_SECRET` if it is set.
//!
//! SIGTERM or Ctrl-C stops accepting and lets the updates in flight finish and be answered,
//! within `SHUTDOWN_DEADLINE_MS` (default 20 s); a second signal exits at once.
//! `ECHO_DELAY_MS` makes each echo wait (a slow handler, for trying the shutdown).

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    echo_support::init_tracing();
    let port = echo_support::port(8080)?;
    let secret = echo_support::secret_token();
    let deadline = poem_echo::env_ms("SHUTDOWN_DEADLINE_MS")?.unwrap_or(Duration::from_secs(20));
    let state = poem_echo::AppState {
        delay: poem_echo::env_ms("ECHO_DELAY_MS")?.unwrap_or_default(),
        ..Default::default()
    };
    let (app, webhook) = poem_echo::build(state, secret.as_deref())?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(address = %listener.local_addr()?, path = poem_echo::WEBHOOK_PATH, "poem-echo listening");
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)?;
    let drain = telehook::poem::Drain::new(&webhook, deadline);
    let signal = drain.signal(poem_echo::shutdown_signal());
    // No timeout of poem's own: `Drain` enforces the deadline (a second timer would race it,
    // cancel the runs still going, and hide them from the report).
    let server =
        poem::Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(app, signal, None);
    let (served, report) = drain.run(server).await;
    if let Some(Err(error)) = served {
        return Err(error.into());
    }
    tracing::info!(?report, "stopped");
    Ok(())
}
