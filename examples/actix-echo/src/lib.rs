//! The actix-web echo bot: an actix-web app with its own routes and data, and a Telegram
//! webhook that echoes text messages with a webhook reply. `main.rs` serves it; tests drive it
//! in-process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{HttpResponse, web};
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

/// Builds the app's routes for `App::configure`: `/healthz`, `/stats` and the webhook at
/// [`WEBHOOK_PATH`]. Call it once and clone the result into every worker's `App`, so all
/// workers share one dispatcher (and so one redelivery guard).
pub fn configure(
    state: AppState,
    secret_token: Option<&str>,
) -> Result<impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static, BuildError> {
    build(state, secret_token).map(|(routes, _)| routes)
}

/// [`configure`], and a handle to the webhook for the graceful shutdown.
pub fn build(
    state: AppState,
    secret_token: Option<&str>,
) -> Result<
    (
        impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
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
    let handle = webhook.clone();
    let routes = move |config: &mut web::ServiceConfig| {
        config
            .app_data(web::Data::new(state.clone()))
            .route("/healthz", web::get().to(|| async { "ok" }))
            .route("/stats", web::get().to(stats))
            .service(telehook_actix::webhook_service(
                WEBHOOK_PATH,
                webhook.clone(),
            ));
    };
    Ok((routes, handle))
}

async fn stats(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "echoed": state.echoed.load(Ordering::Relaxed) }))
}

pub use echo_support::{env_ms, shutdown_signal};
