//! The dispatcher's runtime seam: the timer and the spawn it needs, tokio's by default.
//!
//! The dispatcher needs two things from the async runtime it runs on (see `docs/edge.md`): a
//! timer, for the handler timeout, the body-read timeout (`408`), a redelivery's wait for the
//! first run and the deadlines of [`Webhook::drain`](crate::Webhook::drain) and
//! [`Webhook::wait_idle`](crate::Webhook::wait_idle); and a way to let a handler run outlive
//! the answer to its delivery (`on_timeout = Return`, or a late webhook reply kept for
//! Telegram's retry).
//!
//! With the default cargo feature `tokio-rt` the dispatcher takes both from tokio
//! (`tokio::time::timeout`, `tokio::spawn`, called directly: no box, no virtual call), and
//! nothing need be set. A platform without tokio's timer or scheduler (Cloudflare Workers,
//! Spin; `default-features = false`) gives its own through [`Runtime`] and
//! [`WebhookBuilder::runtime`](crate::WebhookBuilder::runtime); without the feature and without
//! a runtime, [`WebhookBuilder::build`](crate::WebhookBuilder::build) fails with
//! [`BuildError::NoRuntime`](crate::BuildError::NoRuntime).

use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{Either, select};

/// A boxed, `Send` future with no output: a timer of [`Runtime::sleep`] or a run handed to
/// [`Runtime::spawn`].
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What the dispatcher needs from an async runtime other than tokio: a timer and a way to run
/// a future in the background. Set it with
/// [`WebhookBuilder::runtime`](crate::WebhookBuilder::runtime).
///
/// Cloudflare Workers would give `worker::Delay` and `Context::wait_until`; Spin a
/// `wasi:clocks` pollable and "finish in the same task after the answer" (`docs/edge.md`).
/// With a runtime set, each timed wait boxes one timer future and each run that is still
/// pending after its first poll boxes one task; tokio's default does neither.
pub trait Runtime: Send + Sync + 'static {
    /// A future that completes once `duration` has passed. `duration` may be very long (a
    /// deadline far away): saturate rather than overflow.
    fn sleep(&self, duration: Duration) -> BoxFuture;

    /// Runs `task` to its end in the background, independently of the request that started
    /// it (`tokio::spawn`, Workers' `wait_until`). The handler run it carries releases its
    /// in-flight permit and records its result in the redelivery store when it ends, so a
    /// task that is dropped unfinished leaves its update claimed until the store's lease
    /// expires: run it to completion.
    fn spawn(&self, task: BoxFuture);
}

/// The runtime a [`Webhook`](crate::Webhook) uses, chosen once by the builder.
#[derive(Clone)]
pub(crate) enum Rt {
    /// tokio's timer and `tokio::spawn`, called directly.
    #[cfg(feature = "tokio-rt")]
    Tokio,
    /// A runtime given to [`WebhookBuilder::runtime`](crate::WebhookBuilder::runtime).
    Custom(Arc<dyn Runtime>),
}

impl fmt::Debug for Rt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "tokio-rt")]
            Rt::Tokio => f.write_str("tokio"),
            Rt::Custom(_) => f.write_str("custom"),
        }
    }
}

/// The timer of [`Rt::timeout`] ran out first.
#[derive(Debug)]
pub(crate) struct Elapsed;

impl Rt {
    /// The given runtime, else tokio's when the `tokio-rt` feature is on, else `None`.
    pub(crate) fn choose(custom: Option<Arc<dyn Runtime>>) -> Option<Self> {
        match custom {
            Some(runtime) => Some(Rt::Custom(runtime)),
            #[cfg(feature = "tokio-rt")]
            None => Some(Rt::Tokio),
            #[cfg(not(feature = "tokio-rt"))]
            None => None,
        }
    }

    /// Runs `future` until it ends or `duration` passes, whichever comes first; the future is
    /// polled before the timer, as `tokio::time::timeout` does.
    pub(crate) async fn timeout<F: Future>(
        &self,
        duration: Duration,
        future: F,
    ) -> Result<F::Output, Elapsed> {
        match self {
            #[cfg(feature = "tokio-rt")]
            Rt::Tokio => tokio::time::timeout(duration, future)
                .await
                .map_err(|_| Elapsed),
            Rt::Custom(runtime) => {
                let sleep = runtime.sleep(duration);
                match select(pin!(future), sleep).await {
                    Either::Left((output, _)) => Ok(output),
                    Either::Right(((), _)) => Err(Elapsed),
                }
            }
        }
    }

