//! Queue mode: the webhook (axum, `telehook_axum::serve`) stores each update in a durable queue
//! and answers `200` only then; workers take the updates and run the handler in per-chat order.
//! The webhook and the workers run in one process (`ROLE=both`, the default) or in separate
//! ones (`ROLE=webhook`, `ROLE=worker`), on the embedded SQLite queue (one host) or on NATS
//! JetStream (several machines). See the README.

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use telehook_core::{Context, HandlerError, Update, UpdateHandler, UpdateType, Webhook};
use telehook_polling::RunnerConfig;
use telehook_queue::{
    EnqueueHandler, QueueBackend, QueueError, SqliteQueue, Workers, WorkersReport,
};

/// Where Telegram delivers updates.
pub const WEBHOOK_PATH: &str = "/telegram";

/// The queue when `QUEUE_URL` is not set: a SQLite file in the working directory.
pub const DEFAULT_QUEUE_URL: &str = "sqlite:bot-queue.sqlite3";

/// What can stop the example.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The queue failed.
    #[error("the queue failed")]
    Queue(#[source] QueueError),
    /// The webhook could not be built.
    #[error("the webhook could not be built")]
    Build(#[source] telehook_core::BuildError),
    /// A setting is not valid.
    #[error("{0}")]
    Setting(String),
}

/// Which queue to use, from one setting (`QUEUE_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueUrl {
    /// `sqlite:<path>`: the embedded queue in a SQLite file (one host, nothing installed).
    Sqlite(PathBuf),
    /// `nats://host:port[,nats://host:port...]`: a NATS JetStream cluster (several machines).
    Nats(Vec<String>),
}

impl std::str::FromStr for QueueUrl {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(Error::Setting("QUEUE_URL=sqlite: needs a file path".into()));
            }
            return Ok(Self::Sqlite(path.into()));
        }
        if url.starts_with("nats://") {
            let servers: Vec<String> = url
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if servers.iter().all(|s| s.starts_with("nats://")) {
                return Ok(Self::Nats(servers));
            }
        }
        Err(Error::Setting(format!(
            "QUEUE_URL={url:?}: expected sqlite:<path> or nats://host:port[,nats://host:port...]"
        )))
    }
}

/// What one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The webhook only: stores updates and answers Telegram.
    Webhook,
    /// Workers only: handle what the webhooks stored.
    Worker,
    /// Both in one process (the default).
    Both,
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(role: &str) -> Result<Self, Error> {
        match role {
            "webhook" => Ok(Self::Webhook),
            "worker" => Ok(Self::Worker),
            "both" => Ok(Self::Both),
            other => Err(Error::Setting(format!(
                "ROLE={other:?}: expected webhook, worker or both"
            ))),
        }
    }
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

/// Opens the embedded queue at `path` with `partitions` partitions (one worker each).
pub fn open_queue(path: &Path, partitions: u32) -> Result<SqliteQueue, QueueError> {
    SqliteQueue::builder(path).partitions(partitions).open()
}

/// The webhook in front of `queue`: its handler is the durable enqueue, which makes the
/// webhook's error policy `Retry`, so a refused enqueue (a full queue, an engine down) is
/// never acknowledged.
pub fn webhook<B: QueueBackend>(queue: &B, secret: Option<&str>) -> Result<Webhook, Error> {
    let mut builder = Webhook::builder();
    if let Some(secret) = secret {
        builder = builder.secret_token(secret);
    }
    builder
        .build(EnqueueHandler::new(queue.clone()))
        .map_err(Error::Build)
}

/// Serves the webhook alone (`ROLE=webhook`) on `listener` until `shutdown` resolves;
/// deliveries in flight finish their enqueue and get their answer.
pub async fn serve_webhook<B: QueueBackend>(
    listener: tokio::net::TcpListener,
    queue: &B,
    secret: Option<&str>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let webhook = webhook(queue, secret)?;
    let app = telehook_axum::router(WEBHOOK_PATH, webhook.clone());
    let report = telehook_axum::serve(
        listener,
        app,
        &webhook,
        shutdown,
        &telehook_axum::ServeConfig::default(),
    )
    .await;
    tracing::info!(?report, "webhook stopped");
    Ok(())
}

/// Runs this process's workers (`ROLE=worker`) until `shutdown` resolves, then drains them.
/// Several processes may run workers on one queue: each holds leases on its share of the
/// partitions (`telehook_queue::Workers`); when one dies, the others take its partitions over
/// once its leases run out (`lease`), and run what it left unacked, in per-chat order.
pub async fn work<B, U, H>(
    queue: B,
    handler: H,
    runner: RunnerConfig,
    lease: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<WorkersReport, Error>
where
    B: QueueBackend,
    U: UpdateType,
    H: UpdateHandler<U>,
{
    Workers::new(queue)
        .lease(lease)
        .run(handler, runner, shutdown)
        .await
        .map_err(Error::Queue)
}

/// Serves the webhook on `listener` and runs the workers until `shutdown` resolves
/// (`ROLE=both`); then the server stops first (deliveries in flight finish their enqueue and
/// get their answer), then the workers drain. Returns the workers' report.
pub async fn run<B, U, H>(
    listener: tokio::net::TcpListener,
    queue: B,
    secret: Option<&str>,
    handler: H,
    runner: RunnerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<WorkersReport, Error>
where
    B: QueueBackend,
    U: UpdateType,
    H: UpdateHandler<U>,
{
    let stop_workers = Arc::new(tokio::sync::Notify::new());
    let workers = tokio::spawn({
        let stop = Arc::clone(&stop_workers);
        work(
            queue.clone(),
            handler,
            runner,
            telehook_queue::DEFAULT_LEASE,
            async move {
                stop.notified().await;
            },
        )
    });
    serve_webhook(listener, &queue, secret, shutdown).await?;
    tracing::info!("draining the workers");
    stop_workers.notify_one();
    match workers.await {
        Ok(reports) => reports,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A handler that appends one line per run to a file of its own (`RUN_LOG`), written with one
/// `write` call before the run returns, so a `kill -9` of the process loses no line of a run
/// that finished: `update_id chat_id message_id unix_nanos`. The fault harness
/// (`examples/scaling`) reads these files to count lost, repeated and out-of-order runs; the
/// message's `message_id` is the chat's sequence number there. `delay` slows each run down.
#[derive(Debug, Clone)]
pub struct RunLog {
    file: Arc<Mutex<std::fs::File>>,
    delay: Duration,
}

impl RunLog {
    /// Appends to `path` (created if missing); each run sleeps `delay` first.
    pub fn open(path: &Path, delay: Duration) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            file: Arc::new(Mutex::new(file)),
            delay,
        })
    }
}

/// The `message_id` of an update's message (0 if it has none): the first `"message_id":`
/// in the body, which for a `message` update is the message's own.
fn message_id(raw: &str) -> i64 {
    raw.split_once("\"message_id\":")
        .map(|(_, rest)| {
            rest.trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

impl UpdateHandler<Update> for RunLog {
    async fn handle(&self, update: Update, _ctx: Context) -> Result<(), HandlerError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let message_id = message_id(update.raw_str());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let line = format!(
            "{} {} {message_id} {nanos}\n",
            update.update_id(),
            update.chat_id().unwrap_or(0)
        );
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(line.as_bytes())?;
        Ok(())
    }
}
