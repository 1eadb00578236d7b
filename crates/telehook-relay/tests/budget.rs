//! The byte budget of an answer: a long-poll answer never exceeds `max_response_bytes`, SSE and
//! WebSocket catch-up reads are cut at it too, and the client still gets every update, in order,
//! across answers.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::{Http, SseReader, TestRelay, test_config};
use futures_util::{SinkExt, StreamExt};
use telehook_relay::config::RESPONSE_ENVELOPE_BYTES;
use telehook_relay::{RelayConfig, StoreLimits};
use tokio_tungstenite::tungstenite::Message;

const BODY: usize = 4096;
const BUDGET: usize = BODY + RESPONSE_ENVELOPE_BYTES;
const UPDATES: u64 = 20;

fn config() -> RelayConfig {
    RelayConfig {
        max_body_bytes: BODY,
        max_response_bytes: BUDGET,
        ..test_config()
    }
}

/// Update `i`, about 1 KiB; update 7 is as large as a body may be.
fn fat(i: u64) -> String {
    let head = format!(r#"{{"update_id":{i},"pad":""#);
    let size = if i == 7 { BODY } else { 1000 };
    format!("{head}{}\"}}", "x".repeat(size - head.len() - 2))
}

async fn post_all(http: &Http, relay: &TestRelay) {
    for i in 1..=UPDATES {
        let answer = http.post(&relay.url("/fat"), &fat(i)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
}

#[tokio::test]
async fn long_poll_answers_stay_within_the_budget_and_deliver_everything() {
    let relay = TestRelay::sqlite(config()).await;
    long_poll_everything(&relay).await;
}

#[tokio::test]
async fn redis_reads_stop_at_the_budget_too() {
    let redis = RedisServer::start().await;
    let relay = redis.relay_with(StoreLimits::default(), config()).await;
    long_poll_everything(&relay).await;
}

async fn long_poll_everything(relay: &TestRelay) {
    let http = Http::new();
    post_all(&http, relay).await;
    let mut ts = 0u64;
    let mut seen = Vec::new();
    let mut answers = 0;
    while seen.len() < UPDATES as usize {
        let answer = http.get(&relay.url(&format!("/fat?ts={ts}"))).await;
        assert!(
            answer.body.len() <= BUDGET,
            "answer of {} bytes over the budget of {BUDGET}",
            answer.body.len()
        );
        let json = answer.json();
        let updates = json["updates"].as_array().unwrap();
        assert!(!updates.is_empty(), "no progress at ts {ts}");
        seen.extend(updates.iter().map(|u| u["update_id"].as_u64().unwrap()));
        ts = json["ts"].as_u64().unwrap();
        answers += 1;
    }
    assert_eq!(seen, (1..=UPDATES).collect::<Vec<_>>());
    assert!(
        answers >= 5,
        "20 KiB in {answers} answers of at most {BUDGET} bytes"
    );
}

#[tokio::test]
async fn sse_and_websocket_catch_up_in_budgeted_reads_without_gaps() {
    let relay = TestRelay::sqlite(config()).await;
    let http = Http::new();
    post_all(&http, &relay).await;

    let response = http
        .open(&relay.url("/fat?ts=0"), &[("accept", "text/event-stream")])
        .await;
    let mut events = SseReader::new(response);
    for i in 1..=UPDATES {
        let event = events.next().await.unwrap();
        assert_eq!(event.id.as_deref(), Some(i.to_string().as_str()));
        assert_eq!(event.data, fat(i));
    }

    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", relay.addr))
        .await
        .unwrap();
    for _ in 0..2 {
        // Two subscriptions of the same channel share the socket's budget; the second replaces
        // the first.
        socket
            .send(Message::Text(
                r#"{"command":"subscribe","channel":"fat","ts":0}"#.into(),
            ))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < UPDATES as usize {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("message in time")
            .unwrap()
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(update) = json.get("update") {
            let id = update["update_id"].as_u64().unwrap();
            if id == 1 {
                seen.clear(); // the replacing subscription replays from the start
            }
            seen.push(id);
        }
    }
    assert_eq!(seen, (1..=UPDATES).collect::<Vec<_>>());
}
