//! The [`UpdateHandler`] trait: what a bot does with one update, whatever delivered it.

use std::any::TypeId;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::scan::StrictError;
use crate::{Context, ErrorPolicy, InvalidUpdate, SequenceKey, Update, UpdateKey, UpdateType};

/// The error a handler returns. Anything that converts into it works, `anyhow::Error` included.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Handles one update. Implemented for every `async` closure or function taking the update
/// (as `U`: [`Update`] by default, or any [`UpdateType`]) and a [`Context`], and returning
/// `Result<(), E>` where `E` converts into [`HandlerError`].
///
/// The same handler runs under a webhook, long polling or a relay, unchanged.
///
/// ```
/// use telehook_core::{Context, HandlerError, Update, UpdateHandler};
///
/// async fn echo(update: Update, ctx: Context) -> Result<(), HandlerError> {
///     if let Some(chat_id) = update.chat_id() {
///         ctx.webhook_reply("sendMessage", serde_json::json!({"chat_id": chat_id, "text": "hi"}))?;
///     }
///     Ok(())
/// }
///
/// fn assert_handler<H: UpdateHandler>(_: H) {}
/// assert_handler(echo);
/// ```
pub trait UpdateHandler<U = Update>: Send + Sync + 'static {
    /// Handles `update`. An `Err` is logged with the `update_id` and the dispatcher's error
    /// policy decides whether Telegram redelivers it.
    fn handle(
        &self,
        update: U,
        ctx: Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// The [`ErrorPolicy`] this handler only works under, if any: a handler that hands each
    /// update on to a queue and must not lose it (telehook-queue's `EnqueueHandler`) needs
    /// [`ErrorPolicy::Retry`], say. [`WebhookBuilder::build`](crate::WebhookBuilder::build)
    /// uses it when no policy was set, and refuses a different one
    /// ([`BuildError::ErrorPolicyConflict`](crate::BuildError::ErrorPolicyConflict)).
    /// `None` (the default): any policy will do.
    fn required_error_policy(&self) -> Option<ErrorPolicy> {
        None
    }

    /// True for a handler whose update must not be acknowledged (`200`) before its run has
    /// ended: one that hands the update on (telehook-queue's `EnqueueHandler`) and can still
    /// fail at the end, when an early `200` would already have told Telegram the update was
    /// taken, losing it. For such a handler
    /// [`WebhookBuilder::build`](crate::WebhookBuilder::build) refuses
    /// [`OnTimeout::Return`](crate::OnTimeout::Return)
    /// ([`BuildError::AcknowledgeBeforeRunEnds`](crate::BuildError::AcknowledgeBeforeRunEnds)),
    /// and a [`OnTimeout::Custom`](crate::OnTimeout::Custom) callback choosing
    /// [`TimeoutAction::Return`](crate::TimeoutAction::Return) is treated as
    /// [`TimeoutAction::Throw`](crate::TimeoutAction::Throw) (`503`, Telegram delivers the
    /// update again and the redelivery waits for the run), with a warning in the log.
    /// `false` (the default): an early `200` is allowed.
    fn acknowledge_only_after_run(&self) -> bool {
        false
    }
}

impl<F, Fut, U, E> UpdateHandler<U> for F
where
    F: Fn(U, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<HandlerError>,
    U: Send + 'static,
{
    fn handle(
        &self,
        update: U,
        ctx: Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let fut = self(update, ctx);
        async move { fut.await.map_err(Into::into) }
    }
}

/// The future an [`ErasedHandler`] returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'static>>;

/// Any [`UpdateHandler`], whatever its update type, behind one type: it takes the validated
/// [`Update`], converts it into the type the handler asked for ([`UpdateType::from_update`]),
/// and runs the handler. Cheap to clone (one `Arc`).
///
/// The webhook dispatcher, the long-polling runner and the relay client all hold a handler this
/// way, so a bot's handler runs the same under each. The webhook dispatcher parses a body
/// only once: straight into the handler's type when it is not [`Update`].
///
/// ```
/// use telehook_core::{Context, ErasedHandler, HandlerError, Update};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let handler = ErasedHandler::new(|value: serde_json::Value, _ctx: Context| async move {
///     assert_eq!(value["update_id"], 7);
///     Ok::<_, HandlerError>(())
/// });
/// let update = Update::from_bytes(r#"{"update_id":7}"#).unwrap();
/// handler.call(update, Context::detached(7)).await.unwrap();
/// # });
/// ```
#[derive(Clone)]
pub struct ErasedHandler {
    inner: Arc<dyn Erased>,
    type_name: &'static str,
    required_error_policy: Option<ErrorPolicy>,
    acknowledge_only_after_run: bool,
}

impl fmt::Debug for ErasedHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErasedHandler")
            .field("update_type", &self.type_name)
            .field("required_error_policy", &self.required_error_policy)
            .field(
                "acknowledge_only_after_run",
                &self.acknowledge_only_after_run,
            )
            .finish_non_exhaustive()
    }
}

