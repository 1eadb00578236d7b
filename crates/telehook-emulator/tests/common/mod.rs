//! Helpers shared by the emulator's tests: an emulator with fast timings, and a webhook
//! server on 127.0.0.1 whose answers each test scripts.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;
use telehook_api::Bot;
use telehook_emulator::{BotHandle, Emulator, Timing};

pub const TOKEN: &str = "123456:TEST-token_abc";
pub const WAIT: Duration = Duration::from_secs(10);

/// Emulator timings for tests: Telegram's schedule at 1/100 (retries after 20, 40 ms …) with
/// a response timeout long enough (10 s) never to fire on a loaded machine.
pub fn fast() -> Timing {
    Timing::scaled(0.01).webhook_timeout(Duration::from_secs(1000))
}

pub async fn emulator(timing: Timing) -> (Emulator, BotHandle, Bot) {
    let emulator = Emulator::builder()
        .bot(TOKEN)
        .timing(timing)
        .start()
        .await
        .unwrap();
    let handle = emulator.bot(TOKEN).unwrap();
    let bot = Bot::builder(TOKEN).base_url(emulator.base_url()).build();
    (emulator, handle, bot)
}

/// One request a webhook received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub update: Value,
    pub at: Instant,
}

impl Received {
    pub fn update_id(&self) -> u64 {
        self.update["update_id"].as_u64().unwrap()
    }
}

/// A webhook on 127.0.0.1 answering with `answer`; returns its URL and what it received.
pub async fn webhook<F, Fut>(answer: F) -> (String, Arc<Mutex<Vec<Received>>>)
where
    F: Fn(Received) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    let handler = move |headers: HeaderMap, body: Bytes| {
        let answer = answer.clone();
        let log = Arc::clone(&log);
        async move {
            let request = Received {
                headers,
                update: serde_json::from_slice(&body).unwrap_or(Value::Null),
                at: Instant::now(),
            };
            log.lock().unwrap().push(request.clone());
            answer(request).await
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

pub fn status(code: u16) -> Response {
    Response::builder()
        .status(code)
        .body(axum::body::Body::empty())
        .unwrap()
}

pub fn json_response(body: &Value) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}
