//! The items a [`NatsQueue`](crate::NatsQueue) handed out and that are neither acked nor
//! dead-lettered yet, by stream sequence and by `update_id`.

use std::collections::HashMap;

use bytes::Bytes;

/// An item handed out.
#[derive(Clone)]
pub(crate) struct InFlight {
    pub(crate) partition: u32,
    pub(crate) update_id: u64,
    pub(crate) body: Bytes,
    pub(crate) failed: u32,
    pub(crate) last_error: Option<String>,
}

/// Handed-out items; at most one per `update_id`, so a second copy of an update in the stream
/// (an enqueue repeated when its first outcome was unknown) is recognised while the first is
/// being handled.
#[derive(Default)]
pub(crate) struct Handed {
    by_seq: HashMap<u64, InFlight>,
    by_update: HashMap<u64, u64>,
}

impl Handed {
    pub(crate) fn get(&self, seq: u64) -> Option<&InFlight> {
        self.by_seq.get(&seq)
    }

    pub(crate) fn get_mut(&mut self, seq: u64) -> Option<&mut InFlight> {
        self.by_seq.get_mut(&seq)
    }

    /// The sequence of the copy of `update_id` handed out, if one is.
    pub(crate) fn seq_of(&self, update_id: u64) -> Option<u64> {
        self.by_update.get(&update_id).copied()
    }

    pub(crate) fn insert(&mut self, seq: u64, item: InFlight) {
        self.by_update.insert(item.update_id, seq);
        if let Some(old) = self.by_seq.insert(seq, item) {
            self.forget(seq, old.update_id);
        }
    }

    pub(crate) fn remove(&mut self, seq: u64) {
        if let Some(item) = self.by_seq.remove(&seq) {
            self.forget(seq, item.update_id);
        }
    }

    /// Forgets everything of `partition` (it is being read again from its start).
    pub(crate) fn clear_partition(&mut self, partition: u32) {
        self.by_seq.retain(|_, item| item.partition != partition);
        let by_seq = &self.by_seq;
        self.by_update.retain(|_, seq| by_seq.contains_key(seq));
    }

    fn forget(&mut self, seq: u64, update_id: u64) {
        if self.by_update.get(&update_id) == Some(&seq) {
            self.by_update.remove(&update_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(partition: u32, update_id: u64) -> InFlight {
        InFlight {
            partition,
            update_id,
            body: Bytes::new(),
            failed: 0,
            last_error: None,
        }
    }

    #[test]
    fn an_update_is_found_by_id_until_its_copy_is_removed() {
        let mut handed = Handed::default();
        handed.insert(5, item(0, 100));
        handed.insert(6, item(1, 101));
        assert_eq!(handed.seq_of(100), Some(5));
        handed.remove(5);
        assert_eq!(handed.seq_of(100), None);
        assert!(handed.get(5).is_none());
        handed.clear_partition(1);
        assert_eq!(handed.seq_of(101), None);
        assert!(handed.get(6).is_none());
    }

    #[test]
    fn clearing_a_partition_keeps_the_others() {
        let mut handed = Handed::default();
        handed.insert(1, item(0, 10));
        handed.insert(2, item(1, 11));
        handed.clear_partition(0);
        assert_eq!(handed.seq_of(10), None);
        assert_eq!(handed.seq_of(11), Some(2));
    }
}
