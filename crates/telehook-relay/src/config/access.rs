//! Who may read and write which channel: the access file of a relay.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

/// Tokens of one channel. A missing token leaves that side open.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChannelAccess {
    /// Required to read (GET, SSE, WebSocket subscribe).
    pub read_token: Option<String>,
    /// Required to write (POST). Telegram can send it: use it as `secret_token` in `setWebhook`.
    pub write_token: Option<String>,
}

/// Who may read and write which channel; loaded from a TOML or JSON access file.
///
/// ```toml
/// allow_unlisted = false
/// [channels.mybot]
/// read_token = "r-secret"
/// write_token = "w-secret"
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Whether channels not listed are open to all ("the URL is the secret"). Default `true`.
    #[serde(default = "yes")]
    pub allow_unlisted: bool,
    /// Tokens by channel name.
    #[serde(default)]
    pub channels: HashMap<String, ChannelAccess>,
}

fn yes() -> bool {
    true
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            allow_unlisted: true,
            channels: HashMap::new(),
        }
    }
}

/// Why an access file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessFileError {
    /// The file could not be read.
    #[error("cannot read access file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("cannot parse access file {path}: {source}")]
    Toml {
        /// The file.
        path: String,
        /// The parser's error.
        source: toml::de::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("cannot parse access file {path}: {source}")]
    Json {
        /// The file.
        path: String,
        /// The parser's error.
        source: serde_json::Error,
    },
}

impl AccessConfig {
    /// Loads an access file: JSON if the name ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Self, AccessFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AccessFileError::Read {
            path: shown.clone(),
            source,
        })?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            serde_json::from_str(&text).map_err(|source| AccessFileError::Json {
                path: shown,
                source,
            })
        } else {
            toml::from_str(&text).map_err(|source| AccessFileError::Toml {
                path: shown,
                source,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_file_parses_toml_and_json_alike() {
        let from_toml: AccessConfig = toml::from_str(
            "allow_unlisted = false\n[channels.bot]\nread_token = \"r\"\nwrite_token = \"w\"\n",
        )
        .unwrap();
        let from_json: AccessConfig = serde_json::from_str(
            r#"{"allow_unlisted":false,"channels":{"bot":{"read_token":"r","write_token":"w"}}}"#,
        )
        .unwrap();
        assert_eq!(from_toml, from_json);
        assert!(!from_toml.allow_unlisted);
    }
}
