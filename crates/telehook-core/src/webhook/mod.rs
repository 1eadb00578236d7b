//! The timeout-guarded webhook dispatcher: [`Webhook`], its builder and its responses.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt as _;
use http::StatusCode;
use http::header::{ALLOW, CONTENT_TYPE, HeaderMap, HeaderValue};
use http_body::Body;
use http_body_util::BodyExt as _;
use subtle::ConstantTimeEq as _;
use tokio::sync::{Semaphore, oneshot};

use crate::context::{Context, ReplySlot};
use crate::guard::{self, Claim, MemoryStore, Outcome, RedeliveryStore, RunResult, UpdateKey};
use crate::handler::{ErasedHandler, UpdateHandler};
use crate::update::{Update, UpdateType};

/// The header Telegram sends the `secret_token` in.
pub const SECRET_TOKEN_HEADER: &str = "x-telegram-bot-api-secret-token";
/// The default handler timeout. Telegram itself waits about 60 s; 10 s leaves room for the
/// redelivery to find the first run still going.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default body limit: 1 MiB, far above the largest update Telegram sends (tens of KiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The default number of handler runs in flight at once (Telegram's `max_connections` is at
/// most 100; the rest is room for runs that outlived an `on_timeout = Return`).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// The default number of failed runs after which [`ErrorPolicy::BoundedRetry`] gives up.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The default time allowed to read a request's body: 10 s. Telegram sends an update (tens of
/// KiB at most) in one go, so a body still arriving after that is stalled or trickling.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A request extension an adapter inserts when its platform ends the invocation at a fixed
/// instant (AWS Lambda, say): the dispatcher's effective timeout becomes
/// `min(configured timeout, deadline − now)`, so the handler is answered for (`503` by
/// default) before the platform kills the invocation. Put the deadline a safety margin before
/// the platform's own, so the answer still has time to leave.
///
/// The handler sees the effective deadline as [`Context::deadline`]; every other extension
/// the adapter inserted is readable with [`Context::extension`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InvocationDeadline(pub Instant);

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const APPLICATION_JSON: &str = "application/json";

/// What to answer when the handler is still running at the timeout.
#[derive(Clone, Default)]
pub enum OnTimeout {
    /// Answer `503` so Telegram delivers the update again, and surface a
    /// [`WebhookError::Timeout`]. The handler keeps running; the redelivery waits for it and
    /// never starts a second run. Safe everywhere: the default.
    #[default]
    Throw,
    /// Answer `200` at once and let the handler go on in the background. Telegram then sends
    /// the chat's next update while this one still runs, and on serverless platforms the work
    /// may be frozen mid-way. Read `docs/timeouts.md` first.
    Return,
    /// Decide per update: the callback sees what timed out and picks an action. Use it to
    /// count timeouts, or to `Return` only for kinds whose order does not matter.
    Custom(Arc<dyn Fn(&TimeoutEvent) -> TimeoutAction + Send + Sync>),
}

impl OnTimeout {
    /// A custom timeout callback.
    pub fn custom(f: impl Fn(&TimeoutEvent) -> TimeoutAction + Send + Sync + 'static) -> Self {
        Self::Custom(Arc::new(f))
    }

    fn decide(&self, event: &TimeoutEvent) -> TimeoutAction {
        match self {
            Self::Throw => TimeoutAction::Throw,
            Self::Return => TimeoutAction::Return,
            Self::Custom(f) => f(event),
        }
    }
}

impl fmt::Debug for OnTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Throw => "Throw",
            Self::Return => "Return",
            Self::Custom(_) => "Custom(..)",
        })
    }
}

/// What a custom [`OnTimeout`] callback chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutAction {
    /// As [`OnTimeout::Throw`].
    Throw,
    /// As [`OnTimeout::Return`].
    Return,
}

/// What timed out, for a custom [`OnTimeout`] callback.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TimeoutEvent {
    /// The update still being handled.
    pub update_id: u64,
    /// Its kind (`"message"`, …), if any.
    pub kind: Option<String>,
    /// Its chat, if any.
    pub chat_id: Option<i64>,
    /// How long the handler has run.
    pub elapsed: Duration,
    /// True if this is a redelivery waiting for the first run rather than the first run.
    pub redelivery: bool,
}

