//! The echo bot answers text messages with a webhook reply, keeps its own routes working, and
//! refuses requests without the secret.

use axum::body::Body;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

const SECRET: &str = "s3cr3t_T0ken-for-tests";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../crates/telehook-conformance/fixtures/updates/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn delivery(body: Vec<u8>, secret: Option<&str>) -> axum::http::Request<Body> {
    let mut request = axum::http::Request::post(axum_echo::WEBHOOK_PATH)
        .header("content-type", "application/json");
    if let Some(secret) = secret {
        request = request.header("x-telegram-bot-api-secret-token", secret);
    }
    request.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn text_message_is_echoed_by_webhook_reply() {
    let state = axum_echo::AppState::default();
    let app = axum_echo::app(state.clone(), Some(SECRET)).unwrap();
    let response = app
        .clone()
        .oneshot(delivery(fixture("message_unicode.json"), Some(SECRET)))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let reply: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&fixture("message_unicode.json")).unwrap();
    assert_eq!(reply["method"], "sendMessage");
    assert_eq!(reply["chat_id"], sent["message"]["chat"]["id"]);
    assert_eq!(reply["text"], sent["message"]["text"]);

    let stats = app
        .oneshot(
            axum::http::Request::get("/stats")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let stats: serde_json::Value =
        serde_json::from_slice(&stats.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(stats["echoed"], 1);
}

#[tokio::test]
async fn non_text_update_is_acknowledged_without_reply() {
    let app = axum_echo::app(axum_echo::AppState::default(), Some(SECRET)).unwrap();
    let response = app
        .oneshot(delivery(fixture("callback_query.json"), Some(SECRET)))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
}

#[tokio::test]
async fn delivery_without_the_secret_is_refused() {
    let app = axum_echo::app(axum_echo::AppState::default(), Some(SECRET)).unwrap();
    let response = app
        .oneshot(delivery(fixture("message_text_private.json"), None))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn without_a_secret_deliveries_are_accepted() {
    let app = axum_echo::app(axum_echo::AppState::default(), None).unwrap();
    let response = app
        .clone()
        .oneshot(delivery(fixture("message_text_private.json"), None))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let health = app
        .oneshot(
            axum::http::Request::get("/healthz")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn an_invalid_secret_is_a_build_error() {
    let err = axum_echo::app(axum_echo::AppState::default(), Some("has spaces")).unwrap_err();
    assert!(err.to_string().contains("secret_token"), "{err}");
}
