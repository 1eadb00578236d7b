//! The relay protocol, request by request, against a real server on 127.0.0.1.

mod common;

use std::time::Duration;

use common::{Http, TestRelay, test_config, update};
use http::{Method, StatusCode};
use telehook_relay::{AccessConfig, ChannelAccess, RateLimit, RelayConfig, Retention, StoreLimits};

fn assert_error(answer: &common::Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "body: {}", answer.body);
    assert_eq!(answer.headers["content-type"], "application/json");
    let json = answer.json();
    assert_eq!(json["ok"], false);
    assert_eq!(json["error_code"], status.as_u16());
    assert!(json["description"].as_str().is_some_and(|d| !d.is_empty()));
}

async fn assert_channel_empty(http: &Http, relay: &TestRelay, channel: &str) {
    let answer = http.get(&relay.url(&format!("/{channel}"))).await;
    assert_eq!(
        answer.json(),
        serde_json::json!({"ok": true, "ts": 0, "updates": []})
    );
}

#[tokio::test]
async fn post_answers_ok_with_the_total_and_get_returns_the_update() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let answer = http.post(&relay.url("/bot"), &update(1)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "OK");
    assert_eq!(answer.headers["x-total-updates"], "1");
    let answer = http.post(&relay.url("/bot"), &update(2)).await;
    assert_eq!(answer.headers["x-total-updates"], "2");

    let answer = http.get(&relay.url("/bot?ts=0")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(
        answer.body,
        format!(
            r#"{{"ok":true,"ts":2,"updates":[{},{}]}}"#,
            update(1),
            update(2)
        )
    );
    let answer = http.get(&relay.url("/bot?ts=1")).await;
    assert_eq!(
        answer.json(),
        serde_json::json!({"ok": true, "ts": 2, "updates": [serde_json::from_str::<serde_json::Value>(&update(2)).unwrap()]})
    );
}

#[tokio::test]
async fn get_without_updates_answers_an_empty_list_at_once() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    assert_eq!(
        http.get(&relay.url("/none")).await.body,
        r#"{"ok":true,"ts":0,"updates":[]}"#
    );
    http.post(&relay.url("/one"), "{}").await;
    assert_eq!(
        http.get(&relay.url("/one?ts=1&sleep=0")).await.body,
        r#"{"ok":true,"ts":1,"updates":[]}"#
    );
}

#[tokio::test]
async fn any_content_type_is_read_as_json() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let answer = http
        .send(
            Method::POST,
            &relay.url("/c"),
            &[("content-type", "text/plain")],
            r#"{"a":1}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = http
        .send(Method::POST, &relay.url("/c"), &[], r#"{"b":2}"#)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        http.get(&relay.url("/c")).await.body,
        r#"{"ok":true,"ts":2,"updates":[{"a":1},{"b":2}]}"#
    );
}

#[tokio::test]
async fn query_parameters_are_decoded_and_merged_into_the_object() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let answer = http
        .post(
            &relay.url("/c?source=tg%20hook&x=1+2"),
            r#"{"update_id":5}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let updates = http.get(&relay.url("/c")).await.json()["updates"].clone();
    assert_eq!(
        updates,
        serde_json::json!([{"update_id": 5, "source": "tg hook", "x": "1 2"}])
    );
}

#[tokio::test]
async fn query_parameters_on_a_non_object_body_are_refused() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    assert_error(
        &http.post(&relay.url("/c?a=b"), "[1,2]").await,
        StatusCode::BAD_REQUEST,
    );
    assert_channel_empty(&http, &relay, "c").await;
}

#[tokio::test]
async fn legacy_paths_do_the_same_as_get_and_post() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let answer = http
        .post(&relay.url("/bot/pushUpdates"), r#"{"n":1}"#)
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "OK")
    );
    assert_eq!(answer.headers["x-total-updates"], "1");
    http.post(&relay.url("/bot"), r#"{"n":2}"#).await;
    let answer = http.get(&relay.url("/bot/getUpdates?ts=0")).await;
    assert_eq!(
        answer.body,
        r#"{"ok":true,"ts":2,"updates":[{"n":1},{"n":2}]}"#
    );
    assert_eq!(http.get(&relay.url("/bot")).await.body, answer.body);
}

#[tokio::test]
async fn bad_json_is_400_and_stores_nothing() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    for body in ["", "{", "not json", "{\"a\":1} trailing", "\u{1}"] {
        assert_error(
            &http.post(&relay.url("/c"), body).await,
            StatusCode::BAD_REQUEST,
        );
    }
    assert_channel_empty(&http, &relay, "c").await;
}

