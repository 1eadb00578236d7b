//! Partition leases and worker heartbeats: the `leases` and `members` tables, written by the
//! writer thread in its transactions, on the host's clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};

use crate::backend::QueueError;

/// Milliseconds since the Unix epoch: the clock leases are measured on. Every process on the
/// host reads the same one.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A lease's length in milliseconds (saturating), as the lease tables store it.
pub(super) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Takes or renews `partition`'s lease for `owner`, `lease_ms` from now: true when it is
/// `owner`'s now (it was free, expired or already `owner`'s), false when another owner holds it.
pub(super) fn acquire(
    conn: &Connection,
    partition: u32,
    owner: &str,
    lease_ms: i64,
) -> Result<bool, QueueError> {
    let now = now_ms();
    conn.prepare_cached(
        "INSERT INTO leases (partition, owner, expires_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (partition) DO UPDATE \
         SET owner = excluded.owner, expires_at = excluded.expires_at \
         WHERE leases.owner = excluded.owner OR leases.expires_at <= ?4",
    )
    .and_then(|mut s| s.execute(params![partition, owner, now.saturating_add(lease_ms), now]))
    .map(|changed| changed > 0)
    .map_err(QueueError::from)
}

/// Drops `partition`'s lease if `owner` holds it (another owner's is left alone).
pub(super) fn release(conn: &Connection, partition: u32, owner: &str) -> Result<(), QueueError> {
    conn.prepare_cached("DELETE FROM leases WHERE partition = ?1 AND owner = ?2")
        .and_then(|mut s| s.execute(params![partition, owner]))
        .map(drop)
        .map_err(QueueError::from)
}

/// `owner`'s heartbeat, `lease_ms` from now (zero or less: it leaves), forgets the members
/// whose heartbeat ran out, and counts the live ones (at least 1).
pub(super) fn members(conn: &Connection, owner: &str, lease_ms: i64) -> Result<u32, QueueError> {
    let now = now_ms();
    (|| {
        conn.prepare_cached(
            "INSERT INTO members (owner, expires_at) VALUES (?1, ?2) \
             ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at",
        )?
        .execute(params![owner, now.saturating_add(lease_ms)])?;
        conn.prepare_cached("DELETE FROM members WHERE expires_at <= ?1")?
            .execute([now])?;
        conn.prepare_cached("SELECT COUNT(*) FROM members")?
            .query_row([], |r| r.get::<_, i64>(0))
    })()
    .map(|n| u32::try_from(n).unwrap_or(u32::MAX).max(1))
    .map_err(QueueError::from)
}
