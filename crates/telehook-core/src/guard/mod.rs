//! The redelivery guard: remembers which updates are running, were handled, or failed, so a
//! redelivered update never runs the handler twice.
//!
//! An update is known by its [`UpdateKey`]: its `update_id` and a hash of its body. A
//! redelivery is the same update sent again, byte for byte (the official server stores the
//! update's JSON and sends that text again). An equal `update_id` with a different body is a
//! different update: Telegram picks a random `update_id` after a bot received nothing for a
//! week, so an id still remembered here can come back on a new update
//! (<https://core.telegram.org/bots/api#update>, `update_id`).
//!
//! The store is a trait so that several instances can share one (Redis, a database); the
//! crate ships a bounded in-memory [`MemoryStore`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

/// A boxed future returned by [`RedeliveryStore`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store that failed (a lost connection to a shared store, say). The dispatcher answers
/// `503` so that Telegram delivers the update again later.
#[derive(Debug, Clone, thiserror::Error)]
#[error("redelivery store failed: {message}")]
pub struct StoreError {
    message: String,
    #[source]
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StoreError {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// A failure described by `message`, caused by `source` (kept as the error's source).
    pub fn with_source(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Arc::from(source.into())),
        }
    }

    /// What failed.
    pub fn message(&self) -> &str {
        &self.message
    }
}

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

/// What identifies one update for the guard: its `update_id` and a 64-bit hash of its body
/// (XXH3, stable across builds and machines, so instances sharing a store agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct UpdateKey {
    /// The update's `update_id`.
    pub update_id: u64,
    /// XXH3-64 of the body exactly as received.
    pub body_hash: u64,
}

impl UpdateKey {
    /// A key from its parts, as a shared store kept them.
    pub fn from_parts(update_id: u64, body_hash: u64) -> Self {
        Self {
            update_id,
            body_hash,
        }
    }

    /// The key of an update with this id and body.
    pub fn new(update_id: u64, body: &[u8]) -> Self {
        Self {
            update_id,
            body_hash: xxhash_rust::xxh3::xxh3_64(body),
        }
    }
}

impl fmt::Display for UpdateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (body {:016x})", self.update_id, self.body_hash)
    }
}

/// What the store says about a delivery of an update.
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
    /// Claims the update for a run, or says why not. A remembered `update_id` with another
    /// body hash is another update: claim it as new.
    fn claim(&self, key: UpdateKey) -> StoreFuture<'_, Result<Claim, StoreError>>;

    /// Resolves when the run in flight for the update ends (at once if none is in flight;
    /// `Failed { failed_attempts: 0 }` if the store knows nothing of it). The dispatcher bounds
    /// the wait with its timeout.
    fn wait(&self, key: UpdateKey) -> StoreFuture<'_, Result<RunResult, StoreError>>;

    /// Records how a claimed run ended and wakes everyone waiting for it.
    fn finish(&self, key: UpdateKey, result: RunResult) -> StoreFuture<'_, Result<(), StoreError>>;

    /// [`RedeliveryStore::claim`] for a store that answers without waiting (one in memory):
    /// `Some(answer)`, and the dispatcher needs no boxed future for it. The default, `None`,
    /// makes the dispatcher call [`RedeliveryStore::claim`].
    fn claim_ready(&self, key: UpdateKey) -> Option<Result<Claim, StoreError>> {
        let _ = key;
        None
    }

    /// [`RedeliveryStore::finish`] for a store that records without waiting: `Ok(answer)`,
    /// or `Err(result)` handed back (the default), and the dispatcher calls
    /// [`RedeliveryStore::finish`] with it.
    #[allow(clippy::result_large_err)]
    fn finish_ready(
        &self,
        key: UpdateKey,
        result: RunResult,
    ) -> Result<Result<(), StoreError>, RunResult> {
        let _ = key;
        Err(result)
    }
}

mod memory;

pub use memory::{DEFAULT_CAPACITY, DEFAULT_RETENTION, MAX_CAPACITY, MemoryStore};
