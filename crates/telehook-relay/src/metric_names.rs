//! What the relay server reports through the [`metrics`] facade (install any recorder, e.g.
//! metrics-exporter-prometheus; without one every call is a no-op). The table in
//! `docs/operations.md` lists them for operators.

/// Gauge, no labels: long polls (`GET /{channel}?ts=…&sleep=…`) waiting on the relay for an
/// update, over all channels: one per client that is up to date and waiting. No per-channel
/// label, because channel names are chosen by whoever posts or polls, so such a label would be
/// unbounded. A poll is counted from its first wait until it answers or its client goes.
pub const RELAY_QUEUE_DEPTH: &str = "telehook_relay_queue_depth";
