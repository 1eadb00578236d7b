//! telehook-poem obeys the whole webhook contract, mounted next to another endpoint with data,
//! and drains on shutdown.

use std::time::Duration;

use bytes::Bytes;
use poem::{Endpoint as _, EndpointExt as _, Route, get, handler, web::Data};
use telehook_conformance::{BOTS_BY_SECRET_PATH, BOTS_PATH, Client, Harness, PATH};
use telehook_core::{Context, HandlerError, Update, Webhook};
use telehook_poem::RouteExt as _;

#[handler]
fn health(Data(state): Data<&&'static str>) -> String {
    (*state).to_owned()
}

fn app(webhook: Webhook) -> impl poem::Endpoint + 'static {
    Route::new()
        .at("/health", get(health))
        .telegram_webhook(PATH, webhook)
        .data("ok")
}

struct PoemHarness;

struct PoemClient(poem::endpoint::BoxEndpoint<'static>);

impl Harness for PoemHarness {
    type Client = PoemClient;

    async fn serve(&self, webhook: Webhook) -> PoemClient {
        PoemClient(app(webhook).map_to_response().boxed())
    }

    async fn serve_bots(&self, bots: telehook_core::Bots) -> Option<PoemClient> {
        let by_secret = bots.clone();
        let route = Route::new()
            .at(
                format!("{BOTS_PATH}/:name"),
                poem::endpoint::make(move |mut request: poem::Request| {
                    let bots = bots.clone();
                    async move {
                        let name = request.raw_path_param("name").unwrap_or("").to_owned();
                        let (head_parts, extensions, body) = split(&mut request);
                        let head =
                            telehook_core::RequestHead::from_http(&head_parts.0, &head_parts.1);
                        into_poem(bots.handle_by_name(&name, head, extensions, body).await)
                    }
                }),
            )
            .at(
                BOTS_BY_SECRET_PATH,
                poem::endpoint::make(move |mut request: poem::Request| {
                    let bots = by_secret.clone();
                    async move {
                        let (head_parts, extensions, body) = split(&mut request);
                        let head =
                            telehook_core::RequestHead::from_http(&head_parts.0, &head_parts.1);
                        into_poem(bots.handle_by_secret_token(head, extensions, body).await)
                    }
                }),
            );
        Some(PoemClient(route.map_to_response().boxed()))
    }
}

type Split = (
    (http::Method, http::HeaderMap),
    http::Extensions,
    http_body_util::combinators::BoxBody<Bytes, std::io::Error>,
);

fn split(request: &mut poem::Request) -> Split {
    let body = request.take_body().into();
    let extensions = std::mem::take(request.extensions_mut());
    (
        (request.method().clone(), request.headers().clone()),
        extensions,
        body,
    )
}

fn into_poem(answer: telehook_core::WebhookResponse) -> poem::Response {
    let (status, headers, body, _error) = answer.into_parts();
    let mut response = poem::Response::from(body);
    response.set_status(status);
    *response.headers_mut() = headers;
    response
}

impl Client for PoemClient {
    async fn send(&self, request: http::Request<Bytes>) -> http::Response<Bytes> {
        send(&self.0, request).await
    }

    async fn send_streaming(
        &self,
        request: http::Request<telehook_conformance::StreamingBody>,
    ) -> Option<http::Response<Bytes>> {
        use futures_util::StreamExt as _;
        let (parts, body) = request.into_parts();
        let body = poem::Body::from_bytes_stream(
            body.map(|chunk| chunk.map_err(|never| -> std::io::Error { match never {} })),
        );
        Some(send_body(&self.0, http::Request::from_parts(parts, body)).await)
    }
}

async fn send(
    endpoint: &poem::endpoint::BoxEndpoint<'static>,
    request: http::Request<Bytes>,
) -> http::Response<Bytes> {
    send_body(endpoint, request.map(poem::Body::from)).await
}

async fn send_body(
    endpoint: &poem::endpoint::BoxEndpoint<'static>,
    request: http::Request<poem::Body>,
) -> http::Response<Bytes> {
    let (parts, body) = request.into_parts();
    // As poem's server does: the connection's peer is the request's `RemoteAddr`.
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
    let parts = poem::RequestParts::from((
        parts,
        poem::web::LocalAddr::default(),
        poem::web::RemoteAddr(poem::Addr::SocketAddr(peer)),
        http::uri::Scheme::HTTP,
    ));
    let response = endpoint
        .get_response(poem::Request::from_parts(parts, body))
        .await;
    let mut converted = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        converted = converted.header(name, value);
    }
    let body = response.into_body().into_bytes().await.expect("poem body");
    converted.body(body).expect("response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poem_route_obeys_the_webhook_contract() {
    telehook_conformance::run(&PoemHarness).await;
}

fn noop() -> Webhook {
    Webhook::builder()
        .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap()
}

#[tokio::test]
async fn own_endpoints_and_data_keep_working_beside_the_webhook() {
    let client = PoemHarness.serve(noop()).await;
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
async fn handle_works_inside_an_own_poem_handler() {
    let webhook = noop();
    let endpoint = Route::new()
        .at(
            "/hook",
            poem::endpoint::make(move |request| {
                let webhook = webhook.clone();
                async move { telehook_poem::handle(&webhook, request).await }
            }),
        )
        .boxed();
    let post = |body: &'static str| {
        http::Request::post("/hook")
            .body(Bytes::from(body))
            .unwrap()
    };
    let response = send(
        &endpoint,
        post(r#"{"update_id":5,"message":{"chat":{"id":1}}}"#),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(send(&endpoint, post("nope")).await.status(), 400);
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
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let deadline = Duration::from_secs(30);
    let drain = telehook_poem::Drain::new(&webhook, deadline);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = drain.signal(async move {
        let _ = stopped.await;
    });
    let server = poem::Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
        app(webhook.clone()),
        signal,
        None,
    );
    let server = tokio::spawn(drain.run(server));

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
    assert!(served.is_some_and(|served| served.is_ok()));
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(webhook.in_flight(), 0);
}

#[tokio::test]
async fn the_handler_reads_what_poem_put_in_the_request_extensions() {
    let (seen, saw) = tokio::sync::oneshot::channel();
    let seen = std::sync::Mutex::new(Some(seen));
    let webhook = Webhook::builder()
        .build(move |_: Update, ctx: Context| {
            let data = ctx.extension::<&'static str>().copied();
            let _ = seen.lock().unwrap().take().map(|seen| seen.send(data));
            async { Ok::<_, HandlerError>(()) }
        })
        .unwrap();
    // `app` adds `.data("ok")`, which poem keeps in the request's extensions.
    let client = PoemHarness.serve(webhook).await;
    let update = http::Request::post(PATH)
        .body(Bytes::from(
            r#"{"update_id":11,"message":{"chat":{"id":1}}}"#,
        ))
        .unwrap();
    assert_eq!(client.send(update).await.status(), 200);
    assert_eq!(saw.await.unwrap(), Some("ok"));
}
