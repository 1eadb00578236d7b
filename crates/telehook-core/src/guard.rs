//! The redelivery guard: remembers which `update_id`s are running, were handled, or failed,
//! so a redelivered update never runs the handler twice.
//!
//! The store is a trait so that several instances can share one (Redis, a database); the
//! crate ships a bounded in-memory [`MemoryStore`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

/// A boxed future returned by [`RedeliveryStore`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store that failed (a lost connection to a shared store, say). The dispatcher answers
/// `503` so that Telegram delivers the update again later.
#[derive(Debug, Clone, thiserror::Error)]
#[error("redelivery store failed: {0}")]
pub struct StoreError(pub String);

/// The final outcome of an update: a redelivery gets this answer without running the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler finished successfully; `reply` is the webhook reply body it set, if any,
    /// so a redelivery (Telegram never saw our `200`) still carries it.
    Handled {
        /// The webhook reply body (JSON with `method`).
        reply: Option<Bytes>,
    },
    /// The handler failed as many times as the error policy allows; the update is acknowledged
    /// so that its chat is not blocked.
    GaveUp,
}

/// How one run of the handler ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResult {
    /// A final outcome: later deliveries get it at once.
    Done(Outcome),
    /// The handler failed and Telegram should deliver the update again; the count includes
    /// this run.
    Failed {
        /// Failed runs so far.
        failed_attempts: u32,
    },
}

/// What the store says about a delivery of an `update_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody is running it: the caller runs the handler and must call
    /// [`RedeliveryStore::finish`] afterwards.
    Run {
        /// Earlier runs that failed.
        failed_attempts: u32,
    },
    /// Another delivery is running it: wait with [`RedeliveryStore::wait`].
    InFlight,
    /// It was handled a moment ago.
    Done(Outcome),
}

/// Where the redelivery guard keeps its state. Implement it over a shared store to guard
/// several instances behind one load balancer.
pub trait RedeliveryStore: Send + Sync + 'static {
    /// Claims `update_id` for a run, or says why not.
    fn claim(&self, update_id: u64) -> StoreFuture<'_, Result<Claim, StoreError>>;

    /// Resolves when the run in flight for `update_id` ends (at once if none is in flight;
    /// `Failed { failed_attempts: 0 }` if the store knows nothing of it). The dispatcher bounds
    /// the wait with its timeout.
    fn wait(&self, update_id: u64) -> StoreFuture<'_, Result<RunResult, StoreError>>;

    /// Records how a claimed run ended and wakes everyone waiting for it.
    fn finish(&self, update_id: u64, result: RunResult) -> StoreFuture<'_, Result<(), StoreError>>;
}

/// The default [`MemoryStore`] capacity: finished `update_id`s remembered.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// The default [`MemoryStore`] retention for a finished `update_id`. Telegram's redeliveries
/// come seconds to a few minutes apart, so this covers several of them.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(15 * 60);

/// A finished run, remembered for redeliveries.
struct Finished {
    result: RunResult,
    at: Instant,
}

/// Hashes `update_id`s: one multiply with a per-process random key. Ids reach the store only
/// with the right secret token, and SipHash's strength is not needed for them.
#[derive(Clone)]
struct IdHasherBuilder(u64);

impl Default for IdHasherBuilder {
    fn default() -> Self {
        use std::hash::BuildHasher as _;
        Self(std::collections::hash_map::RandomState::new().hash_one(0x7e1e_400c_u64) | 1)
    }
}

impl std::hash::BuildHasher for IdHasherBuilder {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            key: self.0,
            hash: 0,
        }
    }
}