/// What to do when the handler returns `Err` (or panics). See `docs/adapter-contract.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Answer `500` so Telegram delivers the update again, until `max_attempts` runs have
    /// failed; then answer `200` and log that the update was given up. The default (3
    /// attempts): a failing update blocks its whole chat for up to 24 h otherwise.
    BoundedRetry {
        /// Failed runs before giving up (at least 1).
        max_attempts: u32,
    },
    /// Always answer `200`: the update is lost on the first failure, its chat never blocks.
    Acknowledge,
    /// Always answer `500`: Telegram retries until the update expires, blocking its chat.
    Retry,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        Self::BoundedRetry {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// A configuration a [`WebhookBuilder`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The secret token breaks Telegram's rule; the message says how (never what it is).
    #[error(
        "invalid secret_token: {0} (Telegram allows 1-256 characters of A-Z, a-z, 0-9, `_` and `-`)"
    )]
    InvalidSecretToken(&'static str),
    /// A limit was set to zero.
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
}

/// Why a request did not reach the handler, or how a run went wrong. Carried by a
/// [`WebhookResponse`] so adapters can hand it to a framework's error channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The handler was still running at the timeout and the answer was a failure.
    #[error(
        "update {update_id}: handler still running after {elapsed:?} (timeout); Telegram will deliver it again"
    )]
    Timeout {
        /// The update.
        update_id: u64,
        /// How long it had run.
        elapsed: Duration,
    },
    /// The handler returned `Err` or panicked and Telegram should deliver the update again.
    #[error("update {update_id}: handler failed ({failed_attempts} failed attempt(s)): {message}")]
    HandlerFailed {
        /// The update.
        update_id: u64,
        /// Failed runs so far, this one included.
        failed_attempts: u32,
        /// The handler's error message.
        message: String,
    },
    /// The redelivery store failed.
    #[error("update {update_id}: {message}")]
    Store {
        /// The update.
        update_id: u64,
        /// What failed.
        message: String,
    },
    /// Too many handler runs are in flight.
    #[error(
        "update {update_id}: {limit} handler runs already in flight; Telegram will deliver it again"
    )]
    Overloaded {
        /// The update.
        update_id: u64,
        /// The configured `max_in_flight`.
        limit: usize,
    },
}

/// The answer to one webhook request, framework-neutral: status, headers, body, and the error
/// (if any) for frameworks that have an error channel.
#[derive(Debug, Clone)]
pub struct WebhookResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    error: Option<WebhookError>,
}

impl WebhookResponse {
    fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            error: None,
        }
    }

    fn text(status: StatusCode, text: impl Into<String>) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
        Self {
            status,
            headers,
            body: Bytes::from(text.into()),
            error: None,
        }
    }

    fn json(body: Bytes) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(APPLICATION_JSON));
        Self {
            status: StatusCode::OK,
            headers,
            body,
            error: None,
        }
    }

    fn with_error(mut self, error: WebhookError) -> Self {
        self.error = Some(error);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers to send (`Content-Type`, `Allow`); `Content-Length` is the framework's job.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body: empty, a webhook reply (JSON), or a short plain-text reason.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The error behind a failure answer, for frameworks with an error channel.
    pub fn error(&self) -> Option<&WebhookError> {
        self.error.as_ref()
    }

    /// Splits the response into its parts.
    pub fn into_parts(self) -> (StatusCode, HeaderMap, Bytes, Option<WebhookError>) {
        (self.status, self.headers, self.body, self.error)
    }

    /// An `http::Response`; the error, if any, rides along in its extensions.
    pub fn into_http(self) -> http::Response<http_body_util::Full<Bytes>> {
        let mut response = http::Response::new(http_body_util::Full::new(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        if let Some(error) = self.error {
            response.extensions_mut().insert(error);
        }
        response
    }
}

/// What the dispatcher needs from a request before it reads the body: the method and two
/// headers. Adapters build it from their own request type.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a str,
    secret_token: Option<&'a [u8]>,
    content_length: Option<&'a [u8]>,
}

impl<'a> RequestHead<'a> {
    /// Builds the head from the method and a case-insensitive header lookup (called with
    /// lower-case names).
    pub fn new(method: &'a str, header: impl Fn(&str) -> Option<&'a [u8]>) -> Self {
        Self {
            method,
            secret_token: header(SECRET_TOKEN_HEADER),
            content_length: header("content-length"),
        }
    }

    /// Builds the head from `http` types.
    pub fn from_http(method: &'a http::Method, headers: &'a HeaderMap) -> Self {
        Self::new(method.as_str(), |name| {
            headers.get(name).map(HeaderValue::as_bytes)
        })
    }
}

/// Configures a [`Webhook`]. Every setting has a safe default.
#[derive(Clone)]
#[must_use = "a builder does nothing until `.build(handler)` is called"]
pub struct WebhookBuilder {
    secret_token: Option<String>,
    timeout: Duration,
    on_timeout: OnTimeout,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    error_policy: ErrorPolicy,
    max_in_flight: usize,
    guard_capacity: usize,
    guard_retention: Duration,
    store: Option<Arc<dyn RedeliveryStore>>,
}

impl fmt::Debug for WebhookBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookBuilder")
            .field(
                "secret_token",
                &self.secret_token.as_ref().map(|_| "<redacted>"),
            )
            .field("timeout", &self.timeout)
            .field("on_timeout", &self.on_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("error_policy", &self.error_policy)
            .field("max_in_flight", &self.max_in_flight)
            .field("guard_capacity", &self.guard_capacity)
            .field("guard_retention", &self.guard_retention)
            .field("custom_store", &self.store.is_some())
            .finish()
    }
}

