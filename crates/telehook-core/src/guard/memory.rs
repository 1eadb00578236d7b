//! [`MemoryStore`]: the bounded in-memory redelivery store every dispatcher starts with.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Claim, RedeliveryStore, RunResult, StoreError, StoreFuture, UpdateKey};

/// The default [`MemoryStore`] capacity: finished `update_id`s remembered.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// The largest [`MemoryStore`] capacity: 16 Mi (16,777,216) finished `update_id`s. The slot
/// table is allocated whole on the first finished run, at about 64 bytes a slot, so this is
/// about 1 GiB: enough to remember 15 minutes of a bot receiving ~18,000 updates a second.
/// A bot needing more shares a [`RedeliveryStore`] of its own instead. Larger capacities are
/// refused by [`WebhookBuilder::build`](crate::WebhookBuilder::build) and lowered to this one
/// by [`MemoryStore::new`].
pub const MAX_CAPACITY: usize = 16 * 1024 * 1024;
/// The default [`MemoryStore`] retention for a finished `update_id`. Telegram's redeliveries
/// come seconds to a few minutes apart, so this covers several of them.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(15 * 60);

/// Hashes an [`UpdateKey`] by mixing its two words (FxHash's step): the body hash is already
/// XXH3, so SipHash's work would buy nothing. The map it serves holds only the runs in flight,
/// which the dispatcher bounds (`max_in_flight`), so crafted collisions cannot grow a probe
/// beyond that bound.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyHash = BuildHasherDefault<KeyHasher>;

/// A finished run, remembered for redeliveries.
struct Finished {
    result: RunResult,
    at: Instant,
}

/// A finished run in its slot, remembered for redeliveries.
struct Slot {
    key: UpdateKey,
    finished: Finished,
}

struct Inner {
    /// Runs in flight; `done` is created by the first redelivery that waits for one (most runs
    /// have none). Bounded by the dispatcher's `max_in_flight`.
    in_flight: HashMap<UpdateKey, Option<watch::Sender<Option<RunResult>>>, KeyHash>,
    /// Finished runs, direct-mapped: `update_id % capacity` names the slot. Telegram numbers a
    /// bot's updates one after another, so the last `capacity` updates each have a slot of
    /// their own, and a new update overwrites the one `capacity` updates before it: eviction
    /// costs one slot write, the table never grows, rehashes or drops a batch at once.
    /// Allocated on the first finished run.
    slots: Vec<Option<Slot>>,
    /// Slots holding a run.
    occupied: usize,
}

/// A bounded in-memory [`RedeliveryStore`].
///
/// Remembers the last `capacity` finished updates of a bot, each for at most `retention`.
/// It is a direct-mapped table (`update_id % capacity` picks the slot), which suits Telegram's
/// consecutive `update_id`s: two ids share a slot only if they are a multiple of `capacity`
/// apart, and then the newer one replaces the older. Memory: about 64 bytes per slot plus the
/// webhook reply kept for each remembered update (a redelivery of a handled update is answered
/// with the same reply, because Telegram never received the first answer). Updates in flight
/// are always remembered (the dispatcher bounds how many there are).
pub struct MemoryStore {
    capacity: usize,
    retention: Duration,
    inner: Mutex<Inner>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemoryStore")
            .field("capacity", &self.capacity)
            .field("retention", &self.retention)
            .field("in_flight", &inner.in_flight.len())
            .field("finished", &inner.occupied)
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_RETENTION)
    }
}

impl MemoryStore {
    /// A store remembering up to `capacity` finished updates (at least 1, at most
    /// [`MAX_CAPACITY`]) for `retention`.
    pub fn new(capacity: usize, retention: Duration) -> Self {
        Self {
            capacity: capacity.clamp(1, MAX_CAPACITY),
            retention,
            inner: Mutex::new(Inner {
                in_flight: HashMap::default(),
                slots: Vec::new(),
                occupied: 0,
            }),
        }
    }

    /// Updates remembered: in flight plus finished (including finished ones past their
    /// retention that no newer update has replaced yet).
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner.in_flight.len() + inner.occupied
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn slot_index(&self, update_id: u64) -> usize {
        // The remainder is below `capacity`, a usize.
        (update_id % self.capacity as u64) as usize
    }

