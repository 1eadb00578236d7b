//! telehook-vercel obeys the whole webhook contract, derives the deadline from `maxDuration`,
//! and keeps the invocation alive (`waitUntil`) for runs that go on after the answer.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use telehook_conformance::{BOTS_BY_SECRET_PATH, BOTS_PATH, Client, Harness, StreamingBody};
use telehook_core::{Context, HandlerError, Update, Webhook};
use vercel_runtime::{AppState, LogContext};

const MAX_DURATION: Duration = Duration::from_secs(300);

fn state() -> AppState {
    AppState::new(LogContext::new(None, None, None))
}

async fn into_bytes(
    response: http::Response<vercel_runtime::ResponseBody>,
) -> http::Response<Bytes> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    http::Response::from_parts(parts, body)
}

struct VercelHarness;

enum VercelClient {
    One(Webhook),
    /// Several bots behind one function: the route picks the bot, then `telehook_vercel::handle`
    /// serves it; a request for no bot gets the core's refusal.
    Bots(telehook_core::Bots),
}

impl Harness for VercelHarness {
    type Client = VercelClient;

    async fn serve(&self, webhook: Webhook) -> VercelClient {
        VercelClient::One(webhook)
    }

    async fn serve_bots(&self, bots: telehook_core::Bots) -> Option<VercelClient> {
        Some(VercelClient::Bots(bots))
    }
}

impl VercelClient {
    async fn handle<B>(&self, request: http::Request<B>) -> http::Response<Bytes>
    where
        B: http_body::Body + 'static,
        B::Error: std::fmt::Display,
    {
        let bots = match self {
            Self::One(webhook) => {
                return into_bytes(
                    telehook_vercel::handle(webhook, &state(), request, MAX_DURATION).await,
                )
                .await;
            }
            Self::Bots(bots) => bots,
        };
        let path = request.uri().path().to_owned();
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
            bots.by_secret_token(secret).cloned()
        } else {
            bots.get(name).cloned()
        };
        if let Some(webhook) = chosen {
            return into_bytes(
                telehook_vercel::handle(&webhook, &state(), request, MAX_DURATION).await,
            )
            .await;
        }
        // No such bot: the core's refusal (404 by path, 401 by secret).
        let (parts, body) = request.into_parts();
        let head = telehook_core::RequestHead::from_http(&parts.method, &parts.headers);
        let answer = if by_secret {
            bots.handle_by_secret_token(head, parts.extensions, body)
                .await
        } else {
            bots.handle_by_name(name, head, parts.extensions, body)
                .await
        };
        let (status, headers, body, _error) = answer.into_parts();
        let mut response = http::Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}

/// What Vercel's proxy does to every request: `X-Real-IP` is the client's address (loopback
/// here, as the cases expect), whatever the client sent.
fn from_vercels_proxy<B>(mut request: http::Request<B>) -> http::Request<B> {
    request
        .headers_mut()
        .insert("x-real-ip", http::HeaderValue::from_static("127.0.0.1"));
    request
}

impl Client for VercelClient {
    async fn send(&self, request: http::Request<Bytes>) -> http::Response<Bytes> {
        let request = from_vercels_proxy(request).map(http_body_util::Full::new);
        self.handle(request).await
    }

    async fn send_streaming(
        &self,
        request: http::Request<StreamingBody>,
    ) -> Option<http::Response<Bytes>> {
        Some(self.handle(from_vercels_proxy(request)).await)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vercel_requests_obey_the_webhook_contract() {
    telehook_conformance::run(&VercelHarness).await;
}

fn post(body: &'static str) -> http::Request<http_body_util::Full<Bytes>> {
    http::Request::post("/api/telegram")
        .body(http_body_util::Full::new(Bytes::from(body)))
        .unwrap()
}

#[tokio::test]
async fn the_handler_sees_the_deadline_of_max_duration_less_the_margin() {
    let (seen, deadline) = tokio::sync::oneshot::channel();
    let seen = std::sync::Mutex::new(Some(seen));
    let webhook = Webhook::builder()
        .timeout(Duration::from_secs(60))
        .build(move |_: Update, ctx: Context| {
            let _ = seen
                .lock()
                .unwrap()
                .take()
                .map(|seen| seen.send(ctx.deadline()));
            async { Ok::<_, HandlerError>(()) }
        })
        .unwrap();
    let before = std::time::Instant::now();
    let max_duration = Duration::from_secs(10);
    let response = telehook_vercel::handle(
        &webhook,
        &state(),
        post(r#"{"update_id":1,"message":{"chat":{"id":1}}}"#),
        max_duration,
    )
    .await;
    let after = std::time::Instant::now();
    assert_eq!(response.status(), 200);
    // 10 s less the margin is shorter than the configured 60 s timeout: it wins.
    let deadline = deadline.await.unwrap().expect("a deadline");
    let budget = max_duration - telehook_vercel::DEADLINE_MARGIN;
    assert!(deadline >= before + budget && deadline <= after + budget);
}

#[tokio::test]
async fn a_max_duration_below_the_timeout_answers_503_before_vercel_would() {
    let webhook = Webhook::builder()
        .timeout(Duration::from_secs(60))
        .build(|_: Update, _: Context| async {
            std::future::pending::<()>().await;
            Ok::<_, HandlerError>(())
        })
        .unwrap();
    // A maxDuration within the margin leaves no time at all: the answer is the timeout's 503.
    let response = telehook_vercel::handle(
        &webhook,
        &state(),
        post(r#"{"update_id":2,"message":{"chat":{"id":1}}}"#),
        telehook_vercel::DEADLINE_MARGIN,
    )
    .await;
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn the_client_address_vercel_sets_is_the_peer_for_the_source_allowlist() {
    let webhook = Webhook::builder()
        .source_allowlist(telehook_core::SourceAllowlist::telegram())
        .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap();
    let send = |real_ip: Option<&'static str>| {
        let mut request = post(r#"{"update_id":1,"message":{"chat":{"id":1}}}"#);
        if let Some(ip) = real_ip {
            request
                .headers_mut()
                .insert("x-real-ip", http::HeaderValue::from_static(ip));
        }
        let webhook = webhook.clone();
        async move {
            telehook_vercel::handle(&webhook, &state(), request, MAX_DURATION)
                .await
                .status()
        }
    };
    assert_eq!(send(Some("149.154.167.99")).await, 200);
    assert_eq!(send(Some("1.2.3.4")).await, 403);
    assert_eq!(send(Some("not an address")).await, 403);
    assert_eq!(send(None).await, 403);
}
