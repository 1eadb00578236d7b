//! telehook-lambda obeys the whole webhook contract through real Lambda events, and handles
//! every fixture event shape.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use telehook_conformance::{BOTS_BY_SECRET_PATH, BOTS_PATH, Client, Harness, fixture};
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
    // The caller API Gateway saw, passed on as the peer: loopback, as the cases expect.
    event["requestContext"]["http"]["sourceIp"] = json!("127.0.0.1");
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

enum LambdaClient {
    One(Webhook),
    /// Several bots behind one function: the route picks the bot, then `telehook_lambda::handle`
    /// serves it; a request for no bot gets the core's refusal.
    Bots(telehook_core::Bots),
}

impl Harness for LambdaHarness {
    type Client = LambdaClient;
    async fn serve(&self, webhook: Webhook) -> LambdaClient {
        LambdaClient::One(webhook)
    }
    async fn serve_bots(&self, bots: telehook_core::Bots) -> Option<LambdaClient> {
        Some(LambdaClient::Bots(bots))
    }
}

impl Client for LambdaClient {
    async fn send(&self, request: http::Request<Bytes>) -> http::Response<Bytes> {
        let bots = match self {
            Self::One(webhook) => {
                return into_bytes_response(
                    telehook_lambda::handle(webhook, event_for(&request)).await,
                );
            }
            Self::Bots(bots) => bots,
        };
        let path = request.uri().path();
        let by_secret = path == BOTS_BY_SECRET_PATH;
        let name = path
            .strip_prefix(BOTS_PATH)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or_default();
        let chosen = if by_secret {
            let secret = request
                .headers()
                .get("x-telegram-bot-api-secret-token")
                .map(http::HeaderValue::as_bytes);
            bots.by_secret_token(secret)
        } else {
            bots.get(name)
        };
        if let Some(webhook) = chosen {
            return into_bytes_response(
                telehook_lambda::handle(webhook, event_for(&request)).await,
            );
        }
        // No such bot: the core's refusal (404 by path, 401 by secret).
        let head = telehook_core::RequestHead::from_http(request.method(), request.headers());
        let body = request.body().clone();
        let answer = if by_secret {
            let body = lambda_http::Body::Binary(body.to_vec());
            bots.handle_by_secret_token(head, http::Extensions::new(), body)
                .await
        } else {
            bots.handle_bytes_by_name(name, head, body).await
        };
        let (status, headers, body, _error) = answer.into_parts();
        let mut response = http::Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
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

#[tokio::test]
async fn a_refusal_prints_its_full_reason_through_debug() {
    let webhook = Webhook::builder()
        .on_timeout(OnTimeout::Return)
        .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap();
    // Refused before the runtime starts: without the AWS_LAMBDA_* variables, starting it
    // would panic, so returning at all shows nothing waits for an invocation.
    let error = telehook_lambda::run(webhook).await.unwrap_err();
    // What `fn main() -> Result<(), LambdaError>` prints after "Error: ".
    let debug = format!("{error:?}");
    assert!(
        debug.contains("frozen") && debug.contains("OnTimeout::Throw"),
        "{debug}"
    );
    // And with `fn main() -> Result<(), Box<dyn Error>>`.
    let boxed: Box<dyn std::error::Error> = error.into();
    let debug = format!("{boxed:?}");
    assert!(debug.contains("frozen"), "{debug}");
}

/// A Function URL request carrying the runtime's context, as `lambda_http` hands it over.
fn invocation_request(request_id: &str, deadline_in: std::time::Duration) -> lambda_http::Request {
    use lambda_http::RequestExt as _;
    let body = r#"{"update_id":77,"message":{"chat":{"id":5},"text":"hi"}}"#;
    let request = http::Request::post("/")
        .header(
            "x-telegram-bot-api-secret-token",
            telehook_conformance::SECRET,
        )
        .header("content-type", "application/json")
        .body(Bytes::from(body))
        .unwrap();
    let mut context = lambda_http::Context::default();
    context.request_id = request_id.to_owned();
    let deadline = std::time::SystemTime::now() + deadline_in;
    context.deadline = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    event_for(&request).with_lambda_context(context)
}

#[tokio::test]
async fn the_invocation_deadline_shortens_the_timeout_and_the_handler_sees_it() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let for_handler = seen.clone();
    let webhook = Webhook::builder()
        .secret_token(telehook_conformance::SECRET)
        .timeout(std::time::Duration::from_secs(600))
        .build(move |_: Update, ctx: Context| {
            let seen = for_handler.clone();
            async move {
                let invocation = ctx.extension::<telehook_lambda::Invocation>().cloned();
                *seen.lock().unwrap() = Some((invocation, ctx.deadline()));
                // Far longer than the invocation: only the deadline can end the wait.
                tokio::time::sleep(std::time::Duration::from_secs(600)).await;
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    let config = telehook_lambda::LambdaConfig::default()
        .safety_margin(std::time::Duration::from_millis(300));
    let request = invocation_request("req-1234", std::time::Duration::from_millis(800));
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        telehook_lambda::handle_with(&webhook, request, &config),
    )
    .await
    .expect("answered long before the configured timeout");
    assert_eq!(response.status(), 503);
    let (invocation, deadline) = seen.lock().unwrap().clone().expect("the handler ran");
    let invocation = invocation.expect("the handler sees the invocation");
    assert_eq!(invocation.request_id, "req-1234");
    let deadline = deadline.expect("a webhook delivery has a deadline");
    let lambda_deadline = invocation.deadline_instant.expect("ahead when it started");
    assert!(
        deadline + std::time::Duration::from_millis(300)
            <= lambda_deadline + std::time::Duration::from_millis(5),
        "the handler's deadline keeps the safety margin before Lambda's"
    );
}

#[tokio::test]
async fn an_invocation_past_its_deadline_is_answered_at_once() {
    let webhook = Webhook::builder()
        .secret_token(telehook_conformance::SECRET)
        .build(|_: Update, _: Context| async {
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
            Ok::<_, HandlerError>(())
        })
        .unwrap();
    let request = invocation_request("late", std::time::Duration::from_millis(100));
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        telehook_lambda::handle(&webhook, request),
    )
    .await
    .expect("answered");
    assert_eq!(response.status(), 503);
}

#[test]
fn a_runtime_failure_prints_its_cause_through_debug() {
    let error = telehook_lambda::LambdaError::Runtime("connection refused".into());
    let debug = format!("{error:?}");
    assert!(
        debug.contains("the Lambda runtime failed")
            && debug.contains("caused by: connection refused"),
        "{debug}"
    );
}

#[tokio::test]
async fn outside_lambda_run_returns_an_error_saying_what_to_do() {
    if telehook_lambda::RUNTIME_ENVIRONMENT
        .iter()
        .any(|name| std::env::var_os(name).is_some())
    {
        return; // the test itself runs on Lambda (or under `cargo lambda`)
    }
    let webhook = Webhook::builder()
        .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap();
    // The Lambda runtime would panic here ("Missing AWS_LAMBDA_FUNCTION_NAME env var").
    let error = telehook_lambda::run(webhook).await.unwrap_err();
    assert!(
        matches!(error, telehook_lambda::LambdaError::NotOnLambda { .. }),
        "{error:?}"
    );
    let debug = format!("{error:?}");
    assert!(
        debug.contains("not running on AWS Lambda") && debug.contains("cargo lambda watch"),
        "{debug}"
    );
}

#[tokio::test]
async fn the_gateways_source_ip_is_the_peer_for_the_source_allowlist() {
    let webhook = |list: telehook_core::SourceAllowlist| {
        Webhook::builder()
            .secret_token("s3cr3t_T0ken-for-tests")
            .source_allowlist(list)
            .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
            .unwrap()
    };
    let telegram = webhook(telehook_core::SourceAllowlist::telegram());
    let others = webhook(telehook_core::SourceAllowlist::new(["192.0.2.0/24"]).unwrap());
    // Every fixture event comes from 149.154.167.220, a Telegram address.
    for name in [
        "apigw_v1_post.json",
        "apigw_v2_post.json",
        "function_url_post.json",
    ] {
        let event = || {
            let text = fixture(&format!("lambda/{name}"));
            lambda_http::request::from_str(std::str::from_utf8(&text).unwrap()).unwrap()
        };
        let admitted = telehook_lambda::handle(&telegram, event()).await;
        assert_ne!(
            admitted.status(),
            403,
            "{name}: a Telegram source was refused"
        );
        let refused = telehook_lambda::handle(&others, event()).await;
        assert_eq!(
            refused.status(),
            403,
            "{name}: a source outside the list was admitted"
        );
    }
}
