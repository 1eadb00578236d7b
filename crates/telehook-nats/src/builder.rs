//! [`NatsQueueBuilder`]: the options of a [`NatsQueue`], opening it, and the streams it is made
//! of (their names, subjects and limits).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use telehook_queue::QueueError;

use crate::error::{NatsError, timed};
use crate::queue::{Inner, NatsQueue, Part};

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
    repartition: bool,
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
    /// [`acquire`](telehook_queue::QueueBackend::acquire) with another lease updates them.
    /// Default 10 s.
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
    /// is [`Enqueued::Duplicate`](telehook_queue::Enqueued::Duplicate). Without it such an
    /// update is stored again and skipped by the worker that takes it. Default true.
    pub fn check_completed_on_enqueue(mut self, check: bool) -> Self {
        self.check_completed_on_enqueue = check;
        self
    }

    /// Records this builder's number of [`partitions`](Self::partitions) although the queue
    /// recorded another — allowed only while the queue holds no update and no worker is live
    /// (else [`QueueError::PartitionsChanged`](telehook_queue::QueueError::PartitionsChanged)).
    /// Stop every process of the queue first: one still running keeps its number. Without it
    /// (the default), a process asking for another number than the recorded one is refused,
    /// so two processes started with different numbers never both run.
    pub fn repartition(mut self) -> Self {
        self.repartition = true;
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
            // Each server address gets a share of the bound: one that hangs (a stalled node)
            // must leave time to try the next.
            .connection_timeout(
                (self.op_timeout / (u32::try_from(self.urls.len()).unwrap_or(u32::MAX) + 1))
                    .max(Duration::from_millis(100)),
            )
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
            repartition: false,
        }
    }
}

