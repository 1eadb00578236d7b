//! What the runner reports through the [`metrics`] facade, next to the dispatcher's metrics
//! (`telehook_core::metric_names`). Without a recorder installed every call is a no-op. The
//! table in `docs/operations.md` lists them for operators.

/// Histogram, no labels: seconds an update waited between being fetched (a getUpdates answer,
/// a relay poll, any [`UpdateSource`](crate::UpdateSource)) and the start of its handler's first
/// attempt: the time spent behind its chat's earlier updates and the concurrency limit. Measured
/// on the runner's monotonic clock, so it holds no clock skew (unlike `now − message.date`,
/// which also counts Telegram's own queue but has a 1 s resolution and only some update kinds
/// carry a date).
pub const POLLING_LAG: &str = "telehook_polling_lag_seconds";
