//! The wake-up signal waiting clients subscribe to, per channel.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use std::sync::Arc;

use super::page::{Page, StoredUpdate};
use crate::channel::ChannelName;
use crate::error::RelayError;

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

/// Per-channel wake-up signals. A waiter subscribes BEFORE reading storage, so an update
/// committed between its read and its wait still wakes it.
#[derive(Debug)]
pub struct Notifier {
    channels: Mutex<HashMap<ChannelName, watch::Sender<Wake>>>,
    max_waiters_per_channel: usize,
    max_channels: usize,
}

impl Notifier {
    /// A notifier allowing `max_waiters_per_channel` subscribers per channel on at most
    /// `max_channels` channels.
    pub fn new(max_waiters_per_channel: usize, max_channels: usize) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            max_waiters_per_channel,
            max_channels,
        }
    }

    /// Subscribes to a channel's wake-ups.
    pub fn subscribe(&self, channel: &ChannelName) -> Result<watch::Receiver<Wake>, RelayError> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = map.get(channel) {
            if sender.receiver_count() >= self.max_waiters_per_channel {
                return Err(RelayError::TooManyWaiters {
                    limit: self.max_waiters_per_channel,
                });
            }
            return Ok(sender.subscribe());
        }
        if map.len() >= self.max_channels {
            map.retain(|_, s| s.receiver_count() > 0);
            if map.len() >= self.max_channels {
                return Err(RelayError::TooManyWaiters {
                    limit: self.max_waiters_per_channel,
                });
            }
        }
        let (sender, receiver) = watch::channel(Wake::default());
        map.insert(channel.clone(), sender);
        Ok(receiver)
    }

    /// Wakes every subscriber of `channel` (no-op when nobody waits or `total` did not change).
    pub fn publish(&self, channel: &ChannelName, wake: Wake) {
        let map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = map.get(channel) {
            sender.send_if_modified(|current| {
                if wake.total != current.total {
                    *current = wake;
                    true
                } else {
                    // Same count: nothing new to wake anyone for, but it may now be exact.
                    current.exact |= wake.exact;
                    false
                }
            });
        }
    }

    /// Wakes every waiter of every channel so it reads storage again (after a lost connection
    /// to a shared backend, when wake-ups may have been missed).
    pub fn wake_all(&self) {
        let map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        for sender in map.values() {
            sender.send_modify(|wake| {
                wake.latest = None;
                wake.exact = false;
            });
        }
    }

    /// Forgets channels nobody waits on.
    pub fn sweep(&self) {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.receiver_count() > 0);
    }

    /// How many clients wait on `channel` right now.
    pub fn waiters(&self, channel: &ChannelName) -> usize {
        let map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.get(channel).map_or(0, watch::Sender::receiver_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn publishing_the_same_count_marks_it_exact_without_waking() {
        let notifier = Notifier::new(10, 10);
        let ch = ChannelName::parse("c").unwrap();
        let mut rx = notifier.subscribe(&ch).unwrap();
        notifier.publish(
            &ch,
            Wake {
                total: 3,
                latest: None,
                exact: false,
            },
        );
        assert!(rx.has_changed().unwrap());
        assert!(!rx.borrow_and_update().exact);
        notifier.publish(
            &ch,
            Wake {
                total: 3,
                latest: None,
                exact: true,
            },
        );
        assert!(!rx.has_changed().unwrap());
        assert!(rx.borrow().exact);
        notifier.wake_all();
        assert!(rx.has_changed().unwrap());
        assert!(
            !rx.borrow_and_update().exact,
            "after missed wake-ups the count is not trusted"
        );
    }

    #[test]
    fn notifier_refuses_waiters_over_the_limit() {
        let notifier = Notifier::new(2, 10);
        let ch = ChannelName::parse("c").unwrap();
        let _a = notifier.subscribe(&ch).unwrap();
        let _b = notifier.subscribe(&ch).unwrap();
        assert!(notifier.subscribe(&ch).is_err());
    }
}
