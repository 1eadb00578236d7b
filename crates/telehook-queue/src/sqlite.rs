//! The embedded queue: one SQLite file in WAL mode with `synchronous = FULL`; every write goes
//! through one writer thread that commits whatever is waiting in one transaction (a group
//! commit), so a burst of enqueues costs one `fsync`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use telehook_core::Update;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::backend::{DeadLetter, Enqueued, QueueBackend, QueueError, QueuedItem, partition_of};

/// Writes waiting for the writer thread, at most (back-pressure beyond).
const WRITE_BACKLOG: usize = 8_192;
/// Writes committed in one transaction, at most.
const BATCH: usize = 1_024;

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
        // One transaction holding the write lock: another process opening or writing the
        // same file at once sees all of it or none.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let checked = (|| {
            conn.execute_batch(SCHEMA)?;
            let stored: Option<i64> = conn
                .query_row("SELECT value FROM meta WHERE key = 'partitions'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            let held: i64 = conn.query_row(
                "SELECT (SELECT COUNT(*) FROM queue) + (SELECT COUNT(*) FROM dead)",
                [],
                |r| r.get(0),
            )?;
            let live_members: i64 = conn.query_row(
                "SELECT COUNT(*) FROM members WHERE expires_at > ?1",
                [now_ms()],
                |r| r.get(0),
            )?;
            if let Some(stored) = stored
                && stored != i64::from(self.partitions)
                && (held > 0 || live_members > 0)
            {
                return Err(QueueError::PartitionsChanged {
                    stored: stored as u32,
                    asked: self.partitions,
                });
            }
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('partitions', ?1)",
                [i64::from(self.partitions)],
            )?;
            // The count the capacity bound uses, kept in the file so every process sees the
            // others' enqueues and acks; recounted here.
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('held', ?1)",
                [held],
            )?;
            Ok(())
        })();
        match checked {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        let (tx, rx) = mpsc::channel(WRITE_BACKLOG);
        let notify = Arc::new(Notify::new());
        let writer = Writer {
            conn,
            partitions: self.partitions,
            held: 0,
            capacity: self.capacity,
            retention: self.completed_retention,
            last_prune: Instant::now(),
            notify: Arc::clone(&notify),
        };
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

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    update_id INTEGER NOT NULL UNIQUE,
    partition INTEGER NOT NULL,
    body BLOB NOT NULL,
    enqueued_at INTEGER NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS queue_partition_seq ON queue (partition, seq);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    update_id INTEGER NOT NULL UNIQUE,
    partition INTEGER NOT NULL,
    body BLOB NOT NULL,
    enqueued_at INTEGER NOT NULL,
    failed_attempts INTEGER NOT NULL,
    last_error TEXT,
    dead_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS completed (update_id INTEGER PRIMARY KEY, completed_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS completed_at ON completed (completed_at);
CREATE TABLE IF NOT EXISTS leases (
    partition INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS members (owner TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
";

fn connect(path: &Path) -> Result<Connection, QueueError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
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

/// Milliseconds since the Unix epoch: the clock leases are measured on. Every process on the
/// host reads the same one.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

type Reply<R> = oneshot::Sender<Result<R, QueueError>>;

enum Write {
    Enqueue {
        update_id: i64,
        partition: u32,
        body: Vec<u8>,
        reply: Reply<Enqueued>,
    },
    Ack {
        seq: i64,
        update_id: i64,
        reply: Reply<()>,
    },
    Fail {
        seq: i64,
        error: String,
        reply: Reply<u32>,
    },
    Dead {
        seq: i64,
        reply: Reply<()>,
    },
    Redrive {
        update_ids: Option<Vec<i64>>,
        reply: Reply<u64>,
    },
    Acquire {
        partition: u32,
        owner: String,
        lease_ms: i64,
        reply: Reply<bool>,
    },
    Release {
        partition: u32,
        owner: String,
        reply: Reply<()>,
    },
    Members {
        owner: String,
        lease_ms: i64,
        reply: Reply<u32>,
    },
}

/// A result waiting for its transaction's commit.
enum Done {
    Enqueue(Reply<Enqueued>, Result<Enqueued, QueueError>),
    Unit(Reply<()>, Result<(), QueueError>),
    Count(Reply<u32>, Result<u32, QueueError>),
    Moved(Reply<u64>, Result<u64, QueueError>),
    Flag(Reply<bool>, Result<bool, QueueError>),
}

impl Done {
    fn send(self, commit: Result<(), &rusqlite::Error>) {
        fn pick<R>(
            r: Result<R, QueueError>,
            commit: Result<(), &rusqlite::Error>,
        ) -> Result<R, QueueError> {
            match commit {
                Ok(()) => r,
                Err(e) => Err(QueueError::Storage(clone_error(e))),
            }
        }
        match self {
            Self::Enqueue(tx, r) => drop(tx.send(pick(r, commit))),
            Self::Unit(tx, r) => drop(tx.send(pick(r, commit))),
            Self::Count(tx, r) => drop(tx.send(pick(r, commit))),
            Self::Moved(tx, r) => drop(tx.send(pick(r, commit))),
            Self::Flag(tx, r) => drop(tx.send(pick(r, commit))),
        }
    }
}

fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::ToSqlConversionFailure(other.to_string().into()),
    }
}

struct Writer {
    conn: Connection,
    /// Partitions this handle hashes into: an enqueue is refused once the file records
    /// another number (another handle reopened it with a different count).
    partitions: u32,
    /// Rows in `queue` and `dead`, for the capacity bound: read from `meta` when a
    /// transaction starts (other processes change it), written back at its end.
    held: u64,
    capacity: u64,
    retention: Duration,
    last_prune: Instant,
    notify: Arc<Notify>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Write>) {
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
        }
    }

    fn commit(&mut self, batch: &mut Vec<Write>) {
        let mut wake = false;
        let mut done = Vec::with_capacity(batch.len());
        let begin = self.conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
            self.conn
                .prepare_cached(
                    "SELECT (SELECT value FROM meta WHERE key = 'held'), \
                     (SELECT value FROM meta WHERE key = 'partitions')",
                )?
                .query_row([], |r| {
                    Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
                })
        });
        let mut stored_partitions = None;
        let begin = match begin {
            Ok((held, partitions)) => {
                self.held = held.unwrap_or(0).max(0) as u64;
                stored_partitions = partitions;
                Ok(())
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        };
        let held_at_begin = self.held;
        if let Err(e) = begin {
            tracing::error!(error = %e, "queue: cannot begin a transaction");
            for write in batch.drain(..) {
                fail_write(write, &e);
            }
            return;
        }
        for write in batch.drain(..) {
            match write {
                Write::Enqueue {
                    update_id,
                    partition,
                    body,
                    reply,
                } => {
                    let r = match stored_partitions {
                        // Another handle opened the file with another partition count: this
                        // handle's partition would split a chat across two workers.
                        Some(stored) if stored != i64::from(self.partitions) => {
                            Err(QueueError::PartitionsChanged {
                                stored: u32::try_from(stored).unwrap_or(u32::MAX),
                                asked: self.partitions,
                            })
                        }
                        _ => self.enqueue(update_id, partition, &body),
                    };
                    wake |= matches!(r, Ok(Enqueued::Stored));
                    done.push(Done::Enqueue(reply, r));
                }
                Write::Ack {
                    seq,
                    update_id,
                    reply,
                } => {
                    done.push(Done::Unit(reply, self.ack(seq, update_id)));
                }
                Write::Fail { seq, error, reply } => {
                    let r = self
                        .conn
                        .prepare_cached(
                            "UPDATE queue SET failed_attempts = failed_attempts + 1, last_error = ?2 \
                             WHERE seq = ?1 RETURNING failed_attempts",
                        )
                        .and_then(|mut s| s.query_row(params![seq, error], |r| r.get(0)).optional())
                        .map(|n| n.unwrap_or(0))
                        .map_err(QueueError::from);
                    done.push(Done::Count(reply, r));
                }
                Write::Dead { seq, reply } => {
                    let r = self
                        .conn
                        .execute(
                            "INSERT OR IGNORE INTO dead SELECT seq, update_id, partition, body, enqueued_at, \
                             failed_attempts, last_error, ?2 FROM queue WHERE seq = ?1",
                            params![seq, now()],
                        )
                        .and_then(|_| self.conn.execute("DELETE FROM queue WHERE seq = ?1", [seq]))
                        .map(drop)
                        .map_err(QueueError::from);
                    done.push(Done::Unit(reply, r));
                }
                Write::Redrive { update_ids, reply } => {
                    let r = self.redrive(update_ids.as_deref());
                    wake |= matches!(r, Ok(n) if n > 0);
                    done.push(Done::Moved(reply, r));
                }
                Write::Acquire {
                    partition,
                    owner,
                    lease_ms,
                    reply,
                } => {
                    let now = now_ms();
                    let r = self
                        .conn
                        .prepare_cached(
                            "INSERT INTO leases (partition, owner, expires_at) VALUES (?1, ?2, ?3) \
                             ON CONFLICT (partition) DO UPDATE \
                             SET owner = excluded.owner, expires_at = excluded.expires_at \
                             WHERE leases.owner = excluded.owner OR leases.expires_at <= ?4",
                        )
                        .and_then(|mut s| {
                            s.execute(params![partition, owner, now.saturating_add(lease_ms), now])
                        })
                        .map(|changed| changed > 0)
                        .map_err(QueueError::from);
                    done.push(Done::Flag(reply, r));
                }
                Write::Release {
                    partition,
                    owner,
                    reply,
                } => {
                    let r = self
                        .conn
                        .prepare_cached("DELETE FROM leases WHERE partition = ?1 AND owner = ?2")
                        .and_then(|mut s| s.execute(params![partition, owner]))
                        .map(drop)
                        .map_err(QueueError::from);
                    done.push(Done::Unit(reply, r));
                }
                Write::Members {
                    owner,
                    lease_ms,
                    reply,
                } => {
                    let now = now_ms();
                    let r = (|| {
                        self.conn
                            .prepare_cached(
                                "INSERT INTO members (owner, expires_at) VALUES (?1, ?2) \
                                 ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at",
                            )?
                            .execute(params![owner, now.saturating_add(lease_ms)])?;
                        self.conn
                            .prepare_cached("DELETE FROM members WHERE expires_at <= ?1")?
                            .execute([now])?;
                        self.conn
                            .prepare_cached("SELECT COUNT(*) FROM members")?
                            .query_row([], |r| r.get::<_, i64>(0))
                    })()
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX).max(1))
                    .map_err(QueueError::from);
                    done.push(Done::Count(reply, r));
                }
            }
        }
        if self.held != held_at_begin
            && let Err(e) = self
                .conn
                .prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'held'")
                .and_then(|mut s| s.execute([self.held as i64]))
        {
            tracing::error!(error = %e, "queue: cannot record the held count; nothing of this batch is stored");
            let _ = self.conn.execute_batch("ROLLBACK");
            for d in done {
                d.send(Err(&e));
            }
            return;
        }
        if self.last_prune.elapsed() >= Duration::from_secs(10) {
            self.last_prune = Instant::now();
            let before = now() - self.retention.as_secs() as i64;
            if let Err(e) = self
                .conn
                .execute("DELETE FROM completed WHERE completed_at < ?1", [before])
            {
                tracing::warn!(error = %e, "queue: pruning completed update_ids failed");
            }
        }
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => {
                for d in done {
                    d.send(Ok(()));
                }
                if wake {
                    self.notify.notify_waiters();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "queue: commit failed; nothing of this batch is stored");
                let _ = self.conn.execute_batch("ROLLBACK");
                for d in done {
                    d.send(Err(&e));
                }
            }
        }
    }

    fn enqueue(
        &mut self,
        update_id: i64,
        partition: u32,
        body: &[u8],
    ) -> Result<Enqueued, QueueError> {
        let known: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM queue WHERE update_id = ?1) \
                 OR EXISTS(SELECT 1 FROM completed WHERE update_id = ?1) \
                 OR EXISTS(SELECT 1 FROM dead WHERE update_id = ?1)",
            )?
            .query_row([update_id], |r| r.get(0))?;
        if known {
            return Ok(Enqueued::Duplicate);
        }
        if self.held >= self.capacity {
            return Err(QueueError::Full {
                capacity: self.capacity,
            });
        }
        self.conn
            .prepare_cached(
                "INSERT INTO queue (update_id, partition, body, enqueued_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![update_id, partition, body, now()])?;
        self.held += 1;
        Ok(Enqueued::Stored)
    }

    fn ack(&mut self, seq: i64, update_id: i64) -> Result<(), QueueError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO completed (update_id, completed_at) VALUES (?1, ?2)",
            )?
            .execute(params![update_id, now()])?;
        let removed = self
            .conn
            .prepare_cached("DELETE FROM queue WHERE seq = ?1")?
            .execute([seq])?;
        self.held = self.held.saturating_sub(removed as u64);
        Ok(())
    }

    fn redrive(&mut self, update_ids: Option<&[i64]>) -> Result<u64, QueueError> {
        let ids: Vec<i64> = match update_ids {
            Some(ids) => ids.to_vec(),
            None => {
                let mut stmt = self
                    .conn
                    .prepare("SELECT update_id FROM dead ORDER BY seq")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            }
        };
        let mut moved = 0;
        for id in ids {
            let n = self.conn.execute(
                "INSERT INTO queue (update_id, partition, body, enqueued_at, failed_attempts, last_error) \
                 SELECT update_id, partition, body, enqueued_at, 0, last_error FROM dead WHERE update_id = ?1",
                [id],
            )?;
            if n > 0 {
                self.conn
                    .execute("DELETE FROM dead WHERE update_id = ?1", [id])?;
                moved += 1;
            }
        }
        Ok(moved)
    }
}

fn fail_write(write: Write, e: &rusqlite::Error) {
    let err = || QueueError::Storage(clone_error(e));
    match write {
        Write::Enqueue { reply, .. } => drop(reply.send(Err(err()))),
        Write::Ack { reply, .. } | Write::Dead { reply, .. } => drop(reply.send(Err(err()))),
        Write::Fail { reply, .. } => drop(reply.send(Err(err()))),
        Write::Redrive { reply, .. } => drop(reply.send(Err(err()))),
        Write::Acquire { reply, .. } => drop(reply.send(Err(err()))),
        Write::Release { reply, .. } => drop(reply.send(Err(err()))),
        Write::Members { reply, .. } => drop(reply.send(Err(err()))),
    }
}
