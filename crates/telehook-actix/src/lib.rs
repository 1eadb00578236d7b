#![doc = include_str!("../README.md")]

use std::cell::RefCell;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::{HttpMessage as _, HttpService};
use actix_service::{
    IntoServiceFactory, ServiceFactory, ServiceFactoryExt as _, fn_service, map_config,
};
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{AppConfig, Server};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Resource, ResponseError, web};
use futures_util::{Stream, StreamExt as _};
use http_body::Frame;
use http_body_util::StreamBody;
use telehook_core::http::HeaderMap;
use telehook_core::{Bytes, RequestHead, Webhook, WebhookError};

/// A resource that serves `webhook` at `path` for every method (the dispatcher answers `405`
/// to anything but `POST`, with `Allow: POST`). Register it with `App::service` or
/// `ServiceConfig::service`, beside your own resources and `app_data`.
pub fn webhook_service(path: &str, webhook: Webhook) -> Resource {
    web::resource(path).route(web::route().to(
        move |request: HttpRequest, payload: web::Payload| {
            let webhook = webhook.clone();
            async move { handle(&webhook, &request, payload).await }
        },
    ))
}

/// Handles one request from inside an actix-web handler of your own, for when the webhook is
/// one step of a larger route. The body is streamed to the dispatcher, which applies its own
/// limit; a failure comes back as `Err` so it reaches actix-web's error channel.
pub async fn handle(
    webhook: &Webhook,
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, WebhookResponseError> {
    let mut head = RequestHead::new(request.method().as_str(), |name| {
        request.headers().get(name).map(|value| value.as_bytes())
    });
    // The connection's remote address, for a `SourceAllowlist`.
    if let Some(peer) = request.peer_addr() {
        head = head.with_peer(peer);
    }
    let payload = RequestBody::new(payload.into_inner());
    let body = StreamBody::new(payload.clone().map(|chunk| chunk.map(Frame::data)));
    let (status, headers, body, error) = webhook.handle(head, body).await.into_parts();
    let status = status.as_u16();
    match error {
        // The answer keeps the request's body alive until it is sent (see `RequestBody`): a
        // refusal sent before the body was read then closes the connection.
        None => Ok(build(status, &headers, body, Some(payload))),
        Some(error) => Err(WebhookResponseError {
            error,
            status,
            headers,
            body,
        }),
    }
}

/// A failure answer of the dispatcher (timeout, handler failure, redelivery store, overload)
/// as an actix-web error: middleware and loggers see it through `ServiceResponse::response()`
/// `.error()`, and the client gets exactly the status, headers and body the dispatcher chose.
pub struct WebhookResponseError {
    error: WebhookError,
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl WebhookResponseError {
    /// What went wrong, as the dispatcher reported it.
    pub fn webhook_error(&self) -> &WebhookError {
        &self.error
    }
}

impl fmt::Debug for WebhookResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookResponseError")
            .field("error", &self.error)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for WebhookResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for WebhookResponseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl ResponseError for WebhookResponseError {
    fn status_code(&self) -> StatusCode {
        actix_status(self.status)
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        // A failure comes after the body was read to its end: nothing to hold.
        build(self.status, &self.headers, self.body.clone(), None)
    }
}

/// Converts at the edge: actix-web is on `http` 0.2, the dispatcher on `http` 1.
fn actix_status(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn build(
    status: u16,
    headers: &HeaderMap,
    body: Bytes,
    request_body: Option<RequestBody>,
) -> HttpResponse {
    let mut response = HttpResponse::build(actix_status(status));
    for (name, value) in headers {
        response.append_header((name.as_str(), value.as_bytes()));
    }
    match request_body {
        None => response.body(body),
        Some(request_body) => response.body(Answer {
            body,
            _request_body: request_body,
        }),
    }
}

/// The request's body, shared by the dispatcher (which reads it) and the answer (which holds
/// it until it is sent).
///
/// Why the answer holds it: actix-http's HTTP/1 dispatcher decides whether to keep the
/// connection when the answer has been written. If the body was not read to its end and its
/// reader is still alive, it answers with `Connection: close` and closes the connection
/// (after at most `client_disconnect_timeout` of discarding what still arrives). If the
/// reader was dropped and the body is chunked, it instead keeps the connection to read the
/// rest of the body, with no time limit: a client without the secret that sends a chunked
/// head, part of a chunk and then nothing would hold the connection (and a slot of
/// `max_connections`) forever after its `401`. So a refusal sent before the body was read
/// (`401`, `403`, `405`, `408`, `413`) must still own the body when it is written.
#[derive(Clone)]
struct RequestBody(Rc<RefCell<actix_web::dev::Payload>>);

impl RequestBody {
    fn new(payload: actix_web::dev::Payload) -> Self {
        Self(Rc::new(RefCell::new(payload)))
    }
}

impl Stream for RequestBody {
    type Item = Result<Bytes, actix_web::error::PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.borrow_mut().poll_next_unpin(cx)
    }
}

/// A response body that holds the request's body until it has been sent (see [`RequestBody`]).
struct Answer {
    body: Bytes,
    /// Held, never read: dropped with the answer, once it has been sent.
    _request_body: RequestBody,
}

impl MessageBody for Answer {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.body.len() as u64)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let body = std::mem::take(&mut self.get_mut().body);
        Poll::Ready((!body.is_empty()).then_some(Ok(body)))
    }
}

