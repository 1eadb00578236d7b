#![doc = include_str!("../README.md")]

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
pub use hyper_util::service::TowerToHyperService;
use telehook_core::Webhook;
use tokio::net::TcpListener;

/// Default [`ServeConfig::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServeConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default [`ServeConfig::shutdown_deadline`].
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

/// How [`serve_with_config`] treats connections, and how long a graceful shutdown may take.
///
/// The defaults protect a bot against slow and stalled clients without bothering Telegram:
/// Telegram sends a request's headers at once, keeps at most `max_connections` (1–100, default
/// 40, [`setWebhook`](https://core.telegram.org/bots/api#setwebhook)) connections open, and
/// reconnects when one was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeConfig {
    /// Time a connection has to deliver a complete request head, counted from the moment it
    /// can start one: after accepting, and after each response on a kept-alive connection. So
    /// it is also the idle timeout of a kept-alive connection. A slowloris connection
    /// (headers trickling in) is closed when it runs out. Default 10 s.
    pub header_read_timeout: Duration,
    /// Open connections at most. At the limit the server stops accepting (new connections wait
    /// in the kernel's backlog, costing no file descriptor) until one closes. Default 256.
    pub max_connections: usize,
    /// Time a graceful shutdown may take: open requests and handler runs of the webhook
    /// (including runs that outlived their delivery's timeout) must end within it. Default
    /// 20 s; keep it below your platform's kill timeout (Kubernetes: 30 s, systemd: 90 s).
    pub shutdown_deadline: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
        }
    }
}

impl ServeConfig {
    /// Sets [`ServeConfig::header_read_timeout`].
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets [`ServeConfig::max_connections`] (at least 1).
    #[must_use]
    pub fn max_connections(mut self, limit: usize) -> Self {
        self.max_connections = limit.max(1);
        self
    }

    /// Sets [`ServeConfig::shutdown_deadline`].
    #[must_use]
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }
}

/// What a graceful shutdown left behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections still open at the deadline, closed by dropping them.
    pub connections_cut: usize,
    /// Handler runs still in flight at the deadline (they keep running until the runtime stops).
    pub runs_unfinished: usize,
    /// With [`Drain`]: the server had not finished its own graceful shutdown at the deadline
    /// and was dropped, with the connections it still had open.
    pub server_cut: bool,
}

impl ShutdownReport {
    /// True if everything finished within the deadline.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

/// The webhook at every path, as a hyper service (for [`serve_with`] or your own loop).
pub fn service(webhook: Webhook) -> TowerToHyperService<Webhook> {
    TowerToHyperService::new(webhook)
}

/// Serves `webhook` at every path until `shutdown` resolves, then shuts down gracefully within
/// `deadline` (see [`serve_with_config`]; the other settings are [`ServeConfig::default`]).
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

/// [`serve_with_config`] with [`ServeConfig::default`] and the given shutdown `deadline`.
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
    let config = ServeConfig::default().shutdown_deadline(deadline);
    serve_with_config(listener, service, webhook, shutdown, &config).await
}

/// Serves any hyper service (your own routes around the webhook, an axum `Router`, a warp
/// filter) over HTTP/1.1 with keep-alive, a header-read timeout and a connection limit, until
/// `shutdown` resolves. Then it stops accepting, lets open requests finish and handler runs of
/// `webhook` end (including runs that outlived their delivery's timeout), all within
/// [`ServeConfig::shutdown_deadline`], and reports what did not.
///
/// A request in flight when `shutdown` resolves is answered on its open connection; idle
/// kept-alive connections are closed at once.
pub async fn serve_with_config<S, B>(
    listener: TcpListener,
    service: S,
    webhook: &Webhook,
    shutdown: impl Future<Output = ()>,
    config: &ServeConfig,
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
    let limit = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    loop {
        // A permit first: at the limit, connections wait in the kernel's backlog.
        let permit = tokio::select! {
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
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
        let service = WithPeer {
            inner: service.clone(),
            peer,
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    finish(graceful, connections, webhook, config.shutdown_deadline).await
}

async fn finish(
    graceful: GracefulShutdown,
    mut connections: tokio::task::JoinSet<()>,
    webhook: &Webhook,
    deadline: Duration,
) -> ShutdownReport {
    let started = tokio::time::Instant::now();
    tracing::info!(
        connections = connections.len(),
        in_flight = webhook.in_flight(),
        deadline_ms = deadline.as_millis(),
        "shutting down: waiting for open requests and handler runs"
    );
    let _ = tokio::time::timeout(deadline, async {
        graceful.shutdown().await;
        // The connection futures ended; wait for their tasks too, so none is counted as cut.
        while connections.join_next().await.is_some() {}
    })
    .await;
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
        server_cut: false,
    };
    if report.is_clean() {
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis(),
            "shut down: every request answered, every handler run finished"
        );
    } else {
        tracing::warn!(?report, "shutdown deadline passed with work left");
    }
    report
}

/// A graceful shutdown with a deadline for a server that has its own (`axum::serve(..)
/// .with_graceful_shutdown(..)`, warp's `.graceful(..)`): wrap the shutdown signal with
/// [`Drain::signal`], run the server with [`Drain::run`]. After the signal, the server's own
/// graceful shutdown (stop accepting, finish open requests) gets the deadline; then the
/// webhook's handler runs still going (a run that outlived its delivery's timeout) get what is
/// left of it.
///
/// ```rust,no_run
/// # async fn demo(webhook: telehook_core::Webhook, app: hyper_util::service::TowerToHyperService<telehook_core::Webhook>) {
/// use std::time::Duration;
/// let drain = telehook_hyper::Drain::new(&webhook, Duration::from_secs(20));
/// let signal = drain.signal(async { let _ = tokio::signal::ctrl_c().await; });
/// let server = async move { signal.await; /* e.g. axum::serve(..).with_graceful_shutdown(signal) */ };
/// let (_output, report) = drain.run(server).await;
/// assert!(report.is_clean());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Drain {
    webhook: Webhook,
    deadline: Duration,
    signalled: tokio::sync::watch::Sender<Option<tokio::time::Instant>>,
}

