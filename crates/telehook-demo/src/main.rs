#![doc = include_str!("../README.md")]
// A command-line demo whose output is its product.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use telehook_api::{Bot, SetWebhook};
use telehook_axum::RouterExt as _;
use telehook_core::{Context, HandlerError, Update, Webhook};
use telehook_emulator::{BotHandle, Chat, DeliveryOutcome, Emulator, Route, Timing, User};
use tracing_subscriber::EnvFilter;

const TOKEN: &str = "7000000001:demo-token-not-real";
const PATH: &str = "/telegram";
/// The handler timeout of the demo's webhook; `/slow` takes longer on purpose.
const TIMEOUT: Duration = Duration::from_millis(150);
const SLOW: Duration = Duration::from_millis(400);

/// How many times the handler ran for each update: the demo checks each ran exactly once.
type Runs = Arc<Mutex<HashMap<u64, u32>>>;

/// The echo bot: the same handler in the offline demo and against Telegram.
async fn echo(update: Update, ctx: Context, runs: Runs) -> Result<(), HandlerError> {
    *runs
        .lock()
        .map_err(|_| "poisoned")?
        .entry(update.update_id())
        .or_default() += 1;
    let value: Value = update.deserialize()?;
    match update.kind() {
        Some("message") => {
            let chat_id = update.chat_id().ok_or("a message without a chat")?;
            let text = value
                .pointer("/message/text")
                .and_then(Value::as_str)
                .unwrap_or("");
            let command = text.split(['@', ' ']).next().unwrap_or("");
            let params = match command {
                "/slow" => {
                    tokio::time::sleep(SLOW).await;
                    json!({"chat_id": chat_id, "text": "That took a while, but you get exactly one answer."})
                }
                "/menu" => json!({
                    "chat_id": chat_id,
                    "text": "Pick a flavour",
                    "reply_markup": {"inline_keyboard": [[
                        {"text": "Vanilla", "callback_data": "flavour:vanilla"},
                        {"text": "Caramel", "callback_data": "flavour:caramel"}
                    ]]}
                }),
                _ => json!({"chat_id": chat_id, "text": text}),
            };
            ctx.webhook_reply("sendMessage", params)?;
        }
        Some("callback_query") => {
            let id = value
                .pointer("/callback_query/id")
                .and_then(Value::as_str)
                .ok_or("no id")?;
            let data = value
                .pointer("/callback_query/data")
                .and_then(Value::as_str)
                .unwrap_or("");
            let flavour = data.strip_prefix("flavour:").unwrap_or(data);
            ctx.webhook_reply(
                "answerCallbackQuery",
                json!({"callback_query_id": id, "text": format!("{flavour}, good choice")}),
            )?;
        }
        Some("inline_query") => {
            let id = value
                .pointer("/inline_query/id")
                .and_then(Value::as_str)
                .ok_or("no id")?;
            let query = value
                .pointer("/inline_query/query")
                .and_then(Value::as_str)
                .unwrap_or("");
            ctx.webhook_reply(
                "answerInlineQuery",
                json!({"inline_query_id": id, "results": [{
                    "type": "article", "id": "1", "title": format!("Echo: {query}"),
                    "input_message_content": {"message_text": query}
                }]}),
            )?;
        }
        _ => tracing::debug!(
            update_id = update.update_id(),
            kind = update.kind(),
            "ignored"
        ),
    }
    Ok(())
}

