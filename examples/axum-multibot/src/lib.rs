#![doc = include_str!("../README.md")]

use axum::Router;
use axum::extract::{Path, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use telehook::{Bots, BotsError, BuildError, Context, HandlerError, RequestHead, Update, Webhook};

/// A bot that answers each text message by webhook reply with its own `name` in front, so a
/// test can tell which bot handled an update.
fn greeter(name: &'static str, secret: &str) -> Result<Webhook, BuildError> {
    Webhook::builder()
        .secret_token(secret)
        .build(move |update: Update, ctx: Context| async move {
            if let Some(chat_id) = update.chat_id() {
                ctx.webhook_reply(
                    "sendMessage",
                    serde_json::json!({ "chat_id": chat_id, "text": format!("{name} here") }),
                )?;
            }
            Ok::<_, HandlerError>(())
        })
}

/// Why the bots could not be set up.
#[derive(Debug)]
pub enum SetupError {
    /// A webhook's configuration.
    Build(BuildError),
    /// The set of bots (duplicate name or secret).
    Bots(BotsError),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Build(e) => e.fmt(f),
            Self::Bots(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SetupError {}

/// Two bots, `alpha` and `beta`, each with its own secret (set one per bot with `setWebhook`).
pub fn bots(alpha_secret: &str, beta_secret: &str) -> Result<Bots, SetupError> {
    let alpha = greeter("alpha", alpha_secret).map_err(SetupError::Build)?;
    let beta = greeter("beta", beta_secret).map_err(SetupError::Build)?;
    Bots::new()
        .bot("alpha", alpha)
        .and_then(|bots| bots.bot("beta", beta))
        .map_err(SetupError::Bots)
}

/// The app: `POST /bot/{name}` routes by path (`setWebhook` url `https://…/bot/alpha`), and
/// `POST /telegram` routes by the secret token header (one url for every bot).
pub fn app(bots: Bots) -> Router {
    let by_secret = bots.clone();
    Router::new()
        .route(
            "/bot/{name}",
            post(move |Path(name): Path<String>, request: Request| {
                let bots = bots.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let head = RequestHead::from_http(&parts.method, &parts.headers);
                    into_axum(
                        bots.handle_by_name(&name, head, parts.extensions, body)
                            .await,
                    )
                }
            }),
        )
        .route(
            "/telegram",
            post(move |request: Request| {
                let bots = by_secret.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let head = RequestHead::from_http(&parts.method, &parts.headers);
                    into_axum(
                        bots.handle_by_secret_token(head, parts.extensions, body)
                            .await,
                    )
                }
            }),
        )
}

fn into_axum(response: telehook::WebhookResponse) -> Response {
    response.into_http().into_response()
}
