//! The example as a process, against the emulator: SIGTERM (how platforms stop a process) and
//! SIGINT (Ctrl-C) both stop it gracefully, in both modes. In polling mode the graceful stop
//! ends with the final `getUpdates` (`timeout=0`) confirming the offset past the last handled
//! update; a process killed by SIGTERM never sends it, and a restart handles the update again.
#![cfg(unix)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use telehook_emulator::{BotHandle, Emulator, User};

const TOKEN: &str = "56:signals";

fn start(emu: &Emulator, envs: &[(&str, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_webhook-or-polling"))
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .env("TELEGRAM_API_URL", emu.base_url())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example")
}

/// Sends `signal` to the process and waits (bounded) for it to exit.
async fn stop_with(mut child: Child, signal: &str) -> Output {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} failed");
    tokio::task::spawn_blocking(move || {
        let until = Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > until {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("output")
    })
    .await
    .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn number(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

async fn echo_one(tg: &BotHandle, text: &str) -> u64 {
    let injected = tg.private_text(&User::new(9, "Sig"), text);
    tg.wait_for_calls_to("sendMessage", 1, Duration::from_secs(20))
        .await
        .expect("the example echoed");
    injected.update_id
}

async fn polling_stops_on(signal: &str) {
    let emu = Emulator::builder().bot(TOKEN).start().await.unwrap();
    let tg = emu.bot(TOKEN).unwrap();
    let child = start(&emu, &[("TELEHOOK_MODE", "polling".into())]);
    tg.wait_for_long_poll(Duration::from_secs(20))
        .await
        .expect("the example polls");
    let update_id = echo_one(&tg, "before the deploy").await;
    let calls_before = tg.calls_to("getUpdates").len();

    let output = stop_with(child, signal).await;

    assert!(output.status.success(), "{}", text(&output));
    let after = &tg.calls_to("getUpdates")[calls_before..];
    assert!(
        after.iter().any(|call| {
            number(call.params.get("offset")) == Some(update_id + 1)
                && number(call.params.get("timeout")) == Some(0)
        }),
        "no final getUpdates confirming offset {} after {signal}: {after:?}\n{}",
        update_id + 1,
        text(&output)
    );
    assert_eq!(tg.pending_update_count(), 0, "the update stays confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_stops_on_sigterm_and_confirms_the_offset() {
    polling_stops_on("-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_stops_on_sigint_and_confirms_the_offset() {
    polling_stops_on("-INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_drains_and_exits_on_sigterm() {
    let emu = Emulator::builder().bot(TOKEN).start().await.unwrap();
    let tg = emu.bot(TOKEN).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let child = start(
        &emu,
        &[
            ("TELEHOOK_MODE", "webhook".into()),
            ("PORT", port.to_string()),
            ("TELEHOOK_PUBLIC_URL", format!("http://127.0.0.1:{port}")),
            ("TELEHOOK_SECRET", "signals_secret".into()),
        ],
    );
    tokio::time::timeout(Duration::from_secs(20), async {
        while tg.webhook_info()["url"].as_str().unwrap_or("").is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the example set its webhook");
    echo_one(&tg, "before the deploy").await;

    let output = stop_with(child, "-TERM").await;

    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("webhook server stopped"),
        "{}",
        text(&output)
    );
}
