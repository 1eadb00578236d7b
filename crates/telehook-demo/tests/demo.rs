//! The demo runs offline, prints the whole conversation and exits 0.

use std::process::Command;

#[test]
fn the_offline_demo_prints_the_conversation_and_succeeds() {
    run_demo_once();
}

/// The bot may answer before the emulator's injection call returns; the transcript once
/// counted such an answer as "already there" and failed about one run in five. A few runs in
/// a row (each under half a second) make that kind of race show.
#[test]
fn the_offline_demo_succeeds_run_after_run() {
    for _ in 0..4 {
        run_demo_once();
    }
}

fn run_demo_once() {
    let output = Command::new(env!("CARGO_BIN_EXE_telehook-demo"))
        .env_remove("TELEGRAM_BOT_TOKEN")
        .env_remove("TELEHOOK_PUBLIC_URL")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "[1] Alice (private) → bot: Do you have salted caramel today?",
        "bot → sendMessage: \"Do you have salted caramel today?\"  (webhook reply)",
        "Échantillon? 🍦 ça marche",
        "failed after",
        "503 Service Unavailable",
        "handler runs: 1",
        "bot → answerCallbackQuery: \"caramel, good choice\"",
        "bot → answerInlineQuery",
        "6 updates, each handled exactly once",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains("demo-token"), "the token was printed");
}
