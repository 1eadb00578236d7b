//! The Redis backend: instances sharing one Redis share channels and wake each other.
//! Each test starts its own `redis-server` on a free loopback port.

mod common;

use std::time::Duration;

use common::Http;
use common::redis_server::RedisServer;
use telehook_relay::{ChannelName, Retention, StoreLimits};

#[tokio::test]
async fn redis_store_speaks_the_same_protocol() {
    let redis = RedisServer::start().await;
    let relay = redis.relay(StoreLimits::default()).await;
    let http = Http::new();
    let answer = http.post(&relay.url("/c?k=v"), r#"{"a":1}"#).await;
    assert_eq!((answer.status.as_u16(), answer.body.as_str()), (200, "OK"));
    assert_eq!(answer.headers["x-total-updates"], "1");
    http.post(&relay.url("/c"), r#"{"a":2}"#).await;
    assert_eq!(
        http.get(&relay.url("/c?ts=0")).await.body,
        r#"{"ok":true,"ts":2,"updates":[{"a":1,"k":"v"},{"a":2}]}"#
    );
    assert_eq!(
        http.get(&relay.url("/c?ts=9")).await.body,
        r#"{"ok":true,"ts":2,"reset":true,"updates":[{"a":1,"k":"v"},{"a":2}]}"#
    );
    assert_eq!(http.get(&relay.url("/healthz")).await.status.as_u16(), 200);
}

#[tokio::test]
async fn redis_retention_reports_missed_updates() {
    let redis = RedisServer::start().await;
    let limits = StoreLimits {
        retention: Retention {
            max_updates: 2,
            ..Retention::default()
        },
        ..StoreLimits::default()
    };
    let relay = redis.relay(limits).await;
    let http = Http::new();
    for i in 1..=5 {
        http.post(&relay.url("/c"), &format!(r#"{{"i":{i}}}"#))
            .await;
    }
    assert_eq!(
        http.get(&relay.url("/c?ts=1")).await.body,
        r#"{"ok":true,"ts":5,"missed":2,"updates":[{"i":4},{"i":5}]}"#
    );
}

#[tokio::test]
async fn a_post_to_one_instance_wakes_waiters_on_another() {
    let redis = RedisServer::start().await;
    let a = redis.relay(StoreLimits::default()).await;
    let b = redis.relay(StoreLimits::default()).await;
    let http = Http::new();
    let mut waiters = tokio::task::JoinSet::new();
    for relay in [&a, &b] {
        let client = http.clone();
        let url = relay.url("/shared?ts=0&sleep=30");
        waiters.spawn(async move { client.get(&url).await });
    }
    let channel = ChannelName::parse("shared").unwrap();
    while a.relay.store().notifier().waiters(&channel) == 0
        || b.relay.store().notifier().waiters(&channel) == 0
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    assert_eq!(
        http.post(&a.url("/shared"), r#"{"hello":"b"}"#)
            .await
            .status
            .as_u16(),
        200
    );
    while let Some(answer) = waiters.join_next().await {
        assert_eq!(
            answer.unwrap().body,
            r#"{"ok":true,"ts":1,"updates":[{"hello":"b"}]}"#
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "woken by the post, not by the sleep ending"
    );
    // And the other way round, with SSE on A.
    let response = http
        .open(&a.url("/shared?ts=1"), &[("accept", "text/event-stream")])
        .await;
    let mut events = common::SseReader::new(response);
    while a.relay.store().notifier().waiters(&channel) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    http.post(&b.url("/shared"), r#"{"hello":"a"}"#).await;
    let event = events.next().await.unwrap();
    assert_eq!(
        (event.id.as_deref(), event.data.as_str()),
        (Some("2"), r#"{"hello":"a"}"#)
    );
}
