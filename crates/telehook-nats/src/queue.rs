//! [`NatsQueue`]: [`QueueBackend`] on NATS JetStream streams.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{
    self, DiscardPolicy, LastRawMessageErrorKind, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use futures_util::StreamExt as _;
use telehook_core::Update;
use telehook_queue::{DeadLetter, Enqueued, QueueBackend, QueueError, QueuedItem, partition_of};

use crate::error::{NatsError, chain, timed};
use crate::handed::{Handed, InFlight};

const H_EXPECTED_SEQ: &str = "Nats-Expected-Last-Sequence";
const H_UPDATE_ID: &str = "Telehook-Update-Id";
const H_PARTITION: &str = "Telehook-Partition";
const H_FAILED: &str = "Telehook-Failed-Attempts";
const H_ERROR: &str = "Telehook-Last-Error";
const H_DEAD_AT: &str = "Telehook-Dead-At";
/// The longest last-error text kept (in the state record and the dead letter's header).
const MAX_ERROR_LEN: usize = 512;
/// A completion or failure record: done, dead-lettered, failed `n` times, or reset.
const DONE: &[u8] = b"d";
const DEAD: &[u8] = b"x";

/// Builds a [`NatsQueue`]: `NatsQueue::builder(["nats://10.0.0.1:4222", ...])`.
#[derive(Debug, Clone)]
#[must_use]
pub struct NatsQueueBuilder {
    urls: Vec<String>,
    name: String,
    partitions: u32,
    replicas: usize,
    capacity: u64,
    max_bytes: Option<u64>,
    completed_retention: Duration,
    completed_capacity: u64,
    lease: Duration,
    op_timeout: Duration,
    check_completed_on_enqueue: bool,
}