/// Default [`ServerConfig::client_request_timeout`].
pub const DEFAULT_CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServerConfig::keep_alive`].
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Default [`ServerConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default [`ServerConfig::shutdown_deadline`].
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

/// The settings of [`server`]: protection against slow and stalled clients, and the deadline
/// of a graceful shutdown. Telegram sends a request's headers at once, keeps at most
/// `max_connections` (1–100, default 40,
/// [`setWebhook`](https://core.telegram.org/bots/api#setwebhook)) connections open and
/// reconnects when one was closed, so none of these bothers it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Time a client has to send a complete request head (actix-web's
    /// `client_request_timeout`), counted from the connection's start: a slowloris connection,
    /// or one that never sends a byte, gets `408` and is closed. Default 10 s; at least 1 s,
    /// because actix-web measures it on a clock it refreshes every 500 ms (a shorter timeout
    /// can expire before the request arrives, or be missed).
    pub client_request_timeout: Duration,
    /// Time a kept-alive connection may stay idle between requests (actix-web's `keep_alive`).
    /// Default 30 s. A graceful stop ([`run_until`]) does not wait for it: idle connections
    /// are closed once the handler runs are drained.
    pub keep_alive: Duration,
    /// Open connections at most, per worker (actix-web's `max_connections`). Default 256.
    pub max_connections: usize,
    /// Worker threads (actix-web's `workers`); `None` = one per CPU core.
    pub workers: Option<usize>,
    /// Time a graceful shutdown may take ([`run_until`]): handler runs and open requests
    /// must end within it. Default 20 s; keep it below your platform's kill timeout.
    pub shutdown_deadline: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            client_request_timeout: DEFAULT_CLIENT_REQUEST_TIMEOUT,
            keep_alive: DEFAULT_KEEP_ALIVE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            workers: None,
            shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
        }
    }
}

impl ServerConfig {
    /// Sets [`ServerConfig::client_request_timeout`].
    #[must_use]
    pub fn client_request_timeout(mut self, timeout: Duration) -> Self {
        self.client_request_timeout = timeout.max(Duration::from_secs(1));
        self
    }

    /// Sets [`ServerConfig::keep_alive`].
    #[must_use]
    pub fn keep_alive(mut self, idle: Duration) -> Self {
        self.keep_alive = idle;
        self
    }

    /// Sets [`ServerConfig::max_connections`] (at least 1).
    #[must_use]
    pub fn max_connections(mut self, limit: usize) -> Self {
        self.max_connections = limit.max(1);
        self
    }

    /// Sets [`ServerConfig::workers`].
    #[must_use]
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers.max(1));
        self
    }

    /// Sets [`ServerConfig::shutdown_deadline`].
    #[must_use]
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }
}

/// An actix-http `expect` service that answers `Expect: 100-continue` on `path` only when the
/// webhook would read the body: a wrong or missing secret, a wrong method or a declared
/// length over the limit gets its refusal (`401`, `405`, `413`) instead of `100 Continue`,
/// so the client never sends the body. Other paths continue as usual.
fn expect_service(
    webhook: Webhook,
    path: Rc<str>,
) -> impl ServiceFactory<
    actix_http::Request,
    Config = (),
    Response = actix_http::Request,
    Error = actix_http::Response<BoxBody>,
    InitError = (),
> + Clone {
    fn_service(move |mut request: actix_http::Request| {
        let refusal = if request.path() == &*path {
            let mut head = RequestHead::new(request.method().as_str(), |name| {
                request.headers().get(name).map(|value| value.as_bytes())
            });
            if let Some(peer) = request.peer_addr() {
                head = head.with_peer(peer);
            }
            webhook.check_head(head)
        } else {
            None
        };
        std::future::ready(match refusal {
            None => Ok(request),
            Some(refusal) => {
                let (status, headers, body, _) = refusal.into_parts();
                // The refusal holds the unread body, so the connection is closed after it
                // (see `RequestBody`): the client may not send its body after a refusal.
                let request_body = RequestBody::new(request.take_payload());
                let response: actix_http::Response<BoxBody> =
                    build(status.as_u16(), &headers, body, Some(request_body)).into();
                Err(response)
            }
        })
    })
}

