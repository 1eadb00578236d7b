//! The hyper echo bot: a hyper service with its own routes (`/healthz`, `/stats`) and state, and
//! the Telegram webhook at [`WEBHOOK_PATH`] echoing text messages with a webhook reply.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use telehook::{BuildError, Context, HandlerError, Update, Webhook};

/// The path Telegram posts updates to.
pub const WEBHOOK_PATH: &str = "/telegram";

/// The app's own state, shared by its routes and the bot.
#[derive(Clone, Debug, Default)]
pub struct AppState {
    /// Text messages echoed so far.
    pub echoed: Arc<AtomicU64>,
    /// Time each echo waits before answering (`ECHO_DELAY_MS`; zero by default): a slow
    /// handler, to watch a graceful shutdown wait for it.
    pub delay: Duration,
}

/// What the echo bot does with one update: a text message gets the same text back.
pub async fn echo(state: AppState, update: Update, ctx: Context) -> Result<(), HandlerError> {
    let value: serde_json::Value = update.deserialize()?;
    let Some(text) = value.pointer("/message/text").and_then(|t| t.as_str()) else {
        return Ok(());
    };
    let chat_id = update.chat_id().ok_or("a message without a chat")?;
    if !state.delay.is_zero() {
        tracing::info!(
            update_id = update.update_id(),
            delay_ms = state.delay.as_millis(),
            "echo: waiting before answering"
        );
        tokio::time::sleep(state.delay).await;
        tracing::info!(
            update_id = update.update_id(),
            "echo: answered after the delay"
        );
    }
    ctx.webhook_reply(
        "sendMessage",
        serde_json::json!({ "chat_id": chat_id, "text": text }),
    )?;
    state.echoed.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Builds the webhook (checking `secret_token`; without one, deliveries are accepted
/// without the header and a warning is logged).
pub fn webhook(state: AppState, secret_token: Option<&str>) -> Result<Webhook, BuildError> {
    let mut builder = Webhook::builder();
    match secret_token {
        Some(secret) => builder = builder.secret_token(secret),
        None => tracing::warn!(
            "TELEHOOK_SECRET is not set: accepting updates without the secret token header"
        ),
    }
    builder.build(move |update: Update, ctx: Context| echo(state.clone(), update, ctx))
}

/// The app's router as a hyper service: the webhook next to the app's own routes.
#[derive(Clone, Debug)]
pub struct App {
    /// The bot.
    pub webhook: Webhook,
    /// The app's state.
    pub state: AppState,
}

impl hyper::service::Service<http::Request<Incoming>> for App {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let app = self.clone();
        Box::pin(async move {
            match request.uri().path() {
                WEBHOOK_PATH => telehook::hyper::handle(&app.webhook, request).await,
                "/healthz" => Ok(http::Response::new(Full::new(Bytes::from_static(b"ok")))),
                "/stats" => {
                    let body =
                        serde_json::json!({ "echoed": app.state.echoed.load(Ordering::Relaxed) })
                            .to_string();
                    Ok(http::Response::new(Full::new(Bytes::from(body))))
                }
                _ => Ok(http::Response::builder()
                    .status(404)
                    .body(Full::new(Bytes::from_static(b"not found")))
                    .unwrap_or_default()),
            }
        })
    }
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

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM. From then on, a second one exits the
/// process at once with code 130, cutting the graceful shutdown short.
pub async fn shutdown_signal() {
    let mut signals = Signals::new();
    signals.recv().await;
    tokio::spawn(async move {
        signals.recv().await;
        tracing::warn!("second signal: exiting without waiting for the rest");
        std::process::exit(130);
    });
    tracing::info!("shutting down gracefully; a second signal exits at once");
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
