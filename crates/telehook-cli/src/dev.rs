//! `telehook dev --to URL`: the local-development bridge. Updates come by long polling
//! (telehook-polling's runner: Telegram's queues, one update in flight per chat) and are POSTed
//! to a local webhook as Telegram would post them; a webhook reply in the answer is executed.

use std::time::Duration;

use clap::Args;
use telehook_api::Bot;
use telehook_polling::Polling;

use crate::CliError;
use crate::deliver::{Delivery, DeliveryArgs};

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    #[command(flatten)]
    delivery: DeliveryArgs,
    /// Delete the webhook that is set (keeping its pending updates) and take the updates over.
    /// Without it, `dev` refuses to start while a webhook is set.
    #[arg(long)]
    take_over: bool,
    /// Long-poll timeout of each getUpdates, in seconds.
    #[arg(long, default_value_t = 30)]
    poll_timeout_secs: u64,
}

pub(crate) async fn run(args: DevArgs, token: &str, api_url: &str) -> Result<(), CliError> {
    let bot = Bot::builder(token).base_url(api_url).build();
    let info = bot.get_webhook_info().await?;
    if !info.url.is_empty() {
        if !args.take_over {
            return Err(CliError::Invalid(format!(
                "a webhook is set ({}): while it is, Telegram sends the updates there and \
                 getUpdates is refused. Pass --take-over to delete it (its pending updates are \
                 kept) and bridge them here; set it again afterwards with `telehook webhook set`",
                info.url
            )));
        }
        bot.delete_webhook(false).await?;
        tracing::warn!(webhook = %info.url, "webhook deleted (--take-over); pending updates kept");
    }
    let (delivery, config) = Delivery::new(&args.delivery, Some(bot.clone()))?;
    delivery.note(&format!(
        "telehook dev: delivering updates to {} (Ctrl-C stops)",
        args.delivery.to
    ));
    let handler = delivery.handler();
    // Without --take-over, polling must not delete a webhook set after the check above (a
    // deploy in between): getUpdates then fails with 409 Conflict and `dev` stops, saying so.
    let report = Polling::new(bot)
        .delete_webhook_at_start(args.take_over)
        .timeout(Duration::from_secs(args.poll_timeout_secs))
        .runner_config(config)
        .run(handler, crate::servers::shutdown_signal())
        .await
        .map_err(|e| CliError::Server {
            what: "long polling stopped",
            source: Box::new(e),
        })?;
    tracing::info!(?report, "stopped");
    Ok(())
}
