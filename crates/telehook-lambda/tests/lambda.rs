//! telehook-lambda obeys the whole webhook contract through real Lambda events, and handles
//! every fixture event shape.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use telehook_conformance::{Client, Harness, fixture};
use telehook_core::{Context, HandlerError, OnTimeout, Update, Webhook};

/// Builds a Function URL event carrying `request` (body base64-encoded, as Lambda does for
/// arbitrary bytes), and parses it the way the Lambda runtime does.
fn event_for(request: &http::Request<Bytes>) -> lambda_http::Request {
    let mut event: Value =
        serde_json::from_slice(&fixture("lambda/function_url_post.json")).unwrap();
    let mut headers = serde_json::Map::new();
    for (name, value) in request.headers() {
        headers.insert(name.as_str().to_owned(), json!(value.to_str().unwrap()));
    }
    headers.insert(
        "content-length".into(),
        json!(request.body().len().to_string()),
    );
    event["headers"] = Value::Object(headers);
    event["requestContext"]["http"]["method"] = json!(request.method().as_str());
    event["rawPath"] = json!(request.uri().path());
    event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(request.body()));
    event["isBase64Encoded"] = json!(true);
    lambda_http::request::from_str(&event.to_string()).expect("a Lambda event")
}

fn into_bytes_response(
    response: lambda_http::Response<lambda_http::Body>,
) -> http::Response<Bytes> {
    let (parts, body) = response.into_parts();
    let body = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(text) => Bytes::from(text),
        lambda_http::Body::Binary(bytes) => Bytes::from(bytes),
        other => panic!("unexpected body {other:?}"),
    };
    http::Response::from_parts(parts, body)
}

struct LambdaHarness;

struct LambdaClient(Webhook);

impl Harness for LambdaHarness {
    type Client = LambdaClient;
    async fn serve(&self, webhook: Webhook) -> LambdaClient {
        LambdaClient(webhook)
    }
}

impl Client for LambdaClient {
    async fn send(&self, request: http::Request<Bytes>) -> http::Response<Bytes> {
        into_bytes_response(telehook_lambda::handle(&self.0, event_for(&request)).await)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_events_obey_the_webhook_contract() {
    telehook_conformance::run(&LambdaHarness).await;
}

fn echo_webhook() -> Webhook {
    Webhook::builder()
        .secret_token(telehook_conformance::SECRET)
        .build(|update: Update, ctx: Context| async move {
            let value: Value = update.deserialize()?;
            ctx.webhook_reply(
                "sendMessage",
                json!({"chat_id": update.chat_id(), "text": value["message"]["text"]}),
            )?;
            Ok::<_, HandlerError>(())
        })
        .unwrap()
}

async fn call_fixture(name: &str) -> http::Response<Bytes> {
    let event = String::from_utf8(fixture(&format!("lambda/{name}")).to_vec()).unwrap();
    let request = lambda_http::request::from_str(&event).unwrap_or_else(|e| panic!("{name}: {e}"));
    into_bytes_response(telehook_lambda::handle(&echo_webhook(), request).await)
}

#[tokio::test]
async fn every_post_event_shape_is_handled_with_the_webhook_reply() {
    for name in [
        "function_url_post.json",
        "apigw_v2_post.json",
        "apigw_v1_post.json",
        "alb_post.json",
        "function_url_post_base64.json",
    ] {
        let response = call_fixture(name).await;
        assert_eq!(response.status(), 200, "{name}: {:?}", response.body());
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{name}"
        );
        let reply: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(
            reply,
            json!({"method": "sendMessage", "chat_id": 111_111_111, "text": "Do you have salted caramel today?"}),
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_wrong_secret_event_is_401() {
    assert_eq!(
        call_fixture("function_url_post_wrong_secret.json")
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn the_get_event_is_405_with_allow() {
    let response = call_fixture("function_url_get.json").await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}

#[tokio::test]
async fn return_on_timeout_is_refused_at_start_up() {
    let webhook = Webhook::builder()
        .on_timeout(OnTimeout::Return)
        .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap();
    let error = telehook_lambda::run(webhook).await.unwrap_err();
    assert!(matches!(
        error,
        telehook_lambda::LambdaError::ReturnOnTimeout
    ));
    assert!(error.to_string().contains("frozen"), "{error}");
}
