//! Where the runner gets updates from: [`UpdateSource`], and [`MemorySource`] for tests and
//! benchmarks.

use std::collections::VecDeque;
use std::future::Future;

use telehook_core::Update;

use crate::PollingError;

/// A queue of updates with `getUpdates` semantics: fetching with `offset` confirms every update
/// below it; unconfirmed updates are returned again.
pub trait UpdateSource: Send {
    /// Returns up to `limit` unconfirmed updates with `update_id >= offset`, waiting (long
    /// polling) while there are none, and confirms everything below `offset`. Transient errors
    /// are retried inside; an `Err` is fatal and stops the runner.
    fn fetch(
        &mut self,
        offset: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Update>, PollingError>> + Send;

    /// Confirms every update below `offset` without waiting for new ones (called when
    /// stopping).
    fn confirm(&mut self, offset: u64) -> impl Future<Output = Result<(), PollingError>> + Send;
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
    async fn fetch(
        &mut self,
        offset: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Update>, PollingError> {
        if let Some(offset) = offset {
            self.drop_below(offset);
        }
        if self.updates.is_empty() {
            std::future::pending::<()>().await;
        }
        Ok(self.updates.iter().take(limit).cloned().collect())
    }

    async fn confirm(&mut self, offset: u64) -> Result<(), PollingError> {
        self.drop_below(offset);
        Ok(())
    }
}
