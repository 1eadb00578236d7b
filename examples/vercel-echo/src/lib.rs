//! The Vercel echo bot: echoes text messages with a webhook reply. `api/telegram.rs` is the
//! function; tests run it under a stand-in for Vercel's runtime bridge on loopback.

use std::time::Duration;

use telehook::{BuildError, Context, HandlerError, OnTimeout, Update, Webhook};

/// The function's `maxDuration`, the same number as in `vercel.json`.
pub const MAX_DURATION: Duration = Duration::from_secs(60);

/// What the echo bot does with one update: a text message gets the same text back through the
/// webhook reply; `/slow` stands for work that outlasts the timeout (a slow API call).
pub async fn echo(update: Update, ctx: Context) -> Result<(), HandlerError> {
    let value: serde_json::Value = update.deserialize()?;
    let Some(text) = value.pointer("/message/text").and_then(|t| t.as_str()) else {
        return Ok(());
    };
    if text == "/slow" {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tracing::info!(update_id = update.update_id(), "slow work finished");
        return Ok(());
    }
    let chat_id = update.chat_id().ok_or("a message without a chat")?;
    ctx.webhook_reply(
        "sendMessage",
        serde_json::json!({ "chat_id": chat_id, "text": text }),
    )?;
    Ok(())
}

/// The webhook: `OnTimeout::Return` is safe on Vercel, whose `waitUntil` keeps the invocation
/// alive for the rest of the run.
pub fn webhook(secret_token: Option<&str>, timeout: Duration) -> Result<Webhook, BuildError> {
    let mut builder = Webhook::builder()
        .timeout(timeout)
        .on_timeout(OnTimeout::Return);
    match secret_token {
        Some(secret) => builder = builder.secret_token(secret),
        None => tracing::warn!(
            "TELEHOOK_SECRET is not set: accepting updates without the secret token header"
        ),
    }
    builder.build(echo)
}