#[tokio::test]
async fn body_over_the_limit_is_413_and_stores_nothing() {
    let relay = TestRelay::sqlite(RelayConfig {
        max_body_bytes: 64,
        ..test_config()
    })
    .await;
    let http = Http::new();
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100));
    assert_error(
        &http.post(&relay.url("/c"), &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    assert_eq!(
        http.post(&relay.url("/c"), r#"{"small":1}"#).await.status,
        StatusCode::OK
    );
    assert_eq!(http.get(&relay.url("/c")).await.json()["ts"], 1);
}

#[tokio::test]
async fn bad_channel_names_are_400_and_store_nothing() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let long = "a".repeat(257);
    for channel in ["a%2Fb", "a%0Ab", "%FF", long.as_str()] {
        assert_error(
            &http.post(&relay.url(&format!("/{channel}")), "{}").await,
            StatusCode::BAD_REQUEST,
        );
        assert_error(
            &http.get(&relay.url(&format!("/{channel}"))).await,
            StatusCode::BAD_REQUEST,
        );
    }
    assert_eq!(
        relay
            .relay
            .store()
            .read(&telehook_relay::ChannelName::parse("a").unwrap(), 0, 10)
            .await
            .unwrap()
            .total,
        0
    );
}

#[tokio::test]
async fn bad_ts_or_sleep_is_400() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    // Empty, negative and too large numbers are read as the reference reads them (see
    // compat.rs); text that is no number is refused.
    for query in ["ts=abc", "ts=1.5", "sleep=x", "sleep=NaN"] {
        assert_error(
            &http.get(&relay.url(&format!("/c?{query}"))).await,
            StatusCode::BAD_REQUEST,
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    assert_error(&http.get(&relay.url("/a/b/c")).await, StatusCode::NOT_FOUND);
    assert_error(
        &http.send(Method::DELETE, &relay.url("/c"), &[], "").await,
        StatusCode::METHOD_NOT_ALLOWED,
    );
}

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

fn access() -> AccessConfig {
    let mut access = AccessConfig {
        allow_unlisted: false,
        ..AccessConfig::default()
    };
    access.channels.insert(
        "secret".into(),
        ChannelAccess {
            read_token: Some("r-tok".into()),
            write_token: Some("w-tok".into()),
        },
    );
    access
        .channels
        .insert("open".into(), ChannelAccess::default());
    access
}

#[tokio::test]
async fn channel_tokens_guard_reads_and_writes() {
    let relay = TestRelay::sqlite(RelayConfig {
        access: access(),
        ..test_config()
    })
    .await;
    let http = Http::new();
    assert_error(
        &http.post(&relay.url("/secret"), "{}").await,
        StatusCode::UNAUTHORIZED,
    );
    let wrong = [("authorization", "Bearer nope")];
    assert_error(
        &http
            .send(Method::POST, &relay.url("/secret"), &wrong, "{}")
            .await,
        StatusCode::UNAUTHORIZED,
    );
    let telegram = [("x-telegram-bot-api-secret-token", "w-tok")];
    assert_eq!(
        http.send(Method::POST, &relay.url("/secret"), &telegram, r#"{"a":1}"#)
            .await
            .status,
        StatusCode::OK
    );
    let bearer = [("authorization", "Bearer w-tok")];
    assert_eq!(
        http.send(Method::POST, &relay.url("/secret"), &bearer, r#"{"a":2}"#)
            .await
            .status,
        StatusCode::OK
    );

    assert_error(
        &http.get(&relay.url("/secret")).await,
        StatusCode::UNAUTHORIZED,
    );
    assert_error(
        &http.get(&relay.url("/secret?token=w-tok")).await,
        StatusCode::UNAUTHORIZED,
    );
    assert_eq!(
        http.get(&relay.url("/secret?token=r-tok")).await.json()["ts"],
        2
    );
    let read = [("authorization", "Bearer r-tok")];
    assert_eq!(
        http.send(Method::GET, &relay.url("/secret"), &read, "")
            .await
            .json()["ts"],
        2
    );

    assert_eq!(
        http.post(&relay.url("/open"), "{}").await.status,
        StatusCode::OK
    );
    assert_error(
        &http.post(&relay.url("/unlisted"), "{}").await,
        StatusCode::FORBIDDEN,
    );
    assert_error(
        &http.get(&relay.url("/unlisted")).await,
        StatusCode::FORBIDDEN,
    );
}

#[tokio::test]
async fn rate_limited_clients_get_429_with_retry_after() {
    let limit = RateLimit {
        per_second: 0.5,
        burst: 3,
        max_clients: 100,
    };
    let relay = TestRelay::sqlite(RelayConfig {
        rate_limit: Some(limit),
        ..test_config()
    })
    .await;
    let http = Http::new();
    for _ in 0..3 {
        assert_eq!(
            http.post(&relay.url("/c"), "{}").await.status,
            StatusCode::OK
        );
    }
    let answer = http.post(&relay.url("/c"), "{}").await;
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry));
    assert_eq!(
        http.get(&relay.url("/healthz")).await.status,
        StatusCode::OK,
        "health checks are not limited"
    );
    assert_eq!(
        relay
            .relay
            .store()
            .read(&telehook_relay::ChannelName::parse("c").unwrap(), 0, 10)
            .await
            .unwrap()
            .total,
        3
    );
}

#[tokio::test]
async fn cors_headers_and_preflight_serve_browser_clients() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let preflight = http
        .send(
            Method::OPTIONS,
            &relay.url("/c"),
            &[
                ("origin", "https://a.example"),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
        .await;
    assert!(preflight.status.is_success(), "{}", preflight.status);
    assert_eq!(preflight.headers["access-control-allow-origin"], "*");
    assert!(
        preflight.headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let answer = http.post(&relay.url("/c"), "{}").await;
    assert_eq!(answer.headers["access-control-allow-origin"], "*");
    assert!(
        answer.headers["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("x-total-updates")
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
async fn healthz_answers_ok() {
    let relay = TestRelay::sqlite(test_config()).await;
    let answer = Http::new().get(&relay.url("/healthz")).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, r#"{"ok":true}"#)
    );
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
