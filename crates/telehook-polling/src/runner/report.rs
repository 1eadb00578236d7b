//! What a run reports when it stops.

#[cfg(doc)]
use super::RunnerConfig;

/// What a run did, returned when it stops.
///
/// Every update the run took ends in exactly one of: `handled` (which includes `given_up`),
/// `skipped`, `unfinished` or `not_started` — except a handler left running by
/// [`HandlerTimeout::MoveOn`](super::HandlerTimeout::MoveOn) that is still running at the stop,
/// which is in none of them. So `handled - given_up` is the number of updates whose handler
/// succeeded. The counts are of this run only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StopReport {
    /// Updates whose handling is over and whose position may be confirmed: the last attempt
    /// succeeded, **or** the error policy gave the update up (those are also counted in
    /// `given_up`). "Handled" means "done with", not "succeeded": successes are
    /// `handled - given_up`. Skipped repeats and runs cancelled at the stop are not counted.
    pub handled: u64,
    /// Updates whose last attempt failed and which the error policy retries no more:
    /// `BoundedRetry` after `max_attempts` failed attempts, `Acknowledge` after the first.
    /// Each is also counted in `handled` (it is confirmed, Telegram will not send it again)
    /// and logged at error with its `update_id`.
    pub given_up: u64,
    /// Failed handler attempts (an error returned, or a panic), counting every attempt: an
    /// update that failed twice and then succeeded adds 2. A timeout
    /// ([`RunnerConfig::handler_timeout`]) is not a failure; attempts of runs cancelled at the
    /// stop are not counted.
    pub failures: u64,
    /// Failed attempts that were panics (also counted in `failures`).
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
