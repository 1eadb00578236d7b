//! A client holding a `ts` never silently misses updates: a channel's count never goes
//! backwards (its updates expired, or it was forgotten), on SQLite and on Redis, for long
//! polling, SSE and WebSocket. And a Telegram redelivery is acknowledged without being stored
//! twice.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::{Http, SseReader, TestRelay, test_config};
use futures_util::{SinkExt, StreamExt};
use telehook_relay::{ChannelName, Retention, StoreLimits};
use tokio_tungstenite::tungstenite::Message;

/// Updates expire after this long (short, so the test can wait it out).
const AGE: Duration = Duration::from_millis(200);

fn short_retention() -> StoreLimits {
    StoreLimits {
        retention: Retention {
            max_age: AGE,
            ..Retention::default()
        },
        prune_interval: Duration::from_millis(50),
        ..StoreLimits::default()
    }
}

async fn post(http: &Http, relay: &TestRelay, channel: &str, body: &str) -> u64 {
    let answer = http.post(&relay.url(&format!("/{channel}")), body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.headers["x-total-updates"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn wait_for_waiters(relay: &TestRelay, channel: &str, n: usize) {
    let channel = ChannelName::parse(channel).unwrap();
    for _ in 0..2_000 {
        if relay.relay.store().notifier().waiters(&channel) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{n} waiters never arrived");
}

/// Three updates, all expire (and SQLite prunes the channel), then a client that still holds
/// `ts = 3` follows the channel three ways while a fourth update arrives: each read path sees
/// it, numbered 4.
async fn count_survives_expiry(relay: &TestRelay) {
    let http = Http::new();
    for i in 1..=3 {
        assert_eq!(post(&http, relay, "c", &format!(r#"{{"i":{i}}}"#)).await, i);
    }
    tokio::time::sleep(AGE * 3).await;
    let idle = http.get(&relay.url("/c?ts=3")).await.json();
    assert_eq!(
        idle["ts"], 3,
        "the count stays after the updates expired: {idle}"
    );

    let poller = {
        let (http, url) = (http.clone(), relay.url("/c?ts=3&sleep=20"));
        tokio::spawn(async move { http.get(&url).await })
    };
    let sse = http
        .open(
            &relay.url("/c"),
            &[("accept", "text/event-stream"), ("last-event-id", "3")],
        )
        .await;
    let mut events = SseReader::new(sse);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", relay.addr))
        .await
        .unwrap();
    ws.send(Message::Text(
        r#"{"command":"subscribe","channel":"c","ts":3}"#.into(),
    ))
    .await
    .unwrap();
    wait_for_waiters(relay, "c", 3).await;

    assert_eq!(
        post(&http, relay, "c", r#"{"i":4}"#).await,
        4,
        "count went backwards"
    );

    let polled = poller.await.unwrap().json();
    assert_eq!(
        polled,
        serde_json::json!({"ok": true, "ts": 4, "updates": [{"i": 4}]})
    );
    let event = events.next().await.unwrap();
    assert_eq!(
        (event.event, event.id.as_deref(), event.data.as_str()),
        (None, Some("4"), r#"{"i":4}"#)
    );
    let mut pushed = None;
    while pushed.is_none() {
        let message = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            if json.get("update").is_some() || json.get("reset").is_some() {
                pushed = Some(json);
            }
        }
    }
    assert_eq!(
        pushed.unwrap(),
        serde_json::json!({"channel": "c", "ts": 4, "update": {"i": 4}})
    );
}

#[tokio::test]
async fn sqlite_keeps_a_channels_count_when_its_updates_expire() {
    let relay = TestRelay::sqlite_with(test_config(), short_retention()).await;
    count_survives_expiry(&relay).await;
}

#[tokio::test]
async fn redis_keeps_a_channels_count_when_its_updates_expire() {
    let redis = RedisServer::start().await;
    let relay = redis.relay(short_retention()).await;
    count_survives_expiry(&relay).await;
}

/// With room for one channel, channels beyond the bound are forgotten; one that comes back
/// starts above every count forgotten, never below the `ts` its clients hold.
async fn forgotten_channels_come_back_above_their_old_count(relay: &TestRelay) {
    let http = Http::new();
    for i in 1..=3 {
        post(&http, relay, "a", &format!(r#"{{"a":{i}}}"#)).await;
    }
    tokio::time::sleep(AGE * 3).await;
    post(&http, relay, "b", r#"{"b":1}"#).await;
    tokio::time::sleep(AGE * 3).await;
    post(&http, relay, "c", r#"{"c":1}"#).await;
    tokio::time::sleep(AGE * 3).await;
    let seq = post(&http, relay, "a", r#"{"a":4}"#).await;
    assert!(seq >= 4, "a's count went back to {seq}");
    let answer = http.get(&relay.url("/a?ts=3")).await.json();
    assert_eq!(answer["updates"], serde_json::json!([{"a": 4}]), "{answer}");
}

fn one_channel() -> StoreLimits {
    StoreLimits {
        max_channels: 1,
        ..short_retention()
    }
}

#[tokio::test]
async fn sqlite_forgotten_channels_never_restart_below_a_held_ts() {
    let relay = TestRelay::sqlite_with(test_config(), one_channel()).await;
    forgotten_channels_come_back_above_their_old_count(&relay).await;
}

#[tokio::test]
async fn redis_forgotten_channels_never_restart_below_a_held_ts() {
    let redis = RedisServer::start().await;
    let relay = redis.relay(one_channel()).await;
    forgotten_channels_come_back_above_their_old_count(&relay).await;
}

/// A Telegram redelivery (same `update_id`, same body) is acknowledged with the count it was
/// stored at and not stored again; other bodies are stored as sent, twice if sent twice.
async fn redeliveries_are_stored_once(relay: &TestRelay) {
    let http = Http::new();
    let update = r#"{"update_id":900,"message":{"text":"hi"}}"#;
    assert_eq!(post(&http, relay, "t", update).await, 1);
    assert_eq!(post(&http, relay, "t", r#"{"update_id":901}"#).await, 2);
    assert_eq!(
        post(&http, relay, "t", update).await,
        1,
        "the same X-Total-Updates"
    );
    // The same update_id with another body is another update (update_id reset after a quiet week).
    assert_eq!(
        post(&http, relay, "t", r#"{"update_id":900,"x":1}"#).await,
        3
    );
    // Not a Telegram update: stored as before, each time.
    assert_eq!(post(&http, relay, "t", r#"{"note":1}"#).await, 4);
    assert_eq!(post(&http, relay, "t", r#"{"note":1}"#).await, 5);
    // Another channel is another inbox.
    assert_eq!(post(&http, relay, "u", update).await, 1);
    let answer = http.get(&relay.url("/t")).await.json();
    assert_eq!(answer["ts"], 5);
    assert_eq!(
        answer["updates"],
        serde_json::json!([
            {"update_id": 900, "message": {"text": "hi"}},
            {"update_id": 901},
            {"update_id": 900, "x": 1},
            {"note": 1},
            {"note": 1}
        ])
    );
}

#[tokio::test]
async fn sqlite_stores_a_telegram_redelivery_once() {
    let relay = TestRelay::sqlite(test_config()).await;
    redeliveries_are_stored_once(&relay).await;
}

#[tokio::test]
async fn redis_stores_a_telegram_redelivery_once() {
    let redis = RedisServer::start().await;
    let relay = redis.relay(StoreLimits::default()).await;
    redeliveries_are_stored_once(&relay).await;
}

/// A `ts` above the count can only come from replaced storage (a new database, a flushed
/// Redis): every read path says so and hands over everything the channel holds, from the start.
#[tokio::test]
async fn a_ts_above_the_count_replays_from_the_start_on_every_read_path() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    for i in 1..=2 {
        post(&http, &relay, "c", &format!(r#"{{"i":{i}}}"#)).await;
    }
    let polled = http.get(&relay.url("/c?ts=50&sleep=5")).await.json();
    assert_eq!(
        polled,
        serde_json::json!({"ok": true, "ts": 2, "reset": true, "updates": [{"i": 1}, {"i": 2}]})
    );

    let sse = http
        .open(
            &relay.url("/c"),
            &[("accept", "text/event-stream"), ("last-event-id", "50")],
        )
        .await;
    let mut events = SseReader::new(sse);
    let reset = events.next().await.unwrap();
    assert_eq!(
        (reset.event.as_deref(), reset.id.as_deref()),
        (Some("reset"), Some("0"))
    );
    for i in 1..=2 {
        let event = events.next().await.unwrap();
        assert_eq!(
            (event.id, event.data),
            (Some(i.to_string()), format!(r#"{{"i":{i}}}"#))
        );
    }

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", relay.addr))
        .await
        .unwrap();
    ws.send(Message::Text(
        r#"{"command":"subscribe","channel":"c","ts":50}"#.into(),
    ))
    .await
    .unwrap();
    let mut messages = Vec::new();
    while messages.len() < 4 {
        let message = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            messages.push(serde_json::from_str::<serde_json::Value>(&text).unwrap());
        }
    }
    assert_eq!(messages[0]["command"], "subscribe");
    assert_eq!(
        messages[1..],
        [
            serde_json::json!({"channel": "c", "ts": 0, "reset": true}),
            serde_json::json!({"channel": "c", "ts": 1, "update": {"i": 1}}),
            serde_json::json!({"channel": "c", "ts": 2, "update": {"i": 2}}),
        ]
    );
}
