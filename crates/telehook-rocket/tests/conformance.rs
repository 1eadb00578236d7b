//! telehook-rocket obeys the whole webhook contract, mounted next to another route with managed
//! state, and its shutdown fairing drains the handler runs.

use std::time::Duration;

use bytes::Bytes;
use rocket::http::{Header, Method};
use rocket::local::asynchronous::Client as LocalClient;
use rocket::{Build, Rocket, State, get, routes};
use telehook_conformance::{BOTS_BY_SECRET_PATH, BOTS_PATH, Client, Harness, PATH, StreamingBody};
use telehook_core::{Context, HandlerError, Update, Webhook};

#[get("/health")]
fn health(state: &State<&'static str>) -> &'static str {
    state.inner()
}

fn app(webhook: Webhook) -> Rocket<Build> {
    app_with(rocket::Config::figment(), webhook)
}

fn app_with(figment: rocket::figment::Figment, webhook: Webhook) -> Rocket<Build> {
    routes_with(figment, webhook.clone()).attach(telehook_rocket::drain_on_shutdown(
        webhook,
        Duration::from_secs(30),
    ))
}

/// The app without the shutdown fairing.
fn routes_with(figment: rocket::figment::Figment, webhook: Webhook) -> Rocket<Build> {
    let quiet = figment.merge(("log_level", "off"));
    // Shield's security headers are the app's choice, not the adapter's: the suite checks that
    // the dispatcher's headers arrive and nothing else, so the app runs without them.
    rocket::custom(quiet)
        .attach(rocket::shield::Shield::new())
        .manage("ok")
        .mount("/", routes![health])
        .mount(PATH, telehook_rocket::routes(webhook))
}

struct RocketHarness;

struct RocketClient(LocalClient, Webhook);

impl Harness for RocketHarness {
    type Client = RocketClient;

    async fn serve(&self, webhook: Webhook) -> RocketClient {
        let client = LocalClient::untracked(app(webhook.clone()))
            .await
            .expect("rocket");
        RocketClient(client, webhook)
    }

    async fn serve_bots(&self, bots: telehook_core::Bots) -> Option<RocketClient> {
        use rocket::route::Route;
        let streaming = bots.get("alpha").expect("the cases add alpha").clone();
        let quiet = rocket::Config::figment().merge(("log_level", "off"));
        let by_name = Route::new(Method::Post, "/<name>", BotsHandler(bots.clone(), true));
        let by_secret = Route::new(Method::Post, "/", BotsHandler(bots, false));
        // Without Shield's headers, as in `app_with`.
        let rocket = rocket::custom(quiet)
            .attach(rocket::shield::Shield::new())
            .mount(BOTS_PATH, vec![by_name])
            .mount(BOTS_BY_SECRET_PATH, vec![by_secret]);
        let client = LocalClient::untracked(rocket).await.expect("rocket");
        Some(RocketClient(client, streaming))
    }
}

/// Routes to one of several bots: by the `<name>` segment (`true`) or by the secret header.
#[derive(Clone)]
struct BotsHandler(telehook_core::Bots, bool);

#[rocket::async_trait]
impl rocket::route::Handler for BotsHandler {
    async fn handle<'r>(
        &self,
        request: &'r rocket::Request<'_>,
        data: rocket::Data<'r>,
    ) -> rocket::route::Outcome<'r> {
        let body = match data
            .open(rocket::data::ByteUnit::Mebibyte(1))
            .into_bytes()
            .await
        {
            Ok(body) => Bytes::from(body.into_inner()),
            Err(_) => return rocket::route::Outcome::Error(rocket::http::Status::BadRequest),
        };
        let head = telehook_core::RequestHead::new(request.method().as_str(), |name| {
            request.headers().get_one(name).map(str::as_bytes)
        });
        let answer = if self.1 {
            let name = request
                .param::<&str>(0)
                .and_then(Result::ok)
                .unwrap_or_default();
            self.0.handle_bytes_by_name(name, head, body).await
        } else {
            let body = http_body_util::Full::new(body);
            self.0
                .handle_by_secret_token(head, http::Extensions::new(), body)
                .await
        };
        let (status, headers, body, _error) = answer.into_parts();
        let mut response = rocket::Response::build();
        response.status(rocket::http::Status::new(status.as_u16()));
        for (name, value) in &headers {
            if let Ok(value) = value.to_str() {
                response.raw_header_adjoin(name.as_str().to_owned(), value.to_owned());
            }
        }
        response.sized_body(body.len(), std::io::Cursor::new(body));
        rocket::route::Outcome::Success(response.finalize())
    }
}

