//! Storage backends behind one trait, and the wake-up signal waiting clients subscribe to.

use crate::channel::ChannelName;
use crate::error::StoreError;
use std::future::Future;
use std::pin::Pin;

mod notifier;
mod page;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use notifier::{Batch, Notifier, Wake};
pub use page::{Page, StoredUpdate};

/// A boxed future returned by [`Store`] methods, so the trait can be used as `dyn Store`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// An update to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpdate {
    /// The update as compact JSON text.
    pub json: String,
    /// Its top-level `update_id`, when it has one (a Telegram update). An update whose
    /// `update_id` and text equal one still retained in the channel is a redelivery: Telegram
    /// sends an update again when the webhook answered late
    /// ([Bot API: getting updates](https://core.telegram.org/bots/api#getting-updates)).
    pub update_id: Option<i64>,
}

/// What [`Store::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The update's `seq`: new, or that of the retained copy it duplicates.
    pub seq: u64,
    /// True when the update was a redelivery and nothing was stored.
    pub duplicate: bool,
}

/// Durable storage of channels. Implementations commit before `append` resolves and call
/// [`Notifier::publish`] after each commit, so waiters on every instance wake up.
///
/// A channel's count never goes backwards: a channel whose updates all expired keeps its count,
/// and when the store forgets channels (its bound on remembered channels), it keeps a floor
/// above every count it forgot, where a new channel starts. A client holding a `ts` therefore
/// never sees a lower count than it holds, unless the storage itself was replaced.
pub trait Store: Send + Sync + 'static {
    /// Stores one update and resolves, once it is durable, with its `seq` (or, for a
    /// redelivery, the `seq` of the copy already stored).
    fn append(&self, channel: ChannelName, update: NewUpdate) -> StoreFuture<'_, Appended>;

    /// Reads up to `limit` updates with `seq > after`, however many bytes they take. Provided:
    /// [`Store::read_bounded`] without a byte budget.
    fn read<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
    ) -> StoreFuture<'a, Page> {
        self.read_bounded(channel, after, limit, usize::MAX)
    }

    /// Reads updates with `seq > after`: at most `limit`, and no more than fit in `max_bytes`
    /// of JSON text ([`Page::within`]: always at least one, so a reader makes progress). A store
    /// stops reading at the budget, so a read never holds more than the budget in memory.
    fn read_bounded<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreFuture<'a, Page>;

    /// The wake-up signal of this store.
    fn notifier(&self) -> &Notifier;

    /// Checks that the backend answers and can write (for `/healthz`).
    fn health(&self) -> StoreFuture<'_, ()>;
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Store")
    }
}

#[cfg(any(feature = "sqlite", feature = "redis"))]
/// Unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, millis)
}

#[cfg(any(feature = "sqlite", feature = "redis"))]
/// A duration in whole milliseconds, saturating at `i64::MAX` instead of wrapping.
pub(crate) fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(feature = "sqlite")]
/// The creation time (Unix ms) before which an update is older than `max_age`; saturates, so
/// an age longer than the clock's past keeps everything instead of wrapping into the future.
pub(crate) fn cutoff_ms(max_age: std::time::Duration) -> i64 {
    now_ms().saturating_sub(millis(max_age))
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_huge_retention_age_keeps_everything_instead_of_wrapping() {
        for age in [
            Duration::from_secs(u64::MAX),
            Duration::from_secs(9_223_372_036_854_776),
        ] {
            assert!(super::cutoff_ms(age) <= 0, "{age:?}");
        }
        let day = super::cutoff_ms(Duration::from_secs(86_400));
        assert!(day > 0 && day < super::now_ms());
    }
}
