//! Plain requests: posting and reading updates, what a request may carry, and the answers to
//! requests the relay refuses.

use http::{Method, StatusCode};
use telehook_relay::RelayConfig;

use crate::common::{Http, TestRelay, test_config, update};
use crate::{assert_channel_empty, assert_error};

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
async fn healthz_answers_ok() {
    let relay = TestRelay::sqlite(test_config()).await;
    let answer = Http::new().get(&relay.url("/healthz")).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, r#"{"ok":true}"#)
    );
}
