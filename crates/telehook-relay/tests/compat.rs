//! The published clients of the reference (`lua-long-polling`), replayed request by request
//! against a real relay: their exact URLs, their `ts` bookkeeping and the conditions under which
//! they stop (the current client dies on an answer whose `ts` is below the one it holds, or whose
//! update count does not match the `ts` step). Each must receive every update.

mod common;

use std::collections::VecDeque;

use common::{Http, TestRelay, test_config};
use http::{Method, StatusCode};

/// Which reference client is replayed.
#[derive(Debug, Clone, Copy)]
enum Flavor {
    /// `examples/advanced/client.lua` (current): `requested_ts = tData.ts`; its lost-update
    /// check calls a method on a nil `self`, so any mismatch kills its thread.
    Current,
    /// `lua/long-polling/client/init.lua` (the packaged one): `requested_ts + #updates`, or an
    /// "emergency reset" to `tData.ts` after a mismatch (logged).
    Packaged,
}

/// The state one reference client keeps between requests.
struct LuaClient {
    flavor: Flavor,
    url: String,
    /// `nil` in Lua until the first answer.
    requested_ts: Option<i64>,
    /// The `timeout` argument of `subscribe`; `None` sends an empty `sleep=`.
    timeout: Option<u32>,
    received: Vec<serde_json::Value>,
    warnings: Vec<String>,
}

