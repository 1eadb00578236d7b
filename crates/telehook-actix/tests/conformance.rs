//! telehook-actix obeys the whole webhook contract, mounted next to another route with
//! `app_data`, and hands its failures to actix-web's error channel.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{App, HttpResponse, test, web};
use bytes::Bytes;
use telehook_actix::WebhookResponseError;
use telehook_conformance::{BOTS_BY_SECRET_PATH, BOTS_PATH, Client, Harness, PATH, StreamingBody};
use telehook_core::{Context, HandlerError, Update, Webhook, WebhookError};

struct ActixHarness;

/// The initialised actix-web service, type-erased so the harness can name it.
struct ActixClient(Rc<dyn Fn(actix_http::Request) -> ResponseFuture>);

type ResponseFuture = Pin<Box<dyn Future<Output = ServiceResponse>>>;

async fn health(state: web::Data<&'static str>) -> HttpResponse {
    HttpResponse::Ok().body(*state.get_ref())
}

fn app(
    webhook: Webhook,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new("ok"))
        .route("/health", web::get().to(health))
        .service(telehook_actix::webhook_service(PATH, webhook))
}

impl Harness for ActixHarness {
    type Client = ActixClient;

    async fn serve(&self, webhook: Webhook) -> ActixClient {
        let service = Rc::new(test::init_service(app(webhook)).await);
        ActixClient(Rc::new(move |request| {
            let service = Rc::clone(&service);
            Box::pin(async move { service.call(request).await.expect("actix service") })
        }))
    }

    async fn serve_bots(&self, bots: telehook_core::Bots) -> Option<ActixClient> {
        let app = App::new()
            .app_data(web::Data::new(bots))
            .route(
                &format!("{BOTS_PATH}/{{name}}"),
                web::route().to(
                    |request: actix_web::HttpRequest,
                     name: web::Path<String>,
                     body: web::Bytes,
                     bots: web::Data<telehook_core::Bots>| async move {
                        let head = actix_head(&request);
                        into_actix(bots.handle_bytes_by_name(&name, head, body).await)
                    },
                ),
            )
            .route(
                BOTS_BY_SECRET_PATH,
                web::route().to(
                    |request: actix_web::HttpRequest,
                     body: web::Bytes,
                     bots: web::Data<telehook_core::Bots>| async move {
                        let head = actix_head(&request);
                        let body = http_body_util::Full::new(body);
                        into_actix(
                            bots.handle_by_secret_token(head, http::Extensions::new(), body)
                                .await,
                        )
                    },
                ),
            );
        let service = Rc::new(test::init_service(app).await);
        Some(ActixClient(Rc::new(move |request| {
            let service = Rc::clone(&service);
            Box::pin(async move { service.call(request).await.expect("actix service") })
        })))
    }
}

fn actix_head(request: &actix_web::HttpRequest) -> telehook_core::RequestHead<'_> {
    telehook_core::RequestHead::new(request.method().as_str(), |name| {
        request.headers().get(name).map(|value| value.as_bytes())
    })
}

fn into_actix(answer: telehook_core::WebhookResponse) -> HttpResponse {
    let (status, headers, body, _error) = answer.into_parts();
    let mut response = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status.as_u16()).expect("status"),
    );
    for (name, value) in &headers {
        response.append_header((name.as_str(), value.as_bytes()));
    }
    response.body(body)
}

fn test_request(parts: &http::request::Parts) -> test::TestRequest {
    let mut actix = test::TestRequest::default()
        .method(parts.method.as_str().parse().expect("method"))
        .uri(&parts.uri.to_string())
        // The connection's address, as a served request has it (`HttpRequest::peer_addr`).
        .peer_addr(std::net::SocketAddr::from(([127, 0, 0, 1], 40_000)));
    for (name, value) in &parts.headers {
        actix = actix.insert_header((name.as_str(), value.as_bytes()));
    }
    actix
}

async fn convert(response: ServiceResponse) -> http::Response<Bytes> {
    let mut converted = http::Response::builder().status(response.status().as_u16());
    for (name, value) in response.headers() {
        converted = converted.header(name.as_str(), value.as_bytes());
    }
    let body = test::read_body(response).await;
    converted.body(body).expect("response")
}

