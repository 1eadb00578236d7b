//! Partition leases and worker heartbeats, on the lease and members streams.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use telehook_queue::QueueError;

use crate::error::{NatsError, timed};
use crate::queue::{NatsQueue, PublishFailure, lock};

const H_EXPECTED_SEQ: &str = "Nats-Expected-Last-Sequence";

impl NatsQueue {
    /// [`QueueBackend::acquire`](telehook_queue::QueueBackend::acquire): takes or renews the
    /// lease on `partition` for `owner`, first setting the lease stream's expiry to `lease`.
    pub(crate) async fn acquire_lease(
        &self,
        partition: u32,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, QueueError> {
        self.set_age(&self.inner.leases, &self.inner.lease_age, lease, true)
            .await?;
        let subject = self.inner.settings.lease_subject(partition);
        let payload = Bytes::copy_from_slice(owner.as_bytes());
        // Free (no lease message, or a release's tombstone) or already the owner's: renewed.
        let claimable = |m: &jetstream::message::StreamMessage| {
            m.payload.is_empty() || m.payload == owner.as_bytes()
        };
        self.lease_write(subject, payload, claimable).await
    }

    /// [`QueueBackend::release`](telehook_queue::QueueBackend::release): ends `owner`'s lease on
    /// `partition`, if it still holds it.
    pub(crate) async fn release_lease(
        &self,
        partition: u32,
        owner: &str,
    ) -> Result<(), QueueError> {
        let subject = self.inner.settings.lease_subject(partition);
        let last = self
            .last_message(&self.inner.leases, subject.clone())
            .await?;
        if last.is_none_or(|m| m.payload != owner.as_bytes()) {
            return Ok(());
        }
        // A tombstone (an empty message), only over the owner's own lease.
        let mine = |m: &jetstream::message::StreamMessage| m.payload == owner.as_bytes();
        self.lease_write(subject, Bytes::new(), mine).await?;
        Ok(())
    }

    /// [`QueueBackend::members`](telehook_queue::QueueBackend::members): `owner`'s heartbeat
    /// (its end with a zero `lease`), then the live members counted.
    pub(crate) async fn heartbeat(&self, owner: &str, lease: Duration) -> Result<u32, QueueError> {
        let s = &self.inner.settings;
        if lease.is_zero() {
            // Leaving: the heartbeat ends now.
            timed(
                "purge",
                s.op_timeout,
                self.inner
                    .members
                    .purge()
                    .filter(s.member_subject(owner))
                    .into_future(),
            )
            .await?;
            return self.count_members().await;
        }
        self.set_age(&self.inner.members, &self.inner.member_age, lease, false)
            .await?;
        match self
            .publish(
                "heartbeat",
                s.member_subject(owner),
                HeaderMap::new(),
                Bytes::copy_from_slice(owner.as_bytes()),
            )
            .await
        {
            Ok(_) => {}
            Err(PublishFailure::Nats(e)) => return Err(e.into()),
            Err(_) => {
                return Err(NatsError::Invalid("the members stream refused".to_owned()).into());
            }
        }
        self.count_members().await
    }

    /// Writes `payload` as the lease on `subject` if the last message there (none passes
    /// too: no lease) passes `allowed`; whether it was written.
    ///
    /// A compare-and-set on nats-server 2.9 needs care: `Nats-Expected-Last-Subject-Sequence`
    /// is checked, when clustered, only by the leader before it proposes, against what it has
    /// applied — claims racing before the first one is applied all pass (the attack tests saw
    /// up to six owners told they hold one partition) — and its value 0 is checked by each
    /// replica against its own copy, while each replica expires leases on its own timer. The
    /// stream-wide `Nats-Expected-Last-Sequence` is checked by every replica as it applies the
    /// message, and no expiry moves it: read it, then the subject's lease, then write
    /// expecting it — written only if nothing was written since the lease was seen. Another
    /// partition's write in between fails it too: look again, a few times, after a pause with
    /// jitter; if other writers still win every time, that is an error (the caller retries
    /// soon, as after any engine error), never "held by someone else".
    async fn lease_write(
        &self,
        subject: String,
        payload: Bytes,
        allowed: impl Fn(&jetstream::message::StreamMessage) -> bool,
    ) -> Result<bool, QueueError> {
        // Every holder renews every third of a lease, and each write must follow the last
        // one: at 16 partitions on 4 workers, 6 tries lost to the others now and then.
        const TRIES: u64 = 16;
        let leases = &self.inner.leases;
        for attempt in 0..TRIES {
            let stream_last = self.last_sequence(leases).await?;
            let last = self.last_message(leases, subject.clone()).await?;
            if last.as_ref().is_some_and(|m| !allowed(m)) {
                return Ok(false);
            }
            let mut headers = HeaderMap::new();
            headers.insert(H_EXPECTED_SEQ, stream_last.to_string().as_str());
            match self
                .publish("lease", subject.clone(), headers, payload.clone())
                .await
            {
                Ok(_) => return Ok(true),
                Err(PublishFailure::WrongLastSequence) => {
                    // Something was written meanwhile; a pause with jitter spreads the racing
                    // writers (a fixed one made them collide again).
                    let jitter = xxhash_rust::xxh3::xxh3_64(
                        format!("{subject}{attempt}{:?}", Instant::now()).as_bytes(),
                    ) % (4 * (attempt + 1));
                    tokio::time::sleep(Duration::from_millis(1 + jitter)).await;
                }
                Err(PublishFailure::Full) => {
                    return Err(
                        NatsError::Invalid("the lease stream refused a lease".to_owned()).into(),
                    );
                }
                Err(PublishFailure::Nats(e)) => return Err(e.into()),
            }
        }
        Err(NatsError::Invalid(format!(
            "lease write on {subject}: other lease writes won {TRIES} times in a row; retry"
        ))
        .into())
    }

    /// The last sequence `stream` assigned, from its leader.
    async fn last_sequence(&self, stream: &stream::Stream) -> Result<u64, NatsError> {
        let s = &self.inner.settings;
        let mut stream = stream.clone();
        let info = timed("stream info", s.op_timeout, stream.info()).await?;
        Ok(info.state.last_sequence)
    }

    /// Live heartbeats: subjects of the members stream holding a message.
    async fn count_members(&self) -> Result<u32, QueueError> {
        let s = &self.inner.settings;
        let subjects = self
            .subject_counts(&self.inner.members, format!("{}.member.*", s.name))
            .await?;
        let live = subjects.iter().filter(|(_, n)| *n > 0).count();
        Ok(u32::try_from(live).unwrap_or(u32::MAX).max(1))
    }

    /// Sets the expiry of the lease or members stream to `age` if it is another.
    async fn set_age(
        &self,
        stream: &stream::Stream,
        current: &Mutex<Duration>,
        age: Duration,
        leases: bool,
    ) -> Result<(), NatsError> {
        let age = age.max(Duration::from_millis(100));
        if *lock(current) == age {
            return Ok(());
        }
        let s = &self.inner.settings;
        let config = if leases {
            s.lease_config(age)
        } else {
            s.members_config(age)
        };
        debug_assert_eq!(config.name, stream.cached_info().config.name);
        timed(
            "stream update",
            s.op_timeout,
            self.inner.js.update_stream(config),
        )
        .await?;
        *lock(current) = age;
        Ok(())
    }
}
