//! What the dispatcher reports through the [`metrics`] facade: names, labels and the one place
//! each is recorded. Without a recorder installed every call is a no-op (one atomic load).
//! The table in `docs/operations.md` lists them for operators.

use std::time::Duration;

use super::error::Rejection;

/// Counter, label `kind`: deliveries whose body is a valid update, by update kind (`message`,
/// `callback_query`, …; `other` for a kind this version does not know, `none` for none).
pub const UPDATES_RECEIVED: &str = "telehook_updates_received_total";
/// Counter: handler runs that returned `Ok`.
pub const UPDATES_HANDLED: &str = "telehook_updates_handled_total";
/// Counter, label `state` (`finished` | `in_flight`): redeliveries of an update already
/// handled or still running, answered by the redelivery guard without a second run.
pub const REDELIVERIES_ABSORBED: &str = "telehook_redeliveries_absorbed_total";
/// Counter, label `action` (`throw` | `return`): deliveries whose handler was still running at
/// the timeout, by what was answered (`503` or `200`).
pub const HANDLER_TIMEOUTS: &str = "telehook_handler_timeouts_total";
/// Counter, label `cause` (`error` | `panic`): handler runs that failed.
pub const HANDLER_ERRORS: &str = "telehook_handler_errors_total";
/// Counter: failed updates acknowledged without further retries (the error policy gave up,
/// or the update was already acknowledged by `on_timeout = Return`).
pub const UPDATES_GIVEN_UP: &str = "telehook_updates_given_up_total";
/// Counter, label `reason` ([`Rejection::reason`], or `overloaded` for the in-flight limit):
/// requests refused before the handler ran.
pub const REQUESTS_REFUSED: &str = "telehook_requests_refused_total";
/// Gauge: handler runs in flight, including runs that outlived their delivery's timeout.
pub const HANDLERS_IN_FLIGHT: &str = "telehook_handlers_in_flight";
/// Histogram, seconds, label `outcome` (`ok` | `error` | `panic`): how long handler runs took.
pub const HANDLER_DURATION: &str = "telehook_handler_duration_seconds";

/// The `kind` label: a known kind's static name, so an unknown key cannot grow the label set.
pub(super) fn kind_label(kind: Option<&std::borrow::Cow<'static, str>>) -> &'static str {
    match kind {
        Some(std::borrow::Cow::Borrowed(known)) => known,
        Some(std::borrow::Cow::Owned(_)) => "other",
        None => "none",
    }
}

pub(super) fn received(kind: &'static str) {
    metrics::counter!(UPDATES_RECEIVED, "kind" => kind).increment(1);
}

pub(super) fn refused(rejection: &Rejection) {
    refused_for(rejection.reason());
}

pub(super) fn refused_for(reason: &'static str) {
    metrics::counter!(REQUESTS_REFUSED, "reason" => reason).increment(1);
}

pub(super) fn absorbed(state: &'static str) {
    metrics::counter!(REDELIVERIES_ABSORBED, "state" => state).increment(1);
}

pub(super) fn timed_out(action: &'static str) {
    metrics::counter!(HANDLER_TIMEOUTS, "action" => action).increment(1);
}

pub(super) fn given_up() {
    metrics::counter!(UPDATES_GIVEN_UP).increment(1);
}

pub(super) fn run_started() {
    metrics::gauge!(HANDLERS_IN_FLIGHT).increment(1.0);
}

pub(super) fn run_ended() {
    metrics::gauge!(HANDLERS_IN_FLIGHT).decrement(1.0);
}

/// A finished run: its duration, and the handled / error counters.
pub(super) fn run_finished(outcome: &'static str, elapsed: Duration) {
    metrics::histogram!(HANDLER_DURATION, "outcome" => outcome).record(elapsed.as_secs_f64());
    if outcome == "ok" {
        metrics::counter!(UPDATES_HANDLED).increment(1);
    } else {
        metrics::counter!(HANDLER_ERRORS, "cause" => outcome).increment(1);
    }
}
