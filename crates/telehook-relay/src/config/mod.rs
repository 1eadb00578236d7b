//! Limits and settings of a relay. Every buffer, queue and retention has a bound here.

use std::time::Duration;

mod access;
pub use access::{AccessConfig, AccessFileError, ChannelAccess};

/// Default largest accepted body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default byte budget of one answer: 2 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;
/// Room kept in an answer's byte budget for its envelope (`{"ok":true,"ts":…,"updates":[…]}`).
pub const RESPONSE_ENVELOPE_BYTES: usize = 128;
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
    /// Most bytes of one long-poll answer, and of one read from storage for an SSE or WebSocket
    /// follower (and of the updates queued for one such stream). Updates are added to an answer
    /// until the next would pass it; the client asks again with the returned `ts`. An answer
    /// always holds at least one update, so this must be at least `max_body_bytes` plus
    /// [`RESPONSE_ENVELOPE_BYTES`]. Memory held for answers is bounded by open connections ×
    /// about 2 × this (a WebSocket: its subscriptions + 1, × this).
    pub max_response_bytes: usize,
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
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
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

/// A setting outside its allowed range, found when a configuration is checked
/// ([`RelayConfig::validate`], [`StoreLimits::validate`]). Names the library field and the
/// command-line flag that sets it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} (--{flag}) must be {allowed}; got {value}")]
pub struct ConfigError {
    /// The field, e.g. `retention.max_age`.
    pub setting: &'static str,
    /// The command-line flag, without `--`, e.g. `retain-secs`.
    pub flag: &'static str,
    /// The allowed range, in words.
    pub allowed: String,
    /// The value given.
    pub value: String,
}

/// Longest accepted retention age: ten years. Ages are computed in milliseconds as `i64`.
pub const MAX_RETAIN_AGE: Duration = Duration::from_secs(3650 * 24 * 3600);
/// Longest accepted timeout, wait or interval (header read, body read, `sleep`, pruning).
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);
/// Largest accepted size setting (body, answer budget, WebSocket message, database): 1 TiB
/// for the database, [`MAX_MESSAGE_BYTES`] for everything held in memory.
pub const MAX_DB_BYTES: u64 = 1 << 40;
/// Largest accepted body, answer budget or WebSocket message: 1 GiB.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;
/// Largest accepted count setting (queues, buffers, channels, connections, waiters).
pub const MAX_COUNT: usize = 100_000_000;

fn check_duration(
    setting: &'static str,
    flag: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError {
            setting,
            flag,
            allowed: format!("between {min:?} and {max:?}"),
            value: format!("{value:?}"),
        });
    }
    Ok(())
}

fn check_count<T: PartialOrd + std::fmt::Display + Copy>(
    setting: &'static str,
    flag: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError {
            setting,
            flag,
            allowed: format!("between {min} and {max}"),
            value: value.to_string(),
        });
    }
    Ok(())
}

const MS: Duration = Duration::from_millis(1);

impl StoreLimits {
    /// Checks every bound against its allowed range. The stores call this when they open.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_count(
            "retention.max_updates",
            "retain-updates",
            self.retention.max_updates,
            1,
            MAX_COUNT as u64,
        )?;
        check_duration(
            "retention.max_age",
            "retain-secs",
            self.retention.max_age,
            MS,
            MAX_RETAIN_AGE,
        )?;
        check_count(
            "max_channels",
            "max-channels",
            self.max_channels,
            1,
            MAX_COUNT,
        )?;
        check_count(
            "ingest_queue",
            "ingest-queue",
            self.ingest_queue,
            1,
            MAX_COUNT,
        )?;
        check_count("max_batch", "max-batch", self.max_batch, 1, MAX_COUNT)?;
        check_duration(
            "prune_interval",
            "prune-interval-secs",
            self.prune_interval,
            MS,
            MAX_WAIT,
        )?;
        if let Some(bytes) = self.max_db_bytes {
            check_count(
                "max_db_bytes",
                "max-db-bytes",
                bytes,
                64 * 1024,
                MAX_DB_BYTES,
            )?;
        }
        Ok(())
    }
}

impl RelayConfig {
    /// Checks every setting against its allowed range. [`crate::Relay::serve`] calls this
    /// before it accepts a connection.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_count(
            "max_body_bytes",
            "max-body-bytes",
            self.max_body_bytes,
            1,
            MAX_MESSAGE_BYTES,
        )?;
        check_duration(
            "max_sleep",
            "max-sleep-secs",
            self.max_sleep,
            Duration::ZERO,
            MAX_WAIT,
        )?;
        check_count(
            "max_updates_per_response",
            "max-updates-per-response",
            self.max_updates_per_response,
            1,
            MAX_COUNT,
        )?;
        check_count(
            "max_response_bytes",
            "max-response-bytes",
            self.max_response_bytes,
            self.max_body_bytes
                .saturating_add(RESPONSE_ENVELOPE_BYTES)
                .min(MAX_MESSAGE_BYTES),
            MAX_MESSAGE_BYTES,
        )?;
        check_count(
            "max_waiters_per_channel",
            "max-waiters-per-channel",
            self.max_waiters_per_channel,
            1,
            MAX_COUNT,
        )?;
        check_count(
            "ws_send_buffer",
            "ws-send-buffer",
            self.ws_send_buffer,
            1,
            MAX_COUNT,
        )?;
        check_count(
            "ws_max_subscriptions",
            "ws-max-subscriptions",
            self.ws_max_subscriptions,
            1,
            MAX_COUNT,
        )?;
        check_count(
            "ws_max_message_bytes",
            "ws-max-message-bytes",
            self.ws_max_message_bytes,
            1,
            MAX_MESSAGE_BYTES,
        )?;
        if let Some(rate) = &self.rate_limit {
            if !(rate.per_second.is_finite() && rate.per_second > 0.0 && rate.per_second <= 1e9) {
                return Err(ConfigError {
                    setting: "rate_limit.per_second",
                    flag: "rate-limit",
                    allowed: "a number of requests per second above 0 and at most 1e9 \
                              (0 on the command line disables the limit)"
                        .to_owned(),
                    value: rate.per_second.to_string(),
                });
            }
            check_count(
                "rate_limit.burst",
                "rate-limit-burst",
                rate.burst,
                1,
                u32::MAX,
            )?;
            check_count(
                "rate_limit.max_clients",
                "rate-limit-clients",
                rate.max_clients,
                1,
                MAX_COUNT,
            )?;
        }
        check_duration(
            "header_read_timeout",
            "header-read-timeout-secs",
            self.header_read_timeout,
            MS,
            MAX_WAIT,
        )?;
        check_duration(
            "body_read_timeout",
            "body-read-timeout-secs",
            self.body_read_timeout,
            MS,
            MAX_WAIT,
        )?;
        check_count(
            "max_connections",
            "max-connections",
            self.max_connections,
            1,
            MAX_COUNT.min(tokio::sync::Semaphore::MAX_PERMITS),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
