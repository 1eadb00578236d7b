//! Each update reaches the bot its path or secret names, and nobody else's.

use axum::body::Body;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

const UPDATE: &str = r#"{"update_id":1,"message":{"message_id":1,"date":0,"chat":{"id":42,"type":"private"},"text":"hi"}}"#;

async fn deliver(app: &axum::Router, path: &str, secret: &str, id: u64) -> (u16, String) {
    let body = UPDATE.replace("\"update_id\":1", &format!("\"update_id\":{id}"));
    let request = axum::http::Request::post(path)
        .header("x-telegram-bot-api-secret-token", secret)
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn path_and_secret_routing_reach_the_right_bot_only() {
    let app = axum_multibot::app(axum_multibot::bots("alpha_Secret-1", "beta_Secret-2").unwrap());
    let (status, body) = deliver(&app, "/bot/alpha", "alpha_Secret-1", 1).await;
    assert_eq!((status, body.contains("alpha here")), (200, true), "{body}");
    let (status, body) = deliver(&app, "/bot/beta", "beta_Secret-2", 2).await;
    assert_eq!((status, body.contains("beta here")), (200, true), "{body}");
    assert_eq!(deliver(&app, "/bot/alpha", "beta_Secret-2", 3).await.0, 401);
    assert_eq!(
        deliver(&app, "/bot/gamma", "alpha_Secret-1", 4).await.0,
        404
    );
    let (status, body) = deliver(&app, "/telegram", "beta_Secret-2", 5).await;
    assert_eq!((status, body.contains("beta here")), (200, true), "{body}");
    let (status, body) = deliver(&app, "/telegram", "alpha_Secret-1", 6).await;
    assert_eq!((status, body.contains("alpha here")), (200, true), "{body}");
    assert_eq!(deliver(&app, "/telegram", "nobody", 7).await.0, 401);
}
