//! Where the bot token comes from: `--token-file` or `TELEGRAM_BOT_TOKEN`, never a flag value
//! (a flag shows in `ps` and the shell history).

use std::path::{Path, PathBuf};

/// The environment variable holding the bot token.
pub(crate) const TOKEN_ENV: &str = "TELEGRAM_BOT_TOKEN";

/// Why no token could be read. Never contains the token or the file's content.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    /// Neither source is set.
    #[error("no bot token: set {TOKEN_ENV} or pass --token-file PATH")]
    Missing,
    /// The token file cannot be read.
    #[error("cannot read the token file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The source is there but holds no token.
    #[error("the bot token from {0} is empty")]
    Empty(String),
    /// The value does not look like a token (`123456:ABC…`). The value is not shown.
    #[error("the bot token from {0} is not of the form <bot id>:<secret> (value not shown)")]
    Malformed(String),
}

/// Reads the token: `--token-file` wins over `TELEGRAM_BOT_TOKEN`. Surrounding whitespace (a
/// file's final newline) is removed.
pub(crate) fn load(token_file: Option<&Path>) -> Result<String, TokenError> {
    let (raw, from) = match token_file {
        Some(path) => {
            let raw = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
                path: path.to_owned(),
                source,
            })?;
            (raw, format!("--token-file {}", path.display()))
        }
        None => match std::env::var(TOKEN_ENV) {
            Ok(raw) => (raw, TOKEN_ENV.to_owned()),
            Err(std::env::VarError::NotPresent) => return Err(TokenError::Missing),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(TokenError::Malformed(TOKEN_ENV.to_owned()));
            }
        },
    };
    let token = raw.trim();
    if token.is_empty() {
        return Err(TokenError::Empty(from));
    }
    // Telegram's tokens are "<bot id>:<secret>"; a value without that shape (or with spaces,
    // slashes, …) would make a wrong URL. Checked here so the value itself is never echoed.
    let well_formed = token.split_once(':').is_some_and(|(id, secret)| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && !secret.is_empty()
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if !well_formed {
        return Err(TokenError::Malformed(from));
    }
    Ok(token.to_owned())
}