impl ErasedHandler {
    /// Erases `handler`'s update type. An update that does not fit `U` becomes the handler's
    /// error (naming the update and the type), so the caller's error policy applies to it.
    pub fn new<U: UpdateType, H: UpdateHandler<U>>(handler: H) -> Self {
        let required_error_policy = handler.required_error_policy();
        let acknowledge_only_after_run = handler.acknowledge_only_after_run();
        Self {
            inner: Arc::new(Typed::<U, H> {
                handler: Arc::new(handler),
                update_type: PhantomData,
            }),
            type_name: std::any::type_name::<U>(),
            required_error_policy,
            acknowledge_only_after_run,
        }
    }

    /// Runs the handler on `update`.
    pub fn call(&self, update: Update, ctx: Context) -> HandlerFuture {
        self.inner.call(update, ctx)
    }

    /// Parses a webhook body once, into what the handler takes, and says what the dispatcher
    /// needs to know about it; `Err` for a body that is not an update (`400`).
    pub(crate) fn prepare(&self, body: Bytes) -> Result<Prepared, InvalidUpdate> {
        self.inner.prepare(body)
    }

    /// The name of the update type the handler takes (for logs).
    pub fn update_type_name(&self) -> &'static str {
        self.type_name
    }

    /// The erased handler's [`UpdateHandler::required_error_policy`].
    pub fn required_error_policy(&self) -> Option<ErrorPolicy> {
        self.required_error_policy
    }

    /// The erased handler's [`UpdateHandler::acknowledge_only_after_run`].
    pub fn acknowledge_only_after_run(&self) -> bool {
        self.acknowledge_only_after_run
    }
}

/// A webhook body, parsed once: what the dispatcher needs before the run, and the run.
pub(crate) struct Prepared {
    /// The redelivery guard's key: `update_id` and the hash of the exact body.
    pub(crate) key: UpdateKey,
    /// The update's kind, for the metrics label, the span and a timeout event.
    pub(crate) kind: Option<Cow<'static, str>>,
    /// The chat, where it is known without another parse (the light view's).
    pub(crate) chat_id: Option<i64>,
    /// The body, kept where the run does not own it: the cold paths (a timeout, a failure)
    /// read the chat out of it.
    pub(crate) raw: Option<Bytes>,
    /// The handler run, waiting for its context.
    pub(crate) run: Box<dyn PreparedRun>,
}

impl Prepared {
    /// The chat: known, or read from the kept body (the strict view; a cold path).
    pub(crate) fn chat_id(chat_id: Option<i64>, raw: Option<&Bytes>) -> Option<i64> {
        chat_id.or_else(|| Update::from_bytes(raw?.clone()).ok()?.chat_id())
    }
}

/// A handler run waiting for its [`Context`].
pub(crate) trait PreparedRun: Send {
    /// The update's queue, for the span (only asked when the span is recorded).
    fn sequence_key(&self) -> Option<SequenceKey>;
    /// Starts the handler.
    fn start(self: Box<Self>, ctx: Context) -> HandlerFuture;
}

/// The handler behind [`ErasedHandler`], with its update type.
trait Erased: Send + Sync {
    fn call(&self, update: Update, ctx: Context) -> HandlerFuture;
    fn prepare(&self, body: Bytes) -> Result<Prepared, InvalidUpdate>;
}

struct Typed<U, H> {
    handler: Arc<H>,
    update_type: PhantomData<fn() -> U>,
}

