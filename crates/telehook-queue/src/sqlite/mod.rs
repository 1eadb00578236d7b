//! The embedded queue: one SQLite file in WAL mode with `synchronous = FULL`; every write goes
//! through one writer thread that commits whatever is waiting in one transaction (a group
//! commit), so a burst of enqueues costs one `fsync`.
//!
//! Here the handle and its builder; the tables and the opening check in `schema`, the writer
//! thread and its group commit in `writer`, the partition leases and worker heartbeats in
//! `leases`.

mod leases;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};
use telehook_core::Update;
use tokio::sync::{Notify, mpsc, oneshot};

use self::leases::duration_ms;
use self::schema::connect;
use self::writer::{Write, Writer};
use crate::backend::{DeadLetter, Enqueued, QueueBackend, QueueError, QueuedItem, partition_of};

/// Writes waiting for the writer thread, at most (back-pressure beyond).
const WRITE_BACKLOG: usize = 8_192;

/// Builds a [`SqliteQueue`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SqliteQueueBuilder {
    path: PathBuf,
    capacity: u64,
    partitions: u32,
    completed_retention: Duration,
    poll_interval: Duration,
}

impl SqliteQueueBuilder {
    /// Updates held at most, queued and dead-lettered together; an enqueue beyond is refused
    /// with [`QueueError::Full`]. Default 100,000.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Partitions, each taken by one worker at a time. Default 1. A database keeps the
    /// number it was created with while it holds updates or has live workers; a handle opened
    /// with another number on an empty file records its number, and from then on every other
    /// handle's enqueue is refused with [`QueueError::PartitionsChanged`] (never split a chat
    /// over two partitions).
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// How long a completed `update_id` is remembered, to skip a late duplicate. Default 24 h,
    /// as long as Telegram keeps an update it could not deliver
    /// ([getting updates](https://core.telegram.org/bots/api#getting-updates)); shorter than
    /// the week after which Telegram may reuse ids.
    pub fn completed_retention(mut self, retention: Duration) -> Self {
        self.completed_retention = retention;
        self
    }

    /// How often a worker waiting for updates looks at the file again, to see what other
    /// processes enqueued (an enqueue through the same [`SqliteQueue`] wakes it at once).
    /// Default 100 ms; at least 1 ms.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Opens (or creates) the database and starts its writer thread. Several processes (or
    /// several `SqliteQueue`s in one process) may open the same file: they must agree on
    /// `partitions`.
    pub fn open(self) -> Result<SqliteQueue, QueueError> {
        let conn = connect(&self.path)?;
        schema::init(&conn, self.partitions)?;
        let (tx, rx) = mpsc::channel(WRITE_BACKLOG);
        let notify = Arc::new(Notify::new());
        let writer = Writer::new(
            conn,
            self.partitions,
            self.capacity,
            self.completed_retention,
            Arc::clone(&notify),
        );
        std::thread::Builder::new()
            .name("telehook-queue-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|_| QueueError::Closed)?;
        Ok(SqliteQueue {
            inner: Arc::new(Inner {
                path: self.path,
                partitions: self.partitions,
                poll_interval: self.poll_interval,
                writes: tx,
                notify,
                readers: Mutex::new(Vec::new()),
            }),
        })
    }
}

/// The embedded durable queue on one SQLite file: nothing to install, one host. Cheap to
/// clone; the webhook side and the workers share one.
///
/// Several processes on the host may open the same file (webhook processes, worker processes
/// running [`Workers`](crate::Workers)): every write takes SQLite's write lock, the partition
/// leases and worker heartbeats are tables in the file (measured on the host's clock), and so is
/// the count the capacity bound uses. The file must be on a local disk.
#[derive(Clone)]
pub struct SqliteQueue {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    partitions: u32,
    poll_interval: Duration,
    writes: mpsc::Sender<Write>,
    notify: Arc<Notify>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("path", &self.inner.path)
            .field("partitions", &self.inner.partitions)
            .finish_non_exhaustive()
    }
}

impl SqliteQueue {
    /// A builder for the queue in the database file at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteQueueBuilder {
        SqliteQueueBuilder {
            path: path.as_ref().to_owned(),
            capacity: 100_000,
            partitions: 1,
            completed_retention: Duration::from_secs(24 * 60 * 60),
            poll_interval: Duration::from_millis(100),
        }
    }

    /// Opens the queue at `path` with the default settings.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, QueueError> {
        Self::builder(path).open()
    }

    /// Updates queued (not yet handled nor dead-lettered).
    pub async fn queued(&self) -> Result<u64, QueueError> {
        self.read(|c| c.query_row("SELECT COUNT(*) FROM queue", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|n| n as u64)
    }

    async fn write<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<R, QueueError>>) -> Write,
    ) -> Result<R, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .writes
            .send(make(tx))
            .await
            .map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    async fn read<R: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, QueueError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => connect(&inner.path)?,
            };
            let result = query(&conn);
            let mut readers = inner
                .readers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if readers.len() < 8 {
                readers.push(conn);
            }
            Ok(result?)
        })
        .await
        .map_err(|_| QueueError::Closed)?
    }
}

