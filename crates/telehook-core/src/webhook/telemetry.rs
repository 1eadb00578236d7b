//! What the dispatcher reports through the [`metrics`] facade: names, labels and the one place
//! each is recorded. Without a recorder installed every call is a no-op (one atomic load).
//! The table in `docs/operations.md` lists them for operators.

use std::time::Duration;

use metrics::{Key, Label, Metadata};

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

// The hot path's metrics use keys built at compile time (name, labels and hash in a
// `static`): the macros with a label value from a variable allocate the labels and hash the
// key on every call, recorder or not (about 500 instructions per update in all).

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// A `static` key with one static label.
macro_rules! static_key {
    ($name:expr, $label:literal => $value:expr) => {{
        static LABELS: [Label; 1] = [Label::from_static_parts($label, $value)];
        static KEY: Key = Key::from_static_parts($name, &LABELS);
        &KEY
    }};
    ($name:expr) => {{
        static KEY: Key = Key::from_static_name($name);
        &KEY
    }};
}

/// The `kind` label's key of [`UPDATES_RECEIVED`] for each known kind, `other` and `none`;
/// invoked by `update::with_known_kinds!` with the list of kinds (the one list of them).
macro_rules! received_keys {
    ($($kind:literal),* $(,)?) => {
        fn received_key(kind: Option<&std::borrow::Cow<'static, str>>) -> &'static Key {
            match kind.map(|k| (matches!(k, std::borrow::Cow::Borrowed(_)), k.as_ref())) {
                $(Some((true, $kind)) => static_key!(UPDATES_RECEIVED, "kind" => $kind),)*
                Some(_) => static_key!(UPDATES_RECEIVED, "kind" => "other"),
                None => static_key!(UPDATES_RECEIVED, "kind" => "none"),
            }
        }
    };
}

crate::update::with_known_kinds!(received_keys);

fn counter(key: &Key) -> metrics::Counter {
    metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA))
}

/// A delivery whose body is a valid update of this kind (a known kind's own name as the
/// label, `other` for a kind this version does not know, so an unknown key cannot grow the
/// label set; `none` for none).
pub(super) fn received(kind: Option<&std::borrow::Cow<'static, str>>) {
    counter(received_key(kind)).increment(1);
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

fn in_flight() -> metrics::Gauge {
    let key = static_key!(HANDLERS_IN_FLIGHT);
    metrics::with_recorder(|recorder| recorder.register_gauge(key, &METADATA))
}

pub(super) fn run_started() {
    in_flight().increment(1.0);
}

pub(super) fn run_ended() {
    in_flight().decrement(1.0);
}

/// A finished run: its duration, and the handled / error counters.
pub(super) fn run_finished(outcome: &'static str, elapsed: Duration) {
    let (duration, count) = match outcome {
        "ok" => (
            static_key!(HANDLER_DURATION, "outcome" => "ok"),
            static_key!(UPDATES_HANDLED),
        ),
        "panic" => (
            static_key!(HANDLER_DURATION, "outcome" => "panic"),
            static_key!(HANDLER_ERRORS, "cause" => "panic"),
        ),
        _ => (
            static_key!(HANDLER_DURATION, "outcome" => "error"),
            static_key!(HANDLER_ERRORS, "cause" => "error"),
        ),
    };
    metrics::with_recorder(|recorder| {
        recorder
            .register_histogram(duration, &METADATA)
            .record(elapsed.as_secs_f64());
        recorder.register_counter(count, &METADATA).increment(1);
    });
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    #[test]
    fn every_known_kind_has_its_own_received_key() {
        for kind in crate::update::known_kinds() {
            let key = super::received_key(Some(&Cow::Borrowed(kind)));
            assert_eq!(key.labels().next().map(|l| l.value()), Some(*kind));
        }
        let other = super::received_key(Some(&Cow::Owned("message".to_owned())));
        assert_eq!(other.labels().next().map(|l| l.value()), Some("other"));
        let none = super::received_key(None);
        assert_eq!(none.labels().next().map(|l| l.value()), Some("none"));
    }
}
