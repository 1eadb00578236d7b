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
    let webhook = lambda_echo::webhook(lambda_echo::AppState::default(), secret.as_deref())?;
    telehook::lambda::run(webhook).await?;
    Ok(())
}
