//! The [`QueueBackend`] operations of a [`NatsQueue`]: enqueue, take, ack, fail, the dead
//! letters; the partition leases and heartbeats are in `leases`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;
use telehook_core::Update;
use telehook_queue::{DeadLetter, Enqueued, QueueBackend, QueueError, QueuedItem, partition_of};

use crate::error::NatsError;
use crate::handed::InFlight;
use crate::queue::{
    DEAD, DONE, H_UPDATE_ID, NatsQueue, PublishFailure, Record, lock, update_id_of,
};

const H_PARTITION: &str = "Telehook-Partition";
const H_FAILED: &str = "Telehook-Failed-Attempts";
const H_ERROR: &str = "Telehook-Last-Error";
const H_DEAD_AT: &str = "Telehook-Dead-At";
/// The longest last-error text kept (in the state record and the dead letter's header).
const MAX_ERROR_LEN: usize = 512;

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn header_text(text: &str) -> String {
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    clean
}

impl QueueBackend for NatsQueue {
    fn partitions(&self) -> u32 {
        self.inner.settings.partitions
    }

    async fn enqueue(&self, update: &Update) -> Result<Enqueued, QueueError> {
        let s = &self.inner.settings;
        let update_id = update.update_id();
        if s.check_completed_on_enqueue
            && matches!(
                self.record(update_id).await?,
                Some(Record::Done | Record::Dead)
            )
        {
            return Ok(Enqueued::Duplicate);
        }
        // No `Nats-Msg-Id`: see "Why no message ids" in the crate docs. An enqueue repeated
        // after an unknown outcome may store a second copy; the reader skips it.
        let mut headers = HeaderMap::new();
        headers.insert(H_UPDATE_ID, update_id.to_string().as_str());
        let subject = s.partition_subject(partition_of(update, s.partitions));
        self.publish("enqueue", subject, headers, update.raw().clone())
            .await
            .map_err(|failure| self.publish_error(failure))?;
        Ok(Enqueued::Stored)
    }

