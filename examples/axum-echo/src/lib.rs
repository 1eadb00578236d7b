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
    if echo_support::echo(&update, &ctx, state.delay).await? {
        state.echoed.fetch_add(1, Ordering::Relaxed);
    }
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

pub use echo_support::{env_ms, shutdown_signal};

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
