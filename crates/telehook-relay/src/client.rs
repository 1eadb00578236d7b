//! A client that long-polls a relay channel and feeds each update, through telehook-polling's
//! runner, to the same [`UpdateHandler`] a webhook uses, so a bot behind NAT receives
//! Telegram's webhooks with the guarantees of long polling: per-chat order, bounded
//! concurrency, the error policy, panics caught, a graceful stop with a deadline.
//!
//! It speaks the protocol of `lua-long-polling` (poll.def.pm), so it also reads from the
//! reference server: see `docs/relay.md`.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::value::RawValue;
use telehook_core::{Update, UpdateHandler, UpdateType};
use telehook_polling::{Backoff, Delivery, RunnerConfig, StopReport, UpdateSource};

use crate::channel::{ChannelName, ChannelNameError};

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

/// One long-poll answer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Polled {
    /// The `ts` to send next time.
    pub ts: u64,
    /// Updates that retention dropped before they could be read (the relay's `missed`, or the
    /// gap between the `ts` step and the updates returned, as the reference server shows it).
    pub missed: u64,
    /// The relay answered from the start of the channel (`"reset":true`): the `ts` asked for
    /// was above its count (its storage was replaced), so everything returned is new.
    pub reset: bool,
    /// The updates, as raw JSON, oldest first.
    pub updates: Vec<Bytes>,
}

#[derive(Deserialize)]
struct Answer<'a> {
    ok: bool,
    ts: u64,
    #[serde(default)]
    missed: u64,
    #[serde(default)]
    reset: bool,
    #[serde(borrow, default, deserialize_with = "list_or_empty_object")]
    updates: Vec<&'a RawValue>,
}

/// A JSON array, or `{}`: the reference server (Lua, cjson) encodes an empty list as an
/// empty object.
fn list_or_empty_object<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<&'de RawValue>, D::Error> {
    struct ListOrEmpty;
    impl<'de> de::Visitor<'de> for ListOrEmpty {
        type Value = Vec<&'de RawValue>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of updates (or {} for none)")
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1_000));
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                out.push(raw);
            }
            Ok(out)
        }

        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            match map.next_key::<de::IgnoredAny>()? {
                None => Ok(Vec::new()),
                Some(_) => Err(de::Error::custom(
                    "`updates` is an object with keys; expected a list",
                )),
            }
        }
    }
    deserializer.deserialize_any(ListOrEmpty)
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
    /// (telehook-polling's [`Backoff`]); a `Retry-After` from the relay is waited in full.
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

    /// One long poll from `ts`.
    pub async fn poll(&self, ts: u64) -> Result<Polled, ClientError> {
        let uri = format!(
            "{}/{}?ts={ts}&sleep={}",
            self.base,
            self.channel.to_path_segment(),
            self.sleep.as_secs_f64()
        );
        let mut request = Request::get(uri).header(header::ACCEPT, "application/json");
        if let Some(token) = &self.read_token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| ClientError::Transport(e.into()))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| ClientError::Transport(e.into()))?;
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
                .map_err(|e| ClientError::Transport(e.into()))?;
            Ok::<_, ClientError>((status, retry_after, body.to_bytes()))
        };
        let (status, retry_after, body) =
            tokio::time::timeout(self.sleep + Duration::from_secs(15), exchange)
                .await
                .map_err(|_| {
                    ClientError::Transport(Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "long poll timed out",
                    )))
                })??;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&body).into_owned();
            return Err(ClientError::Status {
                status,
                body,
                retry_after,
            });
        }
        let answer: Answer<'_> =
            serde_json::from_slice(&body).map_err(|e| ClientError::BadAnswer(e.into()))?;
        if !answer.ok {
            return Err(ClientError::BadAnswer("`ok` is false".into()));
        }
        let returned = answer.updates.len() as u64;
        // The reference server does not send `missed`: its `ts` step shows the gap.
        let gap = if answer.reset || answer.ts < ts {
            0
        } else {
            (answer.ts - ts).saturating_sub(returned)
        };
        let updates = answer
            .updates
            .iter()
            .map(|raw| body.slice_ref(raw.get().as_bytes()))
            .collect();
        Ok(Polled {
            ts: answer.ts,
            missed: answer.missed.max(gap),
            reset: answer.reset,
            updates,
        })
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
        let source = RelaySource {
            backoff: Backoff::new(self.min_backoff, self.max_backoff),
            client: self,
            ts,
            saved_ts: ts,
            next_position: 1,
            handed: VecDeque::new(),
            buffer: VecDeque::new(),
            counters: Arc::clone(&counters),
            saved: Arc::clone(&saved),
        };
        let run = telehook_polling::run(source, handler, runner, shutdown).await?;
        Ok(RelayReport {
            run,
            missed: counters.missed.load(Ordering::Relaxed),
            count_restarts: counters.count_restarts.load(Ordering::Relaxed),
            ts: saved.load(Ordering::Relaxed),
        })
    }
}

#[derive(Debug, Default)]
struct Counters {
    missed: AtomicU64,
    count_restarts: AtomicU64,
}

