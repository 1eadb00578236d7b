//! `telehook emulator` and `telehook relay`: the two servers, run through their libraries.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use telehook_emulator::{Emulator, Timing};
use telehook_relay::{AccessConfig, Notifier, Relay, RelayConfig, SqliteStore, StoreLimits};

use crate::CliError;

#[derive(Debug, Args)]
pub(crate) struct EmulatorArgs {
    /// Address to listen on (port 0: any free port; the address is printed on stdout).
    #[arg(
        long,
        default_value = "127.0.0.1:8081",
        env = "TELEHOOK_EMULATOR_LISTEN"
    )]
    listen: SocketAddr,
    /// A (test) bot token to serve, like 123456:ABC-DEF; repeat or separate with commas.
    #[arg(
        long = "token",
        required = true,
        value_delimiter = ',',
        env = "TELEHOOK_EMULATOR_TOKENS",
        hide_env_values = true
    )]
    tokens: Vec<String>,
    /// Multiply every Telegram duration (webhook timeout, retry delays, expiry) by this.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
}

#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// Address to listen on (port 0: any free port; the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:3000", env = "TELEHOOK_RELAY_LISTEN")]
    listen: SocketAddr,
    /// Directory of the SQLite database (created if missing).
    #[arg(long, default_value = "./relay-data", env = "TELEHOOK_RELAY_DATA_DIR")]
    data_dir: PathBuf,
    /// Access file (TOML, or JSON if it ends in .json) with per-channel read and write tokens.
    #[arg(long, env = "TELEHOOK_RELAY_ACCESS_FILE")]
    access_file: Option<PathBuf>,
}

/// Prints the address a server listens on as the first line of stdout, so a script (or a
/// test) started with port 0 can read it.
fn announce(what: &str, url: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{what} listening on {url}");
    let _ = out.flush();
}

pub(crate) async fn emulator(args: EmulatorArgs) -> Result<(), CliError> {
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        return Err(CliError::Invalid(
            "--time-scale must be a positive number".to_owned(),
        ));
    }
    let mut builder = Emulator::builder()
        .listen(args.listen)
        .timing(Timing::scaled(args.time_scale));
    for token in args.tokens {
        builder = builder.bot(token);
    }
    let emulator = builder.start().await.map_err(|e| CliError::Server {
        what: "the emulator cannot start",
        source: Box::new(e),
    })?;
    announce("emulator", &emulator.base_url());
    tokio::select! {
        () = shutdown_signal() => {}
        () = emulator.stopped() => {}
    }
    emulator.shutdown();
    Ok(())
}

pub(crate) async fn relay(args: RelayArgs) -> Result<(), CliError> {
    let server_error =
        |what, e: Box<dyn std::error::Error + Send + Sync>| CliError::Server { what, source: e };
    let access = match &args.access_file {
        Some(path) => {
            AccessConfig::load(path).map_err(|e| server_error("the access file", e.into()))?
        }
        None => AccessConfig::default(),
    };
    let config = RelayConfig {
        access,
        ..RelayConfig::default()
    };
    let limits = StoreLimits::default();
    let notifier = Arc::new(Notifier::new(
        config.max_waiters_per_channel,
        limits.max_channels.max(1),
    ));
    let store = SqliteStore::open(&args.data_dir, limits, notifier)
        .map_err(|e| server_error("the relay store cannot open", e.into()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| server_error("the relay cannot listen", e.into()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| server_error("the relay cannot listen", e.into()))?;
    announce("relay", &format!("http://{addr}"));
    Relay::new(Arc::new(store), config)
        .serve(listener, shutdown_signal())
        .await
        .map_err(|e| server_error("the relay stopped", e.into()))?;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix (what `docker stop` and systemd send).
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
