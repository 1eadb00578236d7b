//! `telehook dev --to URL`: the local-development bridge. Updates come by long polling
//! (telehook-polling's runner: Telegram's queues, one update in flight per chat) and are POSTed
//! to a local webhook as Telegram would post them; a webhook reply in the answer is executed.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::Value;
use telehook_api::Bot;
use telehook_core::{Context, ErrorPolicy, HandlerError, SECRET_TOKEN_HEADER, Update};
use telehook_polling::{Polling, RunnerConfig};

use crate::CliError;

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// The local webhook to deliver to, e.g. http://127.0.0.1:8080/telegram.
    #[arg(long, value_name = "URL")]
    to: String,
    /// Environment variable holding the secret_token sent in X-Telegram-Bot-Api-Secret-Token
    /// (what the bot's webhook checks). Never printed.
    #[arg(long, value_name = "VAR", conflicts_with = "secret_token_file")]
    secret_token_env: Option<String>,
    /// File holding the secret_token. Never printed.
    #[arg(long, value_name = "PATH")]
    secret_token_file: Option<PathBuf>,
    /// Delete the webhook that is set (keeping its pending updates) and take the updates over.
    /// Without it, `dev` refuses to start while a webhook is set.
    #[arg(long)]
    take_over: bool,
    /// Attempts per update before it is given up (non-2xx answers and timeouts are retried
    /// with backoff; the update's chat waits meanwhile).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// First delay between attempts, in milliseconds (doubling with jitter, up to 30 s).
    #[arg(long, default_value_t = 500)]
    retry_delay_ms: u64,
    /// Seconds the webhook has to answer (Telegram waits about 60).
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Long-poll timeout of each getUpdates, in seconds.
    #[arg(long, default_value_t = 30)]
    poll_timeout_secs: u64,
}

/// Methods Telegram does not execute when they come as a webhook reply.
const IGNORED_IN_REPLY: [&str; 4] = ["setwebhook", "deletewebhook", "close", "logout"];

pub(crate) async fn run(args: DevArgs, token: &str, api_url: &str) -> Result<(), CliError> {
    let secret = crate::webhook::read_secret(
        args.secret_token_env.as_deref(),
        args.secret_token_file.as_deref(),
    )?;
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
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs.max(1)))
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot build the HTTP client: {e}")))?;
    let bridge = Arc::new(Bridge {
        http,
        bot: bot.clone(),
        to: args.to.clone(),
        secret,
        progress: std::io::stderr().is_terminal(),
    });
    let mut config = RunnerConfig::default();
    config.error_policy = ErrorPolicy::BoundedRetry {
        max_attempts: args.max_attempts,
    };
    config.retry_delay = Duration::from_millis(args.retry_delay_ms);
    if bridge.progress {
        eprintln!(
            "telehook dev: delivering updates to {} (Ctrl-C stops)",
            args.to
        );
    }
    let handler = move |update: Update, _ctx: Context| {
        let bridge = Arc::clone(&bridge);
        async move { bridge.deliver(update).await }
    };
    let report = Polling::new(bot)
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

struct Bridge {
    http: reqwest::Client,
    bot: Bot,
    to: String,
    secret: Option<String>,
    progress: bool,
}

impl Bridge {
    /// One delivery attempt, as Telegram makes it: POST the update's bytes as JSON with the
    /// secret header; any 2xx delivers. An `Err` makes the runner retry with backoff.
    async fn deliver(&self, update: Update) -> Result<(), HandlerError> {
        let update_id = update.update_id();
        let started = Instant::now();
        let mut request = self
            .http
            .post(&self.to)
            .header("content-type", "application/json")
            .body(update.raw().clone());
        if let Some(secret) = &self.secret {
            request = request.header(SECRET_TOKEN_HEADER, secret);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let what = if error.is_timeout() {
                    "no answer in time"
                } else {
                    "cannot connect"
                };
                self.note(&format!("update {update_id}: {what}; will retry"));
                return Err(format!("update {update_id}: webhook {what}: {error}").into());
            }
        };
        let status = response.status();
        if !status.is_success() {
            self.note(&format!(
                "update {update_id}: webhook answered {status}; will retry"
            ));
            return Err(format!("update {update_id}: webhook answered {status}").into());
        }
        let is_json = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = response.bytes().await.unwrap_or_default();
        self.note(&format!(
            "update {update_id}: delivered ({status}, {} ms)",
            started.elapsed().as_millis()
        ));
        if is_json && !body.is_empty() {
            self.execute_reply(update_id, &body).await;
        }
        Ok(())
    }

    /// A webhook reply (`{"method":"sendMessage",…}` in the answer's body) is executed as a Bot
    /// API call, as Telegram does (<https://core.telegram.org/bots/api#making-requests-when-getting-updates>);
    /// its failure is logged, not retried (Telegram does not redeliver for it either).
    async fn execute_reply(&self, update_id: u64, body: &[u8]) {
        let Ok(Value::Object(mut params)) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let Some(Value::String(method)) = params.remove("method") else {
            return;
        };
        let lower = method.to_ascii_lowercase();
        if lower.starts_with("get") || IGNORED_IN_REPLY.contains(&lower.as_str()) {
            tracing::warn!(update_id, %method, "webhook reply ignored, as Telegram ignores it");
            return;
        }
        match self.bot.call(&method, &params).await {
            Ok(_) => self.note(&format!(
                "update {update_id}: webhook reply {method} executed"
            )),
            Err(error) => {
                tracing::warn!(update_id, %method, %error, "webhook reply failed");
                self.note(&format!(
                    "update {update_id}: webhook reply {method} failed: {error}"
                ));
            }
        }
    }

    /// A progress line on a terminal; nothing when stderr is piped.
    fn note(&self, line: &str) {
        if self.progress {
            eprintln!("{line}");
        }
    }
}