impl Default for WebhookBuilder {
    fn default() -> Self {
        Self {
            secret_token: None,
            timeout: DEFAULT_TIMEOUT,
            on_timeout: OnTimeout::Throw,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            error_policy: ErrorPolicy::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            guard_capacity: guard::DEFAULT_CAPACITY,
            guard_retention: guard::DEFAULT_RETENTION,
            store: None,
        }
    }
}

impl WebhookBuilder {
    /// Requires header `X-Telegram-Bot-Api-Secret-Token` to equal `token` (the `secret_token`
    /// given to `setWebhook`). Without it anyone who finds the URL can post fake updates.
    pub fn secret_token(mut self, token: impl Into<String>) -> Self {
        self.secret_token = Some(token.into());
        self
    }

    /// How long the handler may run before [`WebhookBuilder::on_timeout`] decides the answer.
    /// Default 10 s. Keep it well below Telegram's ~60 s and below a serverless function's own
    /// limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to answer at the timeout. Default [`OnTimeout::Throw`].
    pub fn on_timeout(mut self, on_timeout: OnTimeout) -> Self {
        self.on_timeout = on_timeout;
        self
    }

    /// The largest body accepted, in bytes; larger bodies get `413` and are not read further.
    /// Default [`DEFAULT_MAX_BODY_BYTES`].
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// How long the body may take to arrive once the method and headers passed; a body that
    /// stalls or trickles past it gets `408 Request Timeout` and the handler never runs.
    /// Default [`DEFAULT_BODY_READ_TIMEOUT`] (10 s). This bounds the whole body, not the gap
    /// between two chunks, so a client sending one byte a second cannot hold the request open.
    /// Headers are the server's job: set a header-read timeout there (see the adapter's README).
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// What to do when the handler returns `Err`. Default: [`ErrorPolicy::BoundedRetry`] with
    /// 3 attempts.
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.error_policy = policy;
        self
    }

    /// How many handler runs may be in flight at once; beyond it updates get `503` and
    /// Telegram delivers them again. Default [`DEFAULT_MAX_IN_FLIGHT`].
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        self.max_in_flight = limit;
        self
    }

    /// How many finished `update_id`s the in-memory redelivery guard remembers, and for how
    /// long. Defaults: 10,000 and 15 minutes. The guard keeps the last `capacity` consecutive
    /// `update_id`s (see [`MemoryStore`] for its memory use).
    pub fn redelivery_guard(mut self, capacity: usize, retention: Duration) -> Self {
        self.guard_capacity = capacity;
        self.guard_retention = retention;
        self
    }

    /// Replaces the in-memory redelivery guard with a store of your own (shared by several
    /// instances, say).
    pub fn redelivery_store(mut self, store: Arc<dyn RedeliveryStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Builds the dispatcher around `handler`, checking the configuration.
    pub fn build<U, H>(self, handler: H) -> Result<Webhook, BuildError>
    where
        U: UpdateType,
        H: UpdateHandler<U>,
    {
        if let Some(token) = &self.secret_token {
            validate_secret_token(token)?;
        }
        for (name, zero) in [
            ("timeout", self.timeout.is_zero()),
            ("max_body_bytes", self.max_body_bytes == 0),
            ("body_read_timeout", self.body_read_timeout.is_zero()),
            ("max_in_flight", self.max_in_flight == 0),
            ("redelivery_guard capacity", self.guard_capacity == 0),
            (
                "error_policy max_attempts",
                self.error_policy == ErrorPolicy::BoundedRetry { max_attempts: 0 },
            ),
        ] {
            if zero {
                return Err(BuildError::Zero(name));
            }
        }
        let store = self.store.unwrap_or_else(|| {
            Arc::new(MemoryStore::new(self.guard_capacity, self.guard_retention))
        });
        Ok(Webhook {
            inner: Arc::new(Inner {
                secret_token: self.secret_token.map(String::into_bytes),
                timeout: self.timeout,
                on_timeout: self.on_timeout,
                max_body_bytes: self.max_body_bytes,
                body_read_timeout: self.body_read_timeout,
                error_policy: self.error_policy,
                max_in_flight: self.max_in_flight,
                in_flight: Arc::new(Semaphore::new(self.max_in_flight)),
                store,
                handler: ErasedHandler::new(handler),
            }),
        })
    }
}

