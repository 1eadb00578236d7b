//! `telehook-relay`: a self-hosted long-polling inbox for webhooks. Run `telehook-relay --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
#[cfg(feature = "redis")]
use telehook_relay::store::redis::{RedisOptions, RedisStore};
use telehook_relay::{
    AccessConfig, Notifier, RateLimit, Relay, RelayConfig, Retention, SqliteStore, Store,
    StoreLimits,
};

/// Self-hosted long-polling inbox for webhooks: POST /{channel} stores a JSON update,
/// GET /{channel}?ts=N&sleep=S long-polls for it (also SSE with Accept: text/event-stream,
/// and WebSocket at /ws). Durable on SQLite by default; shared across instances with --redis.
#[derive(Debug, Parser)]
#[command(name = "telehook-relay", version, about, long_about = None)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TELEHOOK_RELAY_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Directory of the SQLite database (created if missing). Ignored with --redis.
    #[arg(long, env = "TELEHOOK_RELAY_DATA_DIR", default_value = "./relay-data")]
    data_dir: PathBuf,
    /// Redis URL (redis://host:port/db): store channels in Redis so several instances share them.
    #[arg(long, env = "TELEHOOK_RELAY_REDIS")]
    redis: Option<String>,
    /// Prefix of every Redis key and pub/sub channel this relay uses.
    #[arg(
        long,
        env = "TELEHOOK_RELAY_REDIS_PREFIX",
        default_value = "telehook-relay"
    )]
    redis_prefix: String,
    /// Access file (TOML, or JSON if it ends in .json) with per-channel read and write tokens.
    #[arg(long, env = "TELEHOOK_RELAY_ACCESS_FILE")]
    access_file: Option<PathBuf>,
    /// Largest accepted POST body, in bytes.
    #[arg(long, env = "TELEHOOK_RELAY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Longest `sleep` a long-polling client may ask for, in seconds.
    #[arg(long, env = "TELEHOOK_RELAY_MAX_SLEEP_SECS", default_value_t = 60)]
    max_sleep_secs: u64,
    /// Most updates in one long-poll answer.
    #[arg(
        long,
        env = "TELEHOOK_RELAY_MAX_UPDATES_PER_RESPONSE",
        default_value_t = 100
    )]
    max_updates_per_response: usize,
    /// Most bytes of one long-poll answer (and of one catch-up read, and of the updates queued,
    /// for an SSE or WebSocket stream); at least --max-body-bytes + 128. Memory held for answers
    /// is about open connections x 2 x this (a WebSocket: subscriptions + 1, x this).
    #[arg(
        long,
        env = "TELEHOOK_RELAY_MAX_RESPONSE_BYTES",
        default_value_t = 2 * 1024 * 1024
    )]
    max_response_bytes: usize,
    /// Most clients waiting on one channel (long poll, SSE and WebSocket together).
    #[arg(
        long,
        env = "TELEHOOK_RELAY_MAX_WAITERS_PER_CHANNEL",
        default_value_t = 10_000
    )]
    max_waiters_per_channel: usize,
    /// Most channels held at once.
    #[arg(long, env = "TELEHOOK_RELAY_MAX_CHANNELS", default_value_t = 10_000)]
    max_channels: usize,
    /// Updates kept per channel.
    #[arg(long, env = "TELEHOOK_RELAY_RETAIN_UPDATES", default_value_t = 10_000)]
    retain_updates: u64,
    /// Seconds an update is kept.
    #[arg(long, env = "TELEHOOK_RELAY_RETAIN_SECS", default_value_t = 86_400)]
    retain_secs: u64,
    /// Seconds between deletions of expired updates.
    #[arg(long, env = "TELEHOOK_RELAY_PRUNE_INTERVAL_SECS", default_value_t = 60)]
    prune_interval_secs: u64,
    /// Updates waiting to be committed before POSTs are held back (then 503 after 5 s).
    #[arg(long, env = "TELEHOOK_RELAY_INGEST_QUEUE", default_value_t = 8_192)]
    ingest_queue: usize,
    /// Most updates committed in one transaction.
    #[arg(long, env = "TELEHOOK_RELAY_MAX_BATCH", default_value_t = 1_024)]
    max_batch: usize,
    /// Requests per second allowed per client IP; 0 disables rate limiting.
    #[arg(long, env = "TELEHOOK_RELAY_RATE_LIMIT", default_value_t = 100.0)]
    rate_limit: f64,
    /// Requests a client IP may make at once before the rate applies.
    #[arg(long, env = "TELEHOOK_RELAY_RATE_LIMIT_BURST", default_value_t = 200)]
    rate_limit_burst: u32,
    /// Most client IPs tracked by the rate limiter.
    #[arg(
        long,
        env = "TELEHOOK_RELAY_RATE_LIMIT_CLIENTS",
        default_value_t = 100_000
    )]
    rate_limit_clients: usize,
    /// Take the client IP from X-Forwarded-For (only behind a proxy you trust).
    #[arg(long, env = "TELEHOOK_RELAY_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
    /// Access-Control-Allow-Origin for browser clients; empty disables CORS headers.
    #[arg(long, env = "TELEHOOK_RELAY_CORS_ORIGIN", default_value = "*")]
    cors_origin: String,
    /// Messages buffered per WebSocket.
    #[arg(long, env = "TELEHOOK_RELAY_WS_SEND_BUFFER", default_value_t = 64)]
    ws_send_buffer: usize,
    /// Most subscriptions on one WebSocket.
    #[arg(
        long,
        env = "TELEHOOK_RELAY_WS_MAX_SUBSCRIPTIONS",
        default_value_t = 16
    )]
    ws_max_subscriptions: usize,
    /// Seconds a connection may take to send a request's headers (also closes idle keep-alive
    /// connections and slowloris clients).
    #[arg(
        long,
        env = "TELEHOOK_RELAY_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 20
    )]
    header_read_timeout_secs: u64,
    /// Seconds a POST body may take to arrive; past it the answer is 408.
    #[arg(
        long,
        env = "TELEHOOK_RELAY_BODY_READ_TIMEOUT_SECS",
        default_value_t = 10
    )]
    body_read_timeout_secs: u64,
    /// Most open connections; one more is answered 503 and closed.
    #[arg(long, env = "TELEHOOK_RELAY_MAX_CONNECTIONS", default_value_t = 16_384)]
    max_connections: usize,
    /// Largest size of the SQLite database in bytes (0: no limit but the disk); past it,
    /// POSTs are answered 507 with Retry-After.
    #[arg(long, env = "TELEHOOK_RELAY_MAX_DB_BYTES", default_value_t = 0)]
    max_db_bytes: u64,
    /// Log format.
    #[arg(long, env = "TELEHOOK_RELAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter (tracing-subscriber EnvFilter syntax), e.g. `info` or `telehook_relay=debug`.
    #[arg(long, env = "TELEHOOK_RELAY_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "relay stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let access = match &args.access_file {
        Some(path) => AccessConfig::load(path)?,
        None => AccessConfig::default(),
    };
    let limits = StoreLimits {
        retention: Retention {
            max_updates: args.retain_updates,
            max_age: Duration::from_secs(args.retain_secs),
        },
        max_channels: args.max_channels,
        ingest_queue: args.ingest_queue,
        max_batch: args.max_batch,
        prune_interval: Duration::from_secs(args.prune_interval_secs),
        max_db_bytes: (args.max_db_bytes > 0).then_some(args.max_db_bytes),
    };
    let config = RelayConfig {
        max_body_bytes: args.max_body_bytes,
        max_sleep: Duration::from_secs(args.max_sleep_secs),
        max_updates_per_response: args.max_updates_per_response,
        max_response_bytes: args.max_response_bytes,
        max_waiters_per_channel: args.max_waiters_per_channel,
        ws_send_buffer: args.ws_send_buffer,
        ws_max_subscriptions: args.ws_max_subscriptions,
        rate_limit: (args.rate_limit > 0.0).then_some(RateLimit {
            per_second: args.rate_limit,
            burst: args.rate_limit_burst,
            max_clients: args.rate_limit_clients,
        }),
        trust_forwarded_for: args.trust_forwarded_for,
        cors_origin: (!args.cors_origin.is_empty()).then(|| args.cors_origin.clone()),
        access,
        header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
        body_read_timeout: Duration::from_secs(args.body_read_timeout_secs),
        max_connections: args.max_connections,
        ..RelayConfig::default()
    };
    // Every range is checked before anything is opened: a clear error naming the flag.
    limits.validate()?;
    config.validate()?;
    let notifier = Arc::new(Notifier::new(
        config.max_waiters_per_channel,
        args.max_channels.max(1),
    ));
    let store: Arc<dyn Store> = match &args.redis {
        #[cfg(feature = "redis")]
        Some(url) => {
            let options = RedisOptions {
                url: url.clone(),
                prefix: args.redis_prefix.clone(),
                limits,
            };
            tracing::info!(prefix = %options.prefix, "using redis store");
            Arc::new(RedisStore::connect(options, notifier).await?)
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => return Err("this build has no Redis support (feature `redis`)".into()),
        None => {
            tracing::info!(data_dir = %args.data_dir.display(), "using sqlite store");
            Arc::new(SqliteStore::open(&args.data_dir, limits, notifier)?)
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "relay listening");
    Relay::new(store, config)
        .serve(listener, shutdown_signal())
        .await?;
    tracing::info!("relay stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
