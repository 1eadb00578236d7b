//! Limits and settings of a relay. Every buffer, queue and retention has a bound here.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Default largest accepted body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default updates kept per channel.
pub const DEFAULT_RETAIN_UPDATES: u64 = 10_000;
/// Default age after which an update is dropped: 24 h, as long as Telegram keeps one.
pub const DEFAULT_RETAIN_AGE: Duration = Duration::from_secs(24 * 3600);

/// How long updates are kept per channel; whichever bound is hit first drops the oldest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most updates kept per channel.
    pub max_updates: u64,
    /// Oldest update kept.
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_updates: DEFAULT_RETAIN_UPDATES,
            max_age: DEFAULT_RETAIN_AGE,
        }
    }
}

/// Bounds that every storage backend enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Per-channel retention.
    pub retention: Retention,
    /// Most channels held at once; an update that would open one more is refused with 507.
    pub max_channels: usize,
    /// Updates waiting to be committed; when full, POSTs wait up to a few seconds, then get 503.
    pub ingest_queue: usize,
    /// Most updates committed in one transaction.
    pub max_batch: usize,
    /// How often updates older than `retention.max_age` are deleted.
    pub prune_interval: Duration,
    /// Largest size of the SQLite database, in bytes (`PRAGMA max_page_count`); past it, POSTs
    /// are answered 507 with `Retry-After`, as on a full disk. `None`: no limit but the disk.
    pub max_db_bytes: Option<u64>,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            retention: Retention::default(),
            max_channels: 10_000,
            ingest_queue: 8_192,
            max_batch: 1_024,
            prune_interval: Duration::from_secs(60),
            max_db_bytes: None,
        }
    }
}

/// A token bucket per client IP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size: how many requests may come at once.
    pub burst: u32,
    /// Most client IPs tracked; beyond it, idle buckets are forgotten.
    pub max_clients: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 100.0,
            burst: 200,
            max_clients: 100_000,
        }
    }
}

/// Settings of the HTTP side of a relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Largest accepted POST body.
    pub max_body_bytes: usize,
    /// Longest `sleep` a client may ask for.
    pub max_sleep: Duration,
    /// Most updates in one long-poll answer (the client asks again with the returned `ts`).
    pub max_updates_per_response: usize,
    /// Most clients waiting on one channel (long poll, SSE and WebSocket together).
    pub max_waiters_per_channel: usize,
    /// Messages buffered per WebSocket before the relay stops reading from storage for it.
    pub ws_send_buffer: usize,
    /// Most subscriptions on one WebSocket.
    pub ws_max_subscriptions: usize,
    /// Largest accepted WebSocket message from a client.
    pub ws_max_message_bytes: usize,
    /// Per-IP rate limit; `None` disables it.
    pub rate_limit: Option<RateLimit>,
    /// Take the client IP from the first `X-Forwarded-For` entry (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// `Access-Control-Allow-Origin` value; `None` disables CORS headers.
    pub cors_origin: Option<String>,
    /// Per-channel tokens.
    pub access: AccessConfig,
    /// How long a connection may take to send a request's headers, counted from when the relay
    /// starts waiting for them: this also closes idle keep-alive connections and slowloris
    /// clients that trickle header bytes.
    pub header_read_timeout: Duration,
    /// How long a POST body may take to arrive in full; past it the answer is 408.
    pub body_read_timeout: Duration,
    /// Most open connections; one more is answered 503 (`Retry-After`) and closed.
    pub max_connections: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_sleep: Duration::from_secs(60),
            max_updates_per_response: 100,
            max_waiters_per_channel: 10_000,
            ws_send_buffer: 64,
            ws_max_subscriptions: 16,
            ws_max_message_bytes: 64 * 1024,
            rate_limit: Some(RateLimit::default()),
            trust_forwarded_for: false,
            cors_origin: Some("*".to_owned()),
            access: AccessConfig::default(),
            header_read_timeout: Duration::from_secs(20),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 16_384,
        }
    }
}

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