struct IdHasher {
    key: u64,
    hash: u64,
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let mixed = (self.hash ^ n)
            .wrapping_add(self.key)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.hash = mixed ^ (mixed >> 29);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

type IdMap<V> = HashMap<u64, V, IdHasherBuilder>;

struct Inner {
    /// Runs in flight; `done` is created by the first redelivery that waits for one (most runs
    /// have none). Bounded by the dispatcher's `max_in_flight`.
    in_flight: IdMap<Option<watch::Sender<Option<RunResult>>>>,
    /// Finished runs, newest generation. When it holds half the capacity it becomes `older`
    /// and the previous `older` is dropped whole: eviction without touching single old entries.
    newer: IdMap<Finished>,
    older: IdMap<Finished>,
}

/// A bounded in-memory [`RedeliveryStore`]: remembers the last `capacity / 2` to `capacity`
/// finished updates, each for at most `retention`. Updates in flight are always remembered (the
/// dispatcher bounds how many there are).
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
            .field("finished", &(inner.newer.len() + inner.older.len()))
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_RETENTION)
    }
}

impl MemoryStore {
    /// A store remembering up to `capacity` finished updates (at least 2) for `retention`.
    pub fn new(capacity: usize, retention: Duration) -> Self {
        Self {
            capacity: capacity.max(2),
            retention,
            inner: Mutex::new(Inner {
                in_flight: HashMap::default(),
                newer: HashMap::default(),
                older: HashMap::default(),
            }),
        }
    }

    /// Number of `update_id`s remembered, in flight or finished (expired ones may still count
    /// until their generation is dropped).
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner.in_flight.len() + inner.newer.len() + inner.older.len()
    }

    /// True if nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The finished run of `update_id`, if remembered and not expired; removes it.
    fn take_finished(&self, inner: &mut Inner, update_id: u64) -> Option<RunResult> {
        let finished = inner
            .newer
            .remove(&update_id)
            .or_else(|| inner.older.remove(&update_id))?;
        (finished.at.elapsed() < self.retention).then_some(finished.result)
    }

    fn claim_now(&self, update_id: u64) -> Claim {
        let mut inner = self.lock();
        if inner.in_flight.contains_key(&update_id) {
            return Claim::InFlight;
        }
        let failed_attempts = match self.take_finished(&mut inner, update_id) {
            Some(RunResult::Done(outcome)) => {
                // Put it back: later redeliveries get the same answer.
                let at = Instant::now();
                inner.newer.insert(
                    update_id,
                    Finished {
                        result: RunResult::Done(outcome.clone()),
                        at,
                    },
                );
                return Claim::Done(outcome);
            }
            Some(RunResult::Failed { failed_attempts }) => failed_attempts,
            None => 0,
        };
        inner.in_flight.insert(update_id, None);
        Claim::Run { failed_attempts }
    }

    fn finish_now(&self, update_id: u64, result: RunResult) {
        let mut inner = self.lock();
        if let Some(Some(done)) = inner.in_flight.remove(&update_id) {
            done.send_replace(Some(result.clone()));
        }
        if inner.newer.len() >= self.capacity / 2 {
            let newer = std::mem::take(&mut inner.newer);
            let dropped = std::mem::replace(&mut inner.older, newer);
            // Drop the oldest generation outside the lock.
            drop(inner);
            drop(dropped);
            inner = self.lock();
        }
        inner.older.remove(&update_id);
        inner.newer.insert(
            update_id,
            Finished {
                result,
                at: Instant::now(),
            },
        );
    }
}

