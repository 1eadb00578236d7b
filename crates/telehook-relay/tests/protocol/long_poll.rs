//! Long polling: waiting reads, their wake-ups and limits, capped answers, and shutdown.

use std::time::Duration;

use http::StatusCode;
use telehook_relay::RelayConfig;

use crate::assert_error;
use crate::common::{Http, TestRelay, test_config};

#[tokio::test]
async fn ts_beyond_the_count_answers_at_once_from_the_start() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    http.post(&relay.url("/c"), "{}").await;
    let started = std::time::Instant::now();
    let answer = http.get(&relay.url("/c?ts=50&sleep=30")).await;
    // Counts never go backwards, so a `ts` above the count means the storage was replaced:
    // the client gets what the channel holds, and is told.
    assert_eq!(
        answer.body,
        r#"{"ok":true,"ts":1,"reset":true,"updates":[{}]}"#
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "must not wait for sleep"
    );
}

#[tokio::test]
async fn a_waiting_get_returns_when_an_update_arrives() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let url = relay.url("/c?ts=0&sleep=30");
    let client = http.clone();
    let waiter = tokio::spawn(async move { client.get(&url).await });
    while relay
        .relay
        .store()
        .notifier()
        .waiters(&telehook_relay::ChannelName::parse("c").unwrap())
        == 0
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    http.post(&relay.url("/c"), r#"{"x":1}"#).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.body, r#"{"ok":true,"ts":1,"updates":[{"x":1}]}"#);
}

#[tokio::test]
async fn a_waiting_get_returns_empty_when_sleep_passes() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let answer = http.get(&relay.url("/c?ts=0&sleep=0.2")).await;
    assert_eq!(answer.body, r#"{"ok":true,"ts":0,"updates":[]}"#);
}

#[tokio::test]
async fn answers_are_capped_and_the_client_continues_from_the_returned_ts() {
    let relay = TestRelay::sqlite(RelayConfig {
        max_updates_per_response: 2,
        ..test_config()
    })
    .await;
    let http = Http::new();
    for i in 1..=5 {
        http.post(&relay.url("/c"), &format!(r#"{{"i":{i}}}"#))
            .await;
    }
    assert_eq!(
        http.get(&relay.url("/c?ts=0")).await.body,
        r#"{"ok":true,"ts":2,"updates":[{"i":1},{"i":2}]}"#
    );
    assert_eq!(
        http.get(&relay.url("/c?ts=2")).await.body,
        r#"{"ok":true,"ts":4,"updates":[{"i":3},{"i":4}]}"#
    );
    assert_eq!(
        http.get(&relay.url("/c?ts=4")).await.body,
        r#"{"ok":true,"ts":5,"updates":[{"i":5}]}"#
    );
}

#[tokio::test]
async fn too_many_waiters_on_a_channel_are_refused_with_503() {
    let relay = TestRelay::sqlite(RelayConfig {
        max_waiters_per_channel: 1,
        ..test_config()
    })
    .await;
    let http = Http::new();
    let url = relay.url("/c?sleep=30");
    let client = http.clone();
    let first = tokio::spawn(async move { client.get(&url).await });
    while relay
        .relay
        .store()
        .notifier()
        .waiters(&telehook_relay::ChannelName::parse("c").unwrap())
        == 0
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let answer = http.get(&relay.url("/c?sleep=30")).await;
    assert_error(&answer, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers.contains_key("retry-after"));
    http.post(&relay.url("/c"), "{}").await;
    assert_eq!(first.await.unwrap().json()["ts"], 1);
}

#[tokio::test]
async fn shutdown_gives_waiting_clients_a_normal_empty_answer() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    http.post(&relay.url("/c"), "{}").await;
    let url = relay.url("/c?ts=1&sleep=60");
    let client = http.clone();
    let waiter = tokio::spawn(async move { client.get(&url).await });
    while relay
        .relay
        .store()
        .notifier()
        .waiters(&telehook_relay::ChannelName::parse("c").unwrap())
        == 0
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.stop().await;
    let answer = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, r#"{"ok":true,"ts":1,"updates":[]}"#);
}
