//! The axum echo bot: an axum app with its own routes and state, and a Telegram webhook that
//! echoes text messages with a webhook reply. `main.rs` serves it; tests drive it in-process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use telehook::axum::RouterExt as _;
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

/// What the echo bot does with one update: a text message gets the same text back, through
/// the webhook reply.
pub async fn echo(state: AppState, update: Update, ctx: Context) -> Result<(), HandlerError> {
    let value: serde_json::Value = update.deserialize()?;
    let Some(text) = value.pointer("/message/text").and_then(|t| t.as_str()) else {
        tracing::debug!(
            update_id = update.update_id(),
            kind = update.kind(),
            "not a text message: ignored"
        );
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

/// Builds the app: `/healthz`, `/stats` and the webhook at [`WEBHOOK_PATH`].
pub fn app(state: AppState, secret_token: Option<&str>) -> Result<Router, BuildError> {
    build(state, secret_token).map(|(router, _)| router)
}

/// Builds the app, and keeps a handle to its webhook for the graceful shutdown.
pub fn build(state: AppState, secret_token: Option<&str>) -> Result<(Router, Webhook), BuildError> {
    let mut builder = Webhook::builder();
    match secret_token {
        Some(secret) => builder = builder.secret_token(secret),
        None => tracing::warn!(
            "TELEHOOK_SECRET is not set: accepting updates without the secret token header; \
             anyone who finds the URL can post fake updates"
        ),
    }
    let for_bot = state.clone();
    let webhook =
        builder.build(move |update: Update, ctx: Context| echo(for_bot.clone(), update, ctx))?;
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/stats", get(stats))
        .telegram_webhook(WEBHOOK_PATH, webhook.clone())
        .with_state(state);
    Ok((router, webhook))
}

async fn stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "echoed": state.echoed.load(Ordering::Relaxed) }))
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

/// The operations routes: `GET /metrics`, the dispatcher's metrics in Prometheus text format
/// (`metrics` is the handle of the recorder installed with metrics-exporter-prometheus;
/// the metrics are listed in `docs/operations.md`), and `GET /readyz`, `200` while `webhook`
/// takes traffic and `503` once it drains ([`Webhook::is_ready`]). Merge it into the app.
pub fn operations(webhook: &Webhook, metrics: PrometheusHandle) -> Router {
    let webhook = webhook.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .route(
            "/readyz",
            get(move || {
                let status = if webhook.is_ready() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                std::future::ready(status)
            }),
        )
}