/// The handler's error for an update that does not fit its type.
fn misfit<U>(update_id: u64, error: &serde_json::Error) -> HandlerError {
    format!(
        "update {update_id} does not fit the handler's type {}: {error}",
        std::any::type_name::<U>()
    )
    .into()
}

impl<U: UpdateType, H: UpdateHandler<U>> Erased for Typed<U, H> {
    fn call(&self, update: Update, ctx: Context) -> HandlerFuture {
        let handler = Arc::clone(&self.handler);
        Box::pin(async move {
            let update_id = update.update_id();
            let update = U::from_update(update).map_err(|e| misfit::<U>(update_id, &e))?;
            handler.handle(update, ctx).await
        })
    }

    fn prepare(&self, body: Bytes) -> Result<Prepared, InvalidUpdate> {
        if TypeId::of::<U>() == TypeId::of::<Update>() {
            // The light view: the strict validator, and the exact bytes kept for the handler.
            let update = Update::from_bytes(body)?;
            let (key, kind, chat_id) = (update.key(), update.kind.clone(), update.chat_id());
            let run = match U::from_update(update) {
                Ok(value) => self.run(value),
                // `Update::from_update` cannot fail; an error would still be the handler's.
                Err(e) => Box::new(Misfit {
                    error: misfit::<U>(key.update_id, &e),
                    sequence_key: None,
                }),
            };
            return Ok(Prepared {
                key,
                kind,
                chat_id,
                raw: None,
                run,
            });
        }
        // One parse, into the handler's type, that is also the validation: values the type
        // ignores are checked as `serde_json::Value` checks them, and the top level is held
        // to the validator's rules while `update_id` and the kind are noted on the way.
        match crate::scan::strict_from_slice::<U>(&body) {
            Ok((value, head)) => Ok(Prepared {
                key: UpdateKey::new(head.update_id, &body),
                kind: head
                    .kind
                    .map(|kind| crate::update::kind_name(kind.as_bytes())),
                chat_id: None,
                raw: Some(body),
                run: self.run(value),
            }),
            Err(StrictError::Invalid(reason)) => Err(reason),
            Err(StrictError::Parse(error)) => {
                // Not an update at all (400), or an update that does not fit the type: the
                // handler's error, as under polling.
                let update = Update::from_bytes(body)?;
                Ok(Prepared {
                    key: update.key(),
                    kind: update.kind.clone(),
                    chat_id: update.chat_id(),
                    raw: None,
                    run: Box::new(Misfit {
                        error: misfit::<U>(update.update_id(), &error),
                        sequence_key: update.sequence_key().cloned(),
                    }),
                })
            }
        }
    }
}

impl<U: UpdateType, H: UpdateHandler<U>> Typed<U, H> {
    fn run(&self, value: U) -> Box<dyn PreparedRun> {
        Box::new(Run {
            handler: Arc::clone(&self.handler),
            value,
        })
    }
}

/// A parsed update and its handler.
struct Run<U, H> {
    handler: Arc<H>,
    value: U,
}

impl<U: UpdateType, H: UpdateHandler<U>> PreparedRun for Run<U, H> {
    fn sequence_key(&self) -> Option<SequenceKey> {
        self.value.sequence_key()
    }

    fn start(self: Box<Self>, ctx: Context) -> HandlerFuture {
        let Run { handler, value } = *self;
        Box::pin(async move { handler.handle(value, ctx).await })
    }
}

/// An update that does not fit the handler's type: the run is its error.
struct Misfit {
    error: HandlerError,
    sequence_key: Option<SequenceKey>,
}

impl PreparedRun for Misfit {
    fn sequence_key(&self) -> Option<SequenceKey> {
        self.sequence_key.clone()
    }

    fn start(self: Box<Self>, _ctx: Context) -> HandlerFuture {
        Box::pin(std::future::ready(Err(self.error)))
    }
}

impl UpdateHandler<Update> for ErasedHandler {
    fn handle(
        &self,
        update: Update,
        ctx: Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self.call(update, ctx)
    }

    fn required_error_policy(&self) -> Option<ErrorPolicy> {
        self.required_error_policy
    }

    fn acknowledge_only_after_run(&self) -> bool {
        self.acknowledge_only_after_run
    }
}