    /// The finished run of the update, if it is remembered and within the retention.
    fn finished<'a>(&self, inner: &'a Inner, key: UpdateKey) -> Option<&'a RunResult> {
        match inner.slots.get(self.slot_index(key.update_id)) {
            Some(Some(slot)) if slot.key == key && slot.finished.at.elapsed() < self.retention => {
                Some(&slot.finished.result)
            }
            Some(Some(slot)) if slot.key.update_id == key.update_id => {
                if slot.key != key {
                    tracing::info!(
                        update_id = key.update_id,
                        "an update_id seen before came with a different body: a new update \
                         (Telegram reuses ids after a quiet week), handling it"
                    );
                }
                None
            }
            _ => None,
        }
    }

    fn claim_now(&self, key: UpdateKey) -> Claim {
        let mut inner = self.lock();
        if inner.in_flight.contains_key(&key) {
            return Claim::InFlight;
        }
        let failed_attempts = match self.finished(&inner, key) {
            // Left in its slot: later redeliveries get the same answer.
            Some(RunResult::Done(outcome)) => return Claim::Done(outcome.clone()),
            Some(RunResult::Failed { failed_attempts }) => *failed_attempts,
            None => 0,
        };
        inner.in_flight.insert(key, None);
        Claim::Run { failed_attempts }
    }

    fn finish_now(&self, key: UpdateKey, result: RunResult) {
        let index = self.slot_index(key.update_id);
        let mut inner = self.lock();
        if let Some(Some(done)) = inner.in_flight.remove(&key) {
            done.send_replace(Some(result.clone()));
        }
        if inner.slots.is_empty() {
            inner.slots.resize_with(self.capacity, || None);
        }
        let slot = Some(Slot {
            key,
            finished: Finished {
                result,
                at: Instant::now(),
            },
        });
        let replaced = std::mem::replace(&mut inner.slots[index], slot);
        if replaced.is_none() {
            inner.occupied += 1;
        }
        // The replaced run (and its reply) is freed outside the lock.
        drop(inner);
        drop(replaced);
    }
}