/// Checks Telegram's rule for `secret_token`: 1–256 characters of `A-Z a-z 0-9 _ -`.
pub fn validate_secret_token(token: &str) -> Result<(), BuildError> {
    if token.is_empty() {
        return Err(BuildError::InvalidSecretToken("it is empty"));
    }
    if token.len() > 256 {
        return Err(BuildError::InvalidSecretToken(
            "it is longer than 256 characters",
        ));
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(BuildError::InvalidSecretToken(
            "it contains a character outside the allowed set",
        ));
    }
    Ok(())
}

struct Inner {
    secret_token: Option<Vec<u8>>,
    timeout: Duration,
    on_timeout: OnTimeout,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    error_policy: ErrorPolicy,
    max_in_flight: usize,
    in_flight: Arc<Semaphore>,
    store: Arc<dyn RedeliveryStore>,
    handler: ErasedHandler,
}

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

    /// Handler runs in flight right now, including runs that outlived their delivery's timeout.
    pub fn in_flight(&self) -> usize {
        self.inner.max_in_flight - self.inner.in_flight.available_permits()
    }

    /// Waits until no handler run is in flight, up to `deadline`; true if all finished. For a
    /// graceful shutdown: stop accepting requests first, then drain.
    pub async fn drain(&self, deadline: Duration) -> bool {
        let all = u32::try_from(self.inner.max_in_flight).unwrap_or(u32::MAX);
        let semaphore = &self.inner.in_flight;
        match tokio::time::timeout(deadline, semaphore.acquire_many(all)).await {
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
    /// [`Context::extension`], and an [`InvocationDeadline`] among them shortens the timeout.
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

    /// The refusal for a request whose method or headers break the contract, if any.
    fn check_head(&self, head: RequestHead<'_>) -> Option<WebhookResponse> {
        let inner = &self.inner;
        if head.method != "POST" {
            let mut response = WebhookResponse::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: Telegram delivers updates with POST",
            );
            response
                .headers
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return Some(response);
        }
        if let Some(expected) = &inner.secret_token {
            let given = head.secret_token.unwrap_or_default();
            // `ct_eq` on slices of unequal length returns false at once, which reveals only the
            // length; the comparison of equal lengths takes the same time wherever they differ.
            if !bool::from(given.ct_eq(expected.as_slice())) {
                tracing::warn!(
                    header_present = head.secret_token.is_some(),
                    "webhook request refused: missing or wrong {SECRET_TOKEN_HEADER} header"
                );
                return Some(WebhookResponse::text(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized: wrong or missing secret token",
                ));
            }
        }
        if let Some(length) = head.content_length {
            let length = std::str::from_utf8(length)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            match length {
                Some(n) if n > inner.max_body_bytes as u64 => {
                    return Some(too_large(inner.max_body_bytes));
                }
                Some(_) => {}
                None => {
                    return Some(WebhookResponse::text(
                        StatusCode::BAD_REQUEST,
                        "bad request: invalid Content-Length",
                    ));
                }
            }
        }
        None
    }
}

