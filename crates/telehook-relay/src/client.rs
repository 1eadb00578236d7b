//! A client that long-polls a relay channel and feeds each update to the same
//! [`UpdateHandler`] a webhook uses, so a bot behind NAT receives Telegram's webhooks.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::value::RawValue;
use telehook_core::{Context, Update, UpdateHandler};

use crate::channel::ChannelName;

/// Why the client stopped or a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The relay URL is not a valid `http://` URL.
    #[error("invalid relay URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The channel name is invalid.
    #[error("invalid channel: {0}")]
    InvalidChannel(String),
    /// Connecting or talking to the relay failed (retried by [`RelayClient::run`]).
    #[error("relay unreachable: {0}")]
    Transport(String),
    /// The relay answered with an error status (4xx except 429 stop [`RelayClient::run`]).
    #[error("relay answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The answer's body.
        body: String,
        /// `Retry-After`, in seconds, when given.
        retry_after: Option<u64>,
    },
    /// The relay's answer was not the expected JSON.
    #[error("unexpected answer from relay: {0}")]
    BadAnswer(String),
    /// The `ts` state file could not be read or written.
    #[error("state file {path}: {reason}")]
    State {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

impl ClientError {
    /// Whether retrying may help (network errors, 429, 5xx).
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Transport(_) | Self::BadAnswer(_) => true,
            Self::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            _ => false,
        }
    }
}

/// One long-poll answer.
#[derive(Debug, Clone)]
pub struct Polled {
    /// The `ts` to send next time.
    pub ts: u64,
    /// Updates that retention dropped before they could be read.
    pub missed: u64,
    /// The updates, as raw JSON, oldest first.
    pub updates: Vec<Bytes>,
}

#[derive(Deserialize)]
struct Answer<'a> {
    ok: bool,
    ts: u64,
    #[serde(default)]
    missed: u64,
    #[serde(borrow, default)]
    updates: Vec<&'a RawValue>,
}

/// Long-polls one channel of a relay. See [`RelayClient::run`].
#[derive(Debug, Clone)]
pub struct RelayClient {
    base: String,
    channel: ChannelName,
    read_token: Option<String>,
    state_file: Option<PathBuf>,
    sleep: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    http: Client<HttpConnector, Empty<Bytes>>,
}

