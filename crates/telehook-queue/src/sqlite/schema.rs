//! The tables of the queue's file, opening a connection to it, and the check a handle makes
//! when it opens the file.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use super::leases::now_ms;
use crate::backend::QueueError;

/// The tables, created when missing: `meta` (the partition count, the held count), `queue`,
/// `dead` (the dead-letter list), `completed` (recent `update_id`s), `leases` and `members`.
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

/// A connection to the file: WAL mode, `synchronous = FULL`, waiting up to 5 s for a lock.
pub(super) fn connect(path: &Path) -> Result<Connection, QueueError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Creates what the file lacks, checks the partition count it records against `partitions`
/// (refused with [`QueueError::PartitionsChanged`] while it holds updates or has live
/// workers), records `partitions` and recounts the held count the capacity bound uses.
pub(super) fn init(conn: &Connection, partitions: u32) -> Result<(), QueueError> {
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
            && stored != i64::from(partitions)
            && (held > 0 || live_members > 0)
        {
            return Err(QueueError::PartitionsChanged {
                stored: stored as u32,
                asked: partitions,
            });
        }
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('partitions', ?1)",
            [i64::from(partitions)],
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
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
