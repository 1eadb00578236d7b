//! The echo bot answers text messages with a webhook reply, keeps its own routes working, and
//! refuses requests without the secret.

const SECRET: &str = "s3cr3t_T0ken-for-tests";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../crates/telehook-conformance/fixtures/updates/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn delivery(body: Vec<u8>, secret: Option<&str>) -> warp::test::RequestBuilder {
    let mut request = warp::test::request()
        .method("POST")
        .path("/telegram")
        .header("content-type", "application/json");
    if let Some(secret) = secret {
        request = request.header("x-telegram-bot-api-secret-token", secret);
    }
    request.body(body)
}

#[tokio::test]
async fn text_message_is_echoed_by_webhook_reply() {
    let state = warp_echo::AppState::default();
    let routes = warp_echo::routes(state.clone(), Some(SECRET)).unwrap();
    let response = delivery(fixture("message_unicode.json"), Some(SECRET))
        .reply(&routes)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let reply: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&fixture("message_unicode.json")).unwrap();
    assert_eq!(reply["method"], "sendMessage");
    assert_eq!(reply["chat_id"], sent["message"]["chat"]["id"]);
    assert_eq!(reply["text"], sent["message"]["text"]);

    let stats = warp::test::request().path("/stats").reply(&routes).await;
    let stats: serde_json::Value = serde_json::from_slice(stats.body()).unwrap();
    assert_eq!(stats["echoed"], 1);
}

#[tokio::test]
async fn non_text_update_is_acknowledged_without_reply() {
    let routes = warp_echo::routes(warp_echo::AppState::default(), Some(SECRET)).unwrap();
    let response = delivery(fixture("callback_query.json"), Some(SECRET))
        .reply(&routes)
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.body().is_empty());
}

#[tokio::test]
async fn delivery_without_the_secret_is_refused() {
    let routes = warp_echo::routes(warp_echo::AppState::default(), Some(SECRET)).unwrap();
    let response = delivery(fixture("message_text_private.json"), None)
        .reply(&routes)
        .await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn without_a_secret_deliveries_are_accepted() {
    let routes = warp_echo::routes(warp_echo::AppState::default(), None).unwrap();
    let response = delivery(fixture("message_text_private.json"), None)
        .reply(&routes)
        .await;
    assert_eq!(response.status(), 200);
    let health = warp::test::request().path("/healthz").reply(&routes).await;
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn an_invalid_secret_is_a_build_error() {
    let Err(err) = warp_echo::routes(warp_echo::AppState::default(), Some("has spaces")) else {
        panic!("a secret with spaces was accepted");
    };
    assert!(err.to_string().contains("secret_token"), "{err}");
}
