//! The single writer thread: owns the write connection and the channel cache, commits appends
//! in batches, drops redeliveries, prunes, and answers health probes.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::schema::floor;
use crate::channel::ChannelName;
use crate::config::StoreLimits;
use crate::error::StoreError;
use crate::store::{Appended, Batch, NewUpdate, Notifier, StoredUpdate, Wake, cutoff_ms, now_ms};

/// Work for the writer thread.
pub(super) enum Job {
    Append {
        channel: ChannelName,
        update: NewUpdate,
        reply: oneshot::Sender<Result<Appended, StoreError>>,
    },
    Prune,
    Health {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Append { channel, .. } => write!(f, "Append({channel})"),
            Self::Prune => f.write_str("Prune"),
            Self::Health { .. } => f.write_str("Health"),
        }
    }
}

/// The retained copy of a redelivered update. No `ORDER BY`: it would make SQLite walk the
/// channel by `seq` instead of using `updates_by_update_id` (one copy is ever stored anyway);
/// a test checks the plan.
const FIND_DUPLICATE: &str = "SELECT seq FROM updates WHERE channel_id = ?1 AND update_id = ?2 \
                              AND body = ?3 AND created_at >= ?4 LIMIT 1";

/// An append waiting for its transaction.
type PendingAppend = (
    ChannelName,
    NewUpdate,
    oneshot::Sender<Result<Appended, StoreError>>,
);

struct ChannelRow {
    id: i64,
    total: u64,
    /// Holds updates or received one within the retention age; counts against
    /// `max_channels`. A channel that is not live is remembered only for its count.
    live: bool,
}

/// Why the last commit failed, kept until one succeeds (reported by health checks).
#[derive(Clone, Copy)]
enum WriteFailure {
    Full,
    CannotWrite,
    Other,
}

