//! What the store keeps: retention by count and age, the channel limit, and restarts.

use std::time::Duration;

use http::StatusCode;
use telehook_relay::{Retention, StoreLimits};

use crate::common::{self, Http, TestRelay, test_config};
use crate::{assert_channel_empty, assert_error};

#[tokio::test]
async fn updates_dropped_by_retention_are_reported_as_missed() {
    let limits = StoreLimits {
        retention: Retention {
            max_updates: 3,
            ..Retention::default()
        },
        ..StoreLimits::default()
    };
    let relay = TestRelay::sqlite_with(test_config(), limits).await;
    let http = Http::new();
    for i in 1..=5 {
        http.post(&relay.url("/c"), &format!(r#"{{"i":{i}}}"#))
            .await;
    }
    let answer = http.get(&relay.url("/c?ts=0")).await;
    assert_eq!(
        answer.body,
        r#"{"ok":true,"ts":5,"missed":2,"updates":[{"i":3},{"i":4},{"i":5}]}"#
    );
    let answer = http.get(&relay.url("/c?ts=1")).await;
    assert_eq!(answer.json()["missed"], 1);
    let answer = http.get(&relay.url("/c?ts=2")).await;
    assert!(answer.json().get("missed").is_none());
}

#[tokio::test]
async fn updates_older_than_the_retention_age_are_dropped_and_reported() {
    let limits = StoreLimits {
        retention: Retention {
            max_age: Duration::from_millis(1_500),
            ..Retention::default()
        },
        ..StoreLimits::default()
    };
    let relay = TestRelay::sqlite_with(test_config(), limits).await;
    let http = Http::new();
    http.post(&relay.url("/c"), r#"{"old":1}"#).await;
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    http.post(&relay.url("/c"), r#"{"new":1}"#).await;
    assert_eq!(
        http.get(&relay.url("/c?ts=0")).await.body,
        r#"{"ok":true,"ts":2,"missed":1,"updates":[{"new":1}]}"#
    );
}

#[tokio::test]
async fn a_new_channel_over_the_channel_limit_is_refused_with_507() {
    let limits = StoreLimits {
        max_channels: 2,
        ..StoreLimits::default()
    };
    let relay = TestRelay::sqlite_with(test_config(), limits).await;
    let http = Http::new();
    assert_eq!(
        http.post(&relay.url("/a"), "{}").await.status,
        StatusCode::OK
    );
    assert_eq!(
        http.post(&relay.url("/b"), "{}").await.status,
        StatusCode::OK
    );
    assert_error(
        &http.post(&relay.url("/c"), "{}").await,
        StatusCode::INSUFFICIENT_STORAGE,
    );
    assert_eq!(
        http.post(&relay.url("/a"), "{}").await.status,
        StatusCode::OK,
        "existing channels still take updates"
    );
    assert_channel_empty(&http, &relay, "c").await;
}

#[tokio::test]
async fn updates_survive_a_restart_of_the_store() {
    let dir = common::TempDir::new("restart");
    let http = Http::new();
    for round in 1..=2u64 {
        let notifier = std::sync::Arc::new(telehook_relay::Notifier::new(100, 100));
        let store = telehook_relay::SqliteStore::open(dir.path(), StoreLimits::default(), notifier)
            .unwrap();
        let relay = TestRelay::serve(std::sync::Arc::new(store), test_config()).await;
        let answer = http
            .post(&relay.url("/c"), &format!(r#"{{"round":{round}}}"#))
            .await;
        assert_eq!(
            answer.headers["x-total-updates"],
            round.to_string().as_str()
        );
        relay.stop().await;
    }
}
