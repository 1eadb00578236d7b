//! What a read returns: stored updates and the page around them.

use std::sync::Arc;

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
}
