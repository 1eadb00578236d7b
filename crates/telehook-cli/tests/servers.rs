//! `telehook emulator` and `telehook relay`: started on port 0, used, stopped with SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(30);

/// Starts `telehook ARGS` and returns it with the URL from its "… listening on URL" line.
async fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_telehook"))
        .args(args)
        .env_remove("TELEGRAM_BOT_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::time::timeout(WAIT, BufReader::new(stdout).read_line(&mut line))
        .await
        .expect("the server announces its address")
        .unwrap();
    let url = line
        .trim_end()
        .split_once(" listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .1
        .to_owned();
    (child, url)
}

/// Sends SIGTERM to the child (by its pid) and returns its exit code.
async fn terminate(mut child: Child) -> Option<i32> {
    let pid = child.id().unwrap().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("stops after SIGTERM")
        .unwrap()
        .code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_serves_the_bot_api_and_stops_on_sigterm() {
    let token = "555:CLIemulatorTOKEN";
    let (child, url) = start(&["emulator", "--listen", "127.0.0.1:0", "--token", token]).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let bot = telehook_api::Bot::builder(token).base_url(&url).build();
    let me = bot.get_me().await.unwrap();
    assert_eq!(me["id"], 555);
    // And the webhook commands work against it.
    let output = Command::new(env!("CARGO_BIN_EXE_telehook"))
        .args(["webhook", "info", "--api-url", &url, "--expect-url", ""])
        .env("TELEGRAM_BOT_TOKEN", token)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(terminate(child).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_stores_and_serves_updates_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("telehook-cli-relay-{}", std::process::id()));
    let (child, url) = start(&[
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.to_str().unwrap(),
    ])
    .await;
    let http = reqwest::Client::new();
    let posted = http
        .post(format!("{url}/mybot"))
        .header("content-type", "application/json")
        .body(r#"{"update_id":7,"message":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"},"text":"hi"}}"#)
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success(), "{}", posted.status());
    let answer: serde_json::Value = http
        .get(format!("{url}/mybot?ts=0&sleep=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer.to_string().contains(r#""update_id":7"#), "{answer}");
    assert_eq!(terminate(child).await, Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_refuses_a_bad_time_scale() {
    let output = Command::new(env!("CARGO_BIN_EXE_telehook"))
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--token",
            "1:a",
            "--time-scale",
            "0",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--time-scale must be a positive number")
    );
}