impl RedeliveryStore for MemoryStore {
    fn claim(&self, key: UpdateKey) -> StoreFuture<'_, Result<Claim, StoreError>> {
        let claim = self.claim_now(key);
        Box::pin(std::future::ready(Ok(claim)))
    }

    fn wait(&self, key: UpdateKey) -> StoreFuture<'_, Result<RunResult, StoreError>> {
        let mut rx = {
            let mut inner = self.lock();
            match inner.in_flight.get_mut(&key) {
                Some(done) => done
                    .get_or_insert_with(|| watch::channel(None).0)
                    .subscribe(),
                None => {
                    let found = self.finished(&inner, key).cloned();
                    let result = found.unwrap_or(RunResult::Failed { failed_attempts: 0 });
                    return Box::pin(std::future::ready(Ok(result)));
                }
            }
        };
        Box::pin(async move {
            match rx.wait_for(Option::is_some).await {
                Ok(result) => Ok(result
                    .clone()
                    .unwrap_or(RunResult::Failed { failed_attempts: 0 })),
                Err(e) => Err(StoreError::with_source(
                    format!("the run of update {key} ended without a result"),
                    e,
                )),
            }
        })
    }

    fn finish(&self, key: UpdateKey, result: RunResult) -> StoreFuture<'_, Result<(), StoreError>> {
        self.finish_now(key, result);
        Box::pin(std::future::ready(Ok(())))
    }

    fn claim_ready(&self, key: UpdateKey) -> Option<Result<Claim, StoreError>> {
        Some(Ok(self.claim_now(key)))
    }

    fn finish_ready(
        &self,
        key: UpdateKey,
        result: RunResult,
    ) -> Result<Result<(), StoreError>, RunResult> {
        self.finish_now(key, result);
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::Outcome;

    fn key(update_id: u64) -> UpdateKey {
        UpdateKey::new(
            update_id,
            format!("{{\"update_id\":{update_id}}}").as_bytes(),
        )
    }

    fn handled() -> RunResult {
        RunResult::Done(Outcome::Handled { reply: None })
    }

    #[tokio::test]
    async fn second_claim_sees_in_flight_then_done() {
        let store = MemoryStore::default();
        assert_eq!(
            store.claim(key(1)).await.unwrap(),
            Claim::Run { failed_attempts: 0 }
        );
        assert_eq!(store.claim(key(1)).await.unwrap(), Claim::InFlight);
        store.finish(key(1), handled()).await.unwrap();
        assert_eq!(
            store.claim(key(1)).await.unwrap(),
            Claim::Done(Outcome::Handled { reply: None })
        );
    }

    #[tokio::test]
    async fn failed_runs_are_counted_across_claims() {
        let store = MemoryStore::default();
        store.claim(key(5)).await.unwrap();
        store
            .finish(key(5), RunResult::Failed { failed_attempts: 1 })
            .await
            .unwrap();
        assert_eq!(
            store.claim(key(5)).await.unwrap(),
            Claim::Run { failed_attempts: 1 }
        );
    }

    #[tokio::test]
    async fn waiter_gets_the_result_of_the_run_in_flight() {
        let store = std::sync::Arc::new(MemoryStore::default());
        store.claim(key(9)).await.unwrap();
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.wait(key(9)).await })
        };
        tokio::task::yield_now().await;
        store.finish(key(9), handled()).await.unwrap();
        assert_eq!(waiter.await.unwrap().unwrap(), handled());
    }

    #[tokio::test]
    async fn capacity_bounds_finished_entries_oldest_first() {
        let store = MemoryStore::new(4, Duration::from_secs(60));
        for id in 1..=9 {
            store.claim(key(id)).await.unwrap();
            store.finish(key(id), handled()).await.unwrap();
            assert!(store.len() <= 4, "after {id}: {} remembered", store.len());
        }
        assert_eq!(
            store.claim(key(1)).await.unwrap(),
            Claim::Run { failed_attempts: 0 }
        );
        assert!(matches!(store.claim(key(9)).await.unwrap(), Claim::Done(_)));
        assert!(matches!(store.claim(key(8)).await.unwrap(), Claim::Done(_)));
    }

    #[tokio::test]
    async fn consecutive_ids_keep_their_own_slots_and_ids_capacity_apart_share_one() {
        let store = MemoryStore::new(8, Duration::from_secs(60));
        for id in 100..108 {
            store.claim(key(id)).await.unwrap();
            store.finish(key(id), handled()).await.unwrap();
        }
        for id in 100..108 {
            assert!(
                matches!(store.claim(key(id)).await.unwrap(), Claim::Done(_)),
                "{id}"
            );
        }
        assert_eq!(store.len(), 8);
        // 108 takes 100's slot: 100 is forgotten, 101..=108 are remembered.
        store.claim(key(108)).await.unwrap();
        store.finish(key(108), handled()).await.unwrap();
        assert_eq!(store.len(), 8);
        assert!(matches!(
            store.claim(key(108)).await.unwrap(),
            Claim::Done(_)
        ));
        assert!(matches!(
            store.claim(key(101)).await.unwrap(),
            Claim::Done(_)
        ));
        assert_eq!(
            store.claim(key(100)).await.unwrap(),
            Claim::Run { failed_attempts: 0 }
        );
    }

    #[tokio::test]
    async fn a_waiter_after_the_run_gets_the_remembered_result() {
        let store = MemoryStore::new(8, Duration::from_secs(60));
        store.claim(key(3)).await.unwrap();
        store
            .finish(key(3), RunResult::Failed { failed_attempts: 2 })
            .await
            .unwrap();
        assert_eq!(
            store.wait(key(3)).await.unwrap(),
            RunResult::Failed { failed_attempts: 2 }
        );
    }

    #[tokio::test]
    async fn in_flight_entries_are_never_evicted() {
        let store = MemoryStore::new(1, Duration::ZERO);
        store.claim(key(1)).await.unwrap();
        for id in 2..=4 {
            store.claim(key(id)).await.unwrap();
            store.finish(key(id), handled()).await.unwrap();
        }
        assert_eq!(store.claim(key(1)).await.unwrap(), Claim::InFlight);
    }

    #[tokio::test]
    async fn retention_forgets_old_entries() {
        let store = MemoryStore::new(100, Duration::from_millis(20));
        store.claim(key(1)).await.unwrap();
        store.finish(key(1), handled()).await.unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            store.claim(key(1)).await.unwrap(),
            Claim::Run { failed_attempts: 0 }
        );
    }

    #[tokio::test]
    async fn repeated_failures_keep_one_entry_and_their_count() {
        let store = MemoryStore::new(4, Duration::from_secs(60));
        for attempt in 1..=1_000 {
            store.claim(key(1)).await.unwrap();
            store
                .finish(
                    key(1),
                    RunResult::Failed {
                        failed_attempts: attempt,
                    },
                )
                .await
                .unwrap();
        }
        assert_eq!(store.len(), 1);
        assert_eq!(
            store.claim(key(1)).await.unwrap(),
            Claim::Run {
                failed_attempts: 1_000
            }
        );
    }

    #[tokio::test]
    async fn a_done_update_stays_done_for_every_redelivery() {
        let store = MemoryStore::new(100, Duration::from_secs(60));
        store.claim(key(3)).await.unwrap();
        store.finish(key(3), handled()).await.unwrap();
        for _ in 0..3 {
            assert!(matches!(store.claim(key(3)).await.unwrap(), Claim::Done(_)));
        }
    }

    #[tokio::test]
    async fn an_equal_id_with_another_body_is_a_new_update() {
        let store = MemoryStore::new(100, Duration::from_secs(60));
        let first = UpdateKey::new(7, br#"{"update_id":7,"message":{"text":"old"}}"#);
        let reused = UpdateKey::new(7, br#"{"update_id":7,"message":{"text":"new"}}"#);
        assert_ne!(first, reused);
        store.claim(first).await.unwrap();
        // While the first runs, the other update with its id is not a redelivery of it.
        assert_eq!(
            store.claim(reused).await.unwrap(),
            Claim::Run { failed_attempts: 0 }
        );
        store.finish(first, handled()).await.unwrap();
        store.finish(reused, handled()).await.unwrap();
        assert!(matches!(store.claim(reused).await.unwrap(), Claim::Done(_)));
        // The newer update took the id's slot.
        assert_eq!(
            store.claim(first).await.unwrap(),
            Claim::Run { failed_attempts: 0 }
        );
    }

    #[test]
    fn the_body_hash_is_stable_across_builds() {
        // XXH3-64 of a fixed body: a shared store must agree across instances and versions.
        assert_eq!(UpdateKey::new(1, b"").body_hash, 0x2d06_8005_38d3_94c2);
    }
}