/// What every call needs from the builder.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) name: String,
    pub(crate) partitions: u32,
    pub(crate) replicas: usize,
    pub(crate) capacity: u64,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) completed_retention: Duration,
    pub(crate) completed_capacity: u64,
    pub(crate) op_timeout: Duration,
    pub(crate) check_completed_on_enqueue: bool,
    pub(crate) repartition: bool,
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
            repartition: b.repartition,
        }
    }
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Settings {
    pub(crate) fn partition_subject(&self, partition: u32) -> String {
        format!("{}.p.{partition}", self.name)
    }
    pub(crate) fn dead_subject(&self) -> String {
        format!("{}.dead", self.name)
    }
    pub(crate) fn state_subject(&self, update_id: u64) -> String {
        format!("{}.state.{update_id}", self.name)
    }
    pub(crate) fn lease_subject(&self, partition: u32) -> String {
        format!("{}.lease.{partition}", self.name)
    }
    pub(crate) fn member_subject(&self, owner: &str) -> String {
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

    /// A stream holding at most `capacity` updates, refusing more (the queue, the dead letters).
    fn bounded(&self, name: String, subject: String) -> stream::Config {
        stream::Config {
            max_messages: clamp_i64(self.capacity),
            discard: DiscardPolicy::New,
            ..self.base(name, subject)
        }
    }

    /// The stream `<name>_<stream>` on `<name>.<subject>.*` keeping the last message of each
    /// subject for `max_age`, a newer one replacing it (the records, the leases, the heartbeats).
    fn latest_per_subject(&self, stream: &str, subject: &str, max_age: Duration) -> stream::Config {
        stream::Config {
            max_messages_per_subject: 1,
            max_age,
            discard: DiscardPolicy::Old,
            ..self.base(
                format!("{}_{stream}", self.name),
                format!("{}.{subject}.*", self.name),
            )
        }
    }

    fn main_config(&self) -> stream::Config {
        stream::Config {
            description: Some(describe_partitions(self.partitions)),
            max_bytes: self.max_bytes.map_or(-1, clamp_i64),
            ..self.bounded(self.name.clone(), format!("{}.p.*", self.name))
        }
    }

    fn dead_config(&self) -> stream::Config {
        self.bounded(format!("{}_dead", self.name), self.dead_subject())
    }

    fn state_config(&self) -> stream::Config {
        stream::Config {
            max_messages: clamp_i64(self.completed_capacity),
            ..self.latest_per_subject("state", "state", self.completed_retention)
        }
    }

    pub(crate) fn lease_config(&self, lease: Duration) -> stream::Config {
        self.latest_per_subject("leases", "lease", lease)
    }

    pub(crate) fn members_config(&self, lease: Duration) -> stream::Config {
        stream::Config {
            max_messages: 100_000,
            ..self.latest_per_subject("members", "member", lease)
        }
    }
}

/// Creates the stream, or opens it as it is if it exists (never updated: see
/// `ensure_stream_once`); `keep_existing` only silences the warning about other bounds, for
/// the lease and member streams whose expiry the workers set.
async fn ensure_stream(
    js: &Context,
    config: stream::Config,
    after: Duration,
    keep_existing: bool,
) -> Result<stream::Stream, NatsError> {
    // A cluster just started (the queue's processes and the servers started together) may
    // not place a replicated stream yet — its nodes have not all reported in ("insufficient
    // resources", "no suitable peers"), or the meta leader is being elected: try again, with
    // a backoff, within the same bound as any call.
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        let left = after.saturating_sub(started.elapsed());
        // One attempt gets a part of the bound: a request to a leader that hangs is never
        // answered, and the next attempt may reach a new one.
        let left = left.min((after / 4).max(Duration::from_millis(250)));
        match ensure_stream_once(
            js,
            config.clone(),
            left.max(Duration::from_millis(10)),
            keep_existing,
        )
        .await
        {
            Err(e) if not_placed_yet(&e) && started.elapsed() + delay < after => {
                tracing::debug!(stream = %config.name, error = %e, "nats: stream not placed yet, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            result => return result,
        }
    }
}

/// Whether a stream creation failed in a way a moment may cure (see [`ensure_stream`]).
fn not_placed_yet(e: &NatsError) -> bool {
    if crate::queue::transient(e) {
        return true;
    }
    let text = match e {
        NatsError::Client { source, .. } => {
            crate::error::chain(source.as_ref()).to_ascii_lowercase()
        }
        _ => return false,
    };
    [
        "insufficient resources",
        "no suitable peers",
        "cluster not",
        "meta leader",
    ]
    .iter()
    .any(|t| text.contains(t))
}

async fn ensure_stream_once(
    js: &Context,
    config: stream::Config,
    after: Duration,
    keep_existing: bool,
) -> Result<stream::Stream, NatsError> {
    let name = config.name.clone();
    let existing = match timed("stream lookup", after, js.get_stream(&name)).await {
        Ok(stream) => stream,
        Err(NatsError::Client { .. }) => {
            match timed("stream create", after, js.create_stream(config.clone())).await {
                Ok(stream) => return Ok(stream),
                // Created by another process in between: check and update it instead.
                Err(e) => match timed("stream lookup", after, js.get_stream(&name)).await {
                    Ok(stream) => stream,
                    Err(_) => return Err(e),
                },
            }
        }
        Err(e) => return Err(e),
    };
    same_replicas(&existing, &config)?;
    if existing.cached_info().config.subjects != config.subjects {
        // Not this queue's stream (another queue's `<name>_dead`, an unrelated stream):
        // taking it over would rewrite its subjects.
        return Err(NatsError::Invalid(format!(
            "a stream named `{}` exists with subjects {:?}, not this queue's {:?}: pick another \
             queue name",
            config.name,
            existing.cached_info().config.subjects,
            config.subjects
        )));
    }
    if !keep_existing && differs(&existing.cached_info().config, &config) {
        // An existing queue keeps the bounds it was created with: one process started with
        // other ones (a default capacity, a forgotten setting) must not rewrite them for
        // every other — whoever opened last would decide — and processes started together
        // must not all propose updates (nats-server 2.9 answered some after their timeout).
        // Change them on the streams themselves (`nats stream edit`).
        tracing::warn!(
            stream = %config.name,
            "nats: the stream exists with other bounds than this process asks for; it keeps its own"
        );
    }
    Ok(existing)
}

/// The queue stream's description, which records its number of partitions.
pub(crate) fn describe_partitions(partitions: u32) -> String {
    format!("telehook queue; partitions={partitions}")
}

/// The number of partitions a queue stream's description records.
pub(crate) fn described_partitions(description: &str) -> Option<u32> {
    description
        .split("partitions=")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Whether a stream's configuration differs from the queue's in what the queue sets (the
/// server fills in the rest with its defaults, so whole configurations never compare equal).
fn differs(have: &stream::Config, want: &stream::Config) -> bool {
    // 0 and -1 both mean "no limit" (the client's default and the server's).
    let limit = |n: i64| n.max(0);
    have.subjects != want.subjects
        || limit(have.max_messages) != limit(want.max_messages)
        || limit(have.max_bytes) != limit(want.max_bytes)
        || limit(have.max_messages_per_subject) != limit(want.max_messages_per_subject)
        || have.max_age != want.max_age
        || have.discard != want.discard
        || have.retention != want.retention
        || have.storage != want.storage
}

/// Refuses to open a queue whose stream keeps another number of copies than this process
/// asks for: updating it would let one process given a single URL (one replica) take the
/// whole queue's replication away — whoever opened it last would decide.
fn same_replicas(existing: &stream::Stream, config: &stream::Config) -> Result<(), NatsError> {
    let have = existing.cached_info().config.num_replicas;
    if have == config.num_replicas {
        return Ok(());
    }
    Err(NatsError::Invalid(format!(
        "stream `{}` keeps {have} replica(s) but this process asks for {}: every process \
         of one queue needs the same `replicas` (give each all of the cluster's URLs); to \
         change it, edit the streams first (e.g. `nats stream edit {} --replicas {}`)",
        config.name, config.num_replicas, config.name, config.num_replicas
    )))
}