    /// Lets `task` run on by itself; its handle is dropped (the task is detached).
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self {
            #[cfg(feature = "tokio-rt")]
            Rt::Tokio => drop(tokio::spawn(task)),
            Rt::Custom(runtime) => runtime.spawn(Box::pin(task)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use futures_util::StreamExt as _;
    use http_body_util::StreamBody;

    use super::*;
    use crate::{Context, HandlerError, OnTimeout, RequestHead, Update, Webhook};

    /// A runtime whose timer has always run out already, spawning on tokio; it counts calls.
    /// With tokio's timer instead, every wait below would last an hour.
    #[derive(Default)]
    struct Expired {
        sleeps: AtomicUsize,
        spawns: AtomicUsize,
    }

    impl Runtime for Expired {
        fn sleep(&self, _: Duration) -> BoxFuture {
            self.sleeps.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::ready(()))
        }
        fn spawn(&self, task: BoxFuture) {
            self.spawns.fetch_add(1, Ordering::SeqCst);
            drop(tokio::spawn(task));
        }
    }

    /// tokio's timer and spawn behind the trait object, counting calls.
    #[derive(Default)]
    struct Delegating {
        sleeps: AtomicUsize,
        spawns: AtomicUsize,
    }

    impl Runtime for Delegating {
        fn sleep(&self, duration: Duration) -> BoxFuture {
            self.sleeps.fetch_add(1, Ordering::SeqCst);
            Box::pin(tokio::time::sleep(duration))
        }
        fn spawn(&self, task: BoxFuture) {
            self.spawns.fetch_add(1, Ordering::SeqCst);
            drop(tokio::spawn(task));
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);
    const UPDATE: &str = r#"{"update_id":7,"message":{"message_id":1,"date":0,"chat":{"id":42,"type":"private"},"text":"hi"}}"#;

    fn head() -> RequestHead<'static> {
        RequestHead::new("POST", |_| None)
    }

    async fn forever(_: Update, _: Context) -> Result<(), HandlerError> {
        std::future::pending().await
    }

    async fn yields_then_replies(update: Update, ctx: Context) -> Result<(), HandlerError> {
        tokio::task::yield_now().await;
        let chat_id = update.chat_id().unwrap_or_default();
        ctx.webhook_reply(
            "sendMessage",
            serde_json::json!({ "chat_id": chat_id, "text": "ok" }),
        )?;
        Ok(())
    }

    #[tokio::test]
    async fn the_handler_timeout_and_its_spawn_go_through_the_runtime() {
        let runtime = Arc::new(Expired::default());
        let webhook = Webhook::builder()
            .timeout(HOUR)
            .runtime(Arc::clone(&runtime) as Arc<dyn Runtime>)
            .build(forever)
            .unwrap();
        let response = webhook.handle_bytes(head(), Bytes::from(UPDATE)).await;
        assert_eq!(response.status(), 503, "timed out by the runtime's timer");
        assert_eq!(runtime.spawns.load(Ordering::SeqCst), 1);
        assert_eq!(runtime.sleeps.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_body_read_timeout_goes_through_the_runtime() {
        let runtime = Arc::new(Expired::default());
        let webhook = Webhook::builder()
            .body_read_timeout(HOUR)
            .runtime(Arc::clone(&runtime) as Arc<dyn Runtime>)
            .build(forever)
            .unwrap();
        let stalled = StreamBody::new(
            futures_util::stream::iter([Ok::<_, String>(http_body::Frame::data(
                Bytes::from_static(b"{\"upd"),
            ))])
            .chain(futures_util::stream::pending()),
        );
        let response = webhook.handle(head(), stalled).await;
        assert_eq!(response.status(), 408);
        assert_eq!(runtime.sleeps.load(Ordering::SeqCst), 1);
        assert_eq!(runtime.spawns.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn the_redelivery_wait_drain_and_wait_idle_go_through_the_runtime() {
        let runtime = Arc::new(Expired::default());
        let webhook = Webhook::builder()
            .timeout(HOUR)
            .on_timeout(OnTimeout::Return)
            .runtime(Arc::clone(&runtime) as Arc<dyn Runtime>)
            .build(forever)
            .unwrap();
        let first = webhook.handle_bytes(head(), Bytes::from(UPDATE)).await;
        assert_eq!(first.status(), 200, "answered at the runtime's timeout");
        let again = webhook.handle_bytes(head(), Bytes::from(UPDATE)).await;
        assert_eq!(again.status(), 200, "the redelivery's wait timed out too");
        assert_eq!(runtime.sleeps.load(Ordering::SeqCst), 2);
        assert_eq!(webhook.in_flight(), 1);
        assert!(
            !webhook.wait_idle(HOUR).await,
            "wait_idle's deadline is the runtime's"
        );
        assert!(
            !webhook.drain(HOUR).await,
            "drain's deadline is the runtime's"
        );
        assert_eq!(runtime.sleeps.load(Ordering::SeqCst), 4);
        assert_eq!(runtime.spawns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_runtime_behind_the_trait_serves_as_tokio_does() {
        let runtime = Arc::new(Delegating::default());
        let webhook = Webhook::builder()
            .runtime(Arc::clone(&runtime) as Arc<dyn Runtime>)
            .build(yields_then_replies)
            .unwrap();
        let response = webhook.handle_bytes(head(), Bytes::from(UPDATE)).await;
        assert_eq!(response.status(), 200);
        let body = String::from_utf8(response.body().to_vec()).unwrap();
        assert!(body.contains("\"method\":\"sendMessage\""), "{body}");
        assert_eq!(runtime.spawns.load(Ordering::SeqCst), 1);
        assert_eq!(runtime.sleeps.load(Ordering::SeqCst), 1);
        assert!(webhook.drain(Duration::from_secs(5)).await);
    }
}
