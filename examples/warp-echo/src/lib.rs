//! The warp echo bot: warp filters with their own state, and a Telegram webhook that echoes
//! text messages with a webhook reply. `main.rs` serves it; tests drive it in-process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use telehook::{BuildError, Context, HandlerError, Update, Webhook};
use warp::{Filter, Rejection, Reply};

/// The path segment Telegram posts updates to (`/telegram`).
pub const WEBHOOK_PATH: &str = "telegram";

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

/// Builds the app's filters: `GET /healthz`, `GET /stats` and the webhook at `/telegram`.
pub fn routes(
    state: AppState,
    secret_token: Option<&str>,
) -> Result<
    impl Filter<Extract = (impl Reply + use<>,), Error = Rejection> + Clone + use<>,
    BuildError,
> {
    build(state, secret_token).map(|(routes, _)| routes)
}

/// Builds the app's filters, and keeps a handle to its webhook for the graceful shutdown.
#[allow(clippy::type_complexity)]
pub fn build(
    state: AppState,
    secret_token: Option<&str>,
) -> Result<
    (
        impl Filter<Extract = (impl Reply + use<>,), Error = Rejection> + Clone + use<>,
        Webhook,
    ),
    BuildError,
> {
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
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok");
    let stats = warp::path!("stats").and(warp::get()).map(move || {
        warp::reply::json(&serde_json::json!({ "echoed": state.echoed.load(Ordering::Relaxed) }))
    });
    let telegram = warp::path(WEBHOOK_PATH)
        .and(warp::path::end())
        .and(telehook_warp::webhook(webhook.clone()));
    Ok((telegram.or(healthz).or(stats), webhook))
}

pub use echo_support::{env_ms, shutdown_signal};
