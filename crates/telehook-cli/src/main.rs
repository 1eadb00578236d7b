#![doc = include_str!("../README.md")]
// A command-line tool: stdout and stderr are its user interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod deliver;
mod dev;
mod relay_forward;
mod servers;
mod token;
mod webhook;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// The telehook command: manage a Telegram bot's webhook, run the Bot API emulator or the relay.
///
/// The bot token is read from the TELEGRAM_BOT_TOKEN environment variable or from --token-file;
/// it is never printed, logged or put in an error message.
#[derive(Debug, Parser)]
#[command(name = "telehook", version)]
struct Cli {
    /// File holding the bot token (instead of the TELEGRAM_BOT_TOKEN environment variable).
    #[arg(long, global = true, value_name = "PATH")]
    token_file: Option<std::path::PathBuf>,

    /// Bot API server: Telegram's, a local Bot API server or the telehook emulator.
    #[arg(
        long,
        global = true,
        env = "TELEHOOK_API_URL",
        default_value = "https://api.telegram.org",
        value_name = "URL"
    )]
    api_url: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set, inspect or delete the bot's webhook (setWebhook, getWebhookInfo, deleteWebhook).
    Webhook {
        #[command(subcommand)]
        action: webhook::Action,
    },
    /// Develop locally without a public URL: take the bot's updates by long polling and POST
    /// each to a local webhook as Telegram would (secret header, per-chat order, retries),
    /// executing the webhook reply in the answer.
    Dev(dev::DevArgs),
    /// Deliver the updates stored in a relay channel to a local webhook, as `dev` does (secret
    /// header, per-chat order, retries, webhook replies executed when a bot token is given):
    /// for a bot behind NAT whose webhook points at the relay.
    RelayForward(relay_forward::RelayForwardArgs),
    /// Run the Telegram Bot API emulator (the telehook-emulator server) until Ctrl-C.
    Emulator(servers::EmulatorArgs),
    /// Run the relay (the telehook-relay server, SQLite store) until Ctrl-C or SIGTERM.
    Relay(servers::RelayArgs),
}

/// Exit code for a failed call or a bad setting.
const EXIT_FAILURE: u8 = 1;
/// Exit code of `webhook info --expect-url` when the webhook is not the expected one.
pub(crate) const EXIT_UNEXPECTED: u8 = 3;

/// A failure of a command, printed as one line on stderr.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// No usable token.
    #[error(transparent)]
    Token(#[from] token::TokenError),
    /// A Bot API call failed (`ApiError` never holds the token).
    #[error(transparent)]
    Api(#[from] telehook_api::ApiError),
    /// A setting is not valid.
    #[error("{0}")]
    Invalid(String),
    /// A server could not start or stopped with an error.
    #[error("{what}: {source}")]
    Server {
        /// Which server, doing what.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The webhook is not what `--expect-url` says (exit code 3).
    #[error("{0}")]
    Unexpected(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Webhook { .. } | Command::Dev(_) | Command::RelayForward(_) => "warn",
        Command::Emulator(_) | Command::Relay(_) => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("telehook: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // Any token read is kept here so that a message can be scrubbed of it before it is
    // printed: the errors of telehook-api hold no token, this is a second line of defence.
    let mut known_token: Option<String> = None;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Webhook { action } => {
                let token = token::load(cli.token_file.as_deref())?;
                known_token = Some(token.clone());
                webhook::run(action, &token, &cli.api_url).await
            }
            Command::Dev(args) => {
                let token = token::load(cli.token_file.as_deref())?;
                known_token = Some(token.clone());
                dev::run(args, &token, &cli.api_url).await
            }
            Command::RelayForward(args) => {
                let token = match token::load(cli.token_file.as_deref()) {
                    Ok(token) => Some(token),
                    Err(token::TokenError::Missing) => None,
                    Err(error) => return Err(error.into()),
                };
                known_token.clone_from(&token);
                relay_forward::run(args, token.as_deref(), &cli.api_url).await
            }
            Command::Emulator(args) => servers::emulator(args).await,
            Command::Relay(args) => servers::relay(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = match error {
                CliError::Unexpected(_) => EXIT_UNEXPECTED,
                _ => EXIT_FAILURE,
            };
            let mut message = error_chain(&error);
            if let Some(token) = known_token.as_deref().filter(|t| !t.is_empty()) {
                message = message.replace(token, "<token>");
            }
            eprintln!("telehook: {message}");
            ExitCode::from(code)
        }
    }
}

/// The error and its sources on one line, each cause once.
fn error_chain(error: &CliError) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