/// Launches the app on a loopback port (Rocket's local client has no streaming body), sends
/// the request with hyper's client, and shuts the server down.
async fn send_to_a_launched_rocket(
    webhook: Webhook,
    mut request: http::Request<StreamingBody>,
) -> http::Response<Bytes> {
    use http_body_util::BodyExt as _;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let figment = rocket::Config::figment()
        .merge(("address", "127.0.0.1"))
        .merge(("port", 0))
        .merge(("shutdown.ctrlc", false))
        .merge(("shutdown.grace", 1))
        .merge(("shutdown.mercy", 1));
    // Each streaming request launches and stops a Rocket of its own on the suite's one
    // webhook: a shutdown fairing would drain that webhook for good (a draining webhook answers
    // 503), so this server has none. The fairing has its own test below.
    let rocket = routes_with(figment, webhook).attach(rocket::fairing::AdHoc::on_liftoff(
        "report the port",
        move |rocket| {
            let launched = (rocket.config().port, rocket.shutdown());
            let tx = tx.lock().unwrap().take();
            Box::pin(async move {
                let _ = tx.map(|tx| tx.send(launched));
            })
        },
    ));
    let server = tokio::spawn(rocket.launch());
    let (port, shutdown) = rx.await.expect("rocket launched");
    *request.uri_mut() = format!("http://127.0.0.1:{port}{}", request.uri().path())
        .parse()
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<StreamingBody>();
    let response = client.request(request).await.expect("an answer");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    drop(client);
    shutdown.notify();
    let _ = server.await;
    http::Response::from_parts(parts, body)
}

impl Client for RocketClient {
    async fn send(&self, request: http::Request<Bytes>) -> http::Response<Bytes> {
        let (parts, body) = request.into_parts();
        let method: Method = parts.method.as_str().parse().expect("method");
        // As Rocket's server does: the connection's peer is the request's `remote`.
        let mut local = self
            .0
            .req(method, parts.uri.to_string())
            .remote(std::net::SocketAddr::from(([127, 0, 0, 1], 40000)));
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            local.add_header(Header::new(name.as_str().to_owned(), value));
        }
        let response = local.body(body).dispatch().await;
        let mut converted = http::Response::builder().status(response.status().code);
        for header in response.headers().iter() {
            converted = converted.header(header.name().as_str(), header.value());
        }
        let body = response.into_bytes().await.unwrap_or_default();
        converted.body(Bytes::from(body)).expect("response")
    }

    async fn send_streaming(
        &self,
        request: http::Request<StreamingBody>,
    ) -> Option<http::Response<Bytes>> {
        Some(send_to_a_launched_rocket(self.1.clone(), request).await)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocket_obeys_the_webhook_contract() {
    telehook_conformance::run(&RocketHarness).await;
}

fn noop() -> Webhook {
    Webhook::builder()
        .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap()
}

#[tokio::test]
async fn own_routes_and_state_keep_working_beside_the_webhook() {
    let client = RocketHarness.serve(noop()).await;
    let get = |path: &str| http::Request::get(path).body(Bytes::new()).unwrap();
    let response = client.send(get("/health")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.body(), "ok");
    assert_eq!(client.send(get("/elsewhere")).await.status(), 404);
    let response = client.send(get(PATH)).await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_fairing_waits_for_a_run_that_outlived_its_timeout() {
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
                    // Still busy a little after the release: without the fairing, `terminate`
                    // returns while the run is here (the test cannot pass by a lucky order).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    let client = LocalClient::untracked(app(webhook.clone())).await.unwrap();
    let response = client
        .post(PATH)
        .body(r#"{"update_id":9,"message":{"chat":{"id":1}}}"#)
        .dispatch()
        .await;
    // `Return` answers 200 at the timeout while the run goes on.
    assert_eq!(response.status().code, 200);
    drop(response);
    assert_eq!(webhook.in_flight(), 1);
    let shutdown = client.rocket().shutdown();
    let terminate = tokio::spawn(async move { client.terminate().await });
    // Released only once the shutdown has begun.
    tokio::spawn(async move {
        shutdown.await;
        release.send(()).unwrap();
    });
    terminate.await.unwrap();
    assert_eq!(
        webhook.in_flight(),
        0,
        "the shutdown did not wait for the run"
    );
}