/// The relay channel as a runner source. Positions are the client's own (1, 2, … per run),
/// each mapped to the channel's `ts` after it, so a count that starts over cannot confuse the
/// runner; confirming a position saves its `ts`.
struct RelaySource {
    client: RelayClient,
    backoff: Backoff,
    /// The `ts` to poll from next (after everything buffered or handed out).
    ts: u64,
    /// The `ts` in the state file.
    saved_ts: u64,
    next_position: u64,
    /// Handed-out positions not yet confirmed, with the `ts` after each.
    handed: VecDeque<(u64, u64)>,
    /// Polled, not yet handed out: the update (or `None` if the relay held something that is
    /// no update) and the `ts` after it.
    buffer: VecDeque<(Option<Update>, u64)>,
    counters: Arc<Counters>,
    saved: Arc<AtomicU64>,
}

impl RelaySource {
    /// Everything below `offset` is handled: save the `ts` after the last of it.
    fn confirm_below(&mut self, offset: u64) -> Result<(), ClientError> {
        let mut ts = None;
        while self.handed.front().is_some_and(|(p, _)| *p < offset) {
            ts = self.handed.pop_front().map(|(_, ts)| ts);
        }
        if self.handed.is_empty() && self.buffer.is_empty() {
            // Nothing outstanding: the `ts` polled so far, past any non-update too.
            ts = Some(self.ts);
        }
        match ts {
            Some(ts) if ts != self.saved_ts => self.save_ts(ts),
            _ => Ok(()),
        }
    }

    fn save_ts(&mut self, ts: u64) -> Result<(), ClientError> {
        self.saved_ts = ts;
        self.saved.store(ts, Ordering::Relaxed);
        let Some(path) = &self.client.state_file else {
            return Ok(());
        };
        let error = |e: std::io::Error| ClientError::State {
            path: path.display().to_string(),
            source: Box::new(e),
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, ts.to_string()).map_err(error)?;
        std::fs::rename(&tmp, path).map_err(error)
    }

    /// Polls until the relay returns something (retrying what may pass), and buffers it.
    async fn poll_more(&mut self) -> Result<(), ClientError> {
        let channel = self.client.channel.clone();
        loop {
            let polled = match self.client.poll(self.ts).await {
                Ok(polled) => {
                    self.backoff.reset();
                    polled
                }
                Err(e) if e.is_temporary() => {
                    let mut pause = self.backoff.next_delay();
                    if let ClientError::Status {
                        retry_after: Some(secs),
                        ..
                    } = &e
                    {
                        pause = pause.max(Duration::from_secs(*secs));
                    }
                    tracing::warn!(%channel, error = %e, source = ?std::error::Error::source(&e), attempt = self.backoff.attempt(), pause_ms = pause.as_millis() as u64, "relay poll failed; retrying");
                    tokio::time::sleep(pause).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(%channel, error = %e, "relay poll failed for good");
                    return Err(e);
                }
            };
            if polled.reset || polled.ts < self.ts {
                // The channel's count is below ours: its storage was replaced (telehook-relay
                // answers from the start with `reset`), or a reference server restarted (it
                // answers its lower count and nothing). Read from the start: what is stored now
                // is new to us; what was stored before and never read is gone.
                self.counters.count_restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    %channel,
                    ours = self.ts,
                    relay = polled.ts,
                    missed = polled.missed,
                    "the relay channel's count is below our ts (its storage was replaced or restarted): reading it from the start; updates stored before that and not yet read may be lost"
                );
                if !polled.reset {
                    self.ts = 0;
                    continue;
                }
            }
            if polled.missed > 0 {
                self.counters
                    .missed
                    .fetch_add(polled.missed, Ordering::Relaxed);
                tracing::warn!(%channel, ts = self.ts, missed = polled.missed, "updates were dropped by the relay before this client read them");
            }
            let first = polled.ts.saturating_sub(polled.updates.len() as u64);
            for (i, raw) in polled.updates.into_iter().enumerate() {
                let ts = first + i as u64 + 1;
                let update = match Update::from_bytes(raw) {
                    Ok(update) => Some(update),
                    Err(e) => {
                        tracing::error!(%channel, ts, error = %e, "the relay held something that is not a Telegram update; skipped");
                        None
                    }
                };
                self.buffer.push_back((update, ts));
            }
            self.ts = polled.ts;
            return Ok(());
        }
    }
}

impl UpdateSource for RelaySource {
    type Error = ClientError;

    async fn fetch(
        &mut self,
        offset: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Delivery>, ClientError> {
        if let Some(offset) = offset {
            self.confirm_below(offset)?;
        }
        loop {
            let mut out = Vec::new();
            while out.len() < limit.max(1) {
                let Some((update, ts)) = self.buffer.pop_front() else {
                    break;
                };
                if let Some(update) = update {
                    let position = self.next_position;
                    self.next_position += 1;
                    self.handed.push_back((position, ts));
                    out.push(Delivery::at(position, update));
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
            if self.handed.is_empty() && self.ts != self.saved_ts {
                // Only non-updates came: nothing to wait for, move the saved ts past them.
                self.save_ts(self.ts)?;
            }
            self.poll_more().await?;
            if self.buffer.is_empty() {
                // A long poll that ended with nothing: let the runner decide when to ask again.
                return Ok(Vec::new());
            }
        }
    }

    async fn confirm(&mut self, offset: u64) -> Result<(), ClientError> {
        self.confirm_below(offset)
    }
}
