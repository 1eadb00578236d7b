//! The salvo-echo bot as a real process on loopback: SIGTERM lets the update in flight finish,
//! the deadline ends a shutdown that a run would block, a second signal exits at once, a slow
//! client is cut off. The cases are the ones every webhook example runs (hyper-echo's test
//! support).

#[path = "../../hyper-echo/tests/support/process.rs"]
mod process;

const BIN: &str = env!("CARGO_BIN_EXE_salvo-echo");

#[test]
fn sigterm_lets_the_update_in_flight_finish() {
    process::cases::sigterm_lets_the_update_in_flight_finish(BIN, "/telegram");
}

#[test]
fn the_deadline_ends_a_shutdown_a_run_would_block() {
    process::cases::the_deadline_ends_a_shutdown_a_run_would_block(BIN, "/telegram");
}

#[test]
fn a_second_signal_exits_at_once() {
    process::cases::a_second_signal_exits_at_once(BIN, "/telegram");
}

#[test]
fn a_slowloris_connection_is_closed() {
    process::cases::a_slowloris_connection_is_closed(BIN, "/telegram");
}
