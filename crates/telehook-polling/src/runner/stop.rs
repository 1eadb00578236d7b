//! The graceful stop: finish what is held within the deadline, cancel what still runs, and
//! confirm the last position to the source.

use std::time::Duration;

use tokio::time::Instant;

use super::report::StopReport;
use super::schedule::State;
use crate::source::UpdateSource;

/// Stops a run whose fetch is abandoned: drains `state` and confirms the position reached,
/// all within [`super::RunnerConfig::stop_deadline`] from now.
pub(super) async fn stop<S: UpdateSource>(
    state: State,
    source: &tokio::sync::Mutex<S>,
) -> StopReport {
    // The stop's clock starts now.
    let deadline = Instant::now() + state.config.stop_deadline;
    // Keep a share of the deadline for the confirmation.
    let reserve = (state.config.stop_deadline / 4).min(Duration::from_secs(2));
    let mut report = state.drain(deadline - reserve).await;
    if let Some(offset) = report.confirmed_offset {
        let confirm = async { source.lock().await.confirm(offset).await };
        match tokio::time::timeout_at(deadline, confirm).await {
            Ok(Ok(())) => report.confirmed = true,
            Ok(Err(error)) => tracing::warn!(
                offset,
                %error,
                "could not confirm the last offset when stopping; updates from this offset on come again after a restart"
            ),
            Err(_) => tracing::warn!(
                offset,
                "the stop deadline passed before the last offset was confirmed; updates from this offset on come again after a restart"
            ),
        }
    }
    report
}

impl State {
    /// Finishes what is held, starting nothing new once `deadline` passes; cancels what still
    /// runs then.
    async fn drain(mut self, deadline: Instant) -> StopReport {
        loop {
            self.start_ready();
            if self.held_count == 0 && self.runs.values().all(|r| r.moved_on) {
                break;
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.on_event(event),
                Ok(None) | Err(_) => break,
            }
        }
        let mut unfinished: Vec<u64> = Vec::new();
        for run in self.runs.values().filter(|r| !r.moved_on) {
            // Its update comes again; a run left going could overlap the next process's.
            run.abort.abort();
            unfinished.push(run.update_id);
        }
        unfinished.sort_unstable();
        let mut not_started: Vec<u64> = self
            .ready
            .iter()
            .map(|(d, _)| d.update().update_id())
            .collect();
        not_started.extend(
            self.busy
                .values()
                .flatten()
                .map(|(d, _)| d.update().update_id()),
        );
        not_started.sort_unstable();
        let beyond: Vec<u64> = self
            .order
            .iter()
            .filter(|h| h.done)
            .map(|h| h.update_id)
            .collect();
        if !unfinished.is_empty() || !not_started.is_empty() {
            tracing::warn!(
                unfinished = ?unfinished,
                not_started = ?not_started,
                confirmed_offset = self.confirmed,
                "stopped with updates not handled; they will be delivered again"
            );
        }
        let mut report = self.report;
        report.confirmed_offset = self.confirmed;
        report.unfinished = unfinished;
        report.not_started = not_started;
        report.handled_beyond_offset = beyond;
        report
    }
}
