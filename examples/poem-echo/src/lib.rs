//! The poem echo bot: a poem app with its own endpoints and data, and a Telegram webhook that
//! echoes text messages with a webhook reply. `main.rs` serves it; tests drive it in-process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use poem::web::{Data, Json};
use poem::{Endpoint, EndpointExt as _, Response, Route, get, handler};
use telehook::poem::RouteExt as _;
use telehook::{BuildError, Context, HandlerError, Update, Webhook};

/// The path Telegram posts updates to.
pub const WEBHOOK_PATH: &str = "/telegram";

/// The app's own data, shared by its endpoints and the bot.
#[derive(Clone, Debug, Default)]
pub struct AppState {
    /// Text messages echoed so far.
    pub echoed: Arc<AtomicU64>,
    /// Time each echo waits before answering (`ECHO_DELAY_MS`; zero by default): a slow
    /// handler, to watch the graceful shutdown wait for it.
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

/// Builds the app (`/healthz`, `/stats` and the webhook at [`WEBHOOK_PATH`]) and its webhook,
/// which `main` drains at shutdown.
pub fn build(
    state: AppState,
    secret_token: Option<&str>,
) -> Result<(impl Endpoint<Output = Response> + use<>, Webhook), BuildError> {
    let mut builder = Webhook::builder();
    match secret_token {
        Some(secret) => builder = builder.secret_token(secret),
        None => tracing::warn!(
            "TELEHOOK_SECRET is not set: accepting updates without the secret token header"
        ),
    }
    let for_bot = state.clone();
    let webhook =
        builder.build(move |update: Update, ctx: Context| echo(for_bot.clone(), update, ctx))?;
    let app = Route::new()
        .at("/healthz", get(healthz))
        .at("/stats", get(stats))
        .telegram_webhook(WEBHOOK_PATH, webhook.clone())
        .data(state)
        .map_to_response();
    Ok((app, webhook))
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}

#[handler]
fn stats(Data(state): Data<&AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "echoed": state.echoed.load(Ordering::Relaxed) }))
}

pub use echo_support::{env_ms, shutdown_signal};
