//! `cargo run -p axum-multibot`: serves bots `alpha` and `beta` on `PORT` (default 8080), with
//! secrets from `ALPHA_SECRET` and `BETA_SECRET`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 8080,
    };
    let secret = |name: &str| {
        std::env::var(name).map_err(|_| format!("set {name} (the bot's secret_token)"))
    };
    let bots = axum_multibot::bots(&secret("ALPHA_SECRET")?, &secret("BETA_SECRET")?)?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(address = %listener.local_addr()?, "axum-multibot listening");
    axum::serve(listener, axum_multibot::app(bots))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
