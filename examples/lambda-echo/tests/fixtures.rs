//! The function's logic on the Lambda fixture events, locally.

use lambda_http::Body;

const SECRET: &str = "s3cr3t_T0ken-for-tests";

async fn invoke(name: &str, secret: Option<&str>) -> lambda_http::Response<Body> {
    let path = format!(
        "{}/../../crates/telehook-conformance/fixtures/lambda/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let event = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let request = lambda_http::request::from_str(&event).unwrap();
    let webhook = lambda_echo::webhook(lambda_echo::AppState::default(), secret).unwrap();
    telehook::lambda::handle(&webhook, request).await
}

#[tokio::test]
async fn every_event_shape_gets_the_echo() {
    for name in [
        "function_url_post.json",
        "function_url_post_base64.json",
        "apigw_v2_post.json",
        "apigw_v1_post.json",
        "alb_post.json",
    ] {
        let response = invoke(name, Some(SECRET)).await;
        assert_eq!(response.status(), 200, "{name}");
        let Body::Text(text) = response.body() else {
            panic!("{name}: {:?}", response.body())
        };
        let reply: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(reply["text"], "Do you have salted caramel today?", "{name}");
        assert_eq!(reply["method"], "sendMessage", "{name}");
    }
}

#[tokio::test]
async fn wrong_secret_and_get_are_refused() {
    assert_eq!(
        invoke("function_url_post_wrong_secret.json", Some(SECRET))
            .await
            .status(),
        401
    );
    assert_eq!(
        invoke("function_url_get.json", Some(SECRET)).await.status(),
        405
    );
}

#[tokio::test]
async fn without_a_secret_the_event_is_accepted() {
    assert_eq!(
        invoke("function_url_post_wrong_secret.json", None)
            .await
            .status(),
        200
    );
}
