//! The relay channel as a telehook-polling [`UpdateSource`]: positions, the `ts` behind
//! each, polling with backoff, and saving `ts` as updates are confirmed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use telehook_core::Update;
use telehook_polling::{Backoff, Delivery, UpdateSource};

use super::{ClientError, RelayClient};

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) missed: AtomicU64,
    pub(super) count_restarts: AtomicU64,
}

/// The relay channel as a runner source. Positions are the client's own (1, 2, … per run),
/// each mapped to the channel's `ts` after it, so a count that starts over cannot confuse the
/// runner; confirming a position saves its `ts`.
pub(super) struct RelaySource {
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
    /// A source reading `client`'s channel from `ts`.
    pub(super) fn new(
        client: RelayClient,
        ts: u64,
        counters: Arc<Counters>,
        saved: Arc<AtomicU64>,
    ) -> Self {
        Self {
            backoff: Backoff::new(client.min_backoff, client.max_backoff),
            client,
            ts,
            saved_ts: ts,
            next_position: 1,
            handed: VecDeque::new(),
            buffer: VecDeque::new(),
            counters,
            saved,
        }
    }

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
