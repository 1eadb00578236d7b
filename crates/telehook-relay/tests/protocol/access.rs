//! Who may read and write: channel tokens, unlisted channels, and the rate limit.

use http::{Method, StatusCode};
use telehook_relay::{AccessConfig, ChannelAccess, RateLimit, RelayConfig};

use crate::assert_error;
use crate::common::{Http, TestRelay, test_config};

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