impl RedeliveryStore for MemoryStore {
    fn claim(&self, update_id: u64) -> StoreFuture<'_, Result<Claim, StoreError>> {
        let claim = self.claim_now(update_id);
        Box::pin(std::future::ready(Ok(claim)))
    }

    fn wait(&self, update_id: u64) -> StoreFuture<'_, Result<RunResult, StoreError>> {
        let mut rx = {
            let mut inner = self.lock();
            match inner.in_flight.get_mut(&update_id) {
                Some(done) => done
                    .get_or_insert_with(|| watch::channel(None).0)
                    .subscribe(),
                None => {
                    let found = inner
                        .newer
                        .get(&update_id)
                        .or_else(|| inner.older.get(&update_id))
                        .filter(|f| f.at.elapsed() < self.retention)
                        .map(|f| f.result.clone());
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
                Err(_) => Err(StoreError(format!(
                    "the run of update {update_id} ended without a result"
                ))),
            }
        })
    }

    fn finish(&self, update_id: u64, result: RunResult) -> StoreFuture<'_, Result<(), StoreError>> {
        self.finish_now(update_id, result);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handled() -> RunResult {
        RunResult::Done(Outcome::Handled { reply: None })
    }

    #[tokio::test]
    async fn second_claim_sees_in_flight_then_done() {
        let store = MemoryStore::default();
        assert_eq!(
            store.claim(1).await.unwrap(),
            Claim::Run { failed_attempts: 0 }
        );
        assert_eq!(store.claim(1).await.unwrap(), Claim::InFlight);
        store.finish(1, handled()).await.unwrap();
        assert_eq!(
            store.claim(1).await.unwrap(),
            Claim::Done(Outcome::Handled { reply: None })
        );
    }

    #[tokio::test]
    async fn failed_runs_are_counted_across_claims() {
        let store = MemoryStore::default();
        store.claim(5).await.unwrap();
        store
            .finish(5, RunResult::Failed { failed_attempts: 1 })
            .await
            .unwrap();
        assert_eq!(
            store.claim(5).await.unwrap(),
            Claim::Run { failed_attempts: 1 }
        );
    }

    #[tokio::test]
    async fn waiter_gets_the_result_of_the_run_in_flight() {
        let store = std::sync::Arc::new(MemoryStore::default());
        store.claim(9).await.unwrap();
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.wait(9).await })
        };
        tokio::task::yield_now().await;
        store.finish(9, handled()).await.unwrap();
        assert_eq!(waiter.await.unwrap().unwrap(), handled());
    }

    #[tokio::test]
    async fn capacity_bounds_finished_entries_oldest_first() {
        let store = MemoryStore::new(4, Duration::from_secs(60));
        for id in 1..=9 {
            store.claim(id).await.unwrap();
            store.finish(id, handled()).await.unwrap();
            assert!(store.len() <= 4, "after {id}: {} remembered", store.len());
        }
        assert_eq!(
            store.claim(1).await.unwrap(),
            Claim::Run { failed_attempts: 0 }
        );
        assert!(matches!(store.claim(9).await.unwrap(), Claim::Done(_)));
        assert!(matches!(store.claim(8).await.unwrap(), Claim::Done(_)));
    }

    #[tokio::test]
    async fn in_flight_entries_are_never_evicted() {
        let store = MemoryStore::new(1, Duration::ZERO);
        store.claim(1).await.unwrap();
        for id in 2..=4 {
            store.claim(id).await.unwrap();
            store.finish(id, handled()).await.unwrap();
        }
        assert_eq!(store.claim(1).await.unwrap(), Claim::InFlight);
    }

    #[tokio::test]
    async fn retention_forgets_old_entries() {
        let store = MemoryStore::new(100, Duration::from_millis(20));
        store.claim(1).await.unwrap();
        store.finish(1, handled()).await.unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            store.claim(1).await.unwrap(),
            Claim::Run { failed_attempts: 0 }
        );
    }

    #[tokio::test]
    async fn repeated_failures_keep_one_entry_and_their_count() {
        let store = MemoryStore::new(4, Duration::from_secs(60));
        for attempt in 1..=1_000 {
            store.claim(1).await.unwrap();
            store
                .finish(
                    1,
                    RunResult::Failed {
                        failed_attempts: attempt,
                    },
                )
                .await
                .unwrap();
        }
        assert_eq!(store.len(), 1);
        assert_eq!(
            store.claim(1).await.unwrap(),
            Claim::Run {
                failed_attempts: 1_000
            }
        );
    }

    #[tokio::test]
    async fn a_done_update_stays_done_for_every_redelivery() {
        let store = MemoryStore::new(100, Duration::from_secs(60));
        store.claim(3).await.unwrap();
        store.finish(3, handled()).await.unwrap();
        for _ in 0..3 {
            assert!(matches!(store.claim(3).await.unwrap(), Claim::Done(_)));
        }
    }
}
