//! The writer thread: every write of a [`SqliteQueue`](super::SqliteQueue) handle goes through
//! it, and it commits whatever is waiting in one transaction (a group commit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, mpsc, oneshot};

use super::{leases, now};
use crate::backend::{Enqueued, QueueError};

/// Writes committed in one transaction, at most.
const BATCH: usize = 1_024;

/// Where the writer sends a write's result, once its transaction committed.
pub(super) type Reply<R> = oneshot::Sender<Result<R, QueueError>>;

/// A write for the writer thread, with where its result goes.
pub(super) enum Write {
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

/// The writer thread's state: the one connection that writes.
pub(super) struct Writer {
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
    pub(super) fn new(
        conn: Connection,
        partitions: u32,
        capacity: u64,
        retention: Duration,
        notify: Arc<Notify>,
    ) -> Self {
        Self {
            conn,
            partitions,
            held: 0,
            capacity,
            retention,
            last_prune: Instant::now(),
            notify,
        }
    }

    /// Commits the writes as they come, up to [`BATCH`] in one transaction, until every
    /// sender is gone.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Write>) {
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
                    let r = leases::acquire(&self.conn, partition, &owner, lease_ms);
                    done.push(Done::Flag(reply, r));
                }
                Write::Release {
                    partition,
                    owner,
                    reply,
                } => {
                    let r = leases::release(&self.conn, partition, &owner);
                    done.push(Done::Unit(reply, r));
                }
                Write::Members {
                    owner,
                    lease_ms,
                    reply,
                } => {
                    let r = leases::members(&self.conn, &owner, lease_ms);
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
