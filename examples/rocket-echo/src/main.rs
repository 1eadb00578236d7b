//! `cargo run -p rocket-echo`: serves the echo bot where Rocket's configuration says
//! (`ROCKET_PORT`, default 8000), checking `TELEHOOK_SECRET` if it is set. Ctrl-C or SIGTERM
//! starts Rocket's graceful shutdown, which drains the handler runs.

#[rocket::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("TELEHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let _ = rocket_echo::rocket(rocket_echo::AppState::default(), secret.as_deref())?
        .launch()
        .await?;
    Ok(())
}
