//! The store fails and comes back: Redis stopped and started again (or the relay's connection
//! killed), a full database. Every refusal is the JSON error with the right status and
//! `Retry-After`; `/healthz` tells whether the store can write; the relay recovers by itself.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::{Answer, Http, TestRelay, test_config};
use http::StatusCode;
use telehook_relay::StoreLimits;

fn assert_refusal(answer: &Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert!(answer.headers.contains_key("retry-after"), "no Retry-After");
    let json = answer.json();
    assert_eq!(json["ok"], false);
    assert_eq!(json["error_code"], status.as_u16());
}

/// POSTs until one is accepted (the relay reconnects in the background); bounded.
async fn post_until_accepted(http: &Http, url: &str, body: &str) -> Answer {
    for _ in 0..200 {
        let answer = http.post(url, body).await;
        if answer.status == StatusCode::OK {
            return answer;
        }
        assert_refusal(&answer, StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the relay never recovered");
}

#[tokio::test]
async fn redis_stopped_is_503_and_the_relay_recovers_when_it_is_back() {
    let mut redis = RedisServer::start().await;
    let relay = redis.relay(StoreLimits::default()).await;
    let http = Http::new();
    assert_eq!(http.post(&relay.url("/c"), r#"{"n":1}"#).await.status, 200);

    redis.stop();
    assert_refusal(
        &http.post(&relay.url("/c"), r#"{"n":2}"#).await,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    assert_refusal(
        &http.get(&relay.url("/c?ts=0")).await,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    assert_refusal(
        &http.get(&relay.url("/healthz")).await,
        StatusCode::SERVICE_UNAVAILABLE,
    );

    redis.restart().await;
    let answer = post_until_accepted(&http, &relay.url("/c"), r#"{"n":3}"#).await;
    // The restarted Redis kept nothing (no persistence in this test): a new count.
    assert_eq!(answer.headers["x-total-updates"], "1");
    assert_eq!(http.get(&relay.url("/healthz")).await.status, 200);
    let read = http.get(&relay.url("/c?ts=0")).await.json();
    assert_eq!(read["updates"], serde_json::json!([{"n": 3}]));
}

#[tokio::test]
async fn a_killed_redis_connection_is_reestablished() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = RedisServer::start().await;
    let relay = redis.relay(StoreLimits::default()).await;
    let http = Http::new();
    assert_eq!(http.post(&relay.url("/c"), r#"{"n":1}"#).await.status, 200);
    let mut admin = tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
        .await
        .unwrap();
    admin
        .write_all(b"CLIENT KILL TYPE normal SKIPME yes\r\n")
        .await
        .unwrap();
    let mut reply = [0u8; 64];
    let n = admin.read(&mut reply).await.unwrap();
    assert!(
        reply[..n].starts_with(b":"),
        "{:?}",
        String::from_utf8_lossy(&reply[..n])
    );
    let answer = post_until_accepted(&http, &relay.url("/c"), r#"{"n":2}"#).await;
    assert_eq!(
        answer.headers["x-total-updates"], "2",
        "same Redis, same channel"
    );
}

#[tokio::test]
async fn a_full_database_is_507_with_retry_after_and_health_says_so() {
    let relay = TestRelay::sqlite_with(
        test_config(),
        StoreLimits {
            max_db_bytes: Some(96 * 1024),
            ..StoreLimits::default()
        },
    )
    .await;
    let http = Http::new();
    assert_eq!(http.get(&relay.url("/healthz")).await.status, 200);
    let pad = "x".repeat(6_000);
    let mut stored = 0;
    let refused = loop {
        let answer = http
            .post(
                &relay.url("/c"),
                &format!(r#"{{"n":{stored},"pad":"{pad}"}}"#),
            )
            .await;
        if answer.status != StatusCode::OK {
            break answer;
        }
        stored += 1;
        assert!(stored < 100, "the size limit never applied");
    };
    assert_refusal(&refused, StatusCode::INSUFFICIENT_STORAGE);
    assert_refusal(
        &http.get(&relay.url("/healthz")).await,
        StatusCode::INSUFFICIENT_STORAGE,
    );
    // Nothing refused was stored; what was acknowledged is all there.
    let read = http.get(&relay.url("/c?ts=0")).await.json();
    assert_eq!(read["ts"], stored);
}

#[tokio::test]
async fn paths_that_are_not_utf8_and_non_upgrades_get_the_json_error() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    for (method, path) in [
        (http::Method::POST, "/%FF"),
        (http::Method::GET, "/%FF"),
        (http::Method::GET, "/%C3%28/getUpdates"),
        (http::Method::GET, "/ws"),
    ] {
        let answer = http.send(method.clone(), &relay.url(path), &[], "{}").await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {}",
            answer.body
        );
        assert_eq!(
            answer.headers["content-type"], "application/json",
            "{method} {path}"
        );
        let json = answer.json();
        assert_eq!(json["ok"], false);
        assert_eq!(json["description"], json["error_description"]);
    }
}
