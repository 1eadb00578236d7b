//! `telehook-emulator`: a Telegram Bot API stand-in on your machine, for testing bots.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use telehook_emulator::{Emulator, Limits, Timing};
use tracing_subscriber::EnvFilter;

/// A Telegram Bot API stand-in for testing bots: getUpdates, webhooks with Telegram's delivery
/// rules, webhook replies, and a test API under /_emulator/{token}/.
///
/// Point your bot's Bot API base URL at http://LISTEN (calls go to /bot{token}/{method}).
/// Inject updates with POST /_emulator/{token}/private_text {"user_id":1,"text":"hi"} or
/// POST /_emulator/{token}/updates {"message":{...}}; read the bot's calls with
/// GET /_emulator/{token}/calls and the delivery log with GET /_emulator/{token}/deliveries.
/// Button presses, inline queries, faults, the update_id jump, waits: see the route table in
/// the crate's README.
#[derive(Debug, Parser)]
#[command(name = "telehook-emulator", version)]
struct Args {
    /// Address to listen on.
    #[arg(
        long,
        default_value = "127.0.0.1:8081",
        env = "TELEHOOK_EMULATOR_LISTEN"
    )]
    listen: SocketAddr,

    /// A bot token to serve, like 123456:ABC-DEF (repeat the flag, or separate with commas).
    #[arg(
        long = "token",
        required = true,
        value_delimiter = ',',
        env = "TELEHOOK_EMULATOR_TOKENS",
        hide_env_values = true
    )]
    tokens: Vec<String>,

    /// Multiply every Telegram duration (webhook timeout, retry delays, expiry, long polls) by
    /// this: a number from 0.000001 to 1000.
    #[arg(long, default_value_t = 1.0, value_parser = time_scale)]
    time_scale: f64,

    /// Webhook response timeout in seconds, before scaling.
    #[arg(long, default_value_t = 60)]
    webhook_timeout: u64,

    /// Keep undelivered webhook updates forever instead of letting them expire as Telegram does.
    #[arg(long)]
    no_expiry: bool,

    /// Most updates kept pending per bot; the oldest is dropped beyond it.
    #[arg(long, default_value_t = Limits::default().max_pending_updates)]
    max_pending_updates: usize,

    /// Most recorded calls kept per bot.
    #[arg(long, default_value_t = Limits::default().max_recorded_calls)]
    max_recorded_calls: usize,

    /// Most delivery attempts kept in the delivery log per bot.
    #[arg(long, default_value_t = Limits::default().max_delivery_log)]
    max_delivery_log: usize,
}

/// `--time-scale`: a number within `Timing::MIN_SCALE..=Timing::MAX_SCALE`.
fn time_scale(value: &str) -> Result<f64, String> {
    let range = format!(
        "--time-scale must be a number from {} to {}",
        Timing::MIN_SCALE,
        Timing::MAX_SCALE
    );
    let scale: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{range}, not {value:?}"))?;
    if Timing::scaled(scale).validate().is_ok() {
        Ok(scale)
    } else {
        Err(format!("{range}, not {value}"))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let timing = Timing::scaled(args.time_scale)
        .webhook_timeout(Duration::from_secs(args.webhook_timeout))
        .expiry(!args.no_expiry);
    let limits = Limits::default()
        .max_pending_updates(args.max_pending_updates)
        .max_recorded_calls(args.max_recorded_calls)
        .max_delivery_log(args.max_delivery_log);
    let mut builder = Emulator::builder()
        .listen(args.listen)
        .timing(timing)
        .limits(limits);
    for token in args.tokens {
        builder = builder.bot(token);
    }
    let emulator = match builder.start().await {
        Ok(emulator) => emulator,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(base_url = %emulator.base_url(), "serving the Bot API; Ctrl-C or SIGTERM stops");
    tokio::select! {
        () = stop_signal() => {}
        () = emulator.stopped() => {}
    }
    tracing::info!("stopping");
    emulator.shutdown();
    // Waiting requests are answered (getUpdates with [], a …/wait with its 408): give their
    // answers time to go out, bounded (a second signal also ends it).
    tokio::select! {
        () = emulator.closed() => {}
        () = tokio::time::sleep(STOP_DEADLINE) => {
            tracing::warn!("connections still open after {STOP_DEADLINE:?}: leaving them");
        }
        () = stop_signal() => {}
    }
    ExitCode::SUCCESS
}

/// How long a stop waits for open requests to get their answers.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// SIGINT (Ctrl-C) or SIGTERM (what `docker stop`, systemd and Kubernetes send).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C still stops");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
