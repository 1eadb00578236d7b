//! The echo bot answers text messages with a webhook reply, keeps its own routes working, and
//! refuses requests without the secret.

use actix_web::{App, test};

const SECRET: &str = "s3cr3t_T0ken-for-tests";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../crates/telehook-conformance/fixtures/updates/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn app(
    state: actix_echo::AppState,
    secret: Option<&str>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new().configure(actix_echo::configure(state, secret).unwrap())
}

fn delivery(body: Vec<u8>, secret: Option<&str>) -> test::TestRequest {
    let mut request = test::TestRequest::post()
        .uri(actix_echo::WEBHOOK_PATH)
        .insert_header(("content-type", "application/json"));
    if let Some(secret) = secret {
        request = request.insert_header(("x-telegram-bot-api-secret-token", secret));
    }
    request.set_payload(body)
}

#[actix_web::test]
async fn text_message_is_echoed_by_webhook_reply() {
    let state = actix_echo::AppState::default();
    let app = test::init_service(app(state.clone(), Some(SECRET))).await;
    let response = test::call_service(
        &app,
        delivery(fixture("message_unicode.json"), Some(SECRET)).to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
    let reply: serde_json::Value =
        serde_json::from_slice(&test::read_body(response).await).unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&fixture("message_unicode.json")).unwrap();
    assert_eq!(reply["method"], "sendMessage");
    assert_eq!(reply["chat_id"], sent["message"]["chat"]["id"]);
    assert_eq!(reply["text"], sent["message"]["text"]);

    let stats: serde_json::Value =
        test::call_and_read_body_json(&app, test::TestRequest::get().uri("/stats").to_request())
            .await;
    assert_eq!(stats["echoed"], 1);
}

#[actix_web::test]
async fn non_text_update_is_acknowledged_without_reply() {
    let app = test::init_service(app(actix_echo::AppState::default(), Some(SECRET))).await;
    let response = test::call_service(
        &app,
        delivery(fixture("callback_query.json"), Some(SECRET)).to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(test::read_body(response).await.is_empty());
}

#[actix_web::test]
async fn delivery_without_the_secret_is_refused() {
    let app = test::init_service(app(actix_echo::AppState::default(), Some(SECRET))).await;
    let response = test::call_service(
        &app,
        delivery(fixture("message_text_private.json"), None).to_request(),
    )
    .await;
    assert_eq!(response.status(), 401);
}

#[actix_web::test]
async fn without_a_secret_deliveries_are_accepted() {
    let app = test::init_service(app(actix_echo::AppState::default(), None)).await;
    let response = test::call_service(
        &app,
        delivery(fixture("message_text_private.json"), None).to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let health =
        test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(health.status(), 200);
}

#[actix_web::test]
async fn an_invalid_secret_is_a_build_error() {
    let Err(err) = actix_echo::configure(actix_echo::AppState::default(), Some("has spaces"))
    else {
        panic!("a secret with spaces was accepted");
    };
    assert!(err.to_string().contains("secret_token"), "{err}");
}
