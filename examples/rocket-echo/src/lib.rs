//! The Rocket echo bot: a Rocket instance with its own routes and managed state, and a Telegram
//! webhook that echoes text messages with a webhook reply. `main.rs` launches it; tests drive
//! it with Rocket's local client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rocket::serde::json::Json;
use rocket::{Build, Rocket, State, get, routes};
use telehook::{BuildError, Context, HandlerError, Update, Webhook};

/// The path Telegram posts updates to.
pub const WEBHOOK_PATH: &str = "/telegram";

/// How long Rocket's graceful shutdown waits for handler runs (within Rocket's own grace
/// period, 2 s by default: raise `shutdown.grace` to give runs longer).
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

/// The app's own state, managed by Rocket and shared with the bot.
#[derive(Clone, Debug, Default)]
pub struct AppState {
    /// Text messages echoed so far.
    pub echoed: Arc<AtomicU64>,
}

/// What the echo bot does with one update: a text message gets the same text back, through
/// the webhook reply.
pub async fn echo(state: AppState, update: Update, ctx: Context) -> Result<(), HandlerError> {
    let value: serde_json::Value = update.deserialize()?;
    let Some(text) = value.pointer("/message/text").and_then(|t| t.as_str()) else {
        return Ok(());
    };
    let chat_id = update.chat_id().ok_or("a message without a chat")?;
    ctx.webhook_reply(
        "sendMessage",
        serde_json::json!({ "chat_id": chat_id, "text": text }),
    )?;
    state.echoed.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Builds the Rocket instance: `/healthz`, `/stats`, the webhook at [`WEBHOOK_PATH`] and its
/// shutdown drain.
pub fn rocket(state: AppState, secret_token: Option<&str>) -> Result<Rocket<Build>, BuildError> {
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
    Ok(rocket::build()
        .manage(state)
        .mount("/", routes![healthz, stats])
        .mount(WEBHOOK_PATH, telehook::rocket::routes(webhook.clone()))
        .attach(telehook::rocket::drain_on_shutdown(webhook, DRAIN_DEADLINE)))
}

#[get("/healthz")]
fn healthz() -> &'static str {
    "ok"
}

#[get("/stats")]
fn stats(state: &State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "echoed": state.echoed.load(Ordering::Relaxed) }))
}
