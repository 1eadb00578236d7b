#![doc = include_str!("../README.md")]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use http_body::Body;
use telehook_core::{InvocationDeadline, RequestHead, Webhook};
use vercel_runtime::{AppState, ResponseBody};

/// What [`run`] keeps back from the function's `maxDuration`: the answer must leave before
/// Vercel ends the invocation, so the dispatcher's deadline is this much earlier.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(1);

/// Serves `webhook` as this Vercel Function until the platform stops the process.
///
/// `max_duration` is the function's `maxDuration` (`vercel.json`, default 300 s with Fluid
/// compute). Every request gets the deadline `arrival + max_duration − DEADLINE_MARGIN`
/// ([`InvocationDeadline`]), so the dispatcher answers before Vercel's own timeout even when
/// the configured `timeout` is longer, and the handler reads it as `ctx.deadline()`.
pub async fn run(webhook: Webhook, max_duration: Duration) -> Result<(), vercel_runtime::Error> {
    vercel_runtime::run(service(webhook, max_duration)).await
}

/// The webhook as the `tower::Service` that `vercel_runtime::run` takes.
pub fn service(webhook: Webhook, max_duration: Duration) -> WebhookService {
    WebhookService {
        webhook,
        max_duration,
    }
}

/// See [`service`].
#[derive(Clone)]
pub struct WebhookService {
    webhook: Webhook,
    max_duration: Duration,
}

impl fmt::Debug for WebhookService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookService")
            .field("webhook", &self.webhook)
            .field("max_duration", &self.max_duration)
            .finish()
    }
}

impl tower_service::Service<(AppState, vercel_runtime::Request)> for WebhookService {
    type Response = http::Response<ResponseBody>;
    type Error = vercel_runtime::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (state, request): (AppState, vercel_runtime::Request)) -> Self::Future {
        let webhook = self.webhook.clone();
        let max_duration = self.max_duration;
        Box::pin(async move { Ok(handle(&webhook, &state, request, max_duration).await) })
    }
}

/// Handles one request of a Vercel invocation (any body: hyper's, or one in memory).
///
/// Handler runs that go on after the answer (a run past its delivery's timeout, under either
/// `OnTimeout`) are handed to Vercel's `waitUntil` (`AppState::wait_until`), bounded by the
/// deadline: the invocation stays alive until they end, instead of being frozen half-way.
pub async fn handle<B>(
    webhook: &Webhook,
    state: &AppState,
    request: http::Request<B>,
    max_duration: Duration,
) -> http::Response<ResponseBody>
where
    B: Body + 'static,
    B::Error: fmt::Display,
{
    let arrived = Instant::now();
    let deadline = arrived + max_duration.saturating_sub(DEADLINE_MARGIN);
    let (mut parts, body) = request.into_parts();
    let mut extensions = std::mem::take(&mut parts.extensions);
    extensions.insert(InvocationDeadline(deadline));
    if extensions.get::<telehook_core::PeerAddr>().is_none()
        && let Some(peer) = client_address(&parts.headers)
    {
        extensions.insert(telehook_core::PeerAddr(peer));
    }
    let head = RequestHead::from_http(&parts.method, &parts.headers);
    let answer = webhook.handle_with_extensions(head, extensions, body).await;
    if webhook.in_flight() > 0 {
        // `wait_idle`, not `drain`: it holds no permit, so deliveries arriving meanwhile (Fluid
        // compute sends concurrent requests to one instance) still run.
        let webhook = webhook.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        state.wait_until(async move {
            let _ = webhook.wait_idle(left).await;
        });
    }
    let (status, headers, body, _error) = answer.into_parts();
    let mut response = http::Response::new(ResponseBody::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The caller's address for a `SourceAllowlist`: the runtime gets its requests from Vercel's
/// proxy, which sets `X-Real-IP` to the client's public address and overwrites whatever a
/// client sent (<https://vercel.com/docs/headers/request-headers>); the port is unknown (0).
fn client_address(headers: &http::HeaderMap) -> Option<std::net::SocketAddr> {
    let value = headers.get("x-real-ip")?.to_str().ok()?;
    let ip: std::net::IpAddr = value.trim().parse().ok()?;
    Some(std::net::SocketAddr::new(ip, 0))
}
