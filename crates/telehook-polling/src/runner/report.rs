//! What a run reports when it stops.

#[cfg(doc)]
use super::RunnerConfig;

/// What a run did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StopReport {
    /// Updates whose handler finished (successfully or given up by the error policy).
    pub handled: u64,
    /// Updates given up after failing (counted in `handled` too).
    pub given_up: u64,
    /// Failed handler runs (errors and panics, retries included).
    pub failures: u64,
    /// Handler runs that panicked (counted in `failures` too).
    pub panics: u64,
    /// Updates skipped because the same update (equal `update_id` and bytes) was taken
    /// before, or because it was in [`RunnerConfig::skip_update_ids`].
    pub skipped: u64,
    /// Times the source's sequence started over (Telegram chose new, lower `update_id`s).
    pub sequence_resets: u64,
    /// The position confirmed when stopping: every delivery below it is handled (for
    /// `getUpdates`, the `offset`).
    pub confirmed_offset: Option<u64>,
    /// Whether the source acknowledged `confirmed_offset` before the stop deadline. When
    /// false, handled updates from the last confirmed position on come again after a restart
    /// (at least once); the offset is logged.
    pub confirmed: bool,
    /// Updates (by `update_id`) still running when the stop deadline passed: their runs were
    /// cancelled, and the source delivers them again.
    pub unfinished: Vec<u64>,
    /// Updates held but never started before the deadline; the source delivers them again.
    pub not_started: Vec<u64>,
    /// Updates handled whose position is at or above `confirmed_offset` (an earlier one was
    /// unfinished), so the source will deliver them again: pass them to the next run's
    /// `skip_update_ids` to avoid handling them twice.
    pub handled_beyond_offset: Vec<u64>,
}
