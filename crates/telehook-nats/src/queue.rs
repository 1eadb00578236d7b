//! [`NatsQueue`]: the handle and its state, and the calls every operation is made of —
//! publishing and reading from a stream's leader, retried through elections; the records of
//! `update_id`s; deletes.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use futures_util::StreamExt as _;
use telehook_core::Update;
use telehook_queue::QueueError;

use crate::builder::Settings;
use crate::error::{NatsError, chain, timed};
use crate::handed::{Handed, InFlight};

pub(crate) const H_UPDATE_ID: &str = "Telehook-Update-Id";
/// A completion or failure record: done, dead-lettered, failed `n` times, or reset.
pub(crate) const DONE: &[u8] = b"d";
pub(crate) const DEAD: &[u8] = b"x";

/// One partition's reader.
#[derive(Default)]
pub(crate) struct Part {
    /// The highest stream sequence handed out since the partition was (re)taken.
    pub(crate) max_handed: u64,
}

/// The stored outcome of an `update_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Done,
    Dead,
    Failed(u32, String),
}

fn parse_record(payload: &[u8]) -> Option<Record> {
    match payload {
        DONE => Some(Record::Done),
        DEAD => Some(Record::Dead),
        [b'f', rest @ ..] => {
            let text = String::from_utf8_lossy(rest);
            let (count, error) = text.split_once(' ').unwrap_or((&text, ""));
            count
                .parse()
                .ok()
                .map(|n| Record::Failed(n, error.to_owned()))
        }
        _ => None,
    }
}

/// What every clone of a [`NatsQueue`] shares.
pub(crate) struct Inner {
    pub(crate) settings: Settings,
    pub(crate) js: Context,
    pub(crate) main: stream::Stream,
    pub(crate) dead: stream::Stream,
    pub(crate) state: stream::Stream,
    pub(crate) leases: stream::Stream,
    pub(crate) members: stream::Stream,
    pub(crate) lease_age: Mutex<Duration>,
    pub(crate) member_age: Mutex<Duration>,
    pub(crate) parts: Vec<tokio::sync::Mutex<Part>>,
    pub(crate) in_flight: Mutex<Handed>,
}

/// A durable, replicated queue of updates on NATS JetStream, shared by webhook instances and
/// workers on any number of machines. See the crate docs for the design.
///
/// Cheap to clone (one connection, shared).
#[derive(Clone)]
pub struct NatsQueue {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for NatsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsQueue")
            .field("name", &self.inner.settings.name)
            .field("partitions", &self.inner.settings.partitions)
            .field("replicas", &self.inner.settings.replicas)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether a failed call may succeed when repeated (a node down, a leader being elected).
pub(crate) fn transient(e: &NatsError) -> bool {
    match e {
        NatsError::Timeout { .. } => true,
        NatsError::Invalid(_) => false,
        NatsError::Client { source, .. } => {
            let text = chain(source.as_ref()).to_ascii_lowercase();
            [
                "timed out",
                "no responders",
                "broken pipe",
                "disconnected",
                "not connected",
                "connection",
                "not currently available",
                "leader",
                "503",
            ]
            .iter()
            .any(|t| text.contains(t))
        }
    }
}

fn is_full(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("maximum messages") || text.contains("maximum bytes")
}

impl NatsQueue {
    /// Updates waiting in the queue (all partitions), as the stream leader counts them.
    pub async fn queued(&self) -> Result<u64, QueueError> {
        let s = &self.inner.settings;
        let mut main = self.inner.main.clone();
        let info = timed("stream info", s.op_timeout, main.info()).await?;
        Ok(info.state.messages)
    }

    /// The server name of the queue stream's current leader (`None` on a single server, or
    /// while an election runs): which node a fault test should kill to hurt most.
    pub async fn stream_leader(&self) -> Result<Option<String>, QueueError> {
        let s = &self.inner.settings;
        let mut main = self.inner.main.clone();
        let info = timed("stream info", s.op_timeout, main.info()).await?;
        Ok(info.cluster.as_ref().and_then(|c| c.leader.clone()))
    }

    /// Dead letters waiting (the dead-letter stream's size).
    pub async fn dead_count(&self) -> Result<u64, QueueError> {
        let s = &self.inner.settings;
        let mut dead = self.inner.dead.clone();
        let info = timed("stream info", s.op_timeout, dead.info()).await?;
        Ok(info.state.messages)
    }

