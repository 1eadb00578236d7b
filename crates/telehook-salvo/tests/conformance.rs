//! telehook-salvo obeys the whole webhook contract, mounted next to another handler with
//! injected state, and drains on shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use salvo::affix_state;
use salvo::http::ReqBody;
use salvo::prelude::*;
use salvo::test::{RequestBuilder, ResponseExt as _};
use telehook_conformance::{BOTS_BY_SECRET_PATH, BOTS_PATH, Client, Harness, PATH};
use telehook_core::{Context, HandlerError, Update, Webhook};

#[handler]
async fn health(depot: &mut Depot) -> String {
    depot
        .get_typed::<&'static str>()
        .copied()
        .unwrap_or("missing")
        .to_owned()
}

fn app(webhook: Webhook) -> Router {
    Router::new()
        .hoop(affix_state::inject("ok"))
        .push(Router::with_path("health").get(health))
        .push(telehook_salvo::router(PATH, webhook))
}

struct SalvoHarness;

struct SalvoClient(Arc<Service>);

impl Harness for SalvoHarness {
    type Client = SalvoClient;

    async fn serve(&self, webhook: Webhook) -> SalvoClient {
        SalvoClient(Arc::new(Service::new(app(webhook))))
    }

    async fn serve_bots(&self, bots: telehook_core::Bots) -> Option<SalvoClient> {
        let router = Router::new()
            .push(
                Router::with_path(format!("{}/{{name}}", BOTS_PATH.trim_start_matches('/')))
                    .goal(BotsHandler(bots.clone(), true)),
            )
            .push(
                Router::with_path(BOTS_BY_SECRET_PATH.trim_start_matches('/'))
                    .goal(BotsHandler(bots, false)),
            );
        Some(SalvoClient(Arc::new(Service::new(router))))
    }
}

/// Routes to one of several bots: by the `name` path parameter (`true`) or by the secret header.
struct BotsHandler(telehook_core::Bots, bool);

#[async_trait]
impl Handler for BotsHandler {
    async fn handle(
        &self,
        request: &mut Request,
        _depot: &mut Depot,
        response: &mut Response,
        _ctrl: &mut FlowCtrl,
    ) {
        let body = request.take_body();
        let extensions = request.extensions().clone();
        let head = telehook_core::RequestHead::from_http(request.method(), request.headers());
        let answer = if self.1 {
            let name = request.param::<String>("name").unwrap_or_default();
            self.0.handle_by_name(&name, head, extensions, body).await
        } else {
            self.0.handle_by_secret_token(head, extensions, body).await
        };
        let (status, headers, body, _error) = answer.into_parts();
        response.status_code(status);
        response.set_headers(headers);
        response.replace_body(salvo::http::ResBody::Once(body));
    }
}

impl Client for SalvoClient {
    async fn send(&self, request: http::Request<Bytes>) -> http::Response<Bytes> {
        send(&self.0, request).await
    }

    async fn send_streaming(
        &self,
        request: http::Request<telehook_conformance::StreamingBody>,
    ) -> Option<http::Response<Bytes>> {
        use futures_util::StreamExt as _;
        let (parts, mut body) = request.into_parts();
        // Salvo's boxed body must be `Sync`; the test body is not, so a task forwards it.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        tokio::spawn(async move {
            while let Some(Ok(chunk)) = body.next().await {
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
        });
        let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
            let chunk = rx.recv().await?;
            Some((
                Ok::<_, salvo::BoxedError>(http_body::Frame::data(chunk)),
                rx,
            ))
        });
        let body = ReqBody::Boxed {
            inner: Box::pin(http_body_util::StreamBody::new(chunks)),
            fuse_config: None,
        };
        Some(send_body(&self.0, parts, body).await)
    }
}

async fn send(service: &Service, request: http::Request<Bytes>) -> http::Response<Bytes> {
    let (parts, body) = request.into_parts();
    send_body(service, parts, ReqBody::from(body)).await
}

async fn send_body(
    service: &Service,
    parts: http::request::Parts,
    body: ReqBody,
) -> http::Response<Bytes> {
    let mut builder = RequestBuilder::new(format!("http://127.0.0.1{}", parts.uri), parts.method);
    for (name, value) in &parts.headers {
        builder = builder.add_header(name, value, false);
    }
    let mut request = builder.body(body).build();
    // As salvo's server does: the connection's peer is the request's `remote_addr`.
    *request.remote_addr_mut() = std::net::SocketAddr::from(([127, 0, 0, 1], 40000)).into();
    let mut response = service.handle(request).await;
    let mut converted =
        http::Response::builder().status(response.status_code.unwrap_or(StatusCode::OK));
    for (name, value) in response.headers() {
        converted = converted.header(name, value);
    }
    let body = response.take_bytes(None).await.expect("salvo body");
    converted.body(body).expect("response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salvo_router_obeys_the_webhook_contract() {
    telehook_conformance::run(&SalvoHarness).await;
}

fn noop() -> Webhook {
    Webhook::builder()
        .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap()
}

#[tokio::test]
async fn own_handlers_and_state_keep_working_beside_the_webhook() {
    let client = SalvoHarness.serve(noop()).await;
    let get = |path: &str| http::Request::get(path).body(Bytes::new()).unwrap();
    let response = client.send(get("/health")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.body(), "ok");
    assert_eq!(client.send(get("/elsewhere")).await.status(), 404);
    let response = client.send(get(PATH)).await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}

#[tokio::test]
async fn handle_works_inside_an_own_salvo_handler() {
    struct Own(Webhook);
    #[async_trait]
    impl Handler for Own {
        async fn handle(
            &self,
            request: &mut Request,
            _depot: &mut Depot,
            response: &mut Response,
            _ctrl: &mut FlowCtrl,
        ) {
            telehook_salvo::handle(&self.0, request, response).await;
        }
    }
    let service = Service::new(Router::with_path("hook").post(Own(noop())));
    let post = |body: &'static str| {
        http::Request::post("/hook")
            .body(Bytes::from(body))
            .unwrap()
    };
    let response = send(
        &service,
        post(r#"{"update_id":5,"message":{"chat":{"id":1}}}"#),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(send(&service, post("nope")).await.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_server_drains_a_run_that_outlived_its_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let released = std::sync::Mutex::new(Some(released));
    let webhook = Webhook::builder()
        .timeout(Duration::from_millis(20))
        .on_timeout(telehook_core::OnTimeout::Return)
        .build(move |_: Update, _: Context| {
            let released = released.lock().unwrap().take();
            async move {
                if let Some(released) = released {
                    let _ = released.await;
                }
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = salvo::conn::tcp::TcpAcceptor::try_from(listener).unwrap();
    let deadline = Duration::from_secs(30);
    let drain = telehook_salvo::Drain::new(&webhook, deadline);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = drain.signal(async move {
        let _ = stopped.await;
    });
    let server = Server::new(acceptor);
    let handle = server.handle();
    tokio::spawn(async move {
        signal.await;
        handle.stop_graceful(deadline);
    });
    let server = tokio::spawn(drain.run(server.serve(app(webhook.clone()))));

    let body = r#"{"update_id":9,"message":{"chat":{"id":1}}}"#;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST {PATH} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    // `Return` answers 200 at the timeout while the run goes on.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(webhook.in_flight(), 1);

    stop.send(()).unwrap();
    release.send(()).unwrap();
    let (served, report) = server.await.unwrap();
    assert!(served.is_some());
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(webhook.in_flight(), 0);
}