impl RelayClient {
    /// A client for `channel` on the relay at `base_url` (`http://host:port`, optionally with a
    /// path prefix). Plain HTTP: put the relay on a private network or behind a TLS-terminating
    /// tunnel you trust.
    pub fn new(base_url: &str, channel: &str) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let uri: Uri =
            base.parse()
                .map_err(|e: http::uri::InvalidUri| ClientError::InvalidUrl {
                    url: base_url.to_owned(),
                    reason: e.to_string(),
                })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ClientError::InvalidUrl {
                url: base_url.to_owned(),
                reason: "expected http://host[:port]".into(),
            });
        }
        let channel =
            ChannelName::parse(channel).map_err(|e| ClientError::InvalidChannel(e.to_string()))?;
        Ok(Self {
            base,
            channel,
            read_token: None,
            state_file: None,
            sleep: Duration::from_secs(30),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Sends `Authorization: Bearer {token}` for channels with a read token.
    pub fn read_token(mut self, token: impl Into<String>) -> Self {
        self.read_token = Some(token.into());
        self
    }

    /// Keeps `ts` in this small file, so a restart resumes where the last run stopped.
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// How long each long poll waits on the relay (default 30 s, at most the relay's limit).
    pub fn sleep(mut self, sleep: Duration) -> Self {
        self.sleep = sleep;
        self
    }

    /// Pause after a failure: starts at `min`, doubles per failure up to `max`, with jitter.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// One long poll from `ts`.
    pub async fn poll(&self, ts: u64) -> Result<Polled, ClientError> {
        let uri = format!(
            "{}/{}?ts={ts}&sleep={}",
            self.base,
            self.channel,
            self.sleep.as_secs_f64()
        );
        let mut request = Request::get(uri).header(header::ACCEPT, "application/json");
        if let Some(token) = &self.read_token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?;
            Ok::<_, ClientError>((status, retry_after, body.to_bytes()))
        };
        let (status, retry_after, body) =
            tokio::time::timeout(self.sleep + Duration::from_secs(15), exchange)
                .await
                .map_err(|_| ClientError::Transport("long poll timed out".into()))??;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&body).into_owned();
            return Err(ClientError::Status {
                status,
                body,
                retry_after,
            });
        }
        let answer: Answer<'_> =
            serde_json::from_slice(&body).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        if !answer.ok {
            return Err(ClientError::BadAnswer("ok is false".into()));
        }
        let updates = answer
            .updates
            .iter()
            .map(|raw| Bytes::copy_from_slice(raw.get().as_bytes()))
            .collect();
        Ok(Polled {
            ts: answer.ts,
            missed: answer.missed,
            updates,
        })
    }

    /// The `ts` saved in the state file, or 0.
    pub fn load_ts(&self) -> Result<u64, ClientError> {
        let Some(path) = &self.state_file else {
            return Ok(0);
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                text.trim()
                    .parse()
                    .map_err(|e: std::num::ParseIntError| ClientError::State {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(ClientError::State {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }

    fn save_ts(&self, ts: u64) -> Result<(), ClientError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let error = |e: std::io::Error| ClientError::State {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, ts.to_string()).map_err(error)?;
        std::fs::rename(&tmp, path).map_err(error)
    }

    /// Long-polls until `shutdown` resolves, handing each update to `handler` in order with a
    /// detached [`Context`]. `ts` is saved after each handled update, so after a crash at most
    /// the update being handled is delivered again. Network errors, 429 and 5xx are retried with
    /// exponential backoff and jitter; other errors (bad token, bad channel) end the run.
    ///
    /// A handler error is logged with the `update_id` and the update is not retried, so one bad
    /// update cannot block the channel.
    pub async fn run<H: UpdateHandler>(
        self,
        handler: H,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ClientError> {
        tokio::pin!(shutdown);
        let mut ts = self.load_ts()?;
        let mut failures: u32 = 0;
        let mut jitter = Jitter::new();
        tracing::info!(channel = %self.channel, ts, "relay client started");
        loop {
            let polled = tokio::select! {
                () = &mut shutdown => return Ok(()),
                polled = self.poll(ts) => polled,
            };
            let polled = match polled {
                Ok(polled) => {
                    failures = 0;
                    polled
                }
                Err(e) if e.is_temporary() => {
                    failures = failures.saturating_add(1);
                    let mut pause = self
                        .min_backoff
                        .saturating_mul(1 << failures.min(16).saturating_sub(1));
                    pause = jitter.apply(pause.min(self.max_backoff));
                    if let ClientError::Status {
                        retry_after: Some(secs),
                        ..
                    } = &e
                    {
                        pause = pause.max(Duration::from_secs(*secs));
                    }
                    tracing::warn!(channel = %self.channel, error = %e, failures, pause_ms = pause.as_millis() as u64, "relay poll failed; retrying");
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
                Err(e) => {
                    tracing::error!(channel = %self.channel, error = %e, "relay poll failed for good");
                    return Err(e);
                }
            };
            if polled.ts < ts && polled.updates.is_empty() {
                tracing::warn!(channel = %self.channel, ours = ts, relay = polled.ts, "relay channel is behind our ts (reset or lost); following it");
                ts = polled.ts;
                self.save_ts(ts)?;
                continue;
            }
            if polled.missed > 0 {
                tracing::warn!(channel = %self.channel, missed = polled.missed, "updates were dropped by the relay's retention before we read them");
            }
            let first_seq = polled.ts - polled.updates.len() as u64;
            for (i, raw) in polled.updates.into_iter().enumerate() {
                let seq = first_seq + i as u64 + 1;
                match Update::from_bytes(raw) {
                    Ok(update) => {
                        let update_id = update.update_id();
                        if let Err(e) = handler.handle(update, Context::detached(update_id)).await {
                            tracing::error!(channel = %self.channel, update_id, error = %e, "handler failed; update skipped");
                        }
                    }
                    Err(e) => {
                        tracing::error!(channel = %self.channel, seq, error = %e, "relay held an invalid update; skipped");
                    }
                }
                ts = seq;
                self.save_ts(ts)?;
            }
            ts = ts.max(polled.ts);
            self.save_ts(ts)?;
        }
    }
}

/// Multiplies pauses by a factor in [0.5, 1.0) so clients that failed together retry apart.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.subsec_nanos() as u64 ^ d.as_secs());
        Self(seed | 1)
    }

    fn apply(&mut self, pause: Duration) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let factor = 0.5 + (self.0 % 1000) as f64 / 2000.0;
        pause.mul_f64(factor)
    }
}
