//! The echo bot answers text messages with a webhook reply, keeps its own routes working, and
//! refuses requests without the secret.

use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::Client;

const SECRET: &str = "s3cr3t_T0ken-for-tests";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../crates/telehook-conformance/fixtures/updates/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn client(secret: Option<&str>) -> Client {
    let rocket = rocket_echo::rocket(rocket_echo::AppState::default(), secret).unwrap();
    Client::untracked(rocket).await.unwrap()
}

#[rocket::async_test]
async fn text_message_is_echoed_by_webhook_reply() {
    let client = client(Some(SECRET)).await;
    let response = client
        .post(rocket_echo::WEBHOOK_PATH)
        .header(Header::new("x-telegram-bot-api-secret-token", SECRET))
        .body(fixture("message_unicode.json"))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.content_type(), Some(ContentType::JSON));
    let reply: serde_json::Value =
        serde_json::from_slice(&response.into_bytes().await.unwrap()).unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&fixture("message_unicode.json")).unwrap();
    assert_eq!(reply["method"], "sendMessage");
    assert_eq!(reply["chat_id"], sent["message"]["chat"]["id"]);
    assert_eq!(reply["text"], sent["message"]["text"]);
    let stats = client.get("/stats").dispatch().await;
    let stats: serde_json::Value =
        serde_json::from_slice(&stats.into_bytes().await.unwrap()).unwrap();
    assert_eq!(stats["echoed"], 1);
}

#[rocket::async_test]
async fn own_routes_work_and_a_delivery_without_the_secret_is_refused() {
    let client = client(Some(SECRET)).await;
    assert_eq!(client.get("/healthz").dispatch().await.status(), Status::Ok);
    let response = client
        .post(rocket_echo::WEBHOOK_PATH)
        .body(fixture("message_text_private.json"))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Unauthorized);
}

#[test]
fn an_invalid_secret_is_a_build_error() {
    let Err(err) = rocket_echo::rocket(rocket_echo::AppState::default(), Some("has spaces")) else {
        panic!("accepted an invalid secret");
    };
    assert!(err.to_string().contains("secret_token"), "{err}");
}
