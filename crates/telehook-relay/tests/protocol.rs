//! The relay protocol, request by request, against a real server on 127.0.0.1.
//!
//! One test binary; the tests are split by topic into the modules under `tests/protocol/`
//! (named with `#[path]`, as this crate root would otherwise look for them in `tests/`, where
//! cargo would build each as a test binary of its own).

mod common;

#[path = "protocol/access.rs"]
mod access;
#[path = "protocol/long_poll.rs"]
mod long_poll;
#[path = "protocol/requests.rs"]
mod requests;
#[path = "protocol/storage.rs"]
mod storage;

use common::{Http, TestRelay};
use http::StatusCode;

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
