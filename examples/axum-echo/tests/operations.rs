//! `/metrics` shows the dispatcher's metrics in Prometheus format after real deliveries, and
//! `/readyz` turns 503 once the webhook drains.

use axum::body::Body;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

const SECRET: &str = "s3cr3t_T0ken-for-tests";

async fn get(app: &axum::Router, path: &str) -> (u16, String) {
    let response = app
        .clone()
        .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn metrics_and_readiness_are_served() {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder in this test binary");
    let (app, webhook) = axum_echo::build(axum_echo::AppState::default(), Some(SECRET)).unwrap();
    let app = app.merge(axum_echo::operations(&webhook, metrics));
    let body = r#"{"update_id":5,"message":{"message_id":1,"date":0,"chat":{"id":42,"type":"private"},"text":"hi"}}"#;
    for secret in [SECRET, "wrong"] {
        let delivery = axum::http::Request::post(axum_echo::WEBHOOK_PATH)
            .header("x-telegram-bot-api-secret-token", secret)
            .body(Body::from(body))
            .unwrap();
        app.clone().oneshot(delivery).await.unwrap();
    }
    let (status, text) = get(&app, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "telehook_updates_received_total{kind=\"message\"} 1",
        "telehook_updates_handled_total 1",
        "telehook_requests_refused_total{reason=\"wrong_secret_token\"} 1",
        "telehook_handlers_in_flight 0",
        "telehook_handler_duration_seconds_count{outcome=\"ok\"} 1",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(get(&app, "/readyz").await.0, 200);
    webhook.begin_drain();
    assert_eq!(get(&app, "/readyz").await.0, 503);
}
