//! The hyper echo bot over a real loopback socket: echo by webhook reply, own routes, secret.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const SECRET: &str = "s3cr3t_T0ken-for-tests";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../crates/telehook-conformance/fixtures/updates/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn start(secret: Option<&str>) -> String {
    let state = hyper_echo::AppState::default();
    let webhook = hyper_echo::webhook(state.clone(), secret).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = hyper_echo::App {
        webhook: webhook.clone(),
        state,
    };
    tokio::spawn(async move {
        telehook::hyper::serve_with(
            listener,
            app,
            &webhook,
            std::future::pending(),
            Duration::from_secs(1),
        )
        .await;
    });
    base
}

async fn send(request: http::Request<Full<Bytes>>) -> (u16, http::HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status.as_u16(),
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn delivery(base: &str, body: Vec<u8>, secret: Option<&str>) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::post(format!("{base}{}", hyper_echo::WEBHOOK_PATH))
        .header("content-type", "application/json");
    if let Some(secret) = secret {
        request = request.header("x-telegram-bot-api-secret-token", secret);
    }
    request.body(Full::new(Bytes::from(body))).unwrap()
}

#[tokio::test]
async fn text_message_is_echoed_by_webhook_reply_and_counted() {
    let base = start(Some(SECRET)).await;
    let (status, headers, body) = send(delivery(
        &base,
        fixture("message_unicode.json"),
        Some(SECRET),
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&fixture("message_unicode.json")).unwrap();
    assert_eq!(reply["method"], "sendMessage");
    assert_eq!(reply["text"], sent["message"]["text"]);
    let (status, _, stats) = send(
        http::Request::get(format!("{base}/stats"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&stats).unwrap()["echoed"],
        1
    );
}

#[tokio::test]
async fn own_routes_work_and_unknown_paths_are_404() {
    let base = start(Some(SECRET)).await;
    let (status, _, body) = send(
        http::Request::get(format!("{base}/healthz"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.as_ref()), (200, &b"ok"[..]));
    let (status, _, _) = send(
        http::Request::get(format!("{base}/nope"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn delivery_without_the_secret_is_refused_and_accepted_when_none_is_set() {
    let base = start(Some(SECRET)).await;
    assert_eq!(
        send(delivery(&base, fixture("message_text_private.json"), None))
            .await
            .0,
        401
    );
    let open = start(None).await;
    assert_eq!(
        send(delivery(&open, fixture("message_text_private.json"), None))
            .await
            .0,
        200
    );
}
