//! The default store: one SQLite file in WAL mode, written by a single thread that commits
//! updates in batches.
//!
//! A POST is answered only after the transaction holding its update committed, so an
//! acknowledged update survives a crash of the process (`kill -9`). Under load, many POSTs wait
//! in the ingest queue while one transaction commits; the writer then takes them all into the
//! next transaction, so one fsync covers many updates.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Appended, NewUpdate, Notifier, Page, Store, StoreFuture, StoredUpdate};
use crate::channel::ChannelName;
use crate::config::StoreLimits;
use crate::error::StoreError;

mod schema;
mod writer;

use schema::{SCHEMA, floor, migrate};
use writer::{Job, Writer};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "relay.sqlite3";

/// How long a POST waits for room in a full ingest queue before it is answered 503.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Connections kept for reads.
const READERS: usize = 4;

/// SQLite-backed [`Store`]: durable, needs nothing installed, one file per relay.
#[derive(Debug)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    readers: Arc<ReaderPool>,
    notifier: Arc<Notifier>,
    limits: StoreLimits,
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
        limits.validate()?;
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Open {
            path: data_dir.display().to_string(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        if let Some(bytes) = limits.max_db_bytes {
            let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let pages = (bytes / page_size.max(512) as u64).max(1);
            conn.pragma_update(None, "max_page_count", pages as i64)?;
        }
        let writer = Writer::new(conn, limits, notifier.clone())?;
        let (jobs, rx) = mpsc::channel(limits.ingest_queue.max(1));
        std::thread::Builder::new()
            .name("relay-sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
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

    async fn send(&self, job: Job) -> Result<(), StoreError> {
        match tokio::time::timeout(QUEUE_WAIT, self.jobs.send(job)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StoreError::WriterStopped),
            Err(_) => Err(StoreError::IngestQueueFull {
                capacity: self.limits.ingest_queue,
            }),
        }
    }
}

impl SqliteStore {
    fn read_within<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
        max_bytes: usize,
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
            tokio::task::spawn_blocking(move || task_pool.read(&channel, after, limit, max_bytes))
                .await
                .map_err(|e| StoreError::Corrupt(format!("read task failed: {e}")))?
        })
    }
}

impl Store for SqliteStore {
    fn append(&self, channel: ChannelName, update: NewUpdate) -> StoreFuture<'_, Appended> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.send(Job::Append {
                channel,
                update,
                reply,
            })
            .await?;
            answer.await.map_err(|_| StoreError::WriterStopped)?
        })
    }

    fn read_bounded<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreFuture<'a, Page> {
        self.read_within(channel, after, limit, max_bytes)
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Reads, then has the writer commit a probe row: a store that cannot write (disk full,
    /// read-only, the last commit failed) is reported as such.
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
            let (reply, answer) = oneshot::channel();
            self.send(Job::Health { reply }).await?;
            answer.await.map_err(|_| StoreError::WriterStopped)?
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

    fn read(
        &self,
        channel: &ChannelName,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, StoreError> {
        let cutoff = super::cutoff_ms(self.max_age);
        self.with_conn(|conn| {
            let tx = conn.unchecked_transaction()?;
            let row: Option<(i64, i64)> = tx
                .prepare_cached("SELECT id, total FROM channels WHERE name = ?1")?
                .query_row([channel.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((id, total)) = row else {
                // Never seen, or forgotten: its count is the floor, never below a count a
                // client of the forgotten channel could hold.
                let total = floor(&tx)?;
                return Ok(Page { total, first_retained: total + 1, updates: Vec::new() });
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
                let mut used = 0usize;
                for row in rows {
                    let row: StoredUpdate = row?;
                    used = used.saturating_add(row.json.len().saturating_add(1));
                    if !updates.is_empty() && used > max_bytes {
                        break;
                    }
                    updates.push(row);
                }
            }
            drop(tx);
            Ok(Page { total, first_retained, updates })
        })
    }
}