impl NatsQueueBuilder {
    /// The stream's name, also the prefix of its subjects (`<name>.p.<partition>`) and of the
    /// other streams' names (`<name>_dead`, `<name>_state`, `<name>_leases`, `<name>_members`).
    /// Letters, digits, `_` and `-` only. Default `telehook`; one per bot.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Partitions, each taken by one worker at a time. Default 1. Every process sharing the
    /// queue must use the same number; the queue refuses another number while a partition
    /// beyond it holds updates.
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// Copies of each stream kept on different nodes (1, 3 or 5; at most the cluster's size).
    /// With 3, an enqueue returns once two nodes stored the update, and losing one node loses
    /// nothing acknowledged. Default 1 (a single server).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.clamp(1, 5);
        self
    }

    /// Updates queued at most; an enqueue beyond is refused with [`QueueError::Full`] (the
    /// stream's `max_msgs` with the `New` discard policy): the webhook answers an error and
    /// Telegram delivers the update again later. The dead-letter stream has the same bound.
    /// Default 100,000.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Bytes queued at most (the stream's `max_bytes`), on top of [`capacity`](Self::capacity).
    /// Default: no byte bound.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = Some(max_bytes.max(1));
        self
    }

    /// How long a completed or dead-lettered `update_id` is remembered, so a late redelivery
    /// is not run again. Default 24 h, as long as Telegram keeps an update it could not
    /// deliver ([getting updates](https://core.telegram.org/bots/api#getting-updates)).
    pub fn completed_retention(mut self, retention: Duration) -> Self {
        self.completed_retention = retention.max(Duration::from_secs(1));
        self
    }

    /// Completion and failure records kept at most (the oldest are dropped beyond: an update
    /// repeated after its record was dropped would run again). Default 1,000,000.
    pub fn completed_capacity(mut self, records: u64) -> Self {
        self.completed_capacity = records.max(1);
        self
    }

    /// The partition lease the streams are created with; a worker's
    /// [`acquire`](QueueBackend::acquire) with another lease updates them. Default 10 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// The bound on every NATS call, retries included (connecting, an enqueue waiting for its
    /// replicated acknowledgement, an ack...). Default 5 s.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Whether an enqueue first looks up the completion record of its `update_id` (one read
    /// from the stream leader), so a redelivery of an update handled or dead-lettered long ago
    /// is [`Enqueued::Duplicate`]. Without it such an update is stored again and skipped by the
    /// worker that takes it. Default true.
    pub fn check_completed_on_enqueue(mut self, check: bool) -> Self {
        self.check_completed_on_enqueue = check;
        self
    }

    /// Connects (to any of the URLs; the client learns the rest of the cluster and reconnects
    /// by itself) and creates or updates the streams.
    pub async fn connect(self) -> Result<NatsQueue, QueueError> {
        // Boxed: the client's connection and stream futures are large.
        Box::pin(self.open()).await
    }

    async fn open(self) -> Result<NatsQueue, QueueError> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(NatsError::Invalid(format!(
                "the queue name {:?} must be letters, digits, '_' or '-'",
                self.name
            ))
            .into());
        }
        if self.urls.is_empty() {
            return Err(NatsError::Invalid("no NATS server URL".to_owned()).into());
        }
        let options = async_nats::ConnectOptions::new()
            .name("telehook-nats")
            .connection_timeout(self.op_timeout)
            .request_timeout(Some(self.op_timeout))
            .max_reconnects(None);
        let client = timed(
            "connect",
            self.op_timeout,
            options.connect(self.urls.as_slice()),
        )
        .await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(self.op_timeout)
            .build(client);
        let settings = Settings::from(&self);
        let after = self.op_timeout;
        let main = ensure_stream(&js, settings.main_config(), after, false).await?;
        let dead = ensure_stream(&js, settings.dead_config(), after, false).await?;
        let state = ensure_stream(&js, settings.state_config(), after, false).await?;
        // The lease streams keep the expiry the workers set (`acquire`/`members` with their
        // lease): a webhook process opening the queue with the default must not change it.
        let leases = ensure_stream(&js, settings.lease_config(self.lease), after, true).await?;
        let members = ensure_stream(&js, settings.members_config(self.lease), after, true).await?;
        let lease_age = leases.cached_info().config.max_age;
        let member_age = members.cached_info().config.max_age;
        let queue = NatsQueue {
            inner: Arc::new(Inner {
                parts: (0..settings.partitions)
                    .map(|_| tokio::sync::Mutex::new(Part::default()))
                    .collect(),
                js,
                main,
                dead,
                state,
                leases,
                members,
                lease_age: Mutex::new(lease_age),
                member_age: Mutex::new(member_age),
                in_flight: Mutex::default(),
                settings,
            }),
        };
        queue.check_partitions().await?;
        Ok(queue)
    }
}

/// What every call needs from the builder.
#[derive(Debug, Clone)]
struct Settings {
    name: String,
    partitions: u32,
    replicas: usize,
    capacity: u64,
    max_bytes: Option<u64>,
    completed_retention: Duration,
    completed_capacity: u64,
    op_timeout: Duration,
    check_completed_on_enqueue: bool,
}

