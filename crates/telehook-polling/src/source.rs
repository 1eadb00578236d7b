//! Where the runner gets updates from: the [`UpdateSource`] trait, the [`Delivery`] it hands
//! out, and [`MemorySource`] for tests and benchmarks.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;

use telehook_core::Update;

/// One update as a source delivered it, at a `position` in the source's own sequence.
///
/// The runner confirms by position: confirming `offset` tells the source that every delivery
/// below it is handled. For `getUpdates` the position is the `update_id` (Telegram's
/// `offset`); a relay client numbers its deliveries itself. Positions grow in delivery order;
/// a source whose sequence starts over (Telegram picks a new `update_id` after a week without
/// updates) may deliver lower positions again, and the runner goes on from them.
#[derive(Debug, Clone)]
pub struct Delivery {
    position: u64,
    update: Update,
}

impl Delivery {
    /// A delivery whose position is its `update_id` (the `getUpdates` way).
    pub fn new(update: Update) -> Self {
        Self {
            position: update.update_id(),
            update,
        }
    }

    /// A delivery at a position of the source's own.
    pub fn at(position: u64, update: Update) -> Self {
        Self { position, update }
    }

    /// The position in the source's sequence.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The update.
    pub fn update(&self) -> &Update {
        &self.update
    }

    /// The update, taken out.
    pub fn into_update(self) -> Update {
        self.update
    }
}

impl From<Update> for Delivery {
    fn from(update: Update) -> Self {
        Self::new(update)
    }
}

/// A queue of updates with `getUpdates` semantics, which the runner drains: fetching with
/// `offset` confirms every delivery below it; unconfirmed deliveries may be returned again
/// (the runner recognises what it holds and skips it).
///
/// Implemented by `GetUpdatesSource` (Telegram's `getUpdates`), by telehook-relay's client,
/// and by [`MemorySource`]; implement it to feed the runner from anything else (a queue).
pub trait UpdateSource: Send {
    /// A fatal error: it stops the runner, which returns it.
    type Error: std::error::Error + Send + 'static;

    /// Returns up to `limit` deliveries at or after `offset`, waiting (a long poll) while there
    /// are none, and confirms everything below `offset`. Transient errors are retried inside
    /// (with a backoff); an `Err` is fatal. The runner drops this future when it stops, so any
    /// wait inside may be cut short.
    fn fetch(
        &mut self,
        offset: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Delivery>, Self::Error>> + Send;

    /// Confirms every delivery below `offset` without waiting for new ones (called when
    /// stopping, bounded by the stop deadline: the runner drops it when the deadline passes).
    fn confirm(&mut self, offset: u64) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// An in-memory [`UpdateSource`]: returns its updates like `getUpdates` would, and waits
/// forever once they are all confirmed. For tests and benchmarks.
#[derive(Debug, Default)]
pub struct MemorySource {
    updates: VecDeque<Update>,
}

impl MemorySource {
    /// A source holding `updates` (in `update_id` order).
    pub fn new(updates: impl IntoIterator<Item = Update>) -> Self {
        Self {
            updates: updates.into_iter().collect(),
        }
    }

    /// Updates not yet confirmed.
    pub fn unconfirmed(&self) -> usize {
        self.updates.len()
    }

    fn drop_below(&mut self, offset: u64) {
        while self.updates.front().is_some_and(|u| u.update_id() < offset) {
            self.updates.pop_front();
        }
    }
}

impl UpdateSource for MemorySource {
    type Error = Infallible;

    async fn fetch(
        &mut self,
        offset: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Delivery>, Infallible> {
        if let Some(offset) = offset {
            self.drop_below(offset);
        }
        if self.updates.is_empty() {
            std::future::pending::<()>().await;
        }
        Ok(self
            .updates
            .iter()
            .take(limit)
            .cloned()
            .map(Delivery::new)
            .collect())
    }

    async fn confirm(&mut self, offset: u64) -> Result<(), Infallible> {
        self.drop_below(offset);
        Ok(())
    }
}
