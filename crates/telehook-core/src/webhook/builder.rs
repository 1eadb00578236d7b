//! [`WebhookBuilder`]: every setting of the dispatcher, its default, and the checks `build`
//! makes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use super::Webhook;
use super::dispatch::Inner;
use super::error::BuildError;
use super::policy::{ErrorPolicy, OnTimeout};
use super::source::SourceAllowlist;
use crate::guard::{self, MemoryStore, RedeliveryStore};
use crate::handler::{ErasedHandler, UpdateHandler};
use crate::update::UpdateType;

/// The default handler timeout. Telegram itself waits about 60 s; 10 s leaves room for the
/// redelivery to find the first run still going.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default body limit: 1 MiB, far above the largest update Telegram sends (tens of KiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The default number of handler runs in flight at once (Telegram's `max_connections` is at
/// most 100; the rest is room for runs that outlived an `on_timeout = Return`).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// The largest `max_in_flight` [`WebhookBuilder::build`] accepts: 16 Mi (16,777,216) runs at
/// once, far above what one process serves, and below tokio's semaphore limit and `u32::MAX`
/// (what [`Webhook::drain`](super::Webhook::drain) waits for at once) on every platform.
pub const MAX_IN_FLIGHT_LIMIT: usize = 16 * 1024 * 1024;
const _: () = assert!(MAX_IN_FLIGHT_LIMIT <= Semaphore::MAX_PERMITS);
const _: () = assert!(MAX_IN_FLIGHT_LIMIT <= u32::MAX as usize);
/// The default time allowed to read a request's body: 10 s. Telegram sends an update (tens of
/// KiB at most) in one go, so a body still arriving after that is stalled or trickling.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Configures a [`Webhook`]. Every setting has a safe default.
#[derive(Clone)]
#[must_use = "a builder does nothing until `.build(handler)` is called"]
pub struct WebhookBuilder {
    secret_token: Option<String>,
    source_allowlist: Option<SourceAllowlist>,
    timeout: Duration,
    on_timeout: OnTimeout,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    /// `None` until set: the handler's required policy, or the default, applies then.
    error_policy: Option<ErrorPolicy>,
    max_in_flight: usize,
    guard_capacity: usize,
    guard_retention: Duration,
    store: Option<Arc<dyn RedeliveryStore>>,
    runtime: Option<Arc<dyn crate::rt::Runtime>>,
}

impl fmt::Debug for WebhookBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookBuilder")
            .field(
                "secret_token",
                &self.secret_token.as_ref().map(|_| "<redacted>"),
            )
            .field("source_allowlist", &self.source_allowlist)
            .field("timeout", &self.timeout)
            .field("on_timeout", &self.on_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("error_policy", &self.error_policy)
            .field("max_in_flight", &self.max_in_flight)
            .field("guard_capacity", &self.guard_capacity)
            .field("guard_retention", &self.guard_retention)
            .field("custom_store", &self.store.is_some())
            .field("custom_runtime", &self.runtime.is_some())
            .finish()
    }
}

