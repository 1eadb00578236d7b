//! The timeout-guarded webhook dispatcher: [`Webhook`], its builder and its responses.
//!
//! One job per file, in the order a delivery meets them:
//! - `head`: the method and headers ([`RequestHead`]), checked before any body byte is read,
//!   and the [`InvocationDeadline`] a platform attaches;
//! - `body`: reading the body, bounded in size and time;
//! - `dispatch`: the redelivery guard, the in-flight limit, the timeout and the handler run;
//! - `policy`: what a timeout or a failure leads to ([`OnTimeout`], [`ErrorPolicy`]);
//! - `response` and `error`: what is answered ([`WebhookResponse`]) and why
//!   ([`Rejection`], [`WebhookError`]);
//! - `builder`: the settings and their defaults ([`WebhookBuilder`]);
//! - `telemetry`: the metrics each step records (names and labels).

mod body;
mod builder;
mod dispatch;
mod error;
mod head;
mod policy;
mod response;
mod source;
pub mod telemetry;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;

use dispatch::Inner;

pub use builder::{
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT,
    MAX_IN_FLIGHT_LIMIT, WebhookBuilder, validate_secret_token,
};
pub use error::{BuildError, Rejection, WebhookError};
pub use head::{InvocationDeadline, RequestHead, SECRET_TOKEN_HEADER};
pub use policy::{DEFAULT_MAX_ATTEMPTS, ErrorPolicy, OnTimeout, TimeoutAction, TimeoutEvent};
pub use response::WebhookResponse;
pub use source::{
    ForwardedHeader, InvalidRange, PeerAddr, SourceAllowlist, TELEGRAM_SOURCE_RANGES,
};

/// The webhook dispatcher: checks a delivery against Telegram's rules, runs the handler under
/// a timeout and the redelivery guard, and says what to answer. Cheap to clone; mount it in
/// any framework through an adapter, or directly as a `tower::Service`.
///
/// ```
/// use telehook_core::{Context, Update, Webhook};
///
/// let webhook = Webhook::builder()
///     .secret_token("s3cr3t_T0ken-for-tests")
///     .build(|update: Update, ctx: Context| async move {
///         if let Some(chat_id) = update.chat_id() {
///             ctx.webhook_reply("sendMessage", serde_json::json!({"chat_id": chat_id, "text": "hello"}))?;
///         }
///         Ok::<_, telehook_core::HandlerError>(())
///     })
///     .expect("a valid configuration");
/// # drop(webhook);
/// ```
#[derive(Clone)]
pub struct Webhook {
    inner: Arc<Inner>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Webhook")
            .field(
                "secret_token",
                &i.secret_token.as_ref().map(|_| "<redacted>"),
            )
            .field("timeout", &i.timeout)
            .field("on_timeout", &i.on_timeout)
            .field("max_body_bytes", &i.max_body_bytes)
            .field("body_read_timeout", &i.body_read_timeout)
            .field("error_policy", &i.error_policy)
            .field("max_in_flight", &i.max_in_flight)
            .field("source_allowlist", &i.source_allowlist)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Starts configuring a dispatcher.
    pub fn builder() -> WebhookBuilder {
        WebhookBuilder::default()
    }

    /// The configured handler timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The configured timeout behaviour (an adapter for a serverless platform refuses
    /// [`OnTimeout::Return`], whose background work would be frozen).
    pub fn on_timeout(&self) -> &OnTimeout {
        &self.inner.on_timeout
    }

    /// Whether this dispatcher should get traffic: true until a drain starts
    /// ([`Webhook::begin_drain`] or [`Webhook::drain`]), false from then on. Answer a
    /// readiness probe (Kubernetes `readinessProbe`, a load balancer's health check) with it,
    /// so traffic moves elsewhere while the runs in flight finish. From then on a new delivery
    /// gets `503` ([`Rejection::Draining`]) once its method and headers pass, and Telegram
    /// delivers it again later.
    pub fn is_ready(&self) -> bool {
        !self
            .inner
            .draining
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks the dispatcher as draining without waiting: [`Webhook::is_ready`] turns false and
    /// new deliveries get `503` ([`Rejection::Draining`]); runs in flight go on.
    /// Call it when the shutdown signal arrives, before the server stops accepting, so the
    /// readiness probe fails first; [`Webhook::drain`] calls it too.
    pub fn begin_drain(&self) {
        if !self
            .inner
            .draining
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            tracing::info!(
                in_flight = self.in_flight(),
                "webhook draining: not ready any more"
            );
        }
    }

