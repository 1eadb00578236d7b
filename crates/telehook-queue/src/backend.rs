//! The [`QueueBackend`] trait every queue engine implements, and what it hands out.

use std::future::Future;
use std::time::Duration;

use telehook_core::Update;

/// What [`QueueBackend::enqueue`] did with an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored durably: the enqueue committed before returning.
    Stored,
    /// An update with this `update_id` is already queued, dead-lettered or completed (a
    /// Telegram redelivery): nothing stored, nothing lost.
    Duplicate,
}

/// One queued update, as a worker takes it.
#[derive(Debug, Clone)]
pub struct QueuedItem {
    /// The item's position in the queue: grows in enqueue order.
    pub seq: u64,
    /// The update's `update_id`.
    pub update_id: u64,
    /// The update's bytes, exactly as Telegram sent them.
    pub body: Vec<u8>,
    /// Failed handler runs so far (kept across restarts).
    pub failed_attempts: u32,
}

/// An update the workers gave up on, waiting in the dead-letter list.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The update's `update_id`.
    pub update_id: u64,
    /// The update's bytes.
    pub body: Vec<u8>,
    /// Failed handler runs.
    pub failed_attempts: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// When it was dead-lettered (Unix seconds).
    pub dead_at: i64,
}

/// A queue error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue holds `capacity` updates (queued and dead-lettered): the update was not
    /// stored. Under a webhook this is an error answer, so Telegram delivers it again later.
    #[error("the queue is full ({capacity} updates queued or dead-lettered); not stored")]
    Full {
        /// The configured capacity.
        capacity: u64,
    },
    /// The storage failed.
    #[error("queue storage error")]
    Storage(#[source] rusqlite::Error),
    /// A queue engine other than SQLite failed (a NATS JetStream or Redis client error, a
    /// timeout talking to the engine...): the source says what.
    #[error("queue engine error")]
    Engine(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The queue's writer stopped (the queue is being dropped).
    #[error("the queue's writer stopped")]
    Closed,
    /// A number beyond what the store keeps (no longer returned for an `update_id`: the
    /// embedded queue stores all of them; kept for other engines).
    #[error("update_id {0} is out of range for the queue")]
    UpdateIdOutOfRange(u64),
    /// The queue records another number of partitions than this handle uses: refused when
    /// opening a queue that still holds updates or has live workers, and by an enqueue once
    /// another handle reopened the file with another number (one chat's updates in two
    /// partitions would run on two workers, out of order). Every handle on one queue must use
    /// the same number.
    #[error(
        "the queue records {stored} partitions, this handle uses {asked}; every handle on \
         one queue must use the same number (change it only on a drained queue with no other \
         handle open)"
    )]
    PartitionsChanged {
        /// Partitions recorded in the database.
        stored: u32,
        /// Partitions asked for.
        asked: u32,
    },
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Storage(e)
    }
}

/// The partition an update belongs to: updates with equal [`SequenceKey`]s share one, so one
/// worker per partition keeps each key in order. Keyless updates spread by `update_id`.
///
/// [`SequenceKey`]: telehook_core::SequenceKey
pub fn partition_of(update: &Update, partitions: u32) -> u32 {
    let partitions = partitions.max(1);
    let hash = match update.sequence_key() {
        Some(key) => xxhash_rust::xxh3::xxh3_64(key.to_string().as_bytes()),
        None => update.update_id(),
    };
    (hash % u64::from(partitions)) as u32
}