impl Default for WebhookBuilder {
    fn default() -> Self {
        Self {
            secret_token: None,
            source_allowlist: None,
            timeout: DEFAULT_TIMEOUT,
            on_timeout: OnTimeout::Throw,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            error_policy: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            guard_capacity: guard::DEFAULT_CAPACITY,
            guard_retention: guard::DEFAULT_RETENTION,
            store: None,
            runtime: None,
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

    /// Admits requests only from `allowlist`'s addresses (Telegram's published ranges with
    /// [`SourceAllowlist::telegram`]), answering `403` to others before the body is read. The
    /// adapter must pass the peer's address ([`PeerAddr`](super::PeerAddr)); without it every
    /// request is refused. A second line of defence: keep the `secret_token`.
    pub fn source_allowlist(mut self, allowlist: SourceAllowlist) -> Self {
        self.source_allowlist = Some(allowlist);
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
    ///
    /// A handler whose update must not be acknowledged before its run ends
    /// ([`UpdateHandler::acknowledge_only_after_run`]) refuses [`OnTimeout::Return`] at
    /// [`WebhookBuilder::build`] ([`BuildError::AcknowledgeBeforeRunEnds`]); for it, a
    /// [`OnTimeout::Custom`] callback's [`TimeoutAction::Return`](super::TimeoutAction::Return)
    /// counts as `Throw` (logged as a warning).
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

    /// What to do when the handler returns `Err`. Default: the handler's
    /// [`UpdateHandler::required_error_policy`] if it has one, else
    /// [`ErrorPolicy::BoundedRetry`] with 3 attempts. A policy other than the one the handler
    /// requires makes [`WebhookBuilder::build`] fail ([`BuildError::ErrorPolicyConflict`]).
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.error_policy = Some(policy);
        self
    }

    /// How many handler runs may be in flight at once; beyond it updates get `503` and
    /// Telegram delivers them again. Default [`DEFAULT_MAX_IN_FLIGHT`]; allowed
    /// `1..=`[`MAX_IN_FLIGHT_LIMIT`] ([`WebhookBuilder::build`] refuses others).
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        self.max_in_flight = limit;
        self
    }

    /// How many finished `update_id`s the in-memory redelivery guard remembers, and for how
    /// long. Defaults: 10,000 and 15 minutes. The guard keeps the last `capacity` consecutive
    /// `update_id`s (see [`MemoryStore`] for its memory use). `capacity` must be in
    /// `1..=`[`MAX_CAPACITY`](crate::guard::MAX_CAPACITY) ([`WebhookBuilder::build`] refuses
    /// others): its slot table is allocated whole on the first delivery.
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

    /// The timer and spawn the dispatcher uses instead of tokio's: for a platform without
    /// tokio's runtime (Cloudflare Workers, Spin; see `docs/edge.md`). Needed when
    /// telehook-core is built without its default `tokio-rt` feature, optional otherwise.
    pub fn runtime(mut self, runtime: Arc<dyn crate::rt::Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Builds the dispatcher around `handler`, checking the configuration.
    ///
    /// The error policy is the one set with [`WebhookBuilder::error_policy`], else the one
    /// the handler requires, else the default; a set policy that differs from the handler's
    /// required one is refused ([`BuildError::ErrorPolicyConflict`]). [`OnTimeout::Return`]
    /// for a handler that must not be acknowledged before its run ends
    /// ([`UpdateHandler::acknowledge_only_after_run`]) is refused
    /// ([`BuildError::AcknowledgeBeforeRunEnds`]), and so is `max_in_flight` or a redelivery
    /// guard capacity outside its range ([`BuildError::Zero`], [`BuildError::TooLarge`]).
    pub fn build<U, H>(self, handler: H) -> Result<Webhook, BuildError>
    where
        U: UpdateType,
        H: UpdateHandler<U>,
    {
        if let Some(token) = &self.secret_token {
            validate_secret_token(token)?;
        }
        let required = UpdateHandler::<U>::required_error_policy(&handler);
        let error_policy = match (self.error_policy, required) {
            (Some(configured), Some(required)) if configured != required => {
                return Err(BuildError::ErrorPolicyConflict {
                    configured,
                    required,
                });
            }
            (Some(policy), _) | (None, Some(policy)) => policy,
            (None, None) => ErrorPolicy::default(),
        };
        for (name, zero) in [
            ("timeout", self.timeout.is_zero()),
            ("max_body_bytes", self.max_body_bytes == 0),
            ("body_read_timeout", self.body_read_timeout.is_zero()),
            ("max_in_flight", self.max_in_flight == 0),
            ("redelivery_guard capacity", self.guard_capacity == 0),
            (
                "error_policy max_attempts",
                error_policy == ErrorPolicy::BoundedRetry { max_attempts: 0 },
            ),
        ] {
            if zero {
                return Err(BuildError::Zero(name));
            }
        }
        for (name, value, max) in [
            ("max_in_flight", self.max_in_flight, MAX_IN_FLIGHT_LIMIT),
            (
                "redelivery_guard capacity",
                self.guard_capacity,
                guard::MAX_CAPACITY,
            ),
        ] {
            if value > max {
                return Err(BuildError::TooLarge { name, value, max });
            }
        }
        let acknowledge_only_after_run = UpdateHandler::<U>::acknowledge_only_after_run(&handler);
        if acknowledge_only_after_run && matches!(self.on_timeout, OnTimeout::Return) {
            return Err(BuildError::AcknowledgeBeforeRunEnds);
        }
        let rt = crate::rt::Rt::choose(self.runtime).ok_or(BuildError::NoRuntime)?;
        let store = self.store.unwrap_or_else(|| {
            Arc::new(MemoryStore::new(self.guard_capacity, self.guard_retention))
        });
        Ok(Webhook {
            inner: Arc::new(Inner {
                secret_token: self.secret_token.map(String::into_bytes),
                source_allowlist: self.source_allowlist,
                timeout: self.timeout,
                on_timeout: self.on_timeout,
                max_body_bytes: self.max_body_bytes,
                body_read_timeout: self.body_read_timeout,
                error_policy,
                max_in_flight: self.max_in_flight,
                in_flight: Arc::new(Semaphore::new(self.max_in_flight)),
                idle: Notify::new(),
                draining: std::sync::atomic::AtomicBool::new(false),
                store,
                handler: ErasedHandler::new(handler),
                rt,
            }),
        })
    }
}

/// Checks Telegram's rule for `secret_token`: 1–256 characters of `A-Z a-z 0-9 _ -`.
pub fn validate_secret_token(token: &str) -> Result<(), BuildError> {
    if token.is_empty() {
        return Err(BuildError::InvalidSecretToken(
            "it is empty; Telegram requires 1-256 characters, each one of `A-Z a-z 0-9 _ -` \
             (https://core.telegram.org/bots/api#setwebhook)",
        ));
    }
    if token.len() > 256 {
        return Err(BuildError::InvalidSecretToken(
            "it is longer than 256 characters; Telegram requires 1-256 characters, each one of \
             `A-Z a-z 0-9 _ -` (https://core.telegram.org/bots/api#setwebhook)",
        ));
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(BuildError::InvalidSecretToken(
            "it contains a character outside `A-Z a-z 0-9 _ -`; Telegram requires 1-256 \
             characters, each one of them (https://core.telegram.org/bots/api#setwebhook)",
        ));
    }
    Ok(())
}