impl LuaClient {
    fn new(flavor: Flavor, url: String, timeout: Option<u32>) -> Self {
        Self {
            flavor,
            url,
            requested_ts: None,
            timeout,
            received: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// `MT:get`: `"?ts=" .. (offset or "") .. "&sleep=" .. (timeout or "")`, where the first
    /// request (no `requested_ts`) sends `sleep=0`.
    fn next_url(&self) -> String {
        let ts = self.requested_ts.map(|t| t.to_string()).unwrap_or_default();
        let sleep = match (self.requested_ts, self.timeout) {
            (None, _) => "0".to_owned(),
            (Some(_), Some(t)) => t.to_string(),
            (Some(_), None) => String::new(),
        };
        format!("{}?ts={ts}&sleep={sleep}", self.url)
    }

    /// One turn of the `subscribe` loop. Panics where the Lua client would stop.
    async fn turn(&mut self, http: &Http) {
        let url = self.next_url();
        let answer = http.get(&url).await;
        assert_eq!(answer.status, StatusCode::OK, "{url}: {}", answer.body);
        let data = answer.json();
        let ts = data["ts"]
            .as_i64()
            .unwrap_or_else(|| panic!("{url}: the Lua client does arithmetic on ts: {data}"));
        let updates = match &data["updates"] {
            serde_json::Value::Array(list) => list.clone(),
            // cjson decodes `{}` as an empty table too.
            serde_json::Value::Object(map) if map.is_empty() => Vec::new(),
            other => panic!("{url}: updates is {other}"),
        };
        let count = updates.len() as i64;
        let asked = self.requested_ts.unwrap_or(0);
        match self.flavor {
            Flavor::Current => {
                let expected = ts - asked;
                assert!(
                    expected >= 0,
                    "{url}: ts went back ({ts} < {asked}): the current client crashes"
                );
                assert_eq!(
                    expected, count,
                    "{url}: ts step {expected} but {count} updates: the current client crashes"
                );
                self.requested_ts = Some(ts);
            }
            Flavor::Packaged => {
                let diff = ts - asked;
                if asked > ts || diff > count {
                    self.warnings.push(format!("{url}: reset to {ts}"));
                    self.requested_ts = Some(ts);
                } else {
                    self.requested_ts = Some(match self.requested_ts {
                        Some(held) => held + count,
                        None => ts,
                    });
                }
            }
        }
        self.received.extend(updates);
    }
}

/// `MT:publish`: POST the JSON body with `content-type: application/json`; success is
/// `code == 201 or res == "OK"`.
async fn publish(http: &Http, url: &str, n: u64) {
    let body = format!(r#"{{"update_id":{n},"message":{{"text":"m{n}"}}}}"#);
    let answer = http.post(url, &body).await;
    assert!(
        answer.status == StatusCode::CREATED || answer.body == "OK",
        "publish {url}: {} {}",
        answer.status,
        answer.body
    );
}

fn ids(received: &[serde_json::Value]) -> Vec<u64> {
    received
        .iter()
        .map(|u| u["update_id"].as_u64().expect("update_id"))
        .collect()
}

/// Publishes `before` updates, subscribes, then publishes the rest one at a time between the
/// client's turns (so long polls are answered both from storage and by a wake-up).
async fn replay(flavor: Flavor, path: &str, timeout: Option<u32>) {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let url = relay.url(path);
    let before = 130; // more than one answer holds (100)
    for n in 1..=before {
        publish(&http, &url, n).await;
    }
    let mut client = LuaClient::new(flavor, url.clone(), timeout);
    let mut pending: VecDeque<u64> = (before + 1..=before + 5).collect();
    for _ in 0..20 {
        if client.received.len() as u64 == before + 5 {
            break;
        }
        if client.requested_ts.is_some_and(|ts| ts as u64 >= before)
            && let Some(n) = pending.pop_front()
        {
            // Post while the client waits (or just before it asks).
            let (http2, url2) = (http.clone(), url.clone());
            let post = tokio::spawn(async move { publish(&http2, &url2, n).await });
            client.turn(&http).await;
            post.await.unwrap();
        } else {
            client.turn(&http).await;
        }
    }
    assert_eq!(
        ids(&client.received),
        (1..=before + 5).collect::<Vec<_>>(),
        "{flavor:?} at {path}: every update, in order, once"
    );
    assert!(client.warnings.is_empty(), "{:?}", client.warnings);
}

#[tokio::test]
async fn the_current_reference_client_receives_every_update() {
    replay(Flavor::Current, "/my.bot", Some(5)).await;
}

#[tokio::test]
async fn the_packaged_reference_client_receives_every_update() {
    replay(Flavor::Packaged, "/my.bot", Some(5)).await;
}

#[tokio::test]
async fn a_client_without_timeout_sends_an_empty_sleep_and_still_works() {
    replay(Flavor::Current, "/bot", None).await;
}

#[tokio::test]
async fn the_readmes_secret_path_with_at_sign_and_a_trailing_slash_work() {
    replay(Flavor::Current, "/SomeS3cretP@th", Some(5)).await;
    replay(Flavor::Packaged, "/SomeS3cretP@th/", Some(5)).await;
    replay(Flavor::Current, "/caf%C3%A9%20bot", Some(5)).await;
}

#[tokio::test]
async fn webhook_query_parameters_are_merged_as_in_the_readme() {
    // README of the reference: setWebhook?url=https://your.app/SomeS3cretP@th?this_key=and_value&botname=some_id
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let answer = http
        .post(
            &relay.url("/SomeS3cretP@th?this_key=and_value&botname=some_id"),
            r#"{"update_id":7}"#,
        )
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "OK")
    );
    let mut client = LuaClient::new(Flavor::Current, relay.url("/SomeS3cretP@th"), Some(1));
    client.turn(&http).await;
    assert_eq!(
        client.received,
        vec![serde_json::json!({"update_id": 7, "this_key": "and_value", "botname": "some_id"})]
    );
}

#[tokio::test]
async fn lenient_parameters_are_read_as_the_reference_reads_them() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    for n in 1..=3 {
        publish(&http, &relay.url("/c"), n).await;
    }
    // (query, expected ts, expected update count): empty or missing = 0, negative ts = from the
    // start, sleep clamped to 0..=60 (a negative sleep does not wait).
    for (query, ts, count) in [
        ("?ts=&sleep=", 3, 3),
        ("?ts=&sleep=0", 3, 3),
        ("", 3, 3),
        ("?ts=-5&sleep=-1", 3, 3),
        ("?ts=2&sleep=-30", 3, 1),
        ("?ts=1&sleep=999", 3, 2),
    ] {
        let answer = http.get(&relay.url(&format!("/c{query}"))).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.body);
        let json = answer.json();
        assert_eq!(json["ts"], ts, "{query}");
        assert_eq!(json["updates"].as_array().unwrap().len(), count, "{query}");
    }
}

#[tokio::test]
async fn error_bodies_carry_both_description_fields() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let answer = http
        .send(Method::POST, &relay.url("/c"), &[], "not json")
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let json = answer.json();
    assert_eq!(json["ok"], false);
    assert_eq!(json["error_code"], 400);
    assert!(json["description"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(json["description"], json["error_description"]);
}

#[tokio::test]
async fn channel_names_are_one_bounded_printable_segment() {
    let relay = TestRelay::sqlite(test_config()).await;
    let http = Http::new();
    let longest = "a".repeat(256);
    for ok in ["my.bot", "a@b", "caf%C3%A9", "x~y!z", longest.as_str()] {
        let answer = http.post(&relay.url(&format!("/{ok}")), "{}").await;
        assert_eq!(answer.status, StatusCode::OK, "{ok}: {}", answer.body);
    }
    let too_long = "a".repeat(257);
    for bad in [too_long.as_str(), "a%2Fb", "a%0Ab", "%7F", "%FF"] {
        let answer = http.post(&relay.url(&format!("/{bad}")), "{}").await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            answer.body
        );
        assert_eq!(answer.json()["ok"], false, "{bad}");
    }
}
