//! Refused deliveries: each carries a typed reason matching its status and body.

use bytes::Bytes;
use telehook_core::{RequestHead, Webhook};

use super::ok_handler;

#[tokio::test]
async fn every_refusal_carries_a_typed_reason_matching_its_answer() {
    use telehook_core::Rejection;
    let webhook = Webhook::builder()
        .secret_token("right_token")
        .max_body_bytes(64)
        .build(ok_handler)
        .unwrap();
    let send = |method: &'static str,
                secret: Option<&'static str>,
                length: Option<&'static str>,
                body: &'static str| {
        webhook.handle_bytes(
            RequestHead::new(method, move |name| match name {
                "x-telegram-bot-api-secret-token" => secret.map(str::as_bytes),
                "content-length" => length.map(str::as_bytes),
                _ => None,
            }),
            Bytes::from_static(body.as_bytes()),
        )
    };
    let long = "x".repeat(100).leak();
    let cases = [
        (
            send("GET", Some("right_token"), None, "{}").await,
            Rejection::MethodNotAllowed,
        ),
        (
            send("POST", Some("wrong"), None, "{}").await,
            Rejection::WrongSecretToken,
        ),
        (
            send("POST", Some("right_token"), Some("12x"), "{}").await,
            Rejection::InvalidContentLength,
        ),
        (
            send("POST", Some("right_token"), None, long).await,
            Rejection::PayloadTooLarge { limit: 64 },
        ),
    ];
    for (response, expected) in cases {
        assert_eq!(response.rejection(), Some(&expected));
        assert_eq!(response.status(), expected.status());
        assert_eq!(response.body(), expected.body_text().as_bytes());
        assert!(response.error().is_none());
    }
    let response = send("POST", Some("right_token"), None, r#"{"update_id":0}"#).await;
    assert!(matches!(
        response.rejection(),
        Some(Rejection::NotAnUpdate(_))
    ));
    assert_eq!(response.status(), 400);
    let ok = send("POST", Some("right_token"), None, r#"{"update_id":5}"#).await;
    assert_eq!((ok.status(), ok.rejection()), (http::StatusCode::OK, None));
}
