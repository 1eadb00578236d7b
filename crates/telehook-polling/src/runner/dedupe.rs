//! Skipping a repeat: the same update (equal `update_id` and bytes) taken twice.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher as _;

use telehook_core::Update;

/// Remembers the last `capacity` updates taken, by `update_id` and a hash of their bytes.
pub(super) struct Recent {
    capacity: usize,
    order: VecDeque<(u64, u64)>,
    set: HashSet<(u64, u64)>,
    seed: u64,
}

/// A cheap hash of an update's bytes (word at a time, multiply-rotate), seeded per run. Only
/// compared between updates with equal `update_id`s, so it needs to tell bodies apart, not to
/// resist crafted collisions.
fn body_hash(seed: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut hash = seed ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        hash = (hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    (hash.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K)
}

impl Recent {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            order: VecDeque::with_capacity(capacity.min(4_096)),
            set: HashSet::with_capacity(capacity.min(4_096)),
            seed: std::collections::hash_map::RandomState::new().hash_one(0u64),
        }
    }

    /// Records `update`; false if the same update was recorded before.
    pub(super) fn insert(&mut self, update: &Update) -> bool {
        if self.capacity == 0 {
            return true;
        }
        let entry = (update.update_id(), body_hash(self.seed, update.raw()));
        if !self.set.insert(entry) {
            return false;
        }
        self.order.push_back(entry);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}
