//! The client against a scripted Bot API on 127.0.0.1 and against the emulator.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::Uri;
use serde_json::{Value, json};
use telehook_api::{ApiError, Bot, GetUpdates, Sent, SetWebhook};

const TOKEN: &str = "123456:SECRET-token_value";
const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../telehook-conformance/fixtures/updates"
);

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

/// A Bot API stand-in that answers every request with one scripted response, after a delay,
/// and keeps the path and body of each request.
struct Scripted {
    base_url: String,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn scripted(status: u16, body: &str, delay: Duration) -> Scripted {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    let body = body.to_owned();
    let handler = move |uri: Uri, request_body: Bytes| {
        let (log, body) = (Arc::clone(&log), body.clone());
        async move {
            let json = serde_json::from_slice(&request_body).unwrap_or(Value::Null);
            log.lock().unwrap().push((uri.path().to_owned(), json));
            tokio::time::sleep(delay).await;
            axum::response::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap()
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Scripted { base_url, requests }
}

fn bot(base_url: &str) -> Bot {
    Bot::builder(TOKEN).base_url(base_url).build()
}

fn assert_no_token(text: &str) {
    assert!(
        !text.contains("SECRET-token_value"),
        "the token leaked: {text}"
    );
}

#[tokio::test]
async fn a_call_posts_json_params_to_bot_token_slash_method() {
    let api = scripted(
        200,
        r#"{"ok":true,"result":{"message_id":5}}"#,
        Duration::ZERO,
    )
    .await;
    let bot = Bot::builder(TOKEN)
        .base_url(format!("{}/", api.base_url))
        .build();
    let result = bot.send_message(42, "hi").await.unwrap();
    assert_eq!(result, json!({ "message_id": 5 }));
    let requests = api.requests.lock().unwrap();
    assert_eq!(requests[0].0, format!("/bot{TOKEN}/sendMessage"));
    assert_eq!(requests[0].1, json!({ "chat_id": 42, "text": "hi" }));
}

#[tokio::test]
async fn a_429_keeps_retry_after() {
    let api = scripted(429, &fixture("api_error_429.json"), Duration::ZERO).await;
    let error = bot(&api.base_url).send_message(1, "x").await.unwrap_err();
    assert_eq!(error.error_code(), Some(429));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(error.method(), "sendMessage");
    assert!(
        matches!(&error, ApiError::Api { description, .. } if description == "Too Many Requests: retry after 3")
    );
}

#[tokio::test]
async fn a_401_is_unauthorized_and_a_409_is_a_conflict() {
    let unauthorized = scripted(401, &fixture("api_error_401.json"), Duration::ZERO).await;
    assert!(
        bot(&unauthorized.base_url)
            .get_me()
            .await
            .unwrap_err()
            .is_unauthorized()
    );
    let conflict = scripted(
        409,
        &fixture("getupdates_conflict_409.json"),
        Duration::ZERO,
    )
    .await;
    let error = bot(&conflict.base_url)
        .get_updates(&GetUpdates::default())
        .await
        .unwrap_err();
    assert!(error.is_conflict());
    assert_no_token(&error.to_string());
}

#[tokio::test]
async fn migrate_to_chat_id_is_kept() {
    let body = r#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234}}"#;
    let api = scripted(400, body, Duration::ZERO).await;
    let error = bot(&api.base_url).send_message(-5, "x").await.unwrap_err();
    assert!(matches!(
        error,
        ApiError::Api {
            migrate_to_chat_id: Some(-1_001_234),
            retry_after: None,
            ..
        }
    ));
}

#[tokio::test]
async fn get_updates_returns_every_update_as_raw_json() {
    let api = scripted(200, &fixture("getupdates_response.json"), Duration::ZERO).await;
    let params = GetUpdates {
        offset: Some(7),
        limit: Some(10),
        timeout: Some(0),
        allowed_updates: None,
    };
    let updates = bot(&api.base_url).get_updates(&params).await.unwrap();
    let expected: Value = serde_json::from_str(&fixture("getupdates_response.json")).unwrap();
    assert_eq!(Value::Array(updates), expected["result"]);
    assert_eq!(
        api.requests.lock().unwrap()[0].1,
        json!({ "offset": 7, "limit": 10, "timeout": 0 })
    );
}

#[tokio::test]
async fn an_answer_that_is_not_a_bot_api_response_is_a_bad_response() {
    let html = scripted(502, "<html>Bad Gateway</html>", Duration::ZERO).await;
    let error = bot(&html.base_url).get_me().await.unwrap_err();
    assert!(
        matches!(error, ApiError::BadResponse { status: 502, .. }),
        "{error:?}"
    );
    let no_result = scripted(200, r#"{"ok":true}"#, Duration::ZERO).await;
    let error = bot(&no_result.base_url).get_me().await.unwrap_err();
    assert!(
        matches!(error, ApiError::BadResponse { status: 200, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn network_errors_never_show_the_token() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = bot(&base_url).get_me().await.unwrap_err();
    assert!(matches!(error, ApiError::Network { .. }));
    assert_no_token(&error.to_string());
    assert_no_token(&format!("{error:?}"));
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        assert_no_token(&inner.to_string());
        source = inner.source();
    }
}

#[tokio::test]
async fn a_slow_answer_times_out_without_showing_the_token() {
    let api = scripted(200, r#"{"ok":true,"result":true}"#, Duration::from_secs(30)).await;
    let bot = Bot::builder(TOKEN)
        .base_url(&api.base_url)
        .request_timeout(Duration::from_millis(50))
        .build();
    let error = bot.call("close", &()).await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert_no_token(&format!("{error} {error:?}"));
}

#[tokio::test]
async fn a_long_poll_may_outlast_the_request_timeout() {
    let api = scripted(
        200,
        r#"{"ok":true,"result":[]}"#,
        Duration::from_millis(300),
    )
    .await;
    let bot = Bot::builder(TOKEN)
        .base_url(&api.base_url)
        .request_timeout(Duration::from_millis(50))
        .long_poll_margin(Duration::from_secs(5))
        .build();
    let updates = bot
        .get_updates(&GetUpdates {
            timeout: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(updates.is_empty());
}

#[tokio::test]
async fn a_bad_method_name_is_refused_before_sending() {
    let api = scripted(200, r#"{"ok":true,"result":true}"#, Duration::ZERO).await;
    let error = bot(&api.base_url).call("../getMe", &()).await.unwrap_err();
    assert!(matches!(error, ApiError::InvalidRequest { .. }));
    let error = bot(&api.base_url)
        .call("sendMessage", &[1, 2])
        .await
        .unwrap_err();
    assert!(matches!(error, ApiError::InvalidRequest { .. }));
    assert!(api.requests.lock().unwrap().is_empty());
}

#[test]
fn debug_output_hides_the_token_and_the_secret_token() {
    let bot = Bot::builder(TOKEN).base_url("http://127.0.0.1:1").build();
    let debug = format!("{bot:?} {:?}", Bot::builder(TOKEN));
    assert_no_token(&debug);
    assert!(
        debug.contains("123456"),
        "the bot id is not secret: {debug}"
    );
    assert_eq!(bot.bot_id(), Some(123_456));
    let params = SetWebhook::new("https://example.com/hook").secret_token("hidden-secret");
    assert!(!format!("{params:?}").contains("hidden-secret"));
}

#[tokio::test]
async fn the_webhook_helpers_round_trip_through_the_emulator() {
    let emulator = telehook_emulator::Emulator::builder()
        .bot(TOKEN)
        .start()
        .await
        .unwrap();
    let bot = bot(&emulator.base_url());
    assert_eq!(bot.get_me().await.unwrap()["id"], 123_456);
    let params = SetWebhook::new("http://127.0.0.1:9/hook")
        .secret_token("abc")
        .max_connections(5)
        .allowed_updates(["message", "callback_query"])
        .drop_pending_updates(true);
    assert!(bot.set_webhook(&params).await.unwrap());
    let info = bot.get_webhook_info().await.unwrap();
    assert_eq!(info.url, "http://127.0.0.1:9/hook");
    assert_eq!(info.max_connections, Some(5));
    assert_eq!(
        info.allowed_updates,
        Some(vec!["message".into(), "callback_query".into()])
    );
    assert!(bot.delete_webhook(false).await.unwrap());
    assert_eq!(bot.get_webhook_info().await.unwrap().url, "");
}

#[tokio::test]
async fn send_or_reply_uses_http_when_the_update_did_not_come_by_webhook() {
    let emulator = telehook_emulator::Emulator::builder()
        .bot(TOKEN)
        .start()
        .await
        .unwrap();
    let telegram = emulator.bot(TOKEN).unwrap();
    telegram.private_text(&telehook_emulator::User::new(42, "Ann"), "hi");
    let bot = bot(&emulator.base_url());
    let ctx = telehook_core::Context::detached(1);
    let sent = bot
        .send_or_reply(
            &ctx,
            "sendMessage",
            &json!({ "chat_id": 42, "text": "hello" }),
        )
        .await
        .unwrap();
    let Sent::Http(message) = sent else {
        panic!("expected HTTP, got {sent:?}")
    };
    assert_eq!(message["text"], "hello");
    assert_eq!(
        telegram.calls_to("sendMessage")[0].route,
        telehook_emulator::Route::Http
    );
}
