//! telehook-axum obeys the whole webhook contract, mounted next to another route with state.

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use telehook_axum::RouterExt as _;
use telehook_conformance::{BOTS_BY_SECRET_PATH, BOTS_PATH, Client, Harness, PATH, StreamingBody};
use telehook_core::Webhook;
use tower::ServiceExt as _;

struct AxumHarness;

struct AxumClient(Router);

impl Harness for AxumHarness {
    type Client = AxumClient;

    async fn serve(&self, webhook: Webhook) -> AxumClient {
        let app = Router::new()
            .route(
                "/health",
                get(|axum::extract::State(s): axum::extract::State<&'static str>| async move { s }),
            )
            .telegram_webhook(PATH, webhook)
            .with_state("ok");
        AxumClient(app)
    }

    async fn serve_bots(&self, bots: telehook_core::Bots) -> Option<AxumClient> {
        use axum::extract::{Path, Request};
        use axum::response::IntoResponse as _;
        use telehook_core::RequestHead;
        let by_secret = bots.clone();
        let app = Router::new()
            .route(
                &format!("{BOTS_PATH}/{{name}}"),
                axum::routing::any(move |Path(name): Path<String>, request: Request| {
                    let bots = bots.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let head = RequestHead::from_http(&parts.method, &parts.headers);
                        let answer = bots.handle_by_name(&name, head, parts.extensions, body);
                        answer.await.into_http().into_response()
                    }
                }),
            )
            .route(
                BOTS_BY_SECRET_PATH,
                axum::routing::any(move |request: Request| {
                    let bots = by_secret.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let head = RequestHead::from_http(&parts.method, &parts.headers);
                        let answer = bots.handle_by_secret_token(head, parts.extensions, body);
                        answer.await.into_http().into_response()
                    }
                }),
            );
        Some(AxumClient(app))
    }
}

impl Client for AxumClient {
    async fn send(&self, request: http::Request<Bytes>) -> http::Response<Bytes> {
        let mut request = request.map(axum::body::Body::from);
        // What `into_make_service_with_connect_info::<SocketAddr>()` puts in every request.
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                40_000,
            ))));
        let response = match self.0.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("axum body").to_bytes();
        http::Response::from_parts(parts, body)
    }

    async fn send_streaming(
        &self,
        request: http::Request<StreamingBody>,
    ) -> Option<http::Response<Bytes>> {
        let request = request.map(axum::body::Body::new);
        let response = match self.0.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("axum body").to_bytes();
        Some(http::Response::from_parts(parts, body))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_router_obeys_the_webhook_contract() {
    telehook_conformance::run(&AxumHarness).await;
}

#[tokio::test]
async fn own_routes_and_state_keep_working_beside_the_webhook() {
    let webhook = Webhook::builder()
        .build(
            |_: telehook_core::Update, _: telehook_core::Context| async {
                Ok::<_, telehook_core::HandlerError>(())
            },
        )
        .unwrap();
    let app = AxumHarness.serve(webhook).await.0;
    let request = http::Request::get("/health")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "ok"
    );
    let request = http::Request::get("/elsewhere")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(request).await.unwrap().status(), 404);
}

#[tokio::test]
async fn handle_works_inside_an_own_axum_handler() {
    let webhook = Webhook::builder()
        .build(
            |_: telehook_core::Update, _: telehook_core::Context| async {
                Ok::<_, telehook_core::HandlerError>(())
            },
        )
        .unwrap();
    let app = Router::new().route(
        "/hook",
        axum::routing::any(move |request: axum::extract::Request| {
            let webhook = webhook.clone();
            async move { telehook_axum::handle(&webhook, request).await }
        }),
    );
    let body = r#"{"update_id":5,"message":{"chat":{"id":1}}}"#;
    let request = http::Request::post("/hook")
        .body(axum::body::Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let request = http::Request::post("/hook")
        .body(axum::body::Body::from("nope"))
        .unwrap();
    assert_eq!(app.oneshot(request).await.unwrap().status(), 400);
}