fn webhook(secret: &str, runs: &Runs) -> Result<Webhook, telehook_core::BuildError> {
    let runs = runs.clone();
    Webhook::builder()
        .secret_token(secret)
        .timeout(TIMEOUT)
        .build(move |update: Update, ctx: Context| echo(update, ctx, runs.clone()))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match (
        std::env::var("TELEGRAM_BOT_TOKEN"),
        std::env::var("TELEHOOK_PUBLIC_URL"),
    ) {
        (Ok(token), Ok(url)) if !token.is_empty() && !url.is_empty() => {
            real_telegram(token, &url).await
        }
        _ => offline().await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

/// Serves the bot the way a deployment should (header-read timeout, connection limit), and at
/// `shutdown` answers what is in flight and drains the handler runs.
async fn serve(
    listener: tokio::net::TcpListener,
    webhook: Webhook,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .telegram_webhook(PATH, webhook.clone());
    let config = telehook_axum::ServeConfig::default();
    let report = telehook_axum::serve(listener, app, &webhook, shutdown, &config).await;
    if report.runs_unfinished > 0 {
        eprintln!(
            "warning: {} handler runs did not finish",
            report.runs_unfinished
        );
    }
}

/// The scripted conversation against the emulator.
async fn offline() -> Result<(), Error> {
    let emu = Emulator::builder()
        .bot(TOKEN)
        .timing(Timing::scaled(0.01))
        .start()
        .await?;
    let tg = emu.bot(TOKEN).ok_or("the emulator lost its bot")?;
    let runs: Runs = Arc::default();
    let secret = "demo_S3cret-token";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}{PATH}", listener.local_addr()?);
    tokio::spawn(serve(
        listener,
        webhook(secret, &runs)?,
        std::future::pending(),
    ));

    println!("telehook demo: offline, nothing leaves this machine");
    println!(
        "  Bot API emulator  {}  (Telegram's delivery rules, timings scaled 1:100)",
        emu.base_url()
    );
    println!(
        "  echo bot on axum  {url}  (handler timeout {} ms, on_timeout = Throw)",
        TIMEOUT.as_millis()
    );
    let bot = Bot::builder(TOKEN).base_url(emu.base_url()).build();
    bot.set_webhook(&SetWebhook::new(&url).secret_token(secret))
        .await?;
    println!("  setWebhook        url={url} secret_token=<hidden>\n");

    let alice = User::new(111_111_111, "Alice").username("alice_l");
    let bob = User::new(222_222_222, "Bob").username("bob_b");
    let group = Chat::supergroup(-1_001_234_567_890, "Ice Cream Lovers");
    let mut transcript = Transcript {
        tg: &tg,
        runs: runs.clone(),
        step: 0,
        failures: Vec::new(),
    };

    let text = "Do you have salted caramel today?";
    transcript
        .say("Alice (private)", text, |tg| {
            tg.private_text(&alice, text).update_id
        })
        .await;
    let text = "Échantillon? 🍦 ça marche";
    transcript
        .say("Bob in Ice Cream Lovers", text, |tg| {
            tg.send_text(&group, &bob, text).update_id
        })
        .await;
    println!(
        "    (the next handler needs {} ms, longer than the {} ms timeout: Telegram will retry)",
        SLOW.as_millis(),
        TIMEOUT.as_millis()
    );
    transcript
        .say("Alice (private)", "/slow", |tg| {
            tg.private_text(&alice, "/slow").update_id
        })
        .await;
    transcript
        .say("Bob in Ice Cream Lovers", "/menu", |tg| {
            tg.send_text(&group, &bob, "/menu").update_id
        })
        .await;
    let menu = tg
        .calls_to("sendMessage")
        .into_iter()
        .rev()
        .find(|c| c.params.contains_key("reply_markup"))
        .and_then(|c| c.result().cloned())
        .ok_or("the bot did not send the menu")?;
    transcript
        .say("Bob", "presses the \"Caramel\" button", |tg| {
            tg.press_button(&bob, &menu, "flavour:caramel").update_id
        })
        .await;
    transcript
        .say("Alice", "types \"@bot vanilla\" (inline query)", |tg| {
            tg.inline_query(&alice, "vanilla").update_id
        })
        .await;

    let info = bot.get_webhook_info().await?;
    let runs = runs.lock().map_err(|_| "poisoned")?.clone();
    let total = transcript.step;
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    println!();
    println!(
        "getWebhookInfo: pending_update_count={}, last_error_message={:?}",
        info.pending_update_count, info.last_error_message
    );
    if runs.len() != total || !twice.is_empty() {
        transcript.failures.push(format!(
            "handler runs per update: {runs:?} (expected each of {total} updates once)"
        ));
    }
    if info.pending_update_count != 0 {
        transcript.failures.push("updates are still pending".into());
    }
    emu.shutdown();
    if transcript.failures.is_empty() {
        println!("{total} updates, each handled exactly once, every answer delivered. Done.");
        Ok(())
    } else {
        Err(format!(
            "the demo went wrong:\n  {}",
            transcript.failures.join("\n  ")
        )
        .into())
    }
}

struct Transcript<'a> {
    tg: &'a BotHandle,
    runs: Runs,
    step: usize,
    failures: Vec<String>,
}