    /// Repeats `attempt` while it fails in a way that may pass (a node down, an election),
    /// within `op_timeout` overall.
    async fn retrying<T, F, Fut>(&self, op: &'static str, mut attempt: F) -> Result<T, NatsError>
    where
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = Result<T, NatsError>>,
    {
        let limit = self.inner.settings.op_timeout;
        let started = Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(NatsError::Timeout { op, after: limit });
            }
            // One attempt gets a part of the budget: a request to a leader that just died is
            // never answered, and the next attempt reaches the new one.
            let per_attempt = left.min((limit / 4).max(Duration::from_millis(250)));
            match attempt(per_attempt).await {
                Ok(value) => return Ok(value),
                Err(e) if transient(&e) && started.elapsed() + delay < limit => {
                    tracing::debug!(op, error = %e, "nats: retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Publishes and waits for the stream's (replicated) acknowledgement.
    pub(crate) async fn publish(
        &self,
        op: &'static str,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<jetstream::publish::PublishAck, PublishFailure> {
        let js = &self.inner.js;
        let result = self
            .retrying(op, |left| {
                let (subject, headers, payload) =
                    (subject.clone(), headers.clone(), payload.clone());
                async move {
                    let sent =
                        timed(op, left, js.publish_with_headers(subject, headers, payload)).await?;
                    match tokio::time::timeout(left, sent).await {
                        Err(_) => Err(NatsError::Timeout { op, after: left }),
                        Ok(Ok(ack)) => Ok(Ok(ack)),
                        Ok(Err(e)) => match e.kind() {
                            PublishErrorKind::WrongLastSequence => {
                                Ok(Err(PublishFailure::WrongLastSequence))
                            }
                            // No responders (reported as "no stream"): the stream has no
                            // leader for a moment (an election); it is ours, it exists.
                            PublishErrorKind::TimedOut
                            | PublishErrorKind::BrokenPipe
                            | PublishErrorKind::StreamNotFound => {
                                Err(NatsError::Timeout { op, after: left })
                            }
                            _ if is_full(&chain(&e)) => Ok(Err(PublishFailure::Full)),
                            _ => Err(NatsError::client(op, e)),
                        },
                    }
                }
            })
            .await;
        match result {
            Ok(inner) => inner,
            Err(e) => Err(PublishFailure::Nats(e)),
        }
    }

    /// The record of `update_id`, read from the state stream's leader.
    pub(crate) async fn record(&self, update_id: u64) -> Result<Option<Record>, NatsError> {
        let subject = self.inner.settings.state_subject(update_id);
        let message = self.last_message(&self.inner.state, subject).await?;
        Ok(message.and_then(|m| parse_record(&m.payload)))
    }

    /// The last message on `subject` of `stream`, from the stream's leader (never a possibly
    /// stale replica).
    pub(crate) async fn last_message(
        &self,
        stream: &stream::Stream,
        subject: String,
    ) -> Result<Option<jetstream::message::StreamMessage>, NatsError> {
        self.retrying("read", |left| {
            let subject = subject.clone();
            async move {
                let request = stream.raw_message_builder().last_by_subject(subject).send();
                match tokio::time::timeout(left, request).await {
                    Err(_) => Err(NatsError::Timeout {
                        op: "read",
                        after: left,
                    }),
                    Ok(Ok(message)) => Ok(Some(message)),
                    Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
                    Ok(Err(e)) => Err(NatsError::client("read", e)),
                }
            }
        })
        .await
    }

    pub(crate) async fn put_record(&self, update_id: u64, record: &[u8]) -> Result<(), NatsError> {
        let subject = self.inner.settings.state_subject(update_id);
        match self
            .publish(
                "record",
                subject,
                HeaderMap::new(),
                Bytes::copy_from_slice(record),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(PublishFailure::Nats(e)) => Err(e),
            Err(PublishFailure::Full | PublishFailure::WrongLastSequence) => Err(
                NatsError::Invalid("the state stream refused a record".to_owned()),
            ),
        }
    }

    /// Deletes a message by sequence (no secure erase); a message already gone is fine.
    pub(crate) async fn delete(&self, stream: &stream::Stream, seq: u64) -> Result<(), NatsError> {
        #[derive(serde::Serialize)]
        struct Request {
            seq: u64,
            no_erase: bool,
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            #[allow(dead_code)]
            success: bool,
        }
        let subject = format!("STREAM.MSG.DELETE.{}", stream.cached_info().config.name);
        let js = &self.inner.js;
        self.retrying("delete", |left| {
            let subject = subject.clone();
            async move {
                let body = Request {
                    seq,
                    no_erase: true,
                };
                let request =
                    js.request::<_, _, jetstream::response::Response<Answer>>(subject, &body);
                match timed("delete", left, request).await? {
                    jetstream::response::Response::Ok(_) => Ok(()),
                    // Deleted already (a repeat after an unknown outcome, two holders acking):
                    // fine. nats-server answers 404 (sequence not found), or 500 with
                    // err_code 10057 "no message found" when its store had no such message.
                    jetstream::response::Response::Err { error }
                        if error.code() == 404
                            || (error.error_code().0 == 10057
                                && error.to_string().contains("no message found")) =>
                    {
                        Ok(())
                    }
                    jetstream::response::Response::Err { error } => {
                        Err(NatsError::client("delete", error))
                    }
                }
            }
        })
        .await
    }

    /// The subjects of `stream` matching `filter`, with how many messages each holds (from the
    /// stream's leader).
    pub(crate) async fn subject_counts(
        &self,
        stream: &stream::Stream,
        filter: String,
    ) -> Result<Vec<(String, usize)>, NatsError> {
        let after = self.inner.settings.op_timeout;
        let subjects = timed("stream info", after, stream.info_with_subjects(filter)).await?;
        let subjects: Vec<_> = tokio::time::timeout(after, subjects.collect::<Vec<_>>())
            .await
            .map_err(|_| NatsError::Timeout {
                op: "stream info",
                after,
            })?;
        subjects
            .into_iter()
            .map(|entry| entry.map_err(|e| NatsError::client("stream info", e)))
            .collect()
    }

    /// Fails with an error if a partition beyond the configured number holds updates.
    pub(crate) async fn check_partitions(&self) -> Result<(), QueueError> {
        let s = &self.inner.settings;
        let subjects = self
            .subject_counts(&self.inner.main, format!("{}.p.*", s.name))
            .await?;
        let mut stored = None;
        for (subject, count) in subjects {
            let partition = subject
                .rsplit('.')
                .next()
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(p) = partition
                && count > 0
                && p >= s.partitions
            {
                stored = Some(stored.unwrap_or(0).max(p + 1));
            }
        }
        if let Some(stored) = stored {
            return Err(QueueError::PartitionsChanged {
                stored,
                asked: s.partitions,
            });
        }
        // The number the queue was created (or last re-partitioned) with, in the stream's
        // description: another one is refused — a webhook enqueueing into 3 partitions while
        // the workers read 8 would put one chat's updates in two partitions, out of order —
        // unless the builder asks to re-partition and the queue is drained with no live
        // worker.
        let mut main = self.inner.main.clone();
        let info = timed("stream info", s.op_timeout, main.info()).await?;
        let recorded = info
            .config
            .description
            .as_deref()
            .and_then(crate::builder::described_partitions);
        if recorded == Some(s.partitions) {
            return Ok(());
        }
        if let Some(stored) = recorded {
            let members = self
                .subject_counts(&self.inner.members, format!("{}.member.*", s.name))
                .await?;
            let live = members.iter().any(|(_, n)| *n > 0);
            if !s.repartition || info.state.messages > 0 || live {
                return Err(QueueError::PartitionsChanged {
                    stored,
                    asked: s.partitions,
                });
            }
        }
        let config = stream::Config {
            description: Some(crate::builder::describe_partitions(s.partitions)),
            ..info.config.clone()
        };
        timed(
            "stream update",
            s.op_timeout,
            self.inner.js.update_stream(config),
        )
        .await?;
        Ok(())
    }

    /// The item behind a stream sequence: from the items handed out, else from the stream.
    pub(crate) async fn item(&self, seq: u64) -> Result<InFlight, NatsError> {
        if let Some(item) = lock(&self.inner.in_flight).get(seq).cloned() {
            return Ok(item);
        }
        let s = &self.inner.settings;
        let message = timed("read", s.op_timeout, self.inner.main.get_raw_message(seq)).await?;
        let partition = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let update_id = update_id_of(Some(&message.headers), &message.payload)?;
        let (failed, last_error) = match self.record(update_id).await? {
            Some(Record::Failed(n, e)) => (n, Some(e)),
            _ => (0, None),
        };
        Ok(InFlight {
            partition,
            update_id,
            body: message.payload,
            failed,
            last_error,
        })
    }

    /// Up to `limit` messages of `partition` from stream sequence `start` on, in order, read
    /// one by one from the stream leader.
    pub(crate) async fn read_from(
        &self,
        partition: u32,
        start: u64,
        limit: usize,
    ) -> Result<Vec<jetstream::message::StreamMessage>, NatsError> {
        let subject = self.inner.settings.partition_subject(partition);
        let main = &self.inner.main;
        let mut out: Vec<jetstream::message::StreamMessage> = Vec::new();
        let mut next = start.max(1);
        while out.len() < limit {
            let message = self
                .retrying("read", |left| {
                    let subject = subject.clone();
                    async move {
                        let request = main
                            .raw_message_builder()
                            .sequence(next)
                            .next_by_subject(subject)
                            .send();
                        match tokio::time::timeout(left, request).await {
                            Err(_) => Err(NatsError::Timeout {
                                op: "read",
                                after: left,
                            }),
                            Ok(Ok(message)) => Ok(Some(message)),
                            Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                                Ok(None)
                            }
                            Ok(Err(e)) => Err(NatsError::client("read", e)),
                        }
                    }
                })
                .await;
            match message {
                Ok(Some(message)) => {
                    next = message.sequence + 1;
                    out.push(message);
                }
                Ok(None) => break,
                // What was read so far is good; the rest comes with the next take.
                Err(_) if !out.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Why a publish stored nothing: the stream is full, its sequence check failed, or NATS failed.
pub(crate) enum PublishFailure {
    Full,
    WrongLastSequence,
    Nats(NatsError),
}

/// The `update_id` of a stored message: from its header, else from the update it holds.
pub(crate) fn update_id_of(headers: Option<&HeaderMap>, body: &[u8]) -> Result<u64, NatsError> {
    if let Some(id) = headers
        .and_then(|h| h.get(H_UPDATE_ID))
        .and_then(|v| v.as_str().parse().ok())
    {
        return Ok(id);
    }
    Update::from_bytes(Bytes::copy_from_slice(body))
        .map(|u| u.update_id())
        .map_err(|e| NatsError::Invalid(format!("a stored message is not an update: {e}")))
}
