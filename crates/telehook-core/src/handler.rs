//! The [`UpdateHandler`] trait: what a bot does with one update, whatever delivered it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{Context, ErrorPolicy, Update, UpdateType};

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
/// way, so a bot's handler runs the same under each.
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
    call: Arc<dyn Fn(Update, Context) -> HandlerFuture + Send + Sync>,
    type_name: &'static str,
    required_error_policy: Option<ErrorPolicy>,
}

impl fmt::Debug for ErasedHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErasedHandler")
            .field("update_type", &self.type_name)
            .field("required_error_policy", &self.required_error_policy)
            .finish_non_exhaustive()
    }
}

impl ErasedHandler {
    /// Erases `handler`'s update type. An update that does not fit `U` becomes the handler's
    /// error (naming the update and the type), so the caller's error policy applies to it.
    pub fn new<U: UpdateType, H: UpdateHandler<U>>(handler: H) -> Self {
        let required_error_policy = handler.required_error_policy();
        let handler = Arc::new(handler);
        Self {
            call: Arc::new(move |update: Update, ctx: Context| -> HandlerFuture {
                let handler = Arc::clone(&handler);
                Box::pin(async move {
                    let update_id = update.update_id();
                    let update = U::from_update(update).map_err(|e| -> HandlerError {
                        format!(
                            "update {update_id} does not fit the handler's type {}: {e}",
                            std::any::type_name::<U>()
                        )
                        .into()
                    })?;
                    handler.handle(update, ctx).await
                })
            }),
            type_name: std::any::type_name::<U>(),
            required_error_policy,
        }
    }

    /// Runs the handler on `update`.
    pub fn call(&self, update: Update, ctx: Context) -> HandlerFuture {
        (self.call)(update, ctx)
    }

    /// The name of the update type the handler takes (for logs).
    pub fn update_type_name(&self) -> &'static str {
        self.type_name
    }

    /// The erased handler's [`UpdateHandler::required_error_policy`].
    pub fn required_error_policy(&self) -> Option<ErrorPolicy> {
        self.required_error_policy
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
}
