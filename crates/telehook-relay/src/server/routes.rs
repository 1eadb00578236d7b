//! The router: routes, fallbacks that answer with the JSON error object, CORS
//! ([`tower_http::cors::CorsLayer`]) and the per-IP rate limit.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::ingest::push_update;
use super::poll::get_updates;
use super::state::{Shared, json_response};
use super::ws::ws_upgrade;
use crate::error::RelayError;

/// The routes of the relay protocol, with CORS and rate limiting.
pub(crate) fn router(shared: &Arc<Shared>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/ws", get(ws_upgrade))
        .route("/{channel}", get(get_updates).post(push_update))
        .route("/{channel}/", get(get_updates).post(push_update))
        .route("/{channel}/getUpdates", get(get_updates))
        .route("/{channel}/pushUpdates", post(push_update))
        .fallback(|| async { RelayError::NotFound })
        .method_not_allowed_fallback(|| async { RelayError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            rate_limit,
        ))
        .with_state(shared.clone());
    if let Some(cors) = cors_layer(shared.config.cors_origin.as_deref()) {
        router = router.layer(cors);
    }
    router
}

/// CORS for browser clients (`EventSource`, `fetch`): the configured origin (`*` for any),
/// the relay's methods and headers, and the headers a client reads.
fn cors_layer(origin: Option<&str>) -> Option<CorsLayer> {
    let origin = match origin? {
        "*" => AllowOrigin::any(),
        one => AllowOrigin::exact(HeaderValue::from_str(one).ok()?),
    };
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static("x-telegram-bot-api-secret-token"),
            ])
            .expose_headers([
                HeaderName::from_static("x-total-updates"),
                header::RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(86_400)),
    )
}

/// Refuses a client IP over its rate with 429 and `Retry-After`; `/healthz` is never limited.
async fn rate_limit(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if let Some(limiter) = &shared.limiter
        && req.uri().path() != "/healthz"
        && let Some(ip) = shared.client_ip(&req)
        && let Err(retry_after) = limiter.check(ip)
    {
        tracing::debug!(%ip, "rate limited");
        return RelayError::RateLimited { retry_after }.into_response();
    }
    next.run(req).await
}

/// `GET /healthz`: `{"ok":true}` when the store answers and can write, else the error.
async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.store.health().await {
        Ok(()) => json_response(StatusCode::OK, r#"{"ok":true}"#.to_owned()),
        Err(e) => RelayError::Store(e).into_response(),
    }
}
