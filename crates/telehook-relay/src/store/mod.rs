//! Storage backends behind one trait, and the wake-up signal waiting clients subscribe to.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::channel::ChannelName;
use crate::error::StoreError;

mod notifier;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use notifier::Notifier;

/// A boxed future returned by [`Store`] methods, so the trait can be used as `dyn Store`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One stored update: its position in the channel and its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpdate {
    /// The channel's count right after this update was stored (1 for the first update).
    pub seq: u64,
    /// The update as compact JSON text.
    pub json: Arc<str>,
}

/// A slice of a channel read from storage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// How many updates the channel has received in all (the current `ts`).
    pub total: u64,
    /// `seq` of the oldest update still retained; `total + 1` when none is.
    pub first_retained: u64,
    /// Updates after the requested `ts`, oldest first, at most the requested limit.
    pub updates: Vec<StoredUpdate>,
}

impl Page {
    /// How many updates after `ts` retention already dropped.
    pub fn missed(&self, ts: u64) -> u64 {
        let dropped_up_to = self.first_retained.saturating_sub(1).min(self.total);
        dropped_up_to.saturating_sub(ts)
    }

    /// The `ts` a client holds after taking this page: the last update's `seq`, else the total.
    pub fn next_ts(&self) -> u64 {
        self.updates.last().map_or(self.total, |u| u.seq)
    }
}

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

    /// Reads up to `limit` updates with `seq > after`.
    fn read<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
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

/// Updates committed together in one channel, handed to waiters so they can answer without a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The updates, oldest first, with consecutive `seq`s.
    pub updates: Vec<StoredUpdate>,
}

/// The value of a channel's wake-up signal.
#[derive(Debug, Clone, Default)]
pub struct Wake {
    /// The channel's count after the latest commit known to this instance.
    pub total: u64,
    /// The updates of that commit, when this instance made it.
    pub latest: Option<Arc<Batch>>,
    /// `total` is the channel's current count: every commit reaches this notifier, in commit
    /// order (a single in-process writer). A client whose `ts` equals it has nothing to read, so
    /// it can wait without asking storage. False when wake-ups come from other instances, which
    /// may arrive late, out of order, or not at all.
    pub exact: bool,
}

impl Wake {
    /// A page answered without storage: from the latest batch when it starts right after `ts`,
    /// or an empty page when `ts` is exactly the channel's current count.
    pub fn page_after(&self, ts: u64, limit: usize) -> Option<Page> {
        if self.exact && self.total == ts {
            return Some(Page {
                total: ts,
                first_retained: ts + 1,
                updates: Vec::new(),
            });
        }
        let batch = self.latest.as_ref()?;
        let first = batch.updates.first()?;
        if first.seq != ts + 1 {
            return None;
        }
        Some(Page {
            total: self.total,
            first_retained: first.seq,
            updates: batch.updates.iter().take(limit).cloned().collect(),
        })
    }
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_counts_only_dropped_updates_after_ts() {
        let page = Page {
            total: 10,
            first_retained: 6,
            updates: vec![],
        };
        assert_eq!(page.missed(0), 5);
        assert_eq!(page.missed(3), 2);
        assert_eq!(page.missed(5), 0);
        assert_eq!(page.missed(8), 0);
        let empty = Page {
            total: 10,
            first_retained: 11,
            updates: vec![],
        };
        assert_eq!(empty.missed(4), 6);
    }

    #[test]
    fn an_exact_count_answers_an_up_to_date_client_without_storage() {
        let update = |seq| StoredUpdate {
            seq,
            json: Arc::from(r#"{"update_id":1}"#),
        };
        let wake = Wake {
            total: 7,
            latest: Some(Arc::new(Batch {
                updates: vec![update(6), update(7)],
            })),
            exact: true,
        };
        let empty = wake.page_after(7, 10).unwrap();
        assert!(empty.updates.is_empty());
        assert_eq!((empty.total, empty.missed(7), empty.next_ts()), (7, 0, 7));
        assert_eq!(wake.page_after(5, 10).unwrap().updates.len(), 2);
        assert!(wake.page_after(3, 10).is_none(), "older ts needs storage");
        assert!(wake.page_after(9, 10).is_none(), "ts ahead needs storage");
        let inexact = Wake {
            exact: false,
            ..wake
        };
        assert!(
            inexact.page_after(7, 10).is_none(),
            "a count from other instances may be stale"
        );
    }
}