impl Transcript<'_> {
    /// Lets `who` send an update (`send` returns its `update_id`), then prints every delivery
    /// attempt and the bot's answers.
    ///
    /// The calls already recorded are counted *before* `send` runs: the bot may answer before
    /// `send` even returns, and an answer counted as "already there" would be lost.
    async fn say(&mut self, who: &str, what: &str, send: impl FnOnce(&BotHandle) -> u64) {
        self.step += 1;
        let seen_calls = self
            .tg
            .calls()
            .iter()
            .filter(|c| c.method != "getWebhookInfo")
            .count();
        let update_id = send(self.tg);
        if let Err(e) = self
            .tg
            .wait_for_delivered(update_id, Duration::from_secs(10))
            .await
        {
            self.failures
                .push(format!("update {update_id} was not delivered: {e}"));
        }
        if let Err(e) = self.tg.wait_until_idle(Duration::from_secs(10)).await {
            self.failures.push(format!("update {update_id}: {e}"));
        }
        println!("[{}] {who} → bot: {what}", self.step);
        for attempt in self
            .tg
            .deliveries()
            .iter()
            .filter(|d| d.update_id == update_id)
        {
            let ms = attempt.duration.as_millis();
            let outcome = match &attempt.outcome {
                DeliveryOutcome::Delivered { status } => format!("{status} after {ms} ms"),
                DeliveryOutcome::Failed { error, .. } => format!("failed after {ms} ms ({error})"),
                DeliveryOutcome::Expired => "expired".to_owned(),
            };
            println!(
                "    delivery #{} of update {update_id}: {outcome}",
                attempt.attempt
            );
        }
        let attempts = self
            .tg
            .deliveries()
            .iter()
            .filter(|d| d.update_id == update_id)
            .count();
        let runs = self
            .runs
            .lock()
            .map(|r| r.get(&update_id).copied().unwrap_or(0))
            .unwrap_or(0);
        if attempts > 1 {
            println!(
                "    {attempts} deliveries, handler runs: {runs} (each redelivery waited for the first run instead of starting another)"
            );
        }
        let answers: Vec<_> = self
            .tg
            .calls()
            .into_iter()
            .filter(|c| c.method != "getWebhookInfo")
            .skip(seen_calls)
            .collect();
        if answers.is_empty() {
            self.failures
                .push(format!("update {update_id}: the bot did not answer"));
        }
        for call in answers {
            let how = match call.route {
                Route::WebhookReply { .. } => "webhook reply",
                Route::Http => "HTTP call",
            };
            let what = call
                .params
                .get("text")
                .and_then(Value::as_str)
                .map(|t| format!("{t:?}"))
                .or_else(|| {
                    call.params
                        .get("results")
                        .map(|_| "inline results".to_owned())
                })
                .unwrap_or_default();
            println!("    bot → {}: {what}  ({how})", call.method);
        }
    }
}

/// The same bot against real Telegram: serve on `PORT`, set the webhook, echo until Ctrl-C.
async fn real_telegram(token: String, public_url: &str) -> Result<(), Error> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(8080);
    let secret = std::env::var("TELEHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(random_secret);
    let runs: Runs = Arc::default();
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let server = serve(listener, webhook(&secret, &runs)?, async {
        let _ = tokio::signal::ctrl_c().await;
    });
    let bot = Bot::new(token);
    let url = format!("{}{PATH}", public_url.trim_end_matches('/'));
    bot.set_webhook(&SetWebhook::new(&url).secret_token(&secret))
        .await?;
    println!("echo bot live: Telegram delivers to {url} (listening on port {port}); Ctrl-C stops");
    server.await;
    let handled = runs.lock().map_err(|_| "poisoned")?.len();
    println!(
        "stopped after {handled} updates; the webhook stays set (deleteWebhook to switch to polling)"
    );
    Ok(())
}

fn random_secret() -> String {
    use std::hash::BuildHasher as _;
    let state = std::collections::hash_map::RandomState::new();
    (0..4)
        .map(|i| format!("{:016x}", state.hash_one(i)))
        .collect()
}
