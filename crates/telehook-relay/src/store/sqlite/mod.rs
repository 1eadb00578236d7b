//! The default store: one SQLite file in WAL mode, written by a single thread that commits
//! updates in batches.
//!
//! A POST is answered only after the transaction holding its update committed, so an
//! acknowledged update survives a crash of the process (`kill -9`). Under load, many POSTs wait
//! in the ingest queue while one transaction commits; the writer then takes them all into the
//! next transaction, so one fsync covers many updates.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Batch, Notifier, Page, Store, StoreFuture, StoredUpdate, Wake, now_ms};
use crate::channel::ChannelName;
use crate::config::StoreLimits;
use crate::error::StoreError;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "relay.sqlite3";

/// How long a POST waits for room in a full ingest queue before it is answered 503.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Connections kept for reads.
const READERS: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS channels (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    total INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS updates (
    channel_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS updates_by_seq ON updates (channel_id, seq);
CREATE INDEX IF NOT EXISTS updates_by_age ON updates (created_at);
";

enum Job {
    Append {
        channel: ChannelName,
        json: String,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Prune,
}

/// SQLite-backed [`Store`]: durable, needs nothing installed, one file per relay.
#[derive(Debug)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    readers: Arc<ReaderPool>,
    notifier: Arc<Notifier>,
    limits: StoreLimits,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Append { channel, .. } => write!(f, "Append({channel})"),
            Self::Prune => f.write_str("Prune"),
        }
    }
}

#[derive(Debug)]
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    max_age: Duration,
}

impl SqliteStore {
    /// Opens (or creates) the database in `data_dir`, starts its writer thread and, on a Tokio
    /// runtime, its pruning task. `notifier` receives a wake-up after every commit.
    pub fn open(
        data_dir: &Path,
        limits: StoreLimits,
        notifier: Arc<Notifier>,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let path = data_dir.join(DB_FILE);
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let writer = Writer::new(conn, limits, notifier.clone())?;
        let (jobs, rx) = mpsc::channel(limits.ingest_queue.max(1));
        std::thread::Builder::new()
            .name("relay-sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;

        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = jobs.downgrade();
            let every = limits.prune_interval;
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(jobs) = weak.upgrade() else { break };
                    if jobs.send(Job::Prune).await.is_err() {
                        break;
                    }
                }
            });
        }

        let readers = Arc::new(ReaderPool {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(READERS)),
            max_age: limits.retention.max_age,
        });
        Ok(Self {
            jobs,
            readers,
            notifier,
            limits,
        })
    }

    /// Deletes expired updates now instead of at the next pruning tick.
    pub async fn prune_now(&self) -> Result<(), StoreError> {
        self.jobs
            .send(Job::Prune)
            .await
            .map_err(|_| StoreError::WriterStopped)
    }
}

impl Store for SqliteStore {
    fn append(&self, channel: ChannelName, json: String) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let job = Job::Append {
                channel,
                json,
                reply,
            };
            match tokio::time::timeout(QUEUE_WAIT, self.jobs.send(job)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(StoreError::WriterStopped),
                Err(_) => {
                    return Err(StoreError::IngestQueueFull {
                        capacity: self.limits.ingest_queue,
                    });
                }
            }
            answer.await.map_err(|_| StoreError::WriterStopped)?
        })
    }

    fn read<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
    ) -> StoreFuture<'a, Page> {
        let pool = self.readers.clone();
        let channel = channel.clone();
        Box::pin(async move {
            let _permit = pool
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| StoreError::WriterStopped)?;
            let task_pool = pool.clone();
            tokio::task::spawn_blocking(move || task_pool.read(&channel, after, limit))
                .await
                .map_err(|e| StoreError::Corrupt(format!("read task failed: {e}")))?
        })
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    fn health(&self) -> StoreFuture<'_, ()> {
        let pool = self.readers.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                pool.with_conn(|c| {
                    c.query_row("SELECT 1", [], |_| Ok(()))
                        .map_err(StoreError::from)
                })
            })
            .await
            .map_err(|e| StoreError::Corrupt(format!("health task failed: {e}")))??;
            if self.jobs.is_closed() {
                Err(StoreError::WriterStopped)
            } else {
                Ok(())
            }
        })
    }
}

