//! The echo bot answers text messages with a webhook reply, keeps its own handlers working,
//! and refuses requests without the secret.

use salvo::prelude::*;
use salvo::test::{ResponseExt as _, TestClient};

const SECRET: &str = "s3cr3t_T0ken-for-tests";
const URL: &str = "http://127.0.0.1/telegram";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../crates/telehook-conformance/fixtures/updates/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn service(secret: Option<&str>) -> Service {
    let (router, _webhook) = salvo_echo::build(salvo_echo::AppState::default(), secret).unwrap();
    Service::new(router)
}

#[tokio::test]
async fn text_message_is_echoed_by_webhook_reply() {
    let service = service(Some(SECRET));
    let mut response = TestClient::post(URL)
        .add_header("x-telegram-bot-api-secret-token", SECRET, true)
        .bytes(fixture("message_unicode.json"))
        .send(&service)
        .await;
    assert_eq!(response.status_code, Some(StatusCode::OK));
    assert_eq!(response.headers()["content-type"], "application/json");
    let reply: serde_json::Value =
        serde_json::from_slice(&response.take_bytes(None).await.unwrap()).unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&fixture("message_unicode.json")).unwrap();
    assert_eq!(reply["method"], "sendMessage");
    assert_eq!(reply["chat_id"], sent["message"]["chat"]["id"]);
    assert_eq!(reply["text"], sent["message"]["text"]);
    let mut stats = TestClient::get("http://127.0.0.1/stats")
        .send(&service)
        .await;
    let stats: serde_json::Value =
        serde_json::from_slice(&stats.take_bytes(None).await.unwrap()).unwrap();
    assert_eq!(stats["echoed"], 1);
}

#[tokio::test]
async fn own_handlers_work_and_a_delivery_without_the_secret_is_refused() {
    let service = service(Some(SECRET));
    let response = TestClient::get("http://127.0.0.1/healthz")
        .send(&service)
        .await;
    assert_eq!(response.status_code, Some(StatusCode::OK));
    let response = TestClient::post(URL)
        .bytes(fixture("message_text_private.json"))
        .send(&service)
        .await;
    assert_eq!(response.status_code, Some(StatusCode::UNAUTHORIZED));
}

#[tokio::test]
async fn an_invalid_secret_is_a_build_error() {
    let Err(err) = salvo_echo::build(salvo_echo::AppState::default(), Some("has spaces")) else {
        panic!("accepted an invalid secret");
    };
    assert!(err.to_string().contains("secret_token"), "{err}");
}
