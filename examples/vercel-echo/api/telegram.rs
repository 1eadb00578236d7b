//! The Vercel Function: `vercel deploy` builds this binary and runs it with the Rust runtime.
//! `TELEHOOK_SECRET` is the webhook's secret token; `TELEHOOK_TIMEOUT_MS` (default 10 000) the
//! handler timeout, shortened further by what is left of `maxDuration`.

use std::time::Duration;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), vercel_runtime::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let secret = std::env::var("TELEHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let timeout = match std::env::var("TELEHOOK_TIMEOUT_MS") {
        Ok(ms) => Duration::from_millis(
            ms.parse()
                .map_err(|e| format!("TELEHOOK_TIMEOUT_MS={ms:?}: {e}"))?,
        ),
        Err(_) => Duration::from_secs(10),
    };
    let webhook = vercel_echo::webhook(secret.as_deref(), timeout)?;
    telehook::vercel::run(webhook, vercel_echo::MAX_DURATION).await
}
