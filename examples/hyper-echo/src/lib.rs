//! The hyper echo bot: a hyper service with its own routes (`/healthz`, `/stats`) and state, and
//! the Telegram webhook at [`WEBHOOK_PATH`] echoing text messages with a webhook reply.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use telehook::{BuildError, Context, HandlerError, Update, Webhook};

/// The path Telegram posts updates to.
pub const WEBHOOK_PATH: &str = "/telegram";

/// The app's own state, shared by its routes and the bot.
#[derive(Clone, Debug, Default)]
pub struct AppState {
    /// Text messages echoed so far.
    pub echoed: Arc<AtomicU64>,
    /// Time each echo waits before answering (`ECHO_DELAY_MS`; zero by default): a slow
    /// handler, to watch a graceful shutdown wait for it.
    pub delay: Duration,
}

/// What the echo bot does with one update: a text message gets the same text back.
pub async fn echo(state: AppState, update: Update, ctx: Context) -> Result<(), HandlerError> {
    if echo_support::echo(&update, &ctx, state.delay).await? {
        state.echoed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Builds the webhook (checking `secret_token`; without one, deliveries are accepted
/// without the header and a warning is logged).
pub fn webhook(state: AppState, secret_token: Option<&str>) -> Result<Webhook, BuildError> {
    let mut builder = Webhook::builder();
    match secret_token {
        Some(secret) => builder = builder.secret_token(secret),
        None => tracing::warn!(
            "TELEHOOK_SECRET is not set: accepting updates without the secret token header"
        ),
    }
    builder.build(move |update: Update, ctx: Context| echo(state.clone(), update, ctx))
}

/// The app's router as a hyper service: the webhook next to the app's own routes.
#[derive(Clone, Debug)]
pub struct App {
    /// The bot.
    pub webhook: Webhook,
    /// The app's state.
    pub state: AppState,
}

impl hyper::service::Service<http::Request<Incoming>> for App {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let app = self.clone();
        Box::pin(async move {
            match request.uri().path() {
                WEBHOOK_PATH => telehook::hyper::handle(&app.webhook, request).await,
                "/healthz" => Ok(http::Response::new(Full::new(Bytes::from_static(b"ok")))),
                "/stats" => {
                    let body =
                        serde_json::json!({ "echoed": app.state.echoed.load(Ordering::Relaxed) })
                            .to_string();
                    Ok(http::Response::new(Full::new(Bytes::from(body))))
                }
                _ => Ok(http::Response::builder()
                    .status(404)
                    .body(Full::new(Bytes::from_static(b"not found")))
                    .unwrap_or_default()),
            }
        })
    }
}

pub use echo_support::{env_ms, shutdown_signal};
