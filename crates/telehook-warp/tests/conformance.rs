//! telehook-warp obeys the whole webhook contract, composed with another filter that has its
//! own state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use telehook_conformance::{BOTS_BY_SECRET_PATH, BOTS_PATH, Client, Harness, PATH, StreamingBody};
use telehook_core::{Context, HandlerError, Update, Webhook};
use warp::Filter;
use warp::reply::Response;

struct WarpHarness;

/// The composed filter, boxed so the harness can name it.
struct WarpClient(warp::filters::BoxedFilter<(Response,)>);

/// The user's own state and routes, beside the webhook at [`PATH`].
fn routes(webhook: Webhook, hits: Arc<AtomicU64>) -> warp::filters::BoxedFilter<(Response,)> {
    let health = warp::path!("health").and(warp::get()).map(move || {
        let n = hits.fetch_add(1, Ordering::Relaxed) + 1;
        warp::reply::Reply::into_response(format!("ok {n}"))
    });
    let path = PATH.trim_start_matches('/');
    warp::path(path)
        .and(warp::path::end())
        .and(telehook_warp::webhook(webhook))
        .or(health)
        .unify()
        .boxed()
}

impl Harness for WarpHarness {
    type Client = WarpClient;

    async fn serve(&self, webhook: Webhook) -> WarpClient {
        WarpClient(routes(webhook, Arc::default()))
    }

    async fn serve_bots(&self, bots: telehook_core::Bots) -> Option<WarpClient> {
        use telehook_core::{RequestHead, WebhookResponse};
        fn reply(answer: WebhookResponse) -> Response {
            let (status, headers, body, _error) = answer.into_parts();
            let mut reply = http::Response::new(body);
            *reply.status_mut() = status;
            *reply.headers_mut() = headers;
            warp::reply::Reply::into_response(reply)
        }
        let by_secret = bots.clone();
        let by_name = warp::path(BOTS_PATH.trim_start_matches('/'))
            .and(warp::path::param::<String>())
            .and(warp::path::end())
            .and(warp::method())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(move |name: String, method, headers, body: Bytes| {
                let bots = bots.clone();
                async move {
                    let head = RequestHead::from_http(&method, &headers);
                    reply(bots.handle_bytes_by_name(&name, head, body).await)
                }
            });
        let by_header = warp::path(BOTS_BY_SECRET_PATH.trim_start_matches('/'))
            .and(warp::path::end())
            .and(warp::method())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(move |method, headers, body: Bytes| {
                let bots = by_secret.clone();
                async move {
                    let head = RequestHead::from_http(&method, &headers);
                    let body = http_body_util::Full::new(body);
                    reply(
                        bots.handle_by_secret_token(head, http::Extensions::new(), body)
                            .await,
                    )
                }
            });
        Some(WarpClient(by_name.or(by_header).unify().boxed()))
    }
}

fn request(request: http::Request<Bytes>) -> warp::test::RequestBuilder {
    let (parts, body) = request.into_parts();
    let mut warp = warp::test::request()
        .method(parts.method.as_str())
        .path(&parts.uri.to_string())
        // The connection's address, as a served request has it (`warp::addr::remote`).
        .remote_addr(std::net::SocketAddr::from(([127, 0, 0, 1], 40_000)));
    for (name, value) in &parts.headers {
        warp = warp.header(name.as_str(), value.as_bytes());
    }
    warp.body(body)
}

impl Client for WarpClient {
    async fn send(&self, http: http::Request<Bytes>) -> http::Response<Bytes> {
        request(http).reply(&self.0).await
    }

    async fn send_streaming(
        &self,
        request: http::Request<StreamingBody>,
    ) -> Option<http::Response<Bytes>> {
        use http_body_util::BodyExt as _;
        use tower_service::Service as _;
        // warp's service takes `Sync` bodies; a mutex makes the stream one.
        let request = request.map(|body| SyncBody(std::sync::Mutex::new(body)));
        let mut service = warp::service(self.0.clone());
        let response = match service.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("warp body").to_bytes();
        Some(http::Response::from_parts(parts, body))
    }
}

struct SyncBody(std::sync::Mutex<StreamingBody>);

impl http_body::Body for SyncBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let mut body = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::pin::Pin::new(&mut *body).poll_frame(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warp_filter_obeys_the_webhook_contract() {
    telehook_conformance::run(&WarpHarness).await;
}

fn noop() -> Webhook {
    Webhook::builder()
        .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap()
}

#[tokio::test]
async fn own_filters_and_state_keep_working_beside_the_webhook() {
    let hits = Arc::new(AtomicU64::new(0));
    let app = routes(noop(), Arc::clone(&hits));
    let response = warp::test::request().path("/health").reply(&app).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.body(), "ok 1");
    assert_eq!(hits.load(Ordering::Relaxed), 1);
    let response = warp::test::request().path("/elsewhere").reply(&app).await;
    assert_eq!(response.status(), 404);
    let response = warp::test::request()
        .method("DELETE")
        .path(PATH)
        .reply(&app)
        .await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}

#[tokio::test]
async fn a_failure_carries_the_webhook_error_in_the_reply() {
    let webhook = Webhook::builder()
        .build(|_: Update, _: Context| async { Err::<(), HandlerError>("boom".into()) })
        .unwrap();
    let seen = warp::any()
        .and(telehook_warp::webhook(webhook))
        .map(|response: Response| {
            let error = response
                .extensions()
                .get::<telehook_core::WebhookError>()
                .cloned();
            format!(
                "{}: {}",
                response.status(),
                error.map(|e| e.to_string()).unwrap_or_default()
            )
        });
    let body = warp::test::request()
        .method("POST")
        .body(r#"{"update_id":9,"message":{"chat":{"id":1}}}"#)
        .filter(&seen)
        .await
        .unwrap();
    assert!(
        body.starts_with("500") && body.contains("update 9") && body.contains("boom"),
        "{body}"
    );
}