/// The single writer.
pub(super) struct Writer {
    conn: Connection,
    limits: StoreLimits,
    notifier: Arc<Notifier>,
    channels: HashMap<ChannelName, ChannelRow>,
    live: usize,
    floor: u64,
    last_failure: Option<(WriteFailure, String)>,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        limits: StoreLimits,
        notifier: Arc<Notifier>,
    ) -> Result<Self, StoreError> {
        let mut writer = Self {
            conn,
            limits,
            notifier,
            channels: HashMap::new(),
            live: 0,
            floor: 0,
            last_failure: None,
        };
        writer.load_channels()?;
        Ok(writer)
    }

    fn cutoff(&self) -> i64 {
        cutoff_ms(self.limits.retention.max_age)
    }

    fn load_channels(&mut self) -> Result<(), StoreError> {
        self.channels.clear();
        self.live = 0;
        self.floor = floor(&self.conn)?;
        let cutoff = self.cutoff();
        let mut stmt = self.conn.prepare(
            "SELECT id, name, total, updated_at >= ?1 OR EXISTS \
             (SELECT 1 FROM updates u WHERE u.channel_id = c.id) FROM channels c",
        )?;
        let rows = stmt.query_map([cutoff], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })?;
        for row in rows {
            let (id, name, total, live) = row?;
            let name = ChannelName::parse(&name).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.live += usize::from(live);
            self.channels.insert(
                name,
                ChannelRow {
                    id,
                    total: total as u64,
                    live,
                },
            );
        }
        Ok(())
    }

    pub(super) fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        tracing::debug!(channels = self.channels.len(), "sqlite writer started");
        let mut batch = Vec::with_capacity(self.limits.max_batch);
        let mut probes = Vec::new();
        while let Some(job) = jobs.blocking_recv() {
            let mut prune = false;
            let mut push = |job, batch: &mut Vec<_>| match job {
                Job::Append {
                    channel,
                    update,
                    reply,
                } => batch.push((channel, update, reply)),
                Job::Prune => prune = true,
                Job::Health { reply } => probes.push(reply),
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
            for reply in probes.drain(..) {
                let _ = reply.send(self.probe());
            }
        }
        tracing::debug!("sqlite writer stopped");
    }

    /// Commits a probe row; fails when the store cannot write, or when the last real commit
    /// failed for lack of room or write access (a probe may fit where an update does not).
    fn probe(&mut self) -> Result<(), StoreError> {
        let written = (|| -> Result<(), StoreError> {
            let tx = self.conn.transaction()?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('health', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [now_ms()],
            )?;
            tx.commit()?;
            Ok(())
        })();
        written?;
        match &self.last_failure {
            None | Some((WriteFailure::Other, _)) => Ok(()),
            Some((WriteFailure::Full, text)) => Err(StoreError::Full(text.clone().into())),
            Some((WriteFailure::CannotWrite, text)) => {
                Err(StoreError::CannotWrite(text.clone().into()))
            }
        }
    }

    /// Commits all appends of `batch` in one transaction, then answers them and wakes waiters.
    fn commit(&mut self, batch: &mut Vec<PendingAppend>) {
        let started = std::time::Instant::now();
        let size = batch.len();
        let mut results: Vec<Result<Appended, StoreError>> = Vec::with_capacity(size);
        let mut touched: HashMap<ChannelName, Vec<StoredUpdate>> = HashMap::new();
        let outcome = self.write_batch(batch, &mut results, &mut touched);
        match outcome {
            Ok(()) => {
                self.last_failure = None;
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
                let kind = match &e {
                    StoreError::Full(_) => WriteFailure::Full,
                    StoreError::CannotWrite(_) => WriteFailure::CannotWrite,
                    _ => WriteFailure::Other,
                };
                let text = e.to_string();
                self.last_failure = Some((kind, text.clone()));
                for (_, _, reply) in batch.drain(..) {
                    let error = match kind {
                        WriteFailure::Full => StoreError::Full(text.clone().into()),
                        WriteFailure::CannotWrite => StoreError::CannotWrite(text.clone().into()),
                        WriteFailure::Other => {
                            StoreError::Corrupt(format!("commit failed: {text}"))
                        }
                    };
                    let _ = reply.send(Err(error));
                }
                if let Err(e) = self.load_channels() {
                    tracing::error!(error = %e, "reloading channels after a failed commit failed");
                }
            }
        }
    }

    fn write_batch(
        &mut self,
        batch: &[PendingAppend],
        results: &mut Vec<Result<Appended, StoreError>>,
        touched: &mut HashMap<ChannelName, Vec<StoredUpdate>>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let cutoff = self.cutoff();
        let tx = self.conn.transaction()?;
        for (channel, update, _) in batch {
            let known = self.channels.get(channel).map(|row| row.live);
            if known != Some(true) {
                if self.live >= self.limits.max_channels {
                    results.push(Err(StoreError::TooManyChannels {
                        limit: self.limits.max_channels,
                    }));
                    continue;
                }
                self.live += 1;
                if known.is_some() {
                    // Forgotten but remembered: it comes back with its count.
                    if let Some(row) = self.channels.get_mut(channel) {
                        row.live = true;
                    }
                } else {
                    tx.prepare_cached(
                        "INSERT INTO channels (name, total, updated_at) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![
                        channel.as_str(),
                        self.floor as i64,
                        now
                    ])?;
                    let id = tx.last_insert_rowid();
                    self.channels.insert(
                        channel.clone(),
                        ChannelRow {
                            id,
                            total: self.floor,
                            live: true,
                        },
                    );
                }
            }
            let Some(row) = self.channels.get_mut(channel) else {
                continue;
            };
            if let Some(update_id) = update.update_id {
                let stored: Option<i64> = tx
                    .prepare_cached(FIND_DUPLICATE)?
                    .query_row(params![row.id, update_id, update.json, cutoff], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if let Some(seq) = stored {
                    results.push(Ok(Appended {
                        seq: seq as u64,
                        duplicate: true,
                    }));
                    continue;
                }
            }
            row.total += 1;
            tx.prepare_cached(
                "INSERT INTO updates (channel_id, seq, created_at, body, update_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                row.id,
                row.total as i64,
                now,
                update.json,
                update.update_id
            ])?;
            results.push(Ok(Appended {
                seq: row.total,
                duplicate: false,
            }));
            touched
                .entry(channel.clone())
                .or_default()
                .push(StoredUpdate {
                    seq: row.total,
                    json: Arc::from(update.json.as_str()),
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
    }

    /// Deletes updates older than the retention age. Channels left empty that long stop
    /// counting against `max_channels` but keep their count; beyond `max_channels` such
    /// channels, the oldest are forgotten and the floor rises above their counts.
    fn prune(&mut self) -> Result<(), StoreError> {
        let cutoff = self.cutoff();
        let keep = self.limits.max_channels as i64;
        let tx = self.conn.transaction()?;
        let updates = tx.execute("DELETE FROM updates WHERE created_at < ?1", [cutoff])?;
        const IDLE: &str = "FROM channels c WHERE updated_at < ?1 AND NOT EXISTS \
                            (SELECT 1 FROM updates u WHERE u.channel_id = c.id)";
        let idle: i64 = tx.query_row(&format!("SELECT COUNT(*) {IDLE}"), [cutoff], |r| r.get(0))?;
        let mut forgotten = 0;
        if idle > keep {
            let oldest = format!("SELECT id, total {IDLE} ORDER BY updated_at, id LIMIT ?2");
            let highest: Option<i64> = tx.query_row(
                &format!("SELECT MAX(total) FROM ({oldest})"),
                params![cutoff, idle - keep],
                |r| r.get(0),
            )?;
            forgotten = tx.execute(
                &format!("DELETE FROM channels WHERE id IN (SELECT id FROM ({oldest}))"),
                params![cutoff, idle - keep],
            )?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('floor', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
                [highest.unwrap_or(0)],
            )?;
        }
        tx.commit()?;
        self.load_channels()?;
        if forgotten > 0 {
            // Their waiters must read again: the channel now reads at the floor.
            self.notifier.wake_all();
        }
        if updates > 0 || forgotten > 0 {
            tracing::info!(
                updates,
                forgotten,
                floor = self.floor,
                "pruned expired updates"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_a_redelivery_uses_the_update_id_index() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::schema::SCHEMA).unwrap();
        super::super::schema::migrate(&conn).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {FIND_DUPLICATE}"))
            .unwrap()
            .query_map(params![1, 2, "{}", 0], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("updates_by_update_id")),
            "{plan:?}"
        );
    }
}
