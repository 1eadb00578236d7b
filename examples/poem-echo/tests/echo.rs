//! The echo bot answers text messages with a webhook reply, keeps its own endpoints working,
//! and refuses requests without the secret.

use poem::Endpoint as _;

const SECRET: &str = "s3cr3t_T0ken-for-tests";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../crates/telehook-conformance/fixtures/updates/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn delivery(body: Vec<u8>, secret: Option<&str>) -> poem::Request {
    let mut request = poem::Request::builder()
        .method(poem::http::Method::POST)
        .uri(poem::http::Uri::from_static(poem_echo::WEBHOOK_PATH))
        .header("content-type", "application/json");
    if let Some(secret) = secret {
        request = request.header("x-telegram-bot-api-secret-token", secret);
    }
    request.body(body)
}

fn get(path: &'static str) -> poem::Request {
    poem::Request::builder()
        .uri(poem::http::Uri::from_static(path))
        .finish()
}

async fn json(response: poem::Response) -> serde_json::Value {
    serde_json::from_slice(&response.into_body().into_bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn text_message_is_echoed_by_webhook_reply() {
    let (app, _webhook) = poem_echo::build(poem_echo::AppState::default(), Some(SECRET)).unwrap();
    let response = app
        .get_response(delivery(fixture("message_unicode.json"), Some(SECRET)))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let reply = json(response).await;
    let sent: serde_json::Value = serde_json::from_slice(&fixture("message_unicode.json")).unwrap();
    assert_eq!(reply["method"], "sendMessage");
    assert_eq!(reply["chat_id"], sent["message"]["chat"]["id"]);
    assert_eq!(reply["text"], sent["message"]["text"]);
    let stats = json(app.get_response(get("/stats")).await).await;
    assert_eq!(stats["echoed"], 1);
}

#[tokio::test]
async fn own_endpoints_work_and_a_delivery_without_the_secret_is_refused() {
    let (app, _webhook) = poem_echo::build(poem_echo::AppState::default(), Some(SECRET)).unwrap();
    assert_eq!(app.get_response(get("/healthz")).await.status(), 200);
    let response = app
        .get_response(delivery(fixture("message_text_private.json"), None))
        .await;
    assert_eq!(response.status(), 401);
    let response = app
        .get_response(delivery(fixture("callback_query.json"), Some(SECRET)))
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.into_body().into_bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_invalid_secret_is_a_build_error() {
    let Err(err) = poem_echo::build(poem_echo::AppState::default(), Some("has spaces")) else {
        panic!("accepted an invalid secret");
    };
    assert!(err.to_string().contains("secret_token"), "{err}");
}
