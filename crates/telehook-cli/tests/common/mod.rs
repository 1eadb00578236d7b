//! Helpers: an emulator on 127.0.0.1 in this process, and the `telehook` binary run against it.

#![allow(dead_code, unreachable_pub)]

use std::process::Output;

use telehook_emulator::{BotHandle, Emulator, Timing};

/// A token of the right shape, distinctive enough to be searched for in any output.
pub const TOKEN: &str = "987654:SECRETtokenXYZ_never-shown";

pub async fn emulator() -> (Emulator, BotHandle) {
    let emulator = Emulator::builder()
        .bot(TOKEN)
        .timing(Timing::scaled(0.01).webhook_timeout(std::time::Duration::from_secs(1000)))
        .start()
        .await
        .unwrap();
    let handle = emulator.bot(TOKEN).unwrap();
    (emulator, handle)
}

/// Runs `telehook ARGS` with the token in TELEGRAM_BOT_TOKEN (if given) and `--api-url`
/// pointing at `api_url`; stdout and stderr are pipes (not a terminal).
pub async fn telehook(api_url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_telehook"));
    command
        .args(args)
        .env("TELEHOOK_API_URL", api_url)
        .env_remove("TELEGRAM_BOT_TOKEN")
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("TELEGRAM_BOT_TOKEN", token);
    }
    command.output().await.unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that neither stream holds the token, nor its secret half.
pub fn assert_no_token(output: &Output) {
    let secret = TOKEN.split_once(':').unwrap().1;
    for (name, text) in [("stdout", stdout(output)), ("stderr", stderr(output))] {
        assert!(!text.contains(secret), "the token leaked on {name}: {text}");
    }
}
