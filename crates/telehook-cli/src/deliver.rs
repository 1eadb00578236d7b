//! Delivery to a local webhook as Telegram makes it, shared by `telehook dev` (updates from
//! getUpdates) and `telehook relay-forward` (updates from a relay channel): POST the update with
//! the secret header, retry non-2xx answers and timeouts with backoff (the runner's error
//! policy; the chat waits meanwhile), execute the webhook reply in the answer.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::Value;
use telehook_api::Bot;
use telehook_core::{Context, ErrorPolicy, HandlerError, SECRET_TOKEN_HEADER, Update};
use telehook_polling::RunnerConfig;

use crate::CliError;

/// The settings of the delivery to the local webhook, the same for every source.
#[derive(Debug, Args)]
pub(crate) struct DeliveryArgs {
    /// The local webhook to deliver to, e.g. http://127.0.0.1:8080/telegram.
    #[arg(long, value_name = "URL")]
    pub(crate) to: String,
    /// Environment variable holding the secret_token sent in X-Telegram-Bot-Api-Secret-Token
    /// (what the bot's webhook checks). Never printed.
    #[arg(long, value_name = "VAR", conflicts_with = "secret_token_file")]
    secret_token_env: Option<String>,
    /// File holding the secret_token. Never printed.
    #[arg(long, value_name = "PATH")]
    secret_token_file: Option<PathBuf>,
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
}

/// Methods Telegram does not execute when they come as a webhook reply.
const IGNORED_IN_REPLY: [&str; 4] = ["setwebhook", "deletewebhook", "close", "logout"];

/// Delivers updates to the local webhook. `bot` executes webhook replies; without it (no
/// token given) a webhook reply is logged and not executed.
pub(crate) struct Delivery {
    http: reqwest::Client,
    bot: Option<Bot>,
    to: String,
    secret: Option<String>,
    progress: bool,
}

impl Delivery {
    /// The delivery and the runner settings (error policy, retry delay) `args` ask for.
    pub(crate) fn new(
        args: &DeliveryArgs,
        bot: Option<Bot>,
    ) -> Result<(Arc<Self>, RunnerConfig), CliError> {
        let secret = crate::webhook::read_secret(
            args.secret_token_env.as_deref(),
            args.secret_token_file.as_deref(),
        )?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(args.timeout_secs.max(1)))
            .build()
            .map_err(|e| CliError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        let mut config = RunnerConfig::default();
        config.error_policy = ErrorPolicy::BoundedRetry {
            max_attempts: args.max_attempts,
        };
        config.retry_delay = Duration::from_millis(args.retry_delay_ms);
        let delivery = Arc::new(Self {
            http,
            bot,
            to: args.to.clone(),
            secret,
            progress: std::io::stderr().is_terminal(),
        });
        Ok((delivery, config))
    }

    /// The handler to give the runner: one delivery attempt per call.
    pub(crate) fn handler(
        self: &Arc<Self>,
    ) -> impl Fn(
        Update,
        Context,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), HandlerError>> + Send>,
    > + Send
    + Sync
    + Clone
    + 'static {
        let delivery = Arc::clone(self);
        move |update: Update, _ctx: Context| {
            let delivery = Arc::clone(&delivery);
            Box::pin(async move { delivery.deliver(update).await })
        }
    }

    /// A progress line on a terminal; nothing when stderr is piped.
    pub(crate) fn note(&self, line: &str) {
        if self.progress {
            eprintln!("{line}");
        }
    }

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
        let Some(bot) = &self.bot else {
            tracing::warn!(update_id, %method, "webhook reply not executed: no bot token given");
            self.note(&format!(
                "update {update_id}: webhook reply {method} not executed (no bot token)"
            ));
            return;
        };
        match bot.call(&method, &params).await {
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
}
