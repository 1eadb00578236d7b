//! The Lambda function's entry point: `TELEHOOK_SECRET` from the function's environment.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .without_time()
        .init();
    let secret = std::env::var("TELEHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let delay = match std::env::var("ECHO_DELAY_MS") {
        Ok(ms) => std::time::Duration::from_millis(ms.parse()?),
        Err(_) => std::time::Duration::ZERO,
    };
    let state = lambda_echo::AppState {
        delay,
        ..Default::default()
    };
    let webhook = lambda_echo::webhook(state, secret.as_deref())?;
    telehook::lambda::run(webhook).await?;
    Ok(())
}
