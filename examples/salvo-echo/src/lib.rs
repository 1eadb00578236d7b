//! The salvo echo bot: a salvo router with its own handlers and depot state, and a Telegram
//! webhook that echoes text messages with a webhook reply. `main.rs` serves it; tests drive it
//! in-process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use salvo::affix_state;
use salvo::prelude::*;
use telehook::{BuildError, Context, HandlerError, Update, Webhook};

/// The path Telegram posts updates to (no leading slash, as salvo writes paths).
pub const WEBHOOK_PATH: &str = "telegram";

/// The app's own state, shared by its handlers (through the depot) and the bot.
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

/// Builds the router (`/healthz`, `/stats` and the webhook at [`WEBHOOK_PATH`]) and its
/// webhook, which `main` drains at shutdown.
pub fn build(state: AppState, secret_token: Option<&str>) -> Result<(Router, Webhook), BuildError> {
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
    let router = Router::new()
        .hoop(affix_state::inject(state))
        .push(Router::with_path("healthz").get(healthz))
        .push(Router::with_path("stats").get(stats))
        .push(telehook::salvo::router(WEBHOOK_PATH, webhook.clone()));
    Ok((router, webhook))
}

#[handler]
async fn healthz() -> &'static str {
    "ok"
}

#[handler]
async fn stats(depot: &mut Depot, response: &mut Response) {
    let echoed = depot
        .get_typed::<AppState>()
        .map(|state| state.echoed.load(Ordering::Relaxed))
        .unwrap_or_default();
    response.render(Json(serde_json::json!({ "echoed": echoed })));
}

pub use echo_support::{env_ms, shutdown_signal};
