//! The HTTP router: the Bot API, plus the test API under `/_emulator/{token}/…` for bots and
//! tests written in any language.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::api::serve_bot_api;
use crate::emulator::BotHandle;
use crate::model::User;
use crate::state::Shared;

mod faults;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_emulator/{token}/updates", post(inject_update))
        .route("/_emulator/{token}/private_text", post(private_text))
        .route("/_emulator/{token}/calls", get(calls).delete(clear_calls))
        .route("/_emulator/{token}/deliveries", get(deliveries))
        .route("/_emulator/{token}/webhook_info", get(webhook_info))
        .route(
            "/_emulator/{token}/faults",
            get(faults::list).post(faults::plan).delete(faults::clear),
        )
        .route(
            "/_emulator/{token}/next_update_id",
            get(faults::next_update_id).post(faults::set_next_update_id),
        )
        .fallback(serve_bot_api)
        .with_state(shared)
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

fn json_body(body: &Bytes) -> Result<Value, Problem> {
    serde_json::from_slice(body).map_err(|_| {
        Problem(
            StatusCode::BAD_REQUEST,
            "Bad Request: can't parse JSON object".to_owned(),
        )
    })
}

/// Body: an Update without `update_id`, e.g. `{"message": {...}}`; answers the queued update.
async fn inject_update(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let (bot, body) = match (handle(&shared, &token), json_body(&body)) {
        (Ok(bot), Ok(body)) => (bot, body),
        (Err(problem), _) | (_, Err(problem)) => return problem.into_response(),
    };
    let Some(object) = body.as_object() else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad Request: an Update object is expected",
        );
    };
    let mut kinds = object.iter().filter(|(key, _)| key.as_str() != "update_id");
    let (Some((kind, payload)), None) = (kinds.next(), kinds.next()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad Request: an Update holds exactly one field beside update_id",
        );
    };
    let injected = bot.inject(kind, payload.clone());
    ok(&json!({ "update": injected.update, "queued": injected.queued }))
}

/// Body: `{"user_id": 42, "first_name": "Ann", "text": "hi"}`.
async fn private_text(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let (bot, body) = match (handle(&shared, &token), json_body(&body)) {
        (Ok(bot), Ok(body)) => (bot, body),
        (Err(problem), _) | (_, Err(problem)) => return problem.into_response(),
    };
    let (Some(user_id), Some(text)) = (body["user_id"].as_i64(), body["text"].as_str()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad Request: user_id (integer) and text (string) are required",
        );
    };
    let first_name = body["first_name"].as_str().unwrap_or("User");
    let injected = bot.private_text(&User::new(user_id, first_name), text);
    ok(&json!({ "update": injected.update, "queued": injected.queued }))
}

async fn calls(State(shared): State<Arc<Shared>>, Path(token): Path<String>) -> Response {
    match handle(&shared, &token) {
        Ok(bot) => ok(&serde_json::to_value(bot.calls()).unwrap_or(Value::Null)),
        Err(problem) => problem.into_response(),
    }
}

async fn clear_calls(State(shared): State<Arc<Shared>>, Path(token): Path<String>) -> Response {
    match handle(&shared, &token) {
        Ok(bot) => {
            bot.clear_calls();
            ok(&json!(true))
        }
        Err(problem) => problem.into_response(),
    }
}

async fn deliveries(State(shared): State<Arc<Shared>>, Path(token): Path<String>) -> Response {
    match handle(&shared, &token) {
        Ok(bot) => ok(&serde_json::to_value(bot.deliveries()).unwrap_or(Value::Null)),
        Err(problem) => problem.into_response(),
    }
}

async fn webhook_info(State(shared): State<Arc<Shared>>, Path(token): Path<String>) -> Response {
    match handle(&shared, &token) {
        Ok(bot) => ok(&bot.webhook_info()),
        Err(problem) => problem.into_response(),
    }
}
