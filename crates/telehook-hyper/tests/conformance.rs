//! telehook-hyper obeys the whole webhook contract over a real loopback socket, and shuts down
//! gracefully.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use telehook_conformance::{BOTS_BY_SECRET_PATH, BOTS_PATH, Client, Harness, StreamingBody};
use telehook_core::{Context, HandlerError, Update, Webhook};

struct HyperHarness;

struct LoopbackClient {
    base: String,
    client: HyperClient<HttpConnector, Full<Bytes>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Harness for HyperHarness {
    type Client = LoopbackClient;

    async fn serve(&self, webhook: Webhook) -> LoopbackClient {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(telehook_hyper::serve(
            listener,
            webhook,
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(1),
        ));
        let client = HyperClient::builder(TokioExecutor::new()).build_http();
        LoopbackClient {
            base,
            client,
            _stop: stop,
        }
    }

    async fn serve_bots(&self, bots: telehook_core::Bots) -> Option<LoopbackClient> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // One `service_fn` routing by path, as an own hyper router would.
        let drained = bots.get("alpha").expect("the cases add alpha").clone();
        let service =
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let bots = bots.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let head = telehook_core::RequestHead::from_http(&parts.method, &parts.headers);
                    let path = parts.uri.path();
                    let answer = if path == BOTS_BY_SECRET_PATH {
                        bots.handle_by_secret_token(head, parts.extensions, body)
                            .await
                    } else if let Some(name) = path
                        .strip_prefix(BOTS_PATH)
                        .and_then(|rest| rest.strip_prefix('/'))
                    {
                        bots.handle_by_name(name, head, parts.extensions, body)
                            .await
                    } else {
                        let mut not_found = http::Response::new(Full::new(Bytes::new()));
                        *not_found.status_mut() = http::StatusCode::NOT_FOUND;
                        return Ok::<_, std::convert::Infallible>(not_found);
                    };
                    Ok(answer.into_http())
                }
            });
        tokio::spawn(async move {
            telehook_hyper::serve_with(
                listener,
                service,
                &drained,
                async move {
                    let _ = stopped.await;
                },
                Duration::from_secs(1),
            )
            .await
        });
        let client = HyperClient::builder(TokioExecutor::new()).build_http();
        Some(LoopbackClient {
            base,
            client,
            _stop: stop,
        })
    }
}

impl Client for LoopbackClient {
    async fn send(&self, request: http::Request<Bytes>) -> http::Response<Bytes> {
        let (mut parts, body) = request.into_parts();
        parts.uri = format!("{}{}", self.base, parts.uri).parse().expect("uri");
        let response = self
            .client
            .request(http::Request::from_parts(parts, Full::new(body)))
            .await
            .expect("response");
        let (parts, body) = response.into_parts();
        http::Response::from_parts(parts, body.collect().await.expect("body").to_bytes())
    }

    async fn send_streaming(
        &self,
        request: http::Request<StreamingBody>,
    ) -> Option<http::Response<Bytes>> {
        let client: HyperClient<HttpConnector, StreamingBody> =
            HyperClient::builder(TokioExecutor::new()).build_http();
        let (mut parts, body) = request.into_parts();
        parts.uri = format!("{}{}", self.base, parts.uri).parse().expect("uri");
        let response = client
            .request(http::Request::from_parts(parts, body))
            .await
            .expect("response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Some(http::Response::from_parts(parts, body))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_server_obeys_the_webhook_contract() {
    telehook_conformance::run(&HyperHarness).await;
}

fn slow_webhook(delay: Duration) -> Webhook {
    Webhook::builder()
        .timeout(Duration::from_secs(10))
        .build(move |_: Update, _: Context| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, HandlerError>(())
        })
        .unwrap()
}

async fn shutdown_during_a_slow_update(
    delay: Duration,
    deadline: Duration,
) -> (telehook_hyper::ShutdownReport, Option<u16>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/telegram", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(telehook_hyper::serve(
        listener,
        slow_webhook(delay),
        async move {
            let _ = stopped.await;
        },
        deadline,
    ));
    let client: HyperClient<HttpConnector, Full<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build_http();
    let request = http::Request::post(url)
        .body(Full::new(Bytes::from_static(
            br#"{"update_id":1,"message":{"chat":{"id":1}}}"#,
        )))
        .unwrap();
    let in_flight = tokio::spawn(async move {
        client
            .request(request)
            .await
            .ok()
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(()).unwrap();
    let report = server.await.unwrap();
    (report, in_flight.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_slow_update_finish_within_the_deadline() {
    let (report, status) =
        shutdown_during_a_slow_update(Duration::from_millis(300), Duration::from_secs(5)).await;
    assert_eq!(status, Some(200), "the in-flight update was answered");
    assert_eq!(report, telehook_hyper::ShutdownReport::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_what_the_deadline_cut() {
    let (report, status) =
        shutdown_during_a_slow_update(Duration::from_secs(3), Duration::from_millis(200)).await;
    assert_eq!(status, None, "the connection was cut at the deadline");
    assert_eq!(report.connections_cut, 1, "{report:?}");
    assert_eq!(report.runs_unfinished, 1, "{report:?}");
}
