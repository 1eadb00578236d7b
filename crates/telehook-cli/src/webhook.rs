//! `telehook webhook set|info|delete`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use telehook_api::{Bot, SetWebhook, WebhookInfo};

use crate::CliError;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// Set the webhook (setWebhook). Prints nothing when stdout is not a terminal.
    Set(SetArgs),
    /// Show the webhook (getWebhookInfo); with --expect-url, exit 3 when it is not that URL.
    Info(InfoArgs),
    /// Remove the webhook (deleteWebhook), so the bot can use getUpdates again.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// HTTPS URL Telegram delivers updates to (ports 443, 80, 88 or 8443).
    url: String,
    /// Environment variable holding the secret_token Telegram sends back in
    /// X-Telegram-Bot-Api-Secret-Token (1-256 of A-Z a-z 0-9 _ -). Never printed.
    #[arg(long, value_name = "VAR", conflicts_with = "secret_token_file")]
    secret_token_env: Option<String>,
    /// File holding the secret_token (surrounding whitespace removed). Never printed.
    #[arg(long, value_name = "PATH")]
    secret_token_file: Option<PathBuf>,
    /// Deliveries in flight at once, 1-100 (Telegram's default 40).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    max_connections: Option<u8>,
    /// Update kinds to receive, comma separated (e.g. message,callback_query); an empty value
    /// asks for Telegram's default set.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    allowed_updates: Option<Vec<String>>,
    /// Drop the updates waiting to be delivered.
    #[arg(long)]
    drop_pending_updates: bool,
}

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// Exit with code 3 unless the webhook is exactly this URL (an empty value: unless no
    /// webhook is set). For deploy checks.
    #[arg(long, value_name = "URL")]
    expect_url: Option<String>,
    /// Print getWebhookInfo's result as JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Also drop the updates waiting to be delivered.
    #[arg(long)]
    drop_pending_updates: bool,
}

pub(crate) async fn run(action: Action, token: &str, api_url: &str) -> Result<(), CliError> {
    let bot = Bot::builder(token).base_url(api_url).build();
    let terminal = std::io::stdout().is_terminal();
    match action {
        Action::Set(args) => set(&bot, args, terminal).await,
        Action::Info(args) => info(&bot, &args).await,
        Action::Delete(args) => {
            bot.delete_webhook(args.drop_pending_updates).await?;
            if terminal {
                println!("webhook deleted; the bot can use getUpdates now");
            }
            Ok(())
        }
    }
}

async fn set(bot: &Bot, args: SetArgs, terminal: bool) -> Result<(), CliError> {
    let mut params = SetWebhook::new(&args.url).drop_pending_updates(args.drop_pending_updates);
    let secret = read_secret(
        args.secret_token_env.as_deref(),
        args.secret_token_file.as_deref(),
    )?;
    let has_secret = secret.is_some();
    if let Some(secret) = secret {
        params = params.secret_token(secret);
    }
    if let Some(n) = args.max_connections {
        params = params.max_connections(n);
    }
    if let Some(kinds) = args.allowed_updates {
        params = params.allowed_updates(kinds.into_iter().filter(|k| !k.is_empty()));
    }
    bot.set_webhook(&params).await?;
    if terminal {
        println!(
            "webhook set: {} (secret_token {})",
            args.url,
            if has_secret {
                "set, not shown"
            } else {
                "not set"
            }
        );
    }
    Ok(())
}

/// Reads the secret token from the variable or file named; checks it as Telegram does
/// (setWebhook: "1-256 characters. Only characters A-Z, a-z, 0-9, _ and - are allowed",
/// <https://core.telegram.org/bots/api#setwebhook>) without ever echoing it.
pub(crate) fn read_secret(
    env: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, CliError> {
    let (raw, from) = if let Some(var) = env {
        let raw = std::env::var(var).map_err(|_| {
            CliError::Invalid(format!(
                "--secret-token-env: the environment variable {var} is not set"
            ))
        })?;
        (raw, format!("the environment variable {var}"))
    } else if let Some(path) = file {
        let raw = std::fs::read_to_string(path).map_err(|error| {
            CliError::Invalid(format!(
                "--secret-token-file: cannot read {}: {error}",
                path.display()
            ))
        })?;
        (raw, format!("the file {}", path.display()))
    } else {
        return Ok(None);
    };
    let secret = raw.trim();
    let valid = (1..=256).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(CliError::Invalid(format!(
            "the secret_token from {from} must be 1-256 of A-Z a-z 0-9 _ - (value not shown)"
        )));
    }
    Ok(Some(secret.to_owned()))
}

