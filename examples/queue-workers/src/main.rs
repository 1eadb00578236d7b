//! `cargo run -p queue-workers`: the webhook and the workers of queue mode, configured from the
//! environment (see the README):
//!
//! - `QUEUE_URL`: `sqlite:<path>` (default `sqlite:bot-queue.sqlite3`, nothing to install) or
//!   `nats://host:port[,nats://host:port...]` (a NATS JetStream cluster);
//! - `ROLE`: `both` (default), `webhook` or `worker`;
//! - `QUEUE_NAME` (NATS: the stream's name, default `telehook`, one per bot);
//! - `PORT` (default 8080, path `/telegram`), `TELEHOOK_SECRET` (optional: when set, a
//!   delivery must carry it in `X-Telegram-Bot-Api-Secret-Token`; unset, nothing is checked and
//!   a warning is logged at start);
//! - `PARTITIONS` (default 3; `WORKERS` is the older name), `CAPACITY` (default 100,000),
//!   `CONCURRENCY` (handlers at once per partition, default 16), `LEASE_MS` (how soon the
//!   other worker processes take over a dead one's partitions, default 15 s);
//! - `RUN_LOG` and `HANDLER_DELAY_MS`: for the fault harness, record every handler run in that
//!   file (see `queue_workers::RunLog`).
//!
//! SIGTERM or Ctrl-C stops the webhook, then drains the workers; what is not handled stays
//! queued for the next start.

use std::time::Duration;

use queue_workers::{QueueUrl, Role, RunLog};
use telehook_queue::{QueueBackend, SqliteQueue};
use tracing_subscriber::EnvFilter;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn setting<T: std::str::FromStr>(name: &str, default: T) -> Result<T, BoxError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value
            .parse()
            .map_err(|e| format!("{name}={value:?} is not valid: {e}").into()),
        _ => Ok(default),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Display, with every source: "queue engine error: NATS stream create failed:
            // JetStream is not enabled on the server: ...", not a Debug dump.
            let mut text = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            eprintln!("error: {text}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let url: QueueUrl = std::env::var("QUEUE_URL")
        .unwrap_or_else(|_| queue_workers::DEFAULT_QUEUE_URL.into())
        .parse()?;
    let partitions: u32 = setting("PARTITIONS", setting("WORKERS", 3)?)?;
    let capacity: u64 = setting("CAPACITY", 100_000)?;
    match url {
        QueueUrl::Sqlite(path) => {
            let queue = SqliteQueue::builder(&path)
                .partitions(partitions)
                .capacity(capacity)
                .open()?;
            tracing::info!(queue = %path.display(), partitions, "embedded SQLite queue");
            start(queue).await
        }
        QueueUrl::Nats(servers) => {
            // Three replicas when there are three servers or more (one node may die without
            // losing anything acknowledged); every process on the queue uses the same
            // partitions and lease.
            let replicas = if servers.len() >= 3 { 3 } else { 1 };
            let queue = telehook_nats::NatsQueue::builder(servers.iter().map(String::as_str))
                .name(std::env::var("QUEUE_NAME").unwrap_or_else(|_| "telehook".into()))
                .partitions(partitions)
                .replicas(replicas)
                .capacity(capacity)
                .lease(lease()?)
                .connect()
                .await?;
            tracing::info!(servers = %servers.join(","), replicas, partitions, "NATS JetStream queue");
            start(queue).await
        }
    }
}

/// `LEASE_MS`: how long a worker's partitions wait after it died (default 15 s).
fn lease() -> Result<Duration, BoxError> {
    Ok(Duration::from_millis(setting(
        "LEASE_MS",
        telehook_queue::DEFAULT_LEASE.as_millis() as u64,
    )?))
}

async fn start<B: QueueBackend>(queue: B) -> Result<(), BoxError> {
    let role: Role = setting("ROLE", Role::Both)?;
    let port: u16 = setting("PORT", 8080)?;
    let secret = std::env::var("TELEHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    if secret.is_none() && role != Role::Worker {
        tracing::warn!(
            "TELEHOOK_SECRET is not set: deliveries are not checked for the \
             X-Telegram-Bot-Api-Secret-Token header, anyone who knows the URL can post updates"
        );
    }
    let mut runner = telehook_polling::RunnerConfig::default();
    runner.error_policy = telehook_core::ErrorPolicy::BoundedRetry { max_attempts: 3 };
    runner.concurrency = setting("CONCURRENCY", runner.concurrency)?;
    let lease = lease()?;
    let run_log = match std::env::var_os("RUN_LOG") {
        Some(path) => Some(RunLog::open(
            path.as_ref(),
            Duration::from_millis(setting("HANDLER_DELAY_MS", 0)?),
        )?),
        None => None,
    };
    let listener = if role == Role::Worker {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
        tracing::info!(address = %listener.local_addr()?, path = queue_workers::WEBHOOK_PATH, "webhook listening");
        Some(listener)
    };
    match (listener, run_log) {
        (Some(listener), run_log) if role == Role::Webhook => {
            drop(run_log);
            queue_workers::serve_webhook(listener, &queue, secret.as_deref(), shutdown()).await?;
        }
        (Some(listener), Some(log)) => {
            let reports =
                queue_workers::run(listener, queue, secret.as_deref(), log, runner, shutdown())
                    .await?;
            tracing::info!(?reports, "stopped");
        }
        (Some(listener), None) => {
            let reports = queue_workers::run(
                listener,
                queue,
                secret.as_deref(),
                queue_workers::handle,
                runner,
                shutdown(),
            )
            .await?;
            tracing::info!(?reports, "stopped");
        }
        (None, Some(log)) => {
            let reports = queue_workers::work(queue, log, runner, lease, shutdown()).await?;
            tracing::info!(?reports, "stopped");
        }
        (None, None) => {
            let reports =
                queue_workers::work(queue, queue_workers::handle, runner, lease, shutdown())
                    .await?;
            tracing::info!(?reports, "stopped");
        }
    }
    Ok(())
}

/// The first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down: the webhook first, then the workers drain");
}
