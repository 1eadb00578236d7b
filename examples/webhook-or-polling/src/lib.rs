//! One bot, one handler, two deployments: `TELEHOOK_MODE=webhook` or `polling` is the only
//! difference. The handler answers with [`telehook_api::Bot::send_or_reply`], which uses the
//! webhook reply when the update came by webhook and an HTTP call otherwise.

use std::future::Future;
use std::net::SocketAddr;

use telehook_api::{Bot, SetWebhook};
use telehook_axum::RouterExt as _;
use telehook_core::{Context, HandlerError, Update, Webhook};

/// How the bot receives its updates.
#[derive(Debug, Clone)]
pub enum Mode {
    /// `getUpdates` long polling: no public address needed.
    Polling,
    /// Telegram posts to `public_url` + `/telegram`, which must reach `listen`.
    Webhook {
        /// Where to listen.
        listen: SocketAddr,
        /// The public base URL (HTTPS for Telegram).
        public_url: String,
        /// The `secret_token` for `setWebhook` and the header check.
        secret: String,
    },
}

/// The bot's one handler: echo text messages.
pub async fn echo(bot: Bot, update: Update, ctx: Context) -> Result<(), HandlerError> {
    let value: serde_json::Value = update.deserialize()?;
    let (Some(chat_id), Some(text)) = (update.chat_id(), value.pointer("/message/text")) else {
        return Ok(());
    };
    let sent = bot
        .send_or_reply(
            &ctx,
            "sendMessage",
            &serde_json::json!({"chat_id": chat_id, "text": text}),
        )
        .await?;
    tracing::info!(update_id = update.update_id(), ?sent, "echoed");
    Ok(())
}

/// Installs SIGTERM and SIGINT handlers (Ctrl-C elsewhere than Unix) and returns a future that
/// resolves on the first of them: pass it to [`run`] as `shutdown`.
///
/// Both signals must stop the bot gracefully, in both modes: a platform stops a process with
/// SIGTERM (Docker, Kubernetes, systemd, Fly, Heroku), and a polling bot killed by it never
/// sends its final `getUpdates` confirming the offset, so the updates it handled last are
/// handled again after the restart.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "stopping gracefully");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C: stopping gracefully");
        })
    }
}

/// Runs the bot in `mode` until `shutdown` resolves.
pub async fn run(
    bot: Bot,
    mode: Mode,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let handler_bot = bot.clone();
    let handler = move |update: Update, ctx: Context| echo(handler_bot.clone(), update, ctx);
    match mode {
        Mode::Polling => {
            let report = telehook_polling::Polling::new(bot)
                .run(handler, shutdown)
                .await?;
            tracing::info!(?report, "polling stopped");
        }
        Mode::Webhook {
            listen,
            public_url,
            secret,
        } => {
            let webhook = Webhook::builder().secret_token(&secret).build(handler)?;
            let listener = tokio::net::TcpListener::bind(listen).await?;
            let url = format!("{}/telegram", public_url.trim_end_matches('/'));
            bot.set_webhook(&SetWebhook::new(&url).secret_token(&secret))
                .await?;
            tracing::info!(%url, "webhook set");
            let app = axum::Router::new().telegram_webhook("/telegram", webhook.clone());
            // Header-read timeout, connection limit, and on shutdown: stop accepting, let open
            // requests and handler runs finish within the deadline (10 s).
            let report = telehook_axum::serve(
                listener,
                app,
                &webhook,
                shutdown,
                &telehook_axum::ServeConfig::default(),
            )
            .await;
            tracing::info!(?report, "webhook server stopped");
        }
    }
    Ok(())
}