impl Client for ActixClient {
    async fn send(&self, request: http::Request<Bytes>) -> http::Response<Bytes> {
        let (parts, body) = request.into_parts();
        let request = test_request(&parts).set_payload(body).to_request();
        convert((self.0)(request).await).await
    }

    async fn send_streaming(
        &self,
        request: http::Request<StreamingBody>,
    ) -> Option<http::Response<Bytes>> {
        use futures_util::StreamExt as _;
        let (parts, body) = request.into_parts();
        let stream: actix_http::BoxedPayloadStream = Box::pin(body.map(|chunk| match chunk {
            Ok(bytes) => Ok(bytes),
            Err(never) => match never {},
        }));
        let (request, _) = test_request(&parts)
            .to_request()
            .replace_payload(actix_http::Payload::from(stream));
        Some(convert((self.0)(request).await).await)
    }
}

#[actix_web::test]
async fn actix_app_obeys_the_webhook_contract() {
    telehook_conformance::run(&ActixHarness).await;
}

fn noop() -> Webhook {
    Webhook::builder()
        .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap()
}

#[actix_web::test]
async fn own_routes_and_data_keep_working_beside_the_webhook() {
    let service = test::init_service(app(noop())).await;
    let response = test::call_service(
        &service,
        test::TestRequest::get().uri("/health").to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(test::read_body(response).await, "ok");
    let response = test::call_service(
        &service,
        test::TestRequest::get().uri("/elsewhere").to_request(),
    )
    .await;
    assert_eq!(response.status(), 404);
    let response =
        test::call_service(&service, test::TestRequest::get().uri(PATH).to_request()).await;
    assert_eq!(response.status(), 405);
}

#[actix_web::test]
async fn a_timeout_reaches_the_actix_error_channel() {
    let webhook = Webhook::builder()
        .timeout(Duration::from_millis(50))
        .build(|_: Update, _: Context| async {
            actix_web::rt::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, HandlerError>(())
        })
        .unwrap();
    let seen: Rc<RefCell<Option<String>>> = Rc::default();
    let seen_by_middleware = Rc::clone(&seen);
    let app = App::new()
        .wrap_fn(move |request, service| {
            let seen = Rc::clone(&seen_by_middleware);
            let response = service.call(request);
            async move {
                let response = response.await?;
                if let Some(error) = response.response().error() {
                    let failure = error
                        .as_error::<WebhookResponseError>()
                        .expect("a webhook failure");
                    assert!(matches!(
                        failure.webhook_error(),
                        WebhookError::Timeout { .. }
                    ));
                    *seen.borrow_mut() = Some(error.to_string());
                }
                Ok(response)
            }
        })
        .service(telehook_actix::webhook_service("/telegram", webhook));
    let service = test::init_service(app).await;
    let request = test::TestRequest::post()
        .uri("/telegram")
        .set_payload(r#"{"update_id":7,"message":{"chat":{"id":1}}}"#)
        .to_request();
    let response = test::call_service(&service, request).await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        test::read_body(response).await,
        "service unavailable: the handler timed out"
    );
    let seen = seen.borrow().clone().expect("the middleware saw no error");
    assert!(
        seen.contains("update 7") && seen.contains("timeout"),
        "{seen}"
    );
}

#[actix_web::test]
async fn handle_works_inside_an_own_actix_handler() {
    let app = App::new().app_data(web::Data::new(noop())).route(
        "/hook",
        web::post().to(
            |webhook: web::Data<Webhook>,
             request: actix_web::HttpRequest,
             payload: web::Payload| async move {
                telehook_actix::handle(&webhook, &request, payload).await
            },
        ),
    );
    let service = test::init_service(app).await;
    let request = test::TestRequest::post()
        .uri("/hook")
        .set_payload(r#"{"update_id":5,"message":{"chat":{"id":1}}}"#)
        .to_request();
    assert_eq!(test::call_service(&service, request).await.status(), 200);
    let request = test::TestRequest::post()
        .uri("/hook")
        .set_payload("nope")
        .to_request();
    assert_eq!(test::call_service(&service, request).await.status(), 400);
}