    async fn take(
        &self,
        partition: u32,
        from: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<QueuedItem>, QueueError> {
        let Some(part) = self.inner.parts.get(partition as usize) else {
            return Err(NatsError::Invalid(format!(
                "partition {partition} of {}",
                self.inner.settings.partitions
            ))
            .into());
        };
        let limit = limit.clamp(1, 1_000);
        let mut part = part.lock().await;
        if from == 0 {
            // A partition (re)taken: hand out again, in order, everything still queued.
            lock(&self.inner.in_flight).clear_partition(partition);
            part.max_handed = 0;
        }
        // Items up to `max_handed` are held by the runner already (or done): not read again.
        let start = from.max(part.max_handed + 1);
        let deadline = Instant::now() + wait;
        let mut poll = Duration::from_millis(5);
        let messages = loop {
            let messages = self.read_from(partition, start, limit).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !messages.is_empty() || left.is_zero() {
                break messages;
            }
            // Nothing new: look again soon (5 ms, doubling up to 100 ms) until `wait` ran out.
            tokio::time::sleep(poll.min(left)).await;
            poll = (poll * 2).min(Duration::from_millis(100));
        };
        let mut batch = Vec::with_capacity(messages.len());
        {
            // Which of these updates had a copy handed out, noted BEFORE the records are read:
            // an ack writes its record first and forgets the copy after, so a copy whose first
            // copy is acked meanwhile is caught by one of the two checks, whatever the timing.
            let handed = lock(&self.inner.in_flight);
            for message in messages {
                let update_id =
                    update_id_of(Some(&message.headers), &message.payload).unwrap_or_default();
                let first = handed.seq_of(update_id);
                batch.push((message.sequence, update_id, message.payload, first));
            }
        }
        // The records (completed, dead-lettered, failed n times) of the batch, read at once.
        let records = futures_util::future::join_all(
            batch
                .iter()
                .map(|(_, update_id, _, _)| self.record(*update_id)),
        )
        .await;
        let mut items = Vec::with_capacity(batch.len());
        let mut done = Vec::new();
        for ((seq, update_id, body, handed_before), record) in batch.into_iter().zip(records) {
            let record = match record {
                Ok(record) => record,
                Err(e) => {
                    // Read these again with the next take (from the first one not handed out).
                    if items.is_empty() && done.is_empty() {
                        return Err(e.into());
                    }
                    break;
                }
            };
            part.max_handed = seq;
            let handed_now = lock(&self.inner.in_flight).seq_of(update_id);
            if handed_before
                .into_iter()
                .chain(handed_now)
                .any(|first| first != seq)
            {
                // A second copy of an update being handled (an enqueue repeated after an
                // unknown outcome): the first copy stays until it is acked, so this one goes.
                done.push(seq);
                continue;
            }
            let (failed, last_error) = match record {
                Some(Record::Done | Record::Dead) => {
                    done.push(seq);
                    continue;
                }
                Some(Record::Failed(n, e)) => (n, Some(e)),
                None => (0, None),
            };
            lock(&self.inner.in_flight).insert(
                seq,
                InFlight {
                    partition,
                    update_id,
                    body: body.clone(),
                    failed,
                    last_error,
                },
            );
            items.push(QueuedItem {
                seq,
                update_id,
                body: body.to_vec(),
                failed_attempts: failed,
            });
        }
        drop(part);
        for seq in done {
            // Handled, dead-lettered or being handled: only remove this copy. Best effort: the
            // batch is handed out already (its state moved on), and a copy left behind is
            // recognised and removed again by a later take.
            tracing::debug!(seq, "nats: skipping a copy of an update already taken");
            if let Err(e) = self.delete(&self.inner.main, seq).await {
                tracing::warn!(seq, error = %e, "nats: a skipped copy could not be removed yet");
            }
        }
        Ok(items)
    }

    async fn ack(&self, seq: u64, update_id: u64) -> Result<(), QueueError> {
        // First the record (a redelivery after a crash right here is skipped), then the item.
        self.put_record(update_id, DONE).await?;
        self.delete(&self.inner.main, seq).await?;
        lock(&self.inner.in_flight).remove(seq);
        Ok(())
    }

    async fn fail(&self, seq: u64, error: &str) -> Result<u32, QueueError> {
        let item = self.item(seq).await?;
        let failed = item.failed.saturating_add(1);
        let error = header_text(error);
        let record = format!("f{failed} {error}");
        self.put_record(item.update_id, record.as_bytes()).await?;
        if let Some(entry) = lock(&self.inner.in_flight).get_mut(seq) {
            entry.failed = failed;
            entry.last_error = Some(error);
        }
        Ok(failed)
    }

    async fn dead_letter(&self, seq: u64) -> Result<(), QueueError> {
        let item = self.item(seq).await?;
        let s = &self.inner.settings;
        let mut headers = HeaderMap::new();
        headers.insert(H_UPDATE_ID, item.update_id.to_string().as_str());
        headers.insert(H_PARTITION, item.partition.to_string().as_str());
        headers.insert(H_FAILED, item.failed.to_string().as_str());
        headers.insert(H_DEAD_AT, now_unix().to_string().as_str());
        if let Some(error) = &item.last_error {
            headers.insert(H_ERROR, header_text(error).as_str());
        }
        self.publish("dead letter", s.dead_subject(), headers, item.body.clone())
            .await
            .map_err(|failure| self.publish_error(failure))?;
        // Stored as a dead letter first, then marked, then removed from the queue: a crash in
        // between leaves a queued copy that the next reader skips.
        self.put_record(item.update_id, DEAD).await?;
        self.delete(&self.inner.main, seq).await?;
        lock(&self.inner.in_flight).remove(seq);
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut out = Vec::new();
        // A dead-lettering repeated after an unknown outcome may have stored two copies.
        let mut seen = std::collections::HashSet::new();
        let mut from = 1;
        while out.len() < limit {
            let Some((seq, letter)) = self.next_dead(from).await? else {
                break;
            };
            from = seq + 1;
            if seen.insert(letter.0.update_id) {
                out.push(letter.0);
            }
        }
        Ok(out)
    }

    async fn redrive(&self, update_ids: Option<Vec<u64>>) -> Result<u64, QueueError> {
        let s = &self.inner.settings;
        let wanted: Option<std::collections::HashSet<u64>> =
            update_ids.map(|ids| ids.into_iter().collect());
        let mut count = 0;
        let mut done = std::collections::HashSet::new();
        let mut from = 1;
        while let Some((seq, (letter, partition))) = self.next_dead(from).await? {
            from = seq + 1;
            if wanted
                .as_ref()
                .is_some_and(|ids| !ids.contains(&letter.update_id))
            {
                continue;
            }
            if done.contains(&letter.update_id) {
                // A second copy of a dead letter just queued again: only remove it.
                self.delete(&self.inner.dead, seq).await?;
                continue;
            }
            let partition = Update::from_bytes(letter.body.clone())
                .map(|u| partition_of(&u, s.partitions))
                .unwrap_or(partition.min(s.partitions - 1));
            let mut headers = HeaderMap::new();
            headers.insert(H_UPDATE_ID, letter.update_id.to_string().as_str());
            self.publish(
                "redrive",
                s.partition_subject(partition),
                headers,
                Bytes::from(letter.body),
            )
            .await
            .map_err(|failure| self.publish_error(failure))?;
            // Queued again: the attempt count starts over, and the record no longer says dead.
            self.put_record(letter.update_id, b"").await?;
            self.delete(&self.inner.dead, seq).await?;
            done.insert(letter.update_id);
            count += 1;
        }
        Ok(count)
    }

    async fn acquire(
        &self,
        partition: u32,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, QueueError> {
        self.acquire_lease(partition, owner, lease).await
    }

    async fn release(&self, partition: u32, owner: &str) -> Result<(), QueueError> {
        self.release_lease(partition, owner).await
    }

    async fn members(&self, owner: &str, lease: Duration) -> Result<u32, QueueError> {
        self.heartbeat(owner, lease).await
    }
}

impl NatsQueue {
    /// The dead letter at or after stream sequence `from`, with its partition.
    async fn next_dead(&self, from: u64) -> Result<Option<(u64, (DeadLetter, u32))>, NatsError> {
        let s = &self.inner.settings;
        let request = self
            .inner
            .dead
            .raw_message_builder()
            .sequence(from)
            .next_by_subject(s.dead_subject())
            .send();
        let message = match tokio::time::timeout(s.op_timeout, request).await {
            Err(_) => {
                return Err(NatsError::Timeout {
                    op: "read",
                    after: s.op_timeout,
                });
            }
            Ok(Ok(message)) => message,
            Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Ok(Err(e)) => return Err(NatsError::client("read", e)),
        };
        let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
        let update_id = update_id_of(Some(&message.headers), &message.payload).unwrap_or(0);
        let letter = DeadLetter {
            update_id,
            body: message.payload.to_vec(),
            failed_attempts: header(H_FAILED).and_then(|v| v.parse().ok()).unwrap_or(0),
            last_error: header(H_ERROR),
            dead_at: header(H_DEAD_AT).and_then(|v| v.parse().ok()).unwrap_or(0),
        };
        let partition = header(H_PARTITION)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Some((message.sequence, (letter, partition))))
    }

    /// What a failed publish of an update (queued, queued again, dead-lettered) returns.
    fn publish_error(&self, failure: PublishFailure) -> QueueError {
        match failure {
            PublishFailure::Full => QueueError::Full {
                capacity: self.inner.settings.capacity,
            },
            PublishFailure::WrongLastSequence => {
                NatsError::Invalid("unexpected sequence check".to_owned()).into()
            }
            PublishFailure::Nats(e) => e.into(),
        }
    }
}