async fn info(bot: &Bot, args: &InfoArgs) -> Result<(), CliError> {
    let info = bot.get_webhook_info().await?;
    let mut out = std::io::stdout().lock();
    let text = if args.json {
        serde_json::to_string_pretty(&info).map_err(|e| CliError::Invalid(e.to_string()))? + "\n"
    } else {
        render(&info, now_unix())
    };
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    if let Some(expected) = args.expect_url.as_ref().filter(|e| **e != info.url) {
        let shown = |url: &str| {
            if url.is_empty() {
                "no webhook".to_owned()
            } else {
                url.to_owned()
            }
        };
        return Err(CliError::Unexpected(format!(
            "the webhook is {}, expected {}",
            shown(&info.url),
            shown(expected)
        )));
    }
    Ok(())
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// getWebhookInfo as aligned `name: value` lines.
fn render(info: &WebhookInfo, now: i64) -> String {
    let mut lines: Vec<(&str, String)> = Vec::new();
    lines.push((
        "url",
        if info.url.is_empty() {
            "none (no webhook: the bot uses getUpdates)".to_owned()
        } else {
            info.url.clone()
        },
    ));
    lines.push(("pending updates", info.pending_update_count.to_string()));
    let last_error = match (&info.last_error_message, info.last_error_date) {
        (Some(message), Some(date)) => format!("{message} ({})", age(now - date)),
        (Some(message), None) => message.clone(),
        (None, Some(date)) => format!("unknown ({})", age(now - date)),
        (None, None) => "none".to_owned(),
    };
    lines.push(("last error", last_error));
    if let Some(date) = info.last_synchronization_error_date {
        lines.push(("last sync error", age(now - date)));
    }
    lines.push((
        "max connections",
        info.max_connections
            .map_or_else(|| "-".to_owned(), |n| n.to_string()),
    ));
    lines.push((
        "ip address",
        info.ip_address.clone().unwrap_or_else(|| "-".to_owned()),
    ));
    lines.push((
        "allowed updates",
        info.allowed_updates
            .as_ref()
            .map_or_else(|| "default".to_owned(), |kinds| kinds.join(", ")),
    ));
    lines.push((
        "custom certificate",
        if info.has_custom_certificate {
            "yes"
        } else {
            "no"
        }
        .to_owned(),
    ));
    let width = lines.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 1;
    let mut text = String::new();
    for (name, value) in lines {
        text.push_str(&format!("{:<width$} {value}\n", format!("{name}:")));
    }
    text
}

/// "42s ago", "3m 5s ago", "2h 10m ago", "3d 4h ago".
fn age(seconds: i64) -> String {
    if seconds < 0 {
        return "in the future: check the clock".to_owned();
    }
    let d = Duration::from_secs(seconds.unsigned_abs());
    let s = d.as_secs();
    let text = match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    };
    format!("{text} ago")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(0), "0s ago");
        assert_eq!(age(185), "3m 5s ago");
        assert_eq!(age(7_800), "2h 10m ago");
        assert_eq!(age(3 * 86_400 + 4 * 3600 + 5), "3d 4h ago");
        assert_eq!(age(-5), "in the future: check the clock");
    }

    #[test]
    fn render_shows_every_field() {
        let info: WebhookInfo = serde_json::from_value(serde_json::json!({
            "url": "https://example.com/hook",
            "has_custom_certificate": false,
            "pending_update_count": 7,
            "ip_address": "1.2.3.4",
            "last_error_date": 1_000,
            "last_error_message": "Connection refused",
            "max_connections": 40,
        }))
        .unwrap();
        let text = render(&info, 1_065);
        assert!(
            text.contains("url:                https://example.com/hook\n"),
            "{text}"
        );
        assert!(text.contains("pending updates:    7\n"), "{text}");
        assert!(
            text.contains("last error:         Connection refused (1m 5s ago)\n"),
            "{text}"
        );
        assert!(text.contains("max connections:    40\n"), "{text}");
        assert!(text.contains("ip address:         1.2.3.4\n"), "{text}");
        assert!(text.contains("allowed updates:    default\n"), "{text}");
    }
}
