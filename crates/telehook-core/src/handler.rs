//! The [`UpdateHandler`] trait: what a bot does with one update, whatever delivered it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{Context, Update, UpdateType};

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

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'static>>;

/// A handler with its update type erased: takes the validated [`Update`], converts it into the
/// type the handler asked for, and runs the handler.
pub(crate) type ErasedHandler = Arc<dyn Fn(Update, Context) -> BoxFuture + Send + Sync>;

pub(crate) fn erase<U: UpdateType, H: UpdateHandler<U>>(handler: H) -> ErasedHandler {
    let handler = Arc::new(handler);
    Arc::new(move |update: Update, ctx: Context| {
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
    })
}
