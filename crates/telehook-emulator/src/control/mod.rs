//! The HTTP router: the Bot API, plus the test API under `/_emulator/{token}/…` for bots and
//! tests written in any language.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::api::serve_bot_api;
use crate::handle::BotHandle;
use crate::state::Shared;

mod faults;
mod inject;
mod read;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_emulator/timing", get(read::timing))
        .route("/_emulator/bots", post(inject::add_bot))
        .route("/_emulator/{token}/updates", post(inject::update))
        .route(
            "/_emulator/{token}/private_text",
            post(inject::private_text),
        )
        .route("/_emulator/{token}/messages", post(inject::message))
        .route(
            "/_emulator/{token}/press_button",
            post(inject::press_button),
        )
        .route(
            "/_emulator/{token}/inline_query",
            post(inject::inline_query),
        )
        .route("/_emulator/{token}/state", get(read::state))
        .route(
            "/_emulator/{token}/calls",
            get(read::calls).delete(read::clear_calls),
        )
        .route("/_emulator/{token}/calls/wait", get(read::wait_calls))
        .route("/_emulator/{token}/deliveries", get(read::deliveries))
        .route(
            "/_emulator/{token}/deliveries/wait",
            get(read::wait_deliveries),
        )
        .route(
            "/_emulator/{token}/delivered/wait",
            get(read::wait_delivered),
        )
        .route("/_emulator/{token}/idle/wait", get(read::wait_idle))
        .route(
            "/_emulator/{token}/long_poll/wait",
            get(read::wait_long_poll),
        )
        .route("/_emulator/{token}/webhook_info", get(read::webhook_info))
        .route(
            "/_emulator/{token}/messages/{chat_id}/{message_id}",
            get(read::message),
        )
        .route("/file/{bot_token}/{*path}", get(read::download))
        .route(
            "/_emulator/{token}/faults",
            get(faults::list).post(faults::plan).delete(faults::clear),
        )
        .route(
            "/_emulator/{token}/next_update_id",
            get(faults::next_update_id).post(faults::set_next_update_id),
        )
        .fallback(serve_bot_api)
        .layer(axum::middleware::map_response(json_refusals))
        .layer(DefaultBodyLimit::max(shared.limits.max_body_bytes))
        .with_state(shared)
}

/// Turns every refusal of the test API that is not JSON yet (axum's own answers: a query or
/// path that does not parse, a body over the limit, a method the route does not serve) into
/// the documented `{"ok":false,"error_code":…,"description":…}` with the same status. Bot API
/// answers are left as they are (a planned `bad_gateway` fault is nginx's HTML on purpose).
async fn json_refusals(uri: Uri, response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let refused = status.is_client_error() || status.is_server_error();
    if !uri.path().starts_with("/_emulator/") || !refused || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let reason = status.canonical_reason().unwrap_or("Error");
    let description = if text.trim().is_empty() {
        reason.to_owned()
    } else {
        format!("{reason}: {}", text.trim())
    };
    let json = problem(status, &description);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, json.into_body())
}

/// An error answer of the test API.
pub(crate) struct Problem(StatusCode, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        problem(self.0, &self.1)
    }
}

fn handle(shared: &Arc<Shared>, token: &str) -> Result<BotHandle, Problem> {
    shared
        .bot(token)
        .map(|bot| BotHandle::from_parts(Arc::clone(shared), bot))
        .ok_or_else(|| Problem(StatusCode::UNAUTHORIZED, "Unauthorized".to_owned()))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn problem(status: StatusCode, description: &str) -> Response {
    json_response(
        status,
        &json!({ "ok": false, "error_code": status.as_u16(), "description": description }),
    )
}

fn ok(result: &Value) -> Response {
    json_response(StatusCode::OK, &json!({ "ok": true, "result": result }))
}

/// A JSON body of type `T`, or a 400 that says what is wrong with it.
fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Problem> {
    serde_json::from_slice(body)
        .map_err(|error| Problem(StatusCode::BAD_REQUEST, format!("Bad Request: {error}")))
}

/// The bot `token` names, or a 401 as the Bot API answers.
fn bot_or_401(shared: &Arc<Shared>, token: &str) -> Result<BotHandle, Problem> {
    handle(shared, token)
}
