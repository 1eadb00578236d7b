#![doc = include_str!("../README.md")]

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use telehook_core::Webhook;
use tokio::net::TcpListener;

/// What a graceful shutdown left behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections still open at the deadline, closed by dropping them.
    pub connections_cut: usize,
    /// Handler runs still in flight at the deadline (they keep running until the runtime stops).
    pub runs_unfinished: usize,
}

/// The webhook at every path, as a hyper service (for [`serve_with`] or your own loop).
pub fn service(webhook: Webhook) -> TowerToHyperService<Webhook> {
    TowerToHyperService::new(webhook)
}

/// Serves `webhook` at every path until `shutdown` resolves, then shuts down gracefully within
/// `deadline` (see [`serve_with`]).
pub async fn serve(
    listener: TcpListener,
    webhook: Webhook,
    shutdown: impl Future<Output = ()>,
    deadline: Duration,
) -> ShutdownReport {
    serve_with(
        listener,
        service(webhook.clone()),
        &webhook,
        shutdown,
        deadline,
    )
    .await
}

/// Serves any hyper service (your own routes around the webhook) over HTTP/1.1 with keep-alive
/// until `shutdown` resolves. Then it stops accepting, lets open requests finish and handler
/// runs of `webhook` end (including runs that outlived their delivery's timeout), all within
/// `deadline`, and reports what did not.
pub async fn serve_with<S, B>(
    listener: TcpListener,
    service: S,
    webhook: &Webhook,
    shutdown: impl Future<Output = ()>,
    deadline: Duration,
) -> ShutdownReport
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait a moment instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let started = tokio::time::Instant::now();
    tracing::info!(
        connections = connections.len(),
        "shutting down: waiting for open requests"
    );
    let _ = tokio::time::timeout(deadline, graceful.shutdown()).await;
    // Reap what ended; whatever is left is cut.
    while connections.try_join_next().is_some() {}
    let connections_cut = connections.len();
    connections.abort_all();
    let left = deadline.saturating_sub(started.elapsed());
    let runs_unfinished = if webhook.drain(left).await {
        0
    } else {
        webhook.in_flight()
    };
    let report = ShutdownReport {
        connections_cut,
        runs_unfinished,
    };
    if report != ShutdownReport::default() {
        tracing::warn!(?report, "shutdown deadline passed with work left");
    }
    report
}

/// Handles one hyper request with the webhook, for your own `service_fn` router.
pub async fn handle(
    webhook: &Webhook,
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let head = telehook_core::RequestHead::from_http(&parts.method, &parts.headers);
    Ok(webhook.handle(head, body).await.into_http())
}