impl From<&NatsQueueBuilder> for Settings {
    fn from(b: &NatsQueueBuilder) -> Self {
        Self {
            name: b.name.clone(),
            partitions: b.partitions,
            replicas: b.replicas,
            capacity: b.capacity,
            max_bytes: b.max_bytes,
            completed_retention: b.completed_retention,
            completed_capacity: b.completed_capacity,
            op_timeout: b.op_timeout,
            check_completed_on_enqueue: b.check_completed_on_enqueue,
        }
    }
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Settings {
    fn partition_subject(&self, partition: u32) -> String {
        format!("{}.p.{partition}", self.name)
    }
    fn dead_subject(&self) -> String {
        format!("{}.dead", self.name)
    }
    fn state_subject(&self, update_id: u64) -> String {
        format!("{}.state.{update_id}", self.name)
    }
    fn lease_subject(&self, partition: u32) -> String {
        format!("{}.lease.{partition}", self.name)
    }
    fn member_subject(&self, owner: &str) -> String {
        format!(
            "{}.member.{:016x}",
            self.name,
            xxhash_rust::xxh3::xxh3_64(owner.as_bytes())
        )
    }

    fn base(&self, name: String, subject: String) -> stream::Config {
        stream::Config {
            name,
            subjects: vec![subject],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    fn main_config(&self) -> stream::Config {
        stream::Config {
            max_messages: clamp_i64(self.capacity),
            max_bytes: self.max_bytes.map_or(-1, clamp_i64),
            discard: DiscardPolicy::New,
            ..self.base(self.name.clone(), format!("{}.p.*", self.name))
        }
    }

    fn dead_config(&self) -> stream::Config {
        stream::Config {
            max_messages: clamp_i64(self.capacity),
            discard: DiscardPolicy::New,
            ..self.base(format!("{}_dead", self.name), self.dead_subject())
        }
    }

    fn state_config(&self) -> stream::Config {
        stream::Config {
            max_messages: clamp_i64(self.completed_capacity),
            max_messages_per_subject: 1,
            max_age: self.completed_retention,
            discard: DiscardPolicy::Old,
            ..self.base(
                format!("{}_state", self.name),
                format!("{}.state.*", self.name),
            )
        }
    }

    fn lease_config(&self, lease: Duration) -> stream::Config {
        stream::Config {
            max_messages_per_subject: 1,
            max_age: lease,
            discard: DiscardPolicy::Old,
            ..self.base(
                format!("{}_leases", self.name),
                format!("{}.lease.*", self.name),
            )
        }
    }

    fn members_config(&self, lease: Duration) -> stream::Config {
        stream::Config {
            max_messages_per_subject: 1,
            max_messages: 100_000,
            max_age: lease,
            discard: DiscardPolicy::Old,
            ..self.base(
                format!("{}_members", self.name),
                format!("{}.member.*", self.name),
            )
        }
    }
}

/// Creates the stream, or updates it to `config` if it exists (another process created it)
/// unless `keep_existing`.
async fn ensure_stream(
    js: &Context,
    config: stream::Config,
    after: Duration,
    keep_existing: bool,
) -> Result<stream::Stream, NatsError> {
    let name = config.name.clone();
    match timed("stream lookup", after, js.get_stream(&name)).await {
        Ok(stream) if keep_existing => return Ok(stream),
        Ok(_) => {
            timed("stream update", after, js.update_stream(config)).await?;
        }
        Err(NatsError::Client { .. }) => {
            if let Err(e) = timed("stream create", after, js.create_stream(config.clone())).await {
                // Created by another process in between: update it instead.
                let Ok(stream) = timed("stream lookup", after, js.get_stream(&name)).await else {
                    return Err(e);
                };
                if keep_existing {
                    return Ok(stream);
                }
                timed("stream update", after, js.update_stream(config)).await?;
            }
        }
        Err(e) => return Err(e),
    }
    timed("stream lookup", after, js.get_stream(&name)).await
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One partition's reader.
#[derive(Default)]
struct Part {
    /// The highest stream sequence handed out since the partition was (re)taken.
    max_handed: u64,
}

/// The stored outcome of an `update_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
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

struct Inner {
    settings: Settings,
    js: Context,
    main: stream::Stream,
    dead: stream::Stream,
    state: stream::Stream,
    leases: stream::Stream,
    members: stream::Stream,
    lease_age: Mutex<Duration>,
    member_age: Mutex<Duration>,
    parts: Vec<tokio::sync::Mutex<Part>>,
    in_flight: Mutex<Handed>,
}

/// A durable, replicated queue of updates on NATS JetStream, shared by webhook instances and
/// workers on any number of machines. See the crate docs for the design.
///
/// Cheap to clone (one connection, shared).
#[derive(Clone)]
pub struct NatsQueue {
    inner: Arc<Inner>,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether a failed call may succeed when repeated (a node down, a leader being elected).
fn transient(e: &NatsError) -> bool {
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
    /// A builder for a queue on the NATS servers at `urls` (`nats://host:port`; give every
    /// node of the cluster, or some: the client learns the others).
    pub fn builder<I, S>(urls: I) -> NatsQueueBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        NatsQueueBuilder {
            urls: urls.into_iter().map(Into::into).collect(),
            name: "telehook".to_owned(),
            partitions: 1,
            replicas: 1,
            capacity: 100_000,
            max_bytes: None,
            completed_retention: Duration::from_secs(24 * 3600),
            completed_capacity: 1_000_000,
            lease: Duration::from_secs(10),
            op_timeout: Duration::from_secs(5),
            check_completed_on_enqueue: true,
        }
    }

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
    async fn publish(
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
    async fn record(&self, update_id: u64) -> Result<Option<Record>, NatsError> {
        let subject = self.inner.settings.state_subject(update_id);
        let message = self.last_message(&self.inner.state, subject).await?;
        Ok(message.and_then(|m| parse_record(&m.payload)))
    }

    /// The last message on `subject` of `stream`, from the stream's leader (never a possibly
    /// stale replica).
    async fn last_message(
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

    async fn put_record(&self, update_id: u64, record: &[u8]) -> Result<(), NatsError> {
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
    async fn delete(&self, stream: &stream::Stream, seq: u64) -> Result<(), NatsError> {
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

    /// Fails with an error if a partition beyond the configured number holds updates.
    async fn check_partitions(&self) -> Result<(), QueueError> {
        let s = &self.inner.settings;
        let subjects = timed(
            "stream info",
            s.op_timeout,
            self.inner
                .main
                .info_with_subjects(format!("{}.p.*", s.name)),
        )
        .await?;
        let subjects: Vec<_> = tokio::time::timeout(s.op_timeout, subjects.collect::<Vec<_>>())
            .await
            .map_err(|_| NatsError::Timeout {
                op: "stream info",
                after: s.op_timeout,
            })?;
        let mut stored = None;
        for entry in subjects {
            let (subject, count) = entry.map_err(|e| NatsError::client("stream info", e))?;
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
        match stored {
            Some(stored) => Err(QueueError::PartitionsChanged {
                stored,
                asked: s.partitions,
            }),
            None => Ok(()),
        }
    }

    /// The item behind a stream sequence: from the items handed out, else from the stream.
    async fn item(&self, seq: u64) -> Result<InFlight, NatsError> {
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
    async fn read_from(
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

enum PublishFailure {
    Full,
    WrongLastSequence,
    Nats(NatsError),
}

fn update_id_of(headers: Option<&HeaderMap>, body: &[u8]) -> Result<u64, NatsError> {
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

fn header_text(text: &str) -> String {
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    clean
}

impl QueueBackend for NatsQueue {
    fn partitions(&self) -> u32 {
        self.inner.settings.partitions
    }

    async fn enqueue(&self, update: &Update) -> Result<Enqueued, QueueError> {
        let s = &self.inner.settings;
        let update_id = update.update_id();
        if s.check_completed_on_enqueue
            && matches!(
                self.record(update_id).await?,
                Some(Record::Done | Record::Dead)
            )
        {
            return Ok(Enqueued::Duplicate);
        }
        // No `Nats-Msg-Id`: see "Why no message ids" in the crate docs. An enqueue repeated
        // after an unknown outcome may store a second copy; the reader skips it.
        let mut headers = HeaderMap::new();
        headers.insert(H_UPDATE_ID, update_id.to_string().as_str());
        let subject = s.partition_subject(partition_of(update, s.partitions));
        match self
            .publish("enqueue", subject, headers, update.raw().clone())
            .await
        {
            Ok(_) => Ok(Enqueued::Stored),
            Err(PublishFailure::Full) => Err(QueueError::Full {
                capacity: s.capacity,
            }),
            Err(PublishFailure::WrongLastSequence) => {
                Err(NatsError::Invalid("unexpected sequence check".to_owned()).into())
            }
            Err(PublishFailure::Nats(e)) => Err(e.into()),
        }
    }

    async fn take(
        &self,
        partition: u32,
        from: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<QueuedItem>, QueueError> {
        let Some(part) = self.inner.parts.get(partition as usize) else {
            return Err(NatsError::Invalid(format!(
                "partition {partition} of {}",
                self.inner.settings.partitions
            ))
            .into());
        };
        let limit = limit.clamp(1, 1_000);
        let mut part = part.lock().await;
        if from == 0 {
            // A partition (re)taken: hand out again, in order, everything still queued.
            lock(&self.inner.in_flight).clear_partition(partition);
            part.max_handed = 0;
        }
        // Items up to `max_handed` are held by the runner already (or done): not read again.
        let start = from.max(part.max_handed + 1);
        let deadline = Instant::now() + wait;
        let mut poll = Duration::from_millis(5);
        let messages = loop {
            let messages = self.read_from(partition, start, limit).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !messages.is_empty() || left.is_zero() {
                break messages;
            }
            // Nothing new: look again soon (5 ms, doubling up to 100 ms) until `wait` ran out.
            tokio::time::sleep(poll.min(left)).await;
            poll = (poll * 2).min(Duration::from_millis(100));
        };
        let mut batch = Vec::with_capacity(messages.len());
        {
            // Which of these updates had a copy handed out, noted BEFORE the records are read:
            // an ack writes its record first and forgets the copy after, so a copy whose first
            // copy is acked meanwhile is caught by one of the two checks, whatever the timing.
            let handed = lock(&self.inner.in_flight);
            for message in messages {
                let update_id =
                    update_id_of(Some(&message.headers), &message.payload).unwrap_or_default();
                let first = handed.seq_of(update_id);
                batch.push((message.sequence, update_id, message.payload, first));
            }
        }
        // The records (completed, dead-lettered, failed n times) of the batch, read at once.
        let records = futures_util::future::join_all(
            batch
                .iter()
                .map(|(_, update_id, _, _)| self.record(*update_id)),
        )
        .await;
        let mut items = Vec::with_capacity(batch.len());
        let mut done = Vec::new();
        for ((seq, update_id, body, handed_before), record) in batch.into_iter().zip(records) {
            let record = match record {
                Ok(record) => record,
                Err(e) => {
                    // Read these again with the next take (from the first one not handed out).
                    if items.is_empty() && done.is_empty() {
                        return Err(e.into());
                    }
                    break;
                }
            };
            part.max_handed = seq;
            let handed_now = lock(&self.inner.in_flight).seq_of(update_id);
            if handed_before
                .into_iter()
                .chain(handed_now)
                .any(|first| first != seq)
            {
                // A second copy of an update being handled (an enqueue repeated after an
                // unknown outcome): the first copy stays until it is acked, so this one goes.
                done.push(seq);
                continue;
            }
            let (failed, last_error) = match record {
                Some(Record::Done | Record::Dead) => {
                    done.push(seq);
                    continue;
                }
                Some(Record::Failed(n, e)) => (n, Some(e)),
                None => (0, None),
            };
            lock(&self.inner.in_flight).insert(
                seq,
                InFlight {
                    partition,
                    update_id,
                    body: body.clone(),
                    failed,
                    last_error,
                },
            );
            items.push(QueuedItem {
                seq,
                update_id,
                body: body.to_vec(),
                failed_attempts: failed,
            });
        }
        drop(part);
        for seq in done {
            // Handled, dead-lettered or being handled: only remove this copy. Best effort: the
            // batch is handed out already (its state moved on), and a copy left behind is
            // recognised and removed again by a later take.
            tracing::debug!(seq, "nats: skipping a copy of an update already taken");
            if let Err(e) = self.delete(&self.inner.main, seq).await {
                tracing::warn!(seq, error = %e, "nats: a skipped copy could not be removed yet");
            }
        }
        Ok(items)
    }

    async fn ack(&self, seq: u64, update_id: u64) -> Result<(), QueueError> {
        // First the record (a redelivery after a crash right here is skipped), then the item.
        self.put_record(update_id, DONE).await?;
        self.delete(&self.inner.main, seq).await?;
        lock(&self.inner.in_flight).remove(seq);
        Ok(())
    }

    async fn fail(&self, seq: u64, error: &str) -> Result<u32, QueueError> {
        let item = self.item(seq).await?;
        let failed = item.failed.saturating_add(1);
        let error = header_text(error);
        let record = format!("f{failed} {error}");
        self.put_record(item.update_id, record.as_bytes()).await?;
        if let Some(entry) = lock(&self.inner.in_flight).get_mut(seq) {
            entry.failed = failed;
            entry.last_error = Some(error);
        }
        Ok(failed)
    }

    async fn dead_letter(&self, seq: u64) -> Result<(), QueueError> {
        let item = self.item(seq).await?;
        let s = &self.inner.settings;
        let mut headers = HeaderMap::new();
        headers.insert(H_UPDATE_ID, item.update_id.to_string().as_str());
        headers.insert(H_PARTITION, item.partition.to_string().as_str());
        headers.insert(H_FAILED, item.failed.to_string().as_str());
        headers.insert(H_DEAD_AT, now_unix().to_string().as_str());
        if let Some(error) = &item.last_error {
            headers.insert(H_ERROR, header_text(error).as_str());
        }
        match self
            .publish("dead letter", s.dead_subject(), headers, item.body.clone())
            .await
        {
            Ok(_) => {}
            Err(PublishFailure::Full) => {
                return Err(QueueError::Full {
                    capacity: s.capacity,
                });
            }
            Err(PublishFailure::WrongLastSequence) => {
                return Err(NatsError::Invalid("unexpected sequence check".to_owned()).into());
            }
            Err(PublishFailure::Nats(e)) => return Err(e.into()),
        }
        // Stored as a dead letter first, then marked, then removed from the queue: a crash in
        // between leaves a queued copy that the next reader skips.
        self.put_record(item.update_id, DEAD).await?;
        self.delete(&self.inner.main, seq).await?;
        lock(&self.inner.in_flight).remove(seq);
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut out = Vec::new();
        // A dead-lettering repeated after an unknown outcome may have stored two copies.
        let mut seen = std::collections::HashSet::new();
        let mut from = 1;
        while out.len() < limit {
            let Some((seq, letter)) = self.next_dead(from).await? else {
                break;
            };
            from = seq + 1;
            if seen.insert(letter.0.update_id) {
                out.push(letter.0);
            }
        }
        Ok(out)
    }

    async fn redrive(&self, update_ids: Option<Vec<u64>>) -> Result<u64, QueueError> {
        let s = &self.inner.settings;
        let wanted: Option<std::collections::HashSet<u64>> =
            update_ids.map(|ids| ids.into_iter().collect());
        let mut count = 0;
        let mut done = std::collections::HashSet::new();
        let mut from = 1;
        while let Some((seq, (letter, partition))) = self.next_dead(from).await? {
            from = seq + 1;
            if wanted
                .as_ref()
                .is_some_and(|ids| !ids.contains(&letter.update_id))
            {
                continue;
            }
            if done.contains(&letter.update_id) {
                // A second copy of a dead letter just queued again: only remove it.
                self.delete(&self.inner.dead, seq).await?;
                continue;
            }
            let partition = Update::from_bytes(letter.body.clone())
                .map(|u| partition_of(&u, s.partitions))
                .unwrap_or(partition.min(s.partitions - 1));
            let mut headers = HeaderMap::new();
            headers.insert(H_UPDATE_ID, letter.update_id.to_string().as_str());
            match self
                .publish(
                    "redrive",
                    s.partition_subject(partition),
                    headers,
                    Bytes::from(letter.body),
                )
                .await
            {
                Ok(_) => {}
                Err(PublishFailure::Full) => {
                    return Err(QueueError::Full {
                        capacity: s.capacity,
                    });
                }
                Err(PublishFailure::WrongLastSequence) => {
                    return Err(NatsError::Invalid("unexpected sequence check".to_owned()).into());
                }
                Err(PublishFailure::Nats(e)) => return Err(e.into()),
            }
            // Queued again: the attempt count starts over, and the record no longer says dead.
            self.put_record(letter.update_id, b"").await?;
            self.delete(&self.inner.dead, seq).await?;
            done.insert(letter.update_id);
            count += 1;
        }
        Ok(count)
    }

    async fn acquire(
        &self,
        partition: u32,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, QueueError> {
        self.set_age(&self.inner.leases, &self.inner.lease_age, lease, true)
            .await?;
        let subject = self.inner.settings.lease_subject(partition);
        let payload = Bytes::copy_from_slice(owner.as_bytes());
        // Free (no lease message, or a release's tombstone) or already the owner's: renewed.
        let claimable = |m: &jetstream::message::StreamMessage| {
            m.payload.is_empty() || m.payload == owner.as_bytes()
        };
        self.lease_write(subject, payload, claimable).await
    }

    async fn release(&self, partition: u32, owner: &str) -> Result<(), QueueError> {
        let subject = self.inner.settings.lease_subject(partition);
        let last = self
            .last_message(&self.inner.leases, subject.clone())
            .await?;
        if last.is_none_or(|m| m.payload != owner.as_bytes()) {
            return Ok(());
        }
        // A tombstone (an empty message), only over the owner's own lease.
        let mine = |m: &jetstream::message::StreamMessage| m.payload == owner.as_bytes();
        self.lease_write(subject, Bytes::new(), mine).await?;
        Ok(())
    }

    async fn members(&self, owner: &str, lease: Duration) -> Result<u32, QueueError> {
        let s = &self.inner.settings;
        if lease.is_zero() {
            // Leaving: the heartbeat ends now.
            timed(
                "purge",
                s.op_timeout,
                self.inner
                    .members
                    .purge()
                    .filter(s.member_subject(owner))
                    .into_future(),
            )
            .await?;
            return self.count_members().await;
        }
        self.set_age(&self.inner.members, &self.inner.member_age, lease, false)
            .await?;
        match self
            .publish(
                "heartbeat",
                s.member_subject(owner),
                HeaderMap::new(),
                Bytes::copy_from_slice(owner.as_bytes()),
            )
            .await
        {
            Ok(_) => {}
            Err(PublishFailure::Nats(e)) => return Err(e.into()),
            Err(_) => {
                return Err(NatsError::Invalid("the members stream refused".to_owned()).into());
            }
        }
        self.count_members().await
    }
}

impl NatsQueue {
    /// Writes `payload` as the lease on `subject` if the last message there (none passes
    /// too: no lease) passes `allowed`; whether it was written.
    ///
    /// A compare-and-set on nats-server 2.9 needs care: `Nats-Expected-Last-Subject-Sequence`
    /// is checked, when clustered, only by the leader before it proposes, against what it has
    /// applied — claims racing before the first one is applied all pass (the attack tests saw
    /// up to six owners told they hold one partition) — and its value 0 is checked by each
    /// replica against its own copy, while each replica expires leases on its own timer. The
    /// stream-wide `Nats-Expected-Last-Sequence` is checked by every replica as it applies the
    /// message, and no expiry moves it: read it, then the subject's lease, then write
    /// expecting it — written only if nothing was written since the lease was seen. Another
    /// partition's write in between fails it too: look again, a few times.
    async fn lease_write(
        &self,
        subject: String,
        payload: Bytes,
        allowed: impl Fn(&jetstream::message::StreamMessage) -> bool,
    ) -> Result<bool, QueueError> {
        const TRIES: u64 = 6;
        let leases = &self.inner.leases;
        for attempt in 0..TRIES {
            let stream_last = self.last_sequence(leases).await?;
            let last = self.last_message(leases, subject.clone()).await?;
            if last.as_ref().is_some_and(|m| !allowed(m)) {
                return Ok(false);
            }
            let mut headers = HeaderMap::new();
            headers.insert(H_EXPECTED_SEQ, stream_last.to_string().as_str());
            match self
                .publish("lease", subject.clone(), headers, payload.clone())
                .await
            {
                Ok(_) => return Ok(true),
                Err(PublishFailure::WrongLastSequence) => {
                    // Something was written meanwhile; a short pause spreads racing writers.
                    tokio::time::sleep(Duration::from_millis(3 * (attempt + 1))).await;
                }
                Err(PublishFailure::Full) => {
                    return Err(
                        NatsError::Invalid("the lease stream refused a lease".to_owned()).into(),
                    );
                }
                Err(PublishFailure::Nats(e)) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    /// The last sequence `stream` assigned, from its leader.
    async fn last_sequence(&self, stream: &stream::Stream) -> Result<u64, NatsError> {
        let s = &self.inner.settings;
        let mut stream = stream.clone();
        let info = timed("stream info", s.op_timeout, stream.info()).await?;
        Ok(info.state.last_sequence)
    }

    /// Live heartbeats: subjects of the members stream holding a message.
    async fn count_members(&self) -> Result<u32, QueueError> {
        let s = &self.inner.settings;
        let subjects = timed(
            "stream info",
            s.op_timeout,
            self.inner
                .members
                .info_with_subjects(format!("{}.member.*", s.name)),
        )
        .await?;
        let subjects: Vec<_> = tokio::time::timeout(s.op_timeout, subjects.collect::<Vec<_>>())
            .await
            .map_err(|_| NatsError::Timeout {
                op: "stream info",
                after: s.op_timeout,
            })?;
        let live = subjects
            .into_iter()
            .filter(|e| matches!(e, Ok((_, n)) if *n > 0))
            .count();
        Ok(u32::try_from(live).unwrap_or(u32::MAX).max(1))
    }

    /// The dead letter at or after stream sequence `from`, with its partition.
    async fn next_dead(&self, from: u64) -> Result<Option<(u64, (DeadLetter, u32))>, NatsError> {
        let s = &self.inner.settings;
        let request = self
            .inner
            .dead
            .raw_message_builder()
            .sequence(from)
            .next_by_subject(s.dead_subject())
            .send();
        let message = match tokio::time::timeout(s.op_timeout, request).await {
            Err(_) => {
                return Err(NatsError::Timeout {
                    op: "read",
                    after: s.op_timeout,
                });
            }
            Ok(Ok(message)) => message,
            Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Ok(Err(e)) => return Err(NatsError::client("read", e)),
        };
        let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
        let update_id = update_id_of(Some(&message.headers), &message.payload).unwrap_or(0);
        let letter = DeadLetter {
            update_id,
            body: message.payload.to_vec(),
            failed_attempts: header(H_FAILED).and_then(|v| v.parse().ok()).unwrap_or(0),
            last_error: header(H_ERROR),
            dead_at: header(H_DEAD_AT).and_then(|v| v.parse().ok()).unwrap_or(0),
        };
        let partition = header(H_PARTITION)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Some((message.sequence, (letter, partition))))
    }

    /// Sets the expiry of the lease or members stream to `age` if it is another.
    async fn set_age(
        &self,
        stream: &stream::Stream,
        current: &Mutex<Duration>,
        age: Duration,
        leases: bool,
    ) -> Result<(), NatsError> {
        let age = age.max(Duration::from_millis(100));
        if *lock(current) == age {
            return Ok(());
        }
        let s = &self.inner.settings;
        let config = if leases {
            s.lease_config(age)
        } else {
            s.members_config(age)
        };
        debug_assert_eq!(config.name, stream.cached_info().config.name);
        timed(
            "stream update",
            s.op_timeout,
            self.inner.js.update_stream(config),
        )
        .await?;
        *lock(current) = age;
        Ok(())
    }
}
