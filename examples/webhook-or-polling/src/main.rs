//! `TELEGRAM_BOT_TOKEN=… TELEHOOK_MODE=polling cargo run -p webhook-or-polling --features real-telegram`
//!
//! Webhook mode also needs `TELEHOOK_PUBLIC_URL` (HTTPS, reaching `PORT`, default 8080) and
//! takes `TELEHOOK_SECRET`. `TELEGRAM_API_URL` points the bot at another Bot API server (a local
//! one, or the telehook emulator).

use tracing_subscriber::EnvFilter;
use webhook_or_polling::Mode;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let token = std::env::var("TELEGRAM_BOT_TOKEN")
        .map_err(|_| "set TELEGRAM_BOT_TOKEN (from @BotFather)")?;
    let mut bot = telehook_api::Bot::builder(token);
    if let Ok(url) = std::env::var("TELEGRAM_API_URL") {
        bot = bot.base_url(url);
    }
    let mode = match std::env::var("TELEHOOK_MODE")
        .as_deref()
        .unwrap_or("polling")
    {
        "polling" => Mode::Polling,
        "webhook" => Mode::Webhook {
            listen: (
                [0, 0, 0, 0],
                std::env::var("PORT")
                    .ok()
                    .map(|p| p.parse())
                    .transpose()?
                    .unwrap_or(8080),
            )
                .into(),
            public_url: std::env::var("TELEHOOK_PUBLIC_URL")
                .map_err(|_| "webhook mode needs TELEHOOK_PUBLIC_URL")?,
            secret: std::env::var("TELEHOOK_SECRET")
                .map_err(|_| "webhook mode needs TELEHOOK_SECRET")?,
        },
        other => return Err(format!("TELEHOOK_MODE={other:?}: use `webhook` or `polling`").into()),
    };
    // SIGINT (Ctrl-C) or SIGTERM (a deploy, `docker stop`, systemd) starts a graceful stop:
    // polling finishes what it holds and confirms its offset (a final getUpdates), the webhook
    // server drains, both within their deadline. The handlers are installed before anything
    // starts, so a signal during start-up is not lost either.
    let shutdown = webhook_or_polling::shutdown_signal()?;
    webhook_or_polling::run(bot.build(), mode, shutdown).await
}
