//! Queue mode on one host: the webhook (axum, `telehook_axum::serve`) stores each update in an
//! embedded SQLite queue and answers `200` only then; workers in the same process take the
//! updates and run the handler in per-chat order. See the README.

use std::future::Future;
use std::path::Path;

use telehook_core::{
    Context, ErrorPolicy, HandlerError, Update, UpdateHandler, UpdateType, Webhook,
};
use telehook_polling::{RunnerConfig, StopReport};
use telehook_queue::{EnqueueHandler, QueueError, SqliteQueue, run_workers};

/// Where Telegram delivers updates.
pub const WEBHOOK_PATH: &str = "/telegram";

/// What can stop the example.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The queue failed.
    #[error("the queue failed")]
    Queue(#[source] QueueError),
    /// The webhook could not be built.
    #[error("the webhook could not be built")]
    Build(#[source] telehook_core::BuildError),
}

/// The example's handler: logs the update. Replace it with your bot's; it runs unchanged under
/// a webhook, long polling or these workers (send messages with telehook-api's `Bot`: a worker
/// has no webhook reply).
pub async fn handle(update: Update, ctx: Context) -> Result<(), HandlerError> {
    tracing::info!(
        update_id = update.update_id(),
        chat_id = update.chat_id(),
        failed_attempts = ctx.failed_attempts(),
        "handled"
    );
    Ok(())
}

/// Opens the queue at `path` with `workers` partitions (one worker each).
pub fn open_queue(path: &Path, workers: u32) -> Result<SqliteQueue, QueueError> {
    SqliteQueue::builder(path).partitions(workers).open()
}

/// The webhook in front of `queue`: its handler is the durable enqueue, and its error policy
/// is `Retry` so a refused enqueue (a full queue) is never acknowledged.
pub fn webhook(queue: &SqliteQueue, secret: Option<&str>) -> Result<Webhook, Error> {
    let mut builder = Webhook::builder().error_policy(ErrorPolicy::Retry);
    if let Some(secret) = secret {
        builder = builder.secret_token(secret);
    }
    builder
        .build(EnqueueHandler::new(queue.clone()))
        .map_err(Error::Build)
}

/// Serves the webhook on `listener` and runs the workers until `shutdown` resolves; then the
/// server stops first (deliveries in flight finish their enqueue and get their answer), then
/// the workers drain. Returns the workers' reports.
pub async fn run<U, H>(
    listener: tokio::net::TcpListener,
    queue: SqliteQueue,
    secret: Option<&str>,
    handler: H,
    runner: RunnerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Vec<StopReport>, Error>
where
    U: UpdateType,
    H: UpdateHandler<U>,
{
    let webhook = webhook(&queue, secret)?;
    let app = telehook_axum::router(WEBHOOK_PATH, webhook.clone());
    let stop_workers = std::sync::Arc::new(tokio::sync::Notify::new());
    let workers = tokio::spawn({
        let stop = std::sync::Arc::clone(&stop_workers);
        run_workers(queue, handler, runner, async move {
            stop.notified().await;
        })
    });
    let report = telehook_axum::serve(
        listener,
        app,
        &webhook,
        shutdown,
        &telehook_axum::ServeConfig::default(),
    )
    .await;
    tracing::info!(?report, "webhook stopped; draining the workers");
    stop_workers.notify_one();
    match workers.await {
        Ok(reports) => reports.map_err(Error::Queue),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