impl ReaderPool {
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(Duration::from_secs(5))?;
                c.pragma_update(None, "query_only", true)?;
                c
            }
        };
        let result = f(&conn);
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        result
    }

    fn read(&self, channel: &ChannelName, after: u64, limit: usize) -> Result<Page, StoreError> {
        let cutoff = now_ms() - self.max_age.as_millis() as i64;
        self.with_conn(|conn| {
            let tx = conn.unchecked_transaction()?;
            let row: Option<(i64, i64)> = tx
                .prepare_cached("SELECT id, total FROM channels WHERE name = ?1")?
                .query_row([channel.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((id, total)) = row else {
                return Ok(Page { total: 0, first_retained: 1, updates: Vec::new() });
            };
            let total = total as u64;
            let first: Option<i64> = tx
                .prepare_cached("SELECT MIN(seq) FROM updates WHERE channel_id = ?1 AND created_at >= ?2")?
                .query_row(params![id, cutoff], |r| r.get(0))?;
            let first_retained = first.map_or(total + 1, |s| s as u64);
            let from = after.max(first_retained.saturating_sub(1));
            let mut updates = Vec::new();
            if from < total {
                let mut stmt = tx.prepare_cached(
                    "SELECT seq, body FROM updates WHERE channel_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?;
                let rows = stmt.query_map(params![id, from as i64, limit as i64], |r| {
                    Ok(StoredUpdate { seq: r.get::<_, i64>(0)? as u64, json: Arc::from(r.get::<_, String>(1)?) })
                })?;
                for row in rows {
                    updates.push(row?);
                }
            }
            drop(tx);
            Ok(Page { total, first_retained, updates })
        })
    }
}

/// An append waiting for its transaction: channel, JSON text, and where to send the outcome.
type PendingAppend = (
    ChannelName,
    String,
    oneshot::Sender<Result<u64, StoreError>>,
);

struct ChannelRow {
    id: i64,
    total: u64,
}

/// The single writer: owns the write connection and the channel cache.
struct Writer {
    conn: Connection,
    limits: StoreLimits,
    notifier: Arc<Notifier>,
    channels: HashMap<ChannelName, ChannelRow>,
}

impl Writer {
    fn new(
        conn: Connection,
        limits: StoreLimits,
        notifier: Arc<Notifier>,
    ) -> Result<Self, StoreError> {
        let mut writer = Self {
            conn,
            limits,
            notifier,
            channels: HashMap::new(),
        };
        writer.load_channels()?;
        Ok(writer)
    }

    fn load_channels(&mut self) -> Result<(), StoreError> {
        self.channels.clear();
        let mut stmt = self.conn.prepare("SELECT id, name, total FROM channels")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (id, name, total) = row?;
            let name = ChannelName::parse(&name).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.channels.insert(
                name,
                ChannelRow {
                    id,
                    total: total as u64,
                },
            );
        }
        Ok(())
    }

    fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        tracing::debug!(channels = self.channels.len(), "sqlite writer started");
        let mut batch = Vec::with_capacity(self.limits.max_batch);
        while let Some(job) = jobs.blocking_recv() {
            let mut prune = false;
            let mut push = |job, batch: &mut Vec<_>| match job {
                Job::Append {
                    channel,
                    json,
                    reply,
                } => batch.push((channel, json, reply)),
                Job::Prune => prune = true,
            };
            push(job, &mut batch);
            while batch.len() < self.limits.max_batch {
                match jobs.try_recv() {
                    Ok(job) => push(job, &mut batch),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
            if prune && let Err(e) = self.prune() {
                tracing::error!(error = %e, "pruning expired updates failed");
            }
        }
        tracing::debug!("sqlite writer stopped");
    }

    /// Commits all appends of `batch` in one transaction, then answers them and wakes waiters.
    fn commit(&mut self, batch: &mut Vec<PendingAppend>) {
        let started = std::time::Instant::now();
        let size = batch.len();
        let mut results: Vec<Result<u64, StoreError>> = Vec::with_capacity(size);
        let mut touched: HashMap<ChannelName, Vec<StoredUpdate>> = HashMap::new();
        let outcome = (|| -> Result<(), StoreError> {
            let now = now_ms();
            let tx = self.conn.transaction()?;
            for (channel, json, _) in batch.iter() {
                let row = match self.channels.get_mut(channel) {
                    Some(row) => row,
                    None => {
                        if self.channels.len() >= self.limits.max_channels {
                            results.push(Err(StoreError::TooManyChannels {
                                limit: self.limits.max_channels,
                            }));
                            continue;
                        }
                        tx.prepare_cached(
                            "INSERT INTO channels (name, total, updated_at) VALUES (?1, 0, ?2)",
                        )?
                        .execute(params![channel.as_str(), now])?;
                        let id = tx.last_insert_rowid();
                        self.channels
                            .entry(channel.clone())
                            .or_insert(ChannelRow { id, total: 0 })
                    }
                };
                row.total += 1;
                tx.prepare_cached("INSERT INTO updates (channel_id, seq, created_at, body) VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![row.id, row.total as i64, now, json])?;
                results.push(Ok(row.total));
                touched
                    .entry(channel.clone())
                    .or_default()
                    .push(StoredUpdate {
                        seq: row.total,
                        json: Arc::from(json.as_str()),
                    });
            }
            for channel in touched.keys() {
                let row = &self.channels[channel];
                tx.prepare_cached("UPDATE channels SET total = ?2, updated_at = ?3 WHERE id = ?1")?
                    .execute(params![row.id, row.total as i64, now])?;
                let keep_from = row.total.saturating_sub(self.limits.retention.max_updates);
                if keep_from > 0 {
                    tx.prepare_cached("DELETE FROM updates WHERE channel_id = ?1 AND seq <= ?2")?
                        .execute(params![row.id, keep_from as i64])?;
                }
            }
            tx.commit()?;
            Ok(())
        })();

        match outcome {
            Ok(()) => {
                for ((_, _, reply), result) in batch.drain(..).zip(results) {
                    let _ = reply.send(result);
                }
                for (channel, updates) in touched {
                    let total = updates.last().map_or(0, |u| u.seq);
                    self.notifier.publish(
                        &channel,
                        Wake {
                            total,
                            latest: Some(Arc::new(Batch { updates })),
                            // The single writer publishes every commit, in order.
                            exact: true,
                        },
                    );
                }
                tracing::trace!(
                    size,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "batch committed"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, size, "committing a batch failed; none of it was stored");
                for (_, _, reply) in batch.drain(..) {
                    let _ = reply.send(Err(StoreError::Corrupt(format!("commit failed: {e}"))));
                }
                if let Err(e) = self.load_channels() {
                    tracing::error!(error = %e, "reloading channels after a failed commit failed");
                }
            }
        }
    }

    /// Deletes updates older than the retention age, and channels left empty that long.
    fn prune(&mut self) -> Result<(), StoreError> {
        let cutoff = now_ms() - self.limits.retention.max_age.as_millis() as i64;
        let tx = self.conn.transaction()?;
        let updates = tx.execute("DELETE FROM updates WHERE created_at < ?1", [cutoff])?;
        let channels = tx.execute(
            "DELETE FROM channels WHERE updated_at < ?1 AND NOT EXISTS \
             (SELECT 1 FROM updates WHERE updates.channel_id = channels.id)",
            [cutoff],
        )?;
        tx.commit()?;
        if channels > 0 {
            self.load_channels()?;
            // A deleted channel starts again from 0: waiters must not trust the old count.
            self.notifier.wake_all();
        }
        if updates > 0 || channels > 0 {
            tracing::info!(updates, channels, "pruned expired updates");
        }
        Ok(())
    }
}