impl Drain {
    /// Drains `webhook` within `deadline` after the signal.
    pub fn new(webhook: &Webhook, deadline: Duration) -> Self {
        Self {
            webhook: webhook.clone(),
            deadline,
            signalled: tokio::sync::watch::Sender::new(None),
        }
    }

    /// Resolves when `signal` does, and starts the deadline's clock: pass it to the server's
    /// graceful shutdown.
    pub fn signal<F>(&self, signal: F) -> impl Future<Output = ()> + use<F>
    where
        F: Future<Output = ()>,
    {
        let signalled = self.signalled.clone();
        async move {
            signal.await;
            signalled.send_replace(Some(tokio::time::Instant::now()));
        }
    }

    /// Runs `server` until it ends by itself (`Some(output)`), or until the deadline passes
    /// after the signal (`None`: the server is dropped, and its open connections with it);
    /// then waits for the webhook's handler runs within what is left of the deadline.
    pub async fn run<F>(self, server: F) -> (Option<F::Output>, ShutdownReport)
    where
        F: std::future::IntoFuture,
    {
        let mut server = std::pin::pin!(server.into_future());
        let mut signalled = self.signalled.subscribe();
        let output = loop {
            let started = *signalled.borrow_and_update();
            match started {
                None => tokio::select! {
                    output = &mut server => break Some(output),
                    changed = signalled.changed() => if changed.is_err() {
                        break Some(server.await);
                    },
                },
                Some(started) => {
                    tracing::info!(
                        in_flight = self.webhook.in_flight(),
                        deadline_ms = self.deadline.as_millis(),
                        "shutting down: waiting for open requests and handler runs"
                    );
                    break tokio::time::timeout_at(started + self.deadline, &mut server)
                        .await
                        .ok();
                }
            }
        };
        let started = *signalled.borrow();
        let left = match started {
            Some(started) => {
                (started + self.deadline).saturating_duration_since(tokio::time::Instant::now())
            }
            None => self.deadline,
        };
        let runs_unfinished = if self.webhook.drain(left).await {
            0
        } else {
            self.webhook.in_flight()
        };
        let report = ShutdownReport {
            connections_cut: 0,
            runs_unfinished,
            server_cut: output.is_none(),
        };
        if report.is_clean() {
            tracing::info!("shut down: every request answered, every handler run finished");
        } else {
            tracing::warn!(?report, "shutdown deadline passed with work left");
        }
        (output, report)
    }
}

/// Handles one hyper request with the webhook, for your own `service_fn` router.
pub async fn handle(
    webhook: &Webhook,
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let head = telehook_core::RequestHead::from_http(&parts.method, &parts.headers);
    Ok(webhook
        .handle_with_extensions(head, parts.extensions, body)
        .await
        .into_http())
}

/// The served service with the connection's remote address added to each request as
/// [`telehook_core::PeerAddr`], for a [`telehook_core::SourceAllowlist`] (and any route that
/// wants it).
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: std::net::SocketAddr,
}

impl<S, R> hyper::service::Service<http::Request<R>> for WithPeer<S>
where
    S: hyper::service::Service<http::Request<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: http::Request<R>) -> Self::Future {
        request
            .extensions_mut()
            .insert(telehook_core::PeerAddr(self.peer));
        self.inner.call(request)
    }
}
