//! A client that long-polls a relay channel and feeds each update, through telehook-polling's
//! runner, to the same [`UpdateHandler`] a webhook uses, so a bot behind NAT receives
//! Telegram's webhooks with the guarantees of long polling: per-chat order, bounded
//! concurrency, the error policy, panics caught, a graceful stop with a deadline.
//!
//! It speaks the protocol of `lua-long-polling` (poll.def.pm), so it also reads from the
//! reference server: see `docs/relay.md`.

mod protocol;
mod source;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use telehook_core::{UpdateHandler, UpdateType};
use telehook_polling::{RunnerConfig, StopReport};

use crate::channel::{ChannelName, ChannelNameError};
pub use protocol::Polled;
use source::{Counters, RelaySource};

/// A boxed error, kept as the `source` of a [`ClientError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the client stopped or a poll failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    #[error("invalid channel")]
    InvalidChannel(#[source] ChannelNameError),
    /// Connecting or talking to the relay failed (retried by [`RelayClient::run`]).
    #[error("relay unreachable")]
    Transport(#[source] BoxError),
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
    #[error("unexpected answer from relay")]
    BadAnswer(#[source] BoxError),
    /// The `ts` state file could not be read or written.
    #[error("state file {path}")]
    State {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: BoxError,
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
/// What a [`RelayClient::run`] did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayReport {
    /// What the runner did: handled, given up, panics, skipped repeats, unfinished…
    pub run: StopReport,
    /// Updates the relay said (or its `ts` step showed) were dropped before this client read
    /// them. Each occurrence is also logged at warn with the channel and `ts`.
    pub missed: u64,
    /// Times the channel's count went below the `ts` this client held (the relay's storage was
    /// replaced, or a reference server restarted): the client read the channel from the start
    /// again, so nothing stored was skipped, but updates stored before the restart and never
    /// read are gone. Logged at warn with both counts.
    pub count_restarts: u64,
    /// The `ts` saved when stopping (the position after the last update confirmed handled).
    pub ts: u64,
}

/// Long-polls one channel of a relay. See [`RelayClient::run`].
#[derive(Debug, Clone)]
#[must_use = "a RelayClient does nothing until `run` is awaited"]
pub struct RelayClient {
    base: String,
    channel: ChannelName,
    read_token: Option<String>,
    state_file: Option<PathBuf>,
    sleep: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    runner: RunnerConfig,
    http: Client<HttpConnector, Empty<Bytes>>,
}

impl RelayClient {
    /// A client for `channel` on the relay at `base_url` (`http://host:port`, optionally with a
    /// path prefix). `channel` is the name as text (1–256 bytes of printable UTF-8 without
    /// `/`, e.g. `my.bot` or `SomeS3cretP@th`); it is percent-encoded into the URL. Plain
    /// HTTP: put the relay on a private network or behind a TLS-terminating tunnel you trust.
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
        let channel = ChannelName::parse(channel).map_err(ClientError::InvalidChannel)?;
        Ok(Self {
            base,
            channel,
            read_token: None,
            state_file: None,
            sleep: Duration::from_secs(30),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            runner: RunnerConfig::default(),
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

    /// Pause after a failure: starts at `min`, doubles per failure up to `max`, with jitter
    /// ([`telehook_polling::Backoff`]); a `Retry-After` from the relay is waited in full.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// How the runner schedules the handler: concurrency, per-chat order, error policy, stop
    /// deadline… (the same settings as long polling; default [`RunnerConfig::default`]).
    pub fn runner_config(mut self, config: RunnerConfig) -> Self {
        self.runner = config;
        self
    }

    /// The `ts` saved in the state file, or 0.
    pub fn load_ts(&self) -> Result<u64, ClientError> {
        let Some(path) = &self.state_file else {
            return Ok(0);
        };
        let error = |source: BoxError| ClientError::State {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => text.trim().parse().map_err(|e| error(Box::new(e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(error(Box::new(e))),
        }
    }

    /// Long-polls until `shutdown` resolves, handing each update to `handler` through
    /// telehook-polling's runner with a detached `Context`: updates of one chat one after
    /// another, others concurrently (`runner_config`), a failing or panicking handler handled
    /// by the error policy (default: three attempts, then given up), the same update read
    /// twice (a Telegram redelivery) handled once. Network errors, 429 and 5xx are retried with
    /// backoff and jitter; other errors (bad token, bad channel) end the run.
    ///
    /// `ts` is saved (in the `state_file`) as updates are confirmed handled, and when
    /// stopping, so a restart resumes after the last handled update; after a crash, updates
    /// handled since the last save come again (at least once). A channel whose count went
    /// below the saved `ts` is read again from its start, and what may have been missed is
    /// logged and counted in the [`RelayReport`].
    pub async fn run<U, H>(
        self,
        handler: H,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RelayReport, ClientError>
    where
        U: UpdateType,
        H: UpdateHandler<U>,
    {
        let ts = self.load_ts()?;
        tracing::info!(channel = %self.channel, ts, "relay client started");
        let counters = Arc::new(Counters::default());
        let saved = Arc::new(AtomicU64::new(ts));
        let runner = self.runner.clone();
        let source = RelaySource::new(self, ts, Arc::clone(&counters), Arc::clone(&saved));
        let run = telehook_polling::run(source, handler, runner, shutdown).await?;
        Ok(RelayReport {
            run,
            missed: counters.missed.load(Ordering::Relaxed),
            count_restarts: counters.count_restarts.load(Ordering::Relaxed),
            ts: saved.load(Ordering::Relaxed),
        })
    }
}
