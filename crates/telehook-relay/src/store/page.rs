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

    /// Keeps the updates that fit in `max_bytes` (each counted as its JSON text plus one
    /// separator byte), oldest first, but always at least one so a reader makes progress. The
    /// client takes the rest with the next read, from the returned [`Page::next_ts`].
    #[must_use]
    pub fn within(mut self, max_bytes: usize) -> Self {
        let keep = fitting(self.updates.iter().map(|u| u.json.len()), max_bytes);
        self.updates.truncate(keep);
        self
    }

    /// The `ts` a client holds after taking this page: the last update's `seq`, else the total.
    pub fn next_ts(&self) -> u64 {
        self.updates.last().map_or(self.total, |u| u.seq)
    }
}

/// How many of the leading items of these sizes fit in `max_bytes` (each plus one separator
/// byte); at least one when there is any.
pub(crate) fn fitting(sizes: impl Iterator<Item = usize>, max_bytes: usize) -> usize {
    let mut used = 0usize;
    let mut count = 0;
    for size in sizes {
        used = used.saturating_add(size.saturating_add(1));
        if count > 0 && used > max_bytes {
            break;
        }
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_keeps_what_fits_in_its_byte_budget_and_never_less_than_one_update() {
        let page = |sizes: &[usize]| Page {
            total: sizes.len() as u64,
            first_retained: 1,
            updates: sizes
                .iter()
                .enumerate()
                .map(|(i, n)| StoredUpdate {
                    seq: i as u64 + 1,
                    json: Arc::from("x".repeat(*n)),
                })
                .collect(),
        };
        assert_eq!(page(&[9, 9, 9]).within(20).updates.len(), 2);
        assert_eq!(page(&[9, 9, 9]).within(19).updates.len(), 1);
        assert_eq!(page(&[50, 1]).within(10).updates.len(), 1, "progress");
        assert_eq!(page(&[50, 1]).within(10).next_ts(), 1);
        assert_eq!(page(&[]).within(10).updates.len(), 0);
    }

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