/// A durable queue of updates, partitioned by sequence key. The embedded [`SqliteQueue`]
/// implements it; a distributed engine (NATS JetStream, Redis Streams, Kafka, SQS FIFO) is
/// another implementation — `docs/scaling.md` maps each method onto them.
///
/// Contract: `enqueue` returns only once the update is durable; `take` hands out a
/// partition's items in enqueue order; an item stays queued until `ack` or `dead_letter`.
///
/// # Partition leases
///
/// Per-chat order needs each partition taken by one worker at a time. Inside one process
/// [`run_workers`] guarantees that by itself; across processes the workers hold **leases**
/// ([`acquire`](Self::acquire), [`release`](Self::release)) and find each other through
/// [`members`](Self::members); [`Workers`] runs them. The provided methods mean "one process owns
/// every partition": `acquire` always succeeds, `release` does nothing, `members` is 1. A
/// backend shared by several processes overrides all three, so that:
///
/// - at any instant at most one `owner` holds a partition's lease (a lease runs out `lease`
///   after the owner's last successful `acquire`, unless released earlier);
/// - `acquire` by the holder renews; by another owner it fails (`Ok(false)`) while the lease runs;
/// - `take` with `from == 0` on a partition just acquired hands out again, in enqueue order,
///   whatever a previous owner left unacked (taken but neither acked nor dead-lettered), so a
///   dead or deposed worker's updates run again in per-chat order;
/// - `members` with a zero `lease` ends `owner`'s heartbeat at once (a worker leaving): the
///   others count one member less at their next heartbeat.
///
/// A worker stops taking from a partition before its lease runs out unless renewed (it renews
/// every third of the lease); the engine's clock decides when a lease ran out.
///
/// [`SqliteQueue`]: crate::SqliteQueue
/// [`run_workers`]: crate::run_workers
/// [`Workers`]: crate::Workers
///
pub trait QueueBackend: Clone + Send + Sync + 'static {
    /// The number of partitions (workers that can run at once, each keeping its keys in order).
    fn partitions(&self) -> u32;

    /// Stores `update` durably in its partition (bounded: [`QueueError::Full`]), or recognises
    /// a duplicate `update_id`.
    fn enqueue(&self, update: &Update)
    -> impl Future<Output = Result<Enqueued, QueueError>> + Send;

    /// Up to `limit` items of `partition` with `seq >= from`, in order, waiting up to `wait`
    /// while there are none.
    fn take(
        &self,
        partition: u32,
        from: u64,
        limit: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<QueuedItem>, QueueError>> + Send;

    /// The item was handled: remove it and remember its `update_id` as completed, so a
    /// later delivery of the same `update_id` is skipped.
    fn ack(&self, seq: u64, update_id: u64) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// A handler run failed: count it; returns the failed attempts so far.
    fn fail(&self, seq: u64, error: &str) -> impl Future<Output = Result<u32, QueueError>> + Send;

    /// Moves the item to the dead-letter list.
    fn dead_letter(&self, seq: u64) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Up to `limit` dead letters, oldest first.
    fn dead_letters(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, QueueError>> + Send;

    /// Puts dead letters back at the end of their partition with their attempt count reset:
    /// those with the given `update_id`s, or all of them with `None`. Returns how many.
    fn redrive(
        &self,
        update_ids: Option<Vec<u64>>,
    ) -> impl Future<Output = Result<u64, QueueError>> + Send;

    /// Claims or renews the lease on `partition` for `owner`: `Ok(true)` when `owner` holds it
    /// until `lease` from now, `Ok(false)` when another owner holds an unexpired lease. The
    /// default (one process owns every partition) always returns `Ok(true)`.
    fn acquire(
        &self,
        partition: u32,
        owner: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, QueueError>> + Send {
        let _ = (partition, owner, lease);
        std::future::ready(Ok(true))
    }

    /// Gives up `owner`'s lease on `partition` (nothing if `owner` does not hold it), so
    /// another worker can take the partition at once. The default does nothing.
    fn release(
        &self,
        partition: u32,
        owner: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send {
        let _ = (partition, owner);
        std::future::ready(Ok(()))
    }

    /// Heartbeats worker `owner` (alive until `lease` from now) and returns the number of live
    /// workers, `owner` included (at least 1). Each worker holds a fair share,
    /// `ceil(partitions / members)`, of the partitions. The default returns 1.
    fn members(
        &self,
        owner: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<u32, QueueError>> + Send {
        let _ = (owner, lease);
        std::future::ready(Ok(1))
    }
}

/// Shows an error with its causes, `outer: inner: innermost`, for logs: a `QueueError::Engine`
/// alone says only "queue engine error", the engine's own error is its source.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    #[test]
    fn an_engine_error_shows_its_cause() {
        let e = QueueError::Engine("NATS stream update timed out after 5s".into());
        assert_eq!(
            Chain(&e).to_string(),
            "queue engine error: NATS stream update timed out after 5s"
        );
    }
}
