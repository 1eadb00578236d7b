//! Stopping answers every waiting request: a long poll with its empty result, a `…/wait`
//! with its timeout answer.

mod common;

use std::time::Duration;

use common::TOKEN;
use serde_json::Value;
use telehook_emulator::{Emulator, Timing};

async fn get(url: String) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Reads `GET …/state` until both a long poll and a wait are parked.
pub async fn until_parked(me: &str) {
    for _ in 0..1000 {
        let (_, state) = get(format!("{me}/state")).await;
        if state["result"]["long_polls_waiting"] == 1 && state["result"]["waits_waiting"] == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the long poll and the wait never parked");
}

#[tokio::test]
async fn shutdown_answers_waiting_long_polls_and_waits_then_closes() {
    let emulator = Emulator::builder()
        .bot(TOKEN)
        .timing(Timing::real())
        .start()
        .await
        .unwrap();
    let base = emulator.base_url();
    let me = format!("{base}/_emulator/{TOKEN}");
    let poll = tokio::spawn(get(format!("{base}/bot{TOKEN}/getUpdates?timeout=50")));
    let wait = tokio::spawn(get(format!(
        "{me}/calls/wait?method=sendMessage&timeout_ms=100000"
    )));
    until_parked(&me).await;

    emulator.shutdown();
    let limit = Duration::from_secs(20);
    let (status, body) = tokio::time::timeout(limit, poll).await.unwrap().unwrap();
    assert_eq!(
        (status, &body["result"]),
        (200, &serde_json::json!([])),
        "{body}"
    );
    let (status, body) = tokio::time::timeout(limit, wait).await.unwrap().unwrap();
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["ok"], false);
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("the emulator is stopping"),
        "{body}"
    );
    tokio::time::timeout(limit, emulator.closed())
        .await
        .unwrap();
}
