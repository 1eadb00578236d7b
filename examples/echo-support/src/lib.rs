#![doc = include_str!("../README.md")]

use std::future::Future;
use std::time::Duration;

use telehook_core::{Context, HandlerError, Update};
use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
}

/// The port from `PORT`, or `default` when it is not set.
pub fn port(default: u16) -> Result<u16, String> {
    match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|e| format!("PORT={port:?} is not a port number: {e}")),
        Err(_) => Ok(default),
    }
}

/// The webhook's `secret_token` from `TELEHOOK_SECRET`, if it is set and not empty.
pub fn secret_token() -> Option<String> {
    std::env::var("TELEHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A duration in milliseconds from the environment variable `name`, if it is set.
pub fn env_ms(name: &str) -> Result<Option<Duration>, String> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|e| format!("{name}={value:?} is not a number of milliseconds: {e}")),
        Err(_) => Ok(None),
    }
}

/// What the echo bot does with one update: a text message gets the same text back through the
/// webhook reply, after `delay` (zero unless `ECHO_DELAY_MS` asks for a slow handler, to watch
/// a graceful shutdown wait for it). Returns whether it echoed.
pub async fn echo(update: &Update, ctx: &Context, delay: Duration) -> Result<bool, HandlerError> {
    let value: serde_json::Value = update.deserialize()?;
    let Some(text) = value.pointer("/message/text").and_then(|t| t.as_str()) else {
        tracing::debug!(
            update_id = update.update_id(),
            kind = update.kind(),
            "not a text message: ignored"
        );
        return Ok(false);
    };
    let chat_id = update.chat_id().ok_or("a message without a chat")?;
    if !delay.is_zero() {
        tracing::info!(
            update_id = update.update_id(),
            delay_ms = delay.as_millis(),
            "echo: waiting before answering"
        );
        tokio::time::sleep(delay).await;
        tracing::info!(
            update_id = update.update_id(),
            "echo: answered after the delay"
        );
    }
    ctx.webhook_reply(
        "sendMessage",
        serde_json::json!({ "chat_id": chat_id, "text": text }),
    )?;
    Ok(true)
}

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM. From then on, a second one exits the
/// process at once with code 130, cutting the graceful shutdown short.
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// server may poll its shutdown future only after it has accepted and started serving a
/// request, and a SIGTERM arriving before that would otherwise kill the process at once (the
/// default action) with the request in flight. Call it inside the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let mut signals = Signals::new();
    async move {
        signals.recv().await;
        tokio::spawn(async move {
            signals.recv().await;
            tracing::warn!("second signal: exiting without waiting for the rest");
            std::process::exit(130);
        });
        tracing::info!("shutting down gracefully; a second signal exits at once");
    }
}

struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).expect("a SIGINT handler"),
                terminate: signal(SignalKind::terminate()).expect("a SIGTERM handler"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
