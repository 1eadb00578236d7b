//! `telehook relay-forward --from http://relay/chan --to URL`: the delivery of `telehook dev`,
//! with the updates read from a relay channel (telehook-relay's `RelayClient`, which runs
//! telehook-polling's runner: one update in flight per chat, the error policy, a graceful stop),
//! for a bot behind NAT whose webhook URL points at the relay.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use telehook_api::Bot;
use telehook_relay::RelayClient;

use crate::CliError;
use crate::deliver::{Delivery, DeliveryArgs};

#[derive(Debug, Args)]
pub(crate) struct RelayForwardArgs {
    /// The relay channel: the relay's URL followed by the channel name, e.g.
    /// `http://relay.example:8080/my.bot` (plain HTTP, as the relay client speaks).
    #[arg(long, value_name = "URL")]
    from: String,
    #[command(flatten)]
    delivery: DeliveryArgs,
    /// Environment variable holding the channel's read token (sent as a Bearer token).
    /// Never printed.
    #[arg(long, value_name = "VAR")]
    read_token_env: Option<String>,
    /// File keeping the channel position (`ts`), so a restart resumes after the last
    /// delivered update.
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
    /// How long each long poll waits on the relay, in seconds.
    #[arg(long, default_value_t = 30)]
    poll_timeout_secs: u64,
}

/// Splits `http://host[:port][/prefix]/channel` into the relay's base URL and the channel.
fn split_from(from: &str) -> Result<(&str, &str), CliError> {
    let trimmed = from.trim_end_matches('/');
    let after_scheme = trimmed.find("://").map_or(0, |i| i + 3);
    match trimmed.rfind('/') {
        Some(slash) if slash >= after_scheme && slash + 1 < trimmed.len() => {
            Ok((&trimmed[..slash], &trimmed[slash + 1..]))
        }
        _ => Err(CliError::Invalid(format!(
            "--from {from:?}: expected the relay URL followed by the channel, e.g. \
             http://relay.example:8080/my.bot"
        ))),
    }
}

/// `token` (optional here) is used to execute webhook replies; without it they are logged and
/// not executed.
pub(crate) async fn run(
    args: RelayForwardArgs,
    token: Option<&str>,
    api_url: &str,
) -> Result<(), CliError> {
    let (base, channel) = split_from(&args.from)?;
    let bot = token.map(|token| Bot::builder(token).base_url(api_url).build());
    let (delivery, config) = Delivery::new(&args.delivery, bot)?;
    let mut client = RelayClient::new(base, channel)
        .map_err(|e| CliError::Server {
            what: "relay client",
            source: Box::new(e),
        })?
        .sleep(Duration::from_secs(args.poll_timeout_secs.max(1)))
        .runner_config(config);
    if let Some(var) = &args.read_token_env {
        let read_token = std::env::var(var).map_err(|_| {
            CliError::Invalid(format!("--read-token-env: {var} is not set (or not UTF-8)"))
        })?;
        client = client.read_token(read_token);
    }
    if let Some(path) = &args.state_file {
        client = client.state_file(path);
    }
    delivery.note(&format!(
        "telehook relay-forward: delivering updates from channel {channel} to {} (Ctrl-C stops)",
        args.delivery.to
    ));
    let report = client
        .run(delivery.handler(), crate::servers::shutdown_signal())
        .await
        .map_err(|e| CliError::Server {
            what: "relay client stopped",
            source: Box::new(e),
        })?;
    tracing::info!(?report, "stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_from;

    #[test]
    fn from_splits_into_relay_and_channel() {
        assert_eq!(
            split_from("http://r:8080/my.bot").unwrap(),
            ("http://r:8080", "my.bot")
        );
        assert_eq!(
            split_from("http://r/prefix/chan/").unwrap(),
            ("http://r/prefix", "chan")
        );
        assert!(split_from("http://r").is_err());
        assert!(split_from("http://r/").is_err());
    }
}
