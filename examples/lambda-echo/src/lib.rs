#![doc = include_str!("../README.md")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use telehook::{BuildError, Context, HandlerError, Update, Webhook};

/// The function's own state (lives as long as a warm instance).
#[derive(Clone, Debug, Default)]
pub struct AppState {
    /// Text messages echoed by this instance.
    pub echoed: Arc<AtomicU64>,
    /// Time each echo waits before answering (`ECHO_DELAY_MS`; zero by default): a slow
    /// handler, to watch the invocation deadline answer `503` in time.
    pub delay: Duration,
}

/// The handler timeout: below the function's timeout (15 s in the deploy steps).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What the echo bot does with one update: a text message gets the same text back.
pub async fn echo(state: AppState, update: Update, ctx: Context) -> Result<(), HandlerError> {
    let value: serde_json::Value = update.deserialize()?;
    let Some(text) = value.pointer("/message/text").and_then(|t| t.as_str()) else {
        return Ok(());
    };
    let chat_id = update.chat_id().ok_or("a message without a chat")?;
    if let Some(invocation) = ctx.extension::<telehook::lambda::Invocation>() {
        tracing::info!(
            update_id = update.update_id(),
            request_id = %invocation.request_id,
            time_left_ms = ctx.remaining().unwrap_or_default().as_millis(),
            "echo: handling"
        );
    }
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    ctx.webhook_reply(
        "sendMessage",
        serde_json::json!({ "chat_id": chat_id, "text": text }),
    )?;
    state.echoed.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Builds the webhook (without a secret, deliveries are accepted and a warning is logged).
pub fn webhook(state: AppState, secret_token: Option<&str>) -> Result<Webhook, BuildError> {
    let mut builder = Webhook::builder().timeout(TIMEOUT);
    match secret_token {
        Some(secret) => builder = builder.secret_token(secret),
        None => tracing::warn!(
            "TELEHOOK_SECRET is not set: accepting updates without the secret token header"
        ),
    }
    builder.build(move |update: Update, ctx: Context| echo(state.clone(), update, ctx))
}