impl QueueBackend for SqliteQueue {
    fn partitions(&self) -> u32 {
        self.inner.partitions
    }

    async fn enqueue(&self, update: &Update) -> Result<Enqueued, QueueError> {
        let update_id = id_to_sql(update.update_id());
        let partition = partition_of(update, self.inner.partitions);
        let body = update.raw().to_vec();
        self.write(|reply| Write::Enqueue {
            update_id,
            partition,
            body,
            reply,
        })
        .await
    }

    async fn take(
        &self,
        partition: u32,
        from: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<QueuedItem>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let limit = limit.clamp(1, 10_000) as i64;
        loop {
            let notified = self.inner.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let items = self
                .read(move |c| {
                    let mut stmt = c.prepare_cached(
                        "SELECT seq, update_id, body, failed_attempts FROM queue \
                         WHERE partition = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
                    )?;
                    let rows = stmt.query_map(params![partition, from, limit], |r| {
                        Ok(QueuedItem {
                            seq: r.get::<_, i64>(0)? as u64,
                            update_id: id_from_sql(r.get(1)?),
                            body: body_from_sql(r.get_ref(2)?),
                            failed_attempts: r.get(3)?,
                        })
                    })?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?;
            if !items.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(items);
            }
            // Woken by an enqueue through this queue; other processes' enqueues are seen at
            // the next look, `poll_interval` on.
            let next_look = deadline.min(tokio::time::Instant::now() + self.inner.poll_interval);
            let _ = tokio::time::timeout_at(next_look, notified).await;
        }
    }

    async fn ack(&self, seq: u64, update_id: u64) -> Result<(), QueueError> {
        let (seq, update_id) = (to_i64(seq)?, id_to_sql(update_id));
        self.write(|reply| Write::Ack {
            seq,
            update_id,
            reply,
        })
        .await
    }

    async fn fail(&self, seq: u64, error: &str) -> Result<u32, QueueError> {
        let seq = to_i64(seq)?;
        let error = error.chars().take(1_000).collect();
        self.write(|reply| Write::Fail { seq, error, reply }).await
    }

    async fn dead_letter(&self, seq: u64) -> Result<(), QueueError> {
        let seq = to_i64(seq)?;
        self.write(|reply| Write::Dead { seq, reply }).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let limit = limit.min(100_000) as i64;
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT update_id, body, failed_attempts, last_error, dead_at FROM dead \
                 ORDER BY dead_at, seq LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| {
                Ok(DeadLetter {
                    update_id: id_from_sql(r.get(0)?),
                    body: body_from_sql(r.get_ref(1)?),
                    failed_attempts: r.get(2)?,
                    last_error: r.get(3)?,
                    dead_at: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn redrive(&self, update_ids: Option<Vec<u64>>) -> Result<u64, QueueError> {
        let update_ids = update_ids.map(|ids| ids.into_iter().map(id_to_sql).collect());
        self.write(|reply| Write::Redrive { update_ids, reply })
            .await
    }

    async fn acquire(
        &self,
        partition: u32,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, QueueError> {
        if partition >= self.inner.partitions {
            return Ok(false);
        }
        let owner = owner.to_owned();
        let lease_ms = duration_ms(lease);
        self.write(|reply| Write::Acquire {
            partition,
            owner,
            lease_ms,
            reply,
        })
        .await
    }

    async fn release(&self, partition: u32, owner: &str) -> Result<(), QueueError> {
        let owner = owner.to_owned();
        self.write(|reply| Write::Release {
            partition,
            owner,
            reply,
        })
        .await
    }

    async fn members(&self, owner: &str, lease: Duration) -> Result<u32, QueueError> {
        let owner = owner.to_owned();
        let lease_ms = duration_ms(lease);
        self.write(|reply| Write::Members {
            owner,
            lease_ms,
            reply,
        })
        .await
    }
}

fn to_i64(n: u64) -> Result<i64, QueueError> {
    i64::try_from(n).map_err(|_| QueueError::UpdateIdOutOfRange(n))
}

/// An `update_id` as stored: its 64 bits as SQLite's signed integer, so ids above `i64::MAX`
/// are kept too (read back with [`id_from_sql`]). Only equality is ever asked of the column.
fn id_to_sql(update_id: u64) -> i64 {
    update_id as i64
}

/// The `update_id` [`id_to_sql`] stored.
fn id_from_sql(stored: i64) -> u64 {
    stored as u64
}

/// A stored body as bytes, whatever type SQLite keeps it as: BLOB (what the queue writes) or
/// TEXT (a row written by another tool) as they are; a number or NULL as its text, which the
/// worker then fails to parse and dead-letters. A row of another type never makes `take` fail,
/// which would stall its partition for good.
fn body_from_sql(value: rusqlite::types::ValueRef<'_>) -> Vec<u8> {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
        ValueRef::Integer(n) => n.to_string().into_bytes(),
        ValueRef::Real(x) => x.to_string().into_bytes(),
        ValueRef::Null => Vec::new(),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
