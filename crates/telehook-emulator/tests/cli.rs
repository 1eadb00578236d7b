//! The `telehook-emulator` command (needs the `cli` feature): SIGTERM and SIGINT stop it
//! cleanly, answering waiting long polls first.

#![cfg(unix)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::TOKEN;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

async fn get(url: String) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn stops_on(signal: &str) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_telehook-emulator"))
        .args(["--listen", "127.0.0.1:0", "--token", TOKEN])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let base = loop {
        let line = lines.next_line().await.unwrap().expect("a start-up line");
        log.push(line.clone());
        if let Some(at) = line.find("base_url=http://") {
            let rest = &line[at + "base_url=".len()..];
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let me = format!("{base}/_emulator/{TOKEN}");
    let poll = tokio::spawn(get(format!("{base}/bot{TOKEN}/getUpdates?timeout=50")));
    let wait = tokio::spawn(get(format!("{me}/calls/wait?timeout_ms=100000&count=5")));
    for attempt in 0.. {
        let (_, state) = get(format!("{me}/state")).await;
        if state["result"]["long_polls_waiting"] == 1 && state["result"]["waits_waiting"] == 1 {
            break;
        }
        assert!(attempt < 1000, "never parked: {state}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(killed.success());

    let limit = Duration::from_secs(20);
    let (status, body) = tokio::time::timeout(limit, poll).await.unwrap().unwrap();
    assert_eq!(
        (status, &body["result"]),
        (200, &serde_json::json!([])),
        "{body}"
    );
    let (status, body) = tokio::time::timeout(limit, wait).await.unwrap().unwrap();
    assert_eq!(status, 408, "{body}");
    let exit = tokio::time::timeout(limit, child.wait())
        .await
        .unwrap()
        .unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        log.push(line);
    }
    assert!(exit.success(), "{exit:?}\n{}", log.join("\n"));
    assert_eq!(
        log.iter().filter(|l| l.ends_with("stopping")).count(),
        1,
        "{}",
        log.join("\n")
    );
}

#[tokio::test]
async fn sigterm_answers_waiting_requests_and_exits_0() {
    stops_on("-TERM").await;
}

#[tokio::test]
async fn sigint_answers_waiting_requests_and_exits_0() {
    stops_on("-INT").await;
}