fn too_large(limit: usize) -> WebhookResponse {
    tracing::warn!(
        limit,
        "webhook request refused: body larger than max_body_bytes"
    );
    WebhookResponse::text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("payload too large: the limit is {limit} bytes"),
    )
}

enum ReadError {
    TooLarge,
    Body(String),
}

/// Reads at most `limit` bytes of `body`; a single-chunk body is not copied.
async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: Body,
    B::Error: fmt::Display,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.as_mut().frame().await {
        let frame = frame.map_err(|e| ReadError::Body(e.to_string()))?;
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        len += data.remaining();
        if len > limit {
            return Err(ReadError::TooLarge);
        }
        let chunk = data.copy_to_bytes(data.remaining());
        match (&mut first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(head), None) => {
                let mut buf = BytesMut::with_capacity(len);
                buf.extend_from_slice(head);
                buf.extend_from_slice(&chunk);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    Ok(match rest {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// What the spawned run reports back to the request that started it.
struct Finished {
    result: RunResult,
    error: Option<String>,
}

impl Inner {
    async fn dispatch<B>(self: Arc<Self>, body: B, extensions: http::Extensions) -> WebhookResponse
    where
        B: Body,
        B::Error: fmt::Display,
    {
        let read =
            tokio::time::timeout(self.body_read_timeout, read_body(body, self.max_body_bytes));
        let body = match read.await {
            Ok(Ok(body)) => body,
            Err(_) => {
                let limit_ms = self.body_read_timeout.as_millis() as u64;
                tracing::warn!(
                    limit_ms,
                    "webhook request refused: the body did not arrive within body_read_timeout"
                );
                return WebhookResponse::text(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("request timeout: the body did not arrive within {limit_ms} ms"),
                );
            }
            Ok(Err(ReadError::TooLarge)) => return too_large(self.max_body_bytes),
            Ok(Err(ReadError::Body(e))) => {
                tracing::warn!(error = %e, "webhook request refused: the body could not be read");
                return WebhookResponse::text(
                    StatusCode::BAD_REQUEST,
                    "bad request: the body could not be read",
                );
            }
        };
        let update = match Update::from_bytes(body) {
            Ok(update) => update,
            Err(reason) => {
                tracing::warn!(%reason, "webhook request refused: not a Telegram update");
                return WebhookResponse::text(
                    StatusCode::BAD_REQUEST,
                    format!("bad request: {reason}"),
                );
            }
        };
        let update_id = update.update_id();
        let key = UpdateKey::new(update_id, update.raw());
        match self.store.claim(key).await {
            Err(e) => store_failed(update_id, &e),
            Ok(Claim::Done(outcome)) => {
                tracing::info!(
                    update_id,
                    "redelivery of an update already handled: answered without running the handler"
                );
                outcome_response(outcome)
            }
            Ok(Claim::InFlight) => self.await_first_run(&update, key, &extensions).await,
            Ok(Claim::Run { failed_attempts }) => {
                self.run(update, key, failed_attempts, extensions).await
            }
        }
    }

    /// A redelivery of an update whose first run is still going: wait for it (up to the
    /// timeout) and answer with its outcome, so the handler never runs twice at once.
    async fn await_first_run(
        &self,
        update: &Update,
        key: UpdateKey,
        extensions: &http::Extensions,
    ) -> WebhookResponse {
        let update_id = update.update_id();
        tracing::info!(
            update_id,
            "redelivery of an update still being handled: waiting for the first run"
        );
        let started = Instant::now();
        let timeout = self.effective_timeout(started, extensions);
        match tokio::time::timeout(timeout, self.store.wait(key)).await {
            Ok(Ok(result)) => self.result_response(update_id, result, None),
            Ok(Err(e)) => store_failed(update_id, &e),
            Err(_) => {
                let event = timeout_event(update, started.elapsed(), true);
                match self.on_timeout.decide(&event) {
                    TimeoutAction::Return => WebhookResponse::empty(StatusCode::OK),
                    TimeoutAction::Throw => throw_timeout(&event),
                }
            }
        }
    }

    /// The configured timeout, shortened to what is left before an [`InvocationDeadline`].
    fn effective_timeout(&self, now: Instant, extensions: &http::Extensions) -> Duration {
        match extensions.get::<InvocationDeadline>() {
            Some(InvocationDeadline(deadline)) => {
                self.timeout.min(deadline.saturating_duration_since(now))
            }
            None => self.timeout,
        }
    }

    async fn run(
        self: Arc<Self>,
        update: Update,
        key: UpdateKey,
        failed_attempts: u32,
        extensions: http::Extensions,
    ) -> WebhookResponse {
        let update_id = update.update_id();
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            // Give the claim back unchanged so the redelivery runs it.
            let _ = self
                .store
                .finish(key, RunResult::Failed { failed_attempts })
                .await;
            tracing::warn!(
                update_id,
                limit = self.max_in_flight,
                "too many handler runs in flight: answering 503"
            );
            return WebhookResponse::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "service unavailable: too many updates in flight",
            )
            .with_error(WebhookError::Overloaded {
                update_id,
                limit: self.max_in_flight,
            });
        };
        let started = Instant::now();
        let timeout = self.effective_timeout(started, &extensions);
        let slot = ReplySlot::new();
        let ctx = Context::webhook(
            update_id,
            failed_attempts,
            started,
            timeout,
            Arc::clone(&slot),
        )
        .with_extensions(extensions);
        let chat_id = update.chat_id();
        let probe = TimeoutProbe {
            kind: update.kind.clone(),
            chat_id,
        };
        let mut run = AssertUnwindSafe(self.handler.call(update, ctx)).catch_unwind();

        // Most handlers that answer by webhook reply finish without waiting on anything: poll
        // once here, and pay for a task, a channel and a timer only if the handler is pending.
        let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut run).poll(cx))).await;
        if let Poll::Ready(outcome) = first {
            let finished = self
                .conclude(key, chat_id, failed_attempts, outcome, &slot, false)
                .await;
            drop(permit);
            return self.result_response(update_id, finished.result, finished.error);
        }

        let acknowledged_early = Arc::new(AtomicBool::new(false));
        let (tx, rx) = oneshot::channel::<Finished>();
        let task = {
            let this = Arc::clone(&self);
            let slot = Arc::clone(&slot);
            let acknowledged_early = Arc::clone(&acknowledged_early);
            async move {
                let outcome = run.await;
                let elapsed = started.elapsed();
                let early = acknowledged_early.load(Ordering::SeqCst);
                let finished = this
                    .conclude(key, chat_id, failed_attempts, outcome, &slot, early)
                    .await;
                if tx.send(finished).is_err() {
                    tracing::warn!(
                        update_id,
                        elapsed_ms = elapsed.as_millis() as u64,
                        "handler finished after its delivery timed out"
                    );
                }
                drop(permit);
            }
        };
        tokio::spawn(task);

        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(finished)) => self.result_response(update_id, finished.result, finished.error),
            Ok(Err(_)) => {
                // The task ended without reporting: only possible if the runtime shut down.
                WebhookResponse::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service unavailable: shutting down",
                )
            }
            Err(_) => {
                let event = probe.event(update_id, started.elapsed(), false);
                match self.on_timeout.decide(&event) {
                    TimeoutAction::Return => {
                        acknowledged_early.store(true, Ordering::SeqCst);
                        tracing::warn!(
                            update_id,
                            elapsed_ms = event.elapsed.as_millis() as u64,
                            "handler still running at the timeout: answering 200 (on_timeout = Return); \
                             the chat's next update may now run in parallel with this one"
                        );
                        match slot.close() {
                            Some(reply) => WebhookResponse::json(reply),
                            None => WebhookResponse::empty(StatusCode::OK),
                        }
                    }
                    TimeoutAction::Throw => throw_timeout(&event),
                }
            }
        }
    }

    /// Turns how the handler ended into the run's result, records it in the store, and says
    /// what to answer.
    async fn conclude(
        &self,
        key: UpdateKey,
        chat_id: Option<i64>,
        failed_attempts: u32,
        outcome: std::thread::Result<Result<(), crate::HandlerError>>,
        slot: &ReplySlot,
        acknowledged_early: bool,
    ) -> Finished {
        let update_id = key.update_id;
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(panic) => Some(panic_message(panic.as_ref())),
        };
        let reply = slot.close();
        let result = match &failure {
            None => RunResult::Done(Outcome::Handled { reply }),
            Some(message) => self.failure_result(
                update_id,
                chat_id,
                failed_attempts + 1,
                message,
                acknowledged_early,
            ),
        };
        if let Err(e) = self.store.finish(key, result.clone()).await {
            tracing::error!(update_id, error = %e, "could not record the outcome in the redelivery store");
        }
        Finished {
            result,
            error: failure,
        }
    }

    fn failure_result(
        &self,
        update_id: u64,
        chat_id: Option<i64>,
        failed_attempts: u32,
        message: &str,
        acknowledged_early: bool,
    ) -> RunResult {
        tracing::error!(update_id, chat_id, failed_attempts, error = %message, "handler failed");
        if acknowledged_early {
            tracing::error!(
                update_id,
                "the update was already acknowledged (on_timeout = Return): it is lost"
            );
            return RunResult::Done(Outcome::GaveUp);
        }
        match self.error_policy {
            ErrorPolicy::Acknowledge => {
                tracing::warn!(
                    update_id,
                    "acknowledging the failed update (error_policy = Acknowledge)"
                );
                RunResult::Done(Outcome::GaveUp)
            }
            ErrorPolicy::BoundedRetry { max_attempts } if failed_attempts >= max_attempts => {
                tracing::error!(
                    update_id,
                    failed_attempts,
                    "giving up on the update: acknowledging it so its chat is not blocked"
                );
                RunResult::Done(Outcome::GaveUp)
            }
            ErrorPolicy::BoundedRetry { .. } | ErrorPolicy::Retry => {
                RunResult::Failed { failed_attempts }
            }
        }
    }

    fn result_response(
        &self,
        update_id: u64,
        result: RunResult,
        error: Option<String>,
    ) -> WebhookResponse {
        match result {
            RunResult::Done(outcome) => outcome_response(outcome),
            RunResult::Failed { failed_attempts } => WebhookResponse::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error: the handler failed",
            )
            .with_error(WebhookError::HandlerFailed {
                update_id,
                failed_attempts,
                message: error.unwrap_or_else(|| "the handler failed (see the log)".into()),
            }),
        }
    }
}