    /// Handler runs in flight right now, including runs that outlived their delivery's timeout.
    pub fn in_flight(&self) -> usize {
        self.inner.max_in_flight - self.inner.in_flight.available_permits()
    }

    /// Waits until no handler run is in flight, up to `deadline`, while deliveries go on being
    /// served; true if it saw none in flight. For a platform that keeps the instance alive
    /// while a promise is pending (Vercel's `waitUntil`): unlike [`Webhook::drain`], it holds no
    /// permit, so a delivery arriving meanwhile runs (and is waited for too).
    pub async fn wait_idle(&self, deadline: Duration) -> bool {
        let idle = async {
            loop {
                let mut notified = std::pin::pin!(self.inner.idle.notified());
                // Registered before the check, so a run ending in between still wakes us.
                notified.as_mut().enable();
                if self.in_flight() == 0 {
                    return;
                }
                notified.await;
            }
        };
        self.inner.rt.timeout(deadline, idle).await.is_ok()
    }

    /// Waits until no handler run is in flight, up to `deadline`; true if all finished. For a
    /// graceful shutdown: stop accepting requests first, then drain.
    ///
    /// A delivery arriving once it started gets `503` (Telegram delivers it again later), and
    /// so does any after it returned: use it at shutdown, and [`Webhook::wait_idle`] to wait
    /// while still serving.
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.begin_drain();
        let all = u32::try_from(self.inner.max_in_flight).unwrap_or(u32::MAX);
        let semaphore = &self.inner.in_flight;
        let rt = &self.inner.rt;
        match rt.timeout(deadline, semaphore.acquire_many(all)).await {
            Ok(Ok(permits)) => {
                drop(permits);
                true
            }
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(
                    in_flight = self.in_flight(),
                    "drain deadline passed with handler runs still in flight"
                );
                false
            }
        }
    }

    /// Handles one webhook request: the framework-neutral entry point every adapter calls.
    ///
    /// The method and headers are checked before the returned future exists, so `head` is not
    /// borrowed by it; the body (any `http_body::Body`: a stream, or `Full<Bytes>` for a body
    /// already in memory) is read only if they pass, and only up to the limit.
    pub fn handle<B>(
        &self,
        head: RequestHead<'_>,
        body: B,
    ) -> impl Future<Output = WebhookResponse> + use<B>
    where
        B: Body + 'static,
        B::Error: fmt::Display,
    {
        self.handle_with_extensions(head, http::Extensions::new(), body)
    }

    /// [`Webhook::handle`] with the request's extensions: the handler reads them through
    /// [`Context::extension`](crate::Context::extension), and an [`InvocationDeadline`] among them shortens the timeout.
    /// Adapters pass what their framework put in the request (`http::request::Parts::extensions`)
    /// plus what the platform knows (Lambda's request context and deadline, say).
    pub fn handle_with_extensions<B>(
        &self,
        head: RequestHead<'_>,
        extensions: http::Extensions,
        body: B,
    ) -> impl Future<Output = WebhookResponse> + use<B>
    where
        B: Body + 'static,
        B::Error: fmt::Display,
    {
        let mut head = head;
        if head.peer.is_none()
            && let Some(PeerAddr(peer)) = extensions.get::<PeerAddr>()
        {
            head = head.with_peer(*peer);
        }
        let early = self.check_head(head);
        let inner = Arc::clone(&self.inner);
        async move {
            match early {
                Some(refusal) => refusal,
                None => inner.dispatch(body, extensions).await,
            }
        }
    }

    /// [`Webhook::handle`] for a body already in memory.
    pub fn handle_bytes(
        &self,
        head: RequestHead<'_>,
        body: Bytes,
    ) -> impl Future<Output = WebhookResponse> + Send + use<> {
        self.handle(head, http_body_util::Full::new(body))
    }

    /// The refusal for a request whose method or headers break the contract (`405`, `401`,
    /// `413` for a declared length over the limit, `400` for an invalid one), if any; `None`
    /// if the body may be read. [`Webhook::handle`] runs it first; an adapter calls it on its
    /// own where the framework decides about the body before the handler runs (answering
    /// `Expect: 100-continue`, say), so a wrong secret never gets a `100 Continue`.
    pub fn check_head(&self, head: RequestHead<'_>) -> Option<WebhookResponse> {
        let inner = &self.inner;
        head.check(
            inner.secret_token.as_deref(),
            inner.max_body_bytes,
            inner.source_allowlist.as_ref(),
        )
        .err()
        .map(|rejection| {
            telemetry::refused(&rejection);
            WebhookResponse::rejected(rejection)
        })
    }
}
