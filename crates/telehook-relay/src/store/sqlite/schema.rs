//! The database's tables, their migration from earlier versions, and the stored floor.

use rusqlite::{Connection, OptionalExtension};

use crate::error::StoreError;

/// Tables and indexes; every statement is idempotent, so an older database is brought up to
/// date by running it again (plus [`migrate`]).
pub(super) const SCHEMA: &str = "
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
    body TEXT NOT NULL,
    update_id INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS updates_by_seq ON updates (channel_id, seq);
CREATE INDEX IF NOT EXISTS updates_by_age ON updates (created_at);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// Adds what databases written by earlier versions lack.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let has_update_id = conn
        .prepare("SELECT 1 FROM pragma_table_info('updates') WHERE name = 'update_id'")?
        .exists([])?;
    if !has_update_id {
        conn.execute_batch("ALTER TABLE updates ADD COLUMN update_id INTEGER")?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS updates_by_update_id ON updates (channel_id, update_id) \
         WHERE update_id IS NOT NULL",
    )?;
    Ok(())
}

/// The count a channel the store does not remember starts from (see [`Store`]).
pub(super) fn floor(conn: &Connection) -> Result<u64, StoreError> {
    let floor: Option<i64> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'floor'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(floor.map_or(0, |f| f.max(0) as u64))
}