/// What a timeout event needs from the update, kept after the update moved into the handler.
struct TimeoutProbe {
    kind: Option<std::borrow::Cow<'static, str>>,
    chat_id: Option<i64>,
}

impl TimeoutProbe {
    fn event(&self, update_id: u64, elapsed: Duration, redelivery: bool) -> TimeoutEvent {
        TimeoutEvent {
            update_id,
            kind: self.kind.as_deref().map(str::to_owned),
            chat_id: self.chat_id,
            elapsed,
            redelivery,
        }
    }
}

fn timeout_event(update: &Update, elapsed: Duration, redelivery: bool) -> TimeoutEvent {
    TimeoutEvent {
        update_id: update.update_id(),
        kind: update.kind().map(str::to_owned),
        chat_id: update.chat_id(),
        elapsed,
        redelivery,
    }
}

fn throw_timeout(event: &TimeoutEvent) -> WebhookResponse {
    tracing::error!(
        update_id = event.update_id,
        chat_id = event.chat_id,
        elapsed_ms = event.elapsed.as_millis() as u64,
        redelivery = event.redelivery,
        "handler still running at the timeout: answering 503 so Telegram delivers the update again; \
         the handler keeps running and the redelivery will wait for it"
    );
    WebhookResponse::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "service unavailable: the handler timed out",
    )
    .with_error(WebhookError::Timeout {
        update_id: event.update_id,
        elapsed: event.elapsed,
    })
}

fn outcome_response(outcome: Outcome) -> WebhookResponse {
    match outcome {
        Outcome::Handled { reply: Some(reply) } => WebhookResponse::json(reply),
        Outcome::Handled { reply: None } | Outcome::GaveUp => {
            WebhookResponse::empty(StatusCode::OK)
        }
    }
}

fn store_failed(update_id: u64, error: &guard::StoreError) -> WebhookResponse {
    tracing::error!(update_id, %error, "redelivery store failed: answering 503");
    WebhookResponse::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "service unavailable: redelivery store failed",
    )
    .with_error(WebhookError::Store {
        update_id,
        message: error.to_string(),
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    format!("handler panicked: {text}")
}