/// Builds an actix-web server for the apps `factory` makes (as `HttpServer::new` does), on
/// `listener`, with the webhook at `webhook_path` and the settings of `config`.
///
/// Unlike `HttpServer`, it checks the webhook's secret (and method, and declared length)
/// before answering `Expect: 100-continue`: actix-web's `HttpServer` sends `100 Continue`
/// before any route runs and offers no hook for it, so a client without the secret would get
/// to send its whole body. Signals are not handled here: stop the server with [`run_until`].
pub fn server<F, I, S, B>(
    factory: F,
    webhook: &Webhook,
    webhook_path: &str,
    listener: std::net::TcpListener,
    config: &ServerConfig,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, actix_http::Request>,
    S: ServiceFactory<actix_http::Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<actix_http::Response<B>> + 'static,
    <S::Service as actix_service::Service<actix_http::Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    let webhook = webhook.clone();
    let path: String = webhook_path.to_owned();
    let http = config.clone();
    let mut builder = actix_server::Server::build()
        .disable_signals()
        .max_concurrent_connections(config.max_connections)
        .shutdown_timeout(config.shutdown_deadline.as_secs().max(1));
    if let Some(workers) = config.workers {
        builder = builder.workers(workers);
    }
    let address = listener.local_addr()?;
    // The server's graceful stop, passed to every connection as actix-web's `HttpServer`
    // does: an idle kept-alive connection closes at once, an active one after its answer.
    // Without it a graceful stop waits for each idle connection's keep-alive to run out.
    let stopping = builder.graceful_shutdown_signal();
    let builder = builder.listen("telehook-actix", listener, move || {
        let app = factory()
            .into_factory()
            .map_err(|error| error.into().error_response());
        let stopping = stopping.clone();
        HttpService::build()
            .graceful_shutdown_signal(move || {
                let stopping = stopping.clone();
                async move { stopping.notified().await }
            })
            .client_request_timeout(http.client_request_timeout)
            // After an answer sent before the request's body was read (a refusal), discard
            // what still arrives for at most this long, then close: the client gets the
            // answer instead of a reset, and cannot keep the connection (actix-web's
            // `HttpServer` default; actix-http's own default, zero, closes at once).
            .client_disconnect_timeout(LINGER_AFTER_REFUSAL)
            .keep_alive(http.keep_alive)
            .local_addr(address)
            .expect(expect_service(webhook.clone(), Rc::from(path.as_str())))
            .finish(map_config(app, move |()| AppConfig::default()))
            .tcp()
    })?;
    Ok(builder.run())
}

/// How long [`server`] discards the rest of a request whose body it did not read (after a
/// refusal) before it closes the connection.
const LINGER_AFTER_REFUSAL: Duration = Duration::from_secs(1);

/// What a graceful shutdown left behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Handler runs still in flight at the deadline (they end with their worker).
    pub runs_unfinished: usize,
    /// Open requests were still going at the deadline and the server was stopped at once.
    pub server_cut: bool,
}

impl ShutdownReport {
    /// True if everything finished within the deadline.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

/// Runs `server` until `shutdown` resolves, then shuts it down gracefully within `deadline`:
/// stop accepting connections, wait for the webhook's handler runs (a run that outlived its
/// delivery's timeout included) while the workers are still alive, let open requests finish
/// and be answered, and stop. A delivery that arrives on a kept-alive connection while the
/// runs drain is answered `503` (Telegram sends it again, to the next instance); once they
/// are drained, idle kept-alive connections are closed at once and an active one right after
/// its answer, so the stop does not wait for their keep-alive (or the deadline) to run out.
///
/// Build `server` with [`server`], or with `HttpServer::disable_signals()` (actix-web's own
/// signal handling stops the workers, and with them every handler run, without this wait).
pub async fn run_until(
    server: Server,
    webhook: &Webhook,
    shutdown: impl Future<Output = ()>,
    deadline: Duration,
) -> std::io::Result<ShutdownReport> {
    let handle = server.handle();
    // The server's commands (pause, stop) are carried out by polling it: run it on its own.
    let mut server = tokio::spawn(server);
    let joined = |ended: Result<std::io::Result<()>, tokio::task::JoinError>| {
        ended.map_err(std::io::Error::other).and_then(|ended| ended)
    };
    tokio::select! {
        ended = &mut server => return joined(ended).map(|()| ShutdownReport::default()),
        () = shutdown => {}
    }
    let started = tokio::time::Instant::now();
    tracing::info!(
        in_flight = webhook.in_flight(),
        deadline_ms = deadline.as_millis(),
        "shutting down: waiting for open requests and handler runs"
    );
    handle.pause().await;
    let runs_unfinished = if webhook.drain(deadline).await {
        0
    } else {
        webhook.in_flight()
    };
    let left = deadline.saturating_sub(started.elapsed());
    let stopped = tokio::time::timeout(left, async {
        handle.stop(true).await;
        (&mut server).await
    })
    .await;
    let server_cut = match stopped {
        Ok(ended) => {
            joined(ended)?;
            false
        }
        Err(_) => {
            // Force: workers stop at once, dropping open connections and runs.
            let _ = tokio::time::timeout(Duration::from_secs(1), handle.stop(false)).await;
            server.abort();
            true
        }
    };
    let report = ShutdownReport {
        runs_unfinished,
        server_cut,
    };
    if report.is_clean() {
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis(),
            "shut down: every request answered, every handler run finished"
        );
    } else {
        tracing::warn!(?report, "shutdown deadline passed with work left");
    }
    Ok(report)
}
