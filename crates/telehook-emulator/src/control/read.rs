//! Reading what the bot did, over HTTP: calls, deliveries, state, messages, files; and
//! waiting for them with a deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{bot_or_401, ok, problem};
use crate::error::WaitTimeout;
use crate::state::Shared;

macro_rules! try_response {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(problem) => return problem.into_response(),
        }
    };
}

/// The longest a `…/wait` request may wait.
const MAX_WAIT: Duration = Duration::from_secs(120);

/// Query of the `…/wait` routes.
#[derive(Debug, Deserialize)]
pub(super) struct Wait {
    method: Option<String>,
    #[serde(default = "one")]
    count: usize,
    update_id: Option<u64>,
    /// Default 10 000, at most 120 000.
    #[serde(default = "ten_seconds")]
    timeout_ms: u64,
}

const fn one() -> usize {
    1
}

const fn ten_seconds() -> u64 {
    10_000
}

impl Wait {
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms).min(MAX_WAIT)
    }
}

/// `408` with what was seen when the deadline passed.
fn timed_out(error: &WaitTimeout) -> Response {
    problem(StatusCode::REQUEST_TIMEOUT, &error.to_string())
}

fn value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[derive(Debug, Deserialize)]
pub(super) struct CallsQuery {
    method: Option<String>,
}

/// `GET /calls[?method=sendMessage]`.
pub(super) async fn calls(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    Query(query): Query<CallsQuery>,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    match query.method {
        Some(method) => ok(&value(&bot.calls_to(&method))),
        None => ok(&value(&bot.calls())),
    }
}

/// `DELETE /calls`.
pub(super) async fn clear_calls(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    bot.clear_calls();
    ok(&json!(true))
}

/// `GET /calls/wait?method=sendMessage&count=1&timeout_ms=5000`: at least `count` calls (of
/// `method`, if given) were recorded; answers them.
pub(super) async fn wait_calls(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    Query(wait): Query<Wait>,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    let result = match &wait.method {
        Some(method) => {
            bot.wait_for_calls_to(method, wait.count, wait.timeout())
                .await
        }
        None => bot.wait_for_calls(wait.count, wait.timeout()).await,
    };
    result.map_or_else(|e| timed_out(&e), |calls| ok(&value(&calls)))
}

/// `GET /deliveries`.
pub(super) async fn deliveries(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    ok(&value(&bot.deliveries()))
}

/// `GET /deliveries/wait?count=2&timeout_ms=5000`.
pub(super) async fn wait_deliveries(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    Query(wait): Query<Wait>,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    bot.wait_for_deliveries(wait.count, wait.timeout())
        .await
        .map_or_else(|e| timed_out(&e), |log| ok(&value(&log)))
}

/// `GET /delivered/wait?update_id=3&timeout_ms=5000`.
pub(super) async fn wait_delivered(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    Query(wait): Query<Wait>,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    let Some(update_id) = wait.update_id else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad Request: update_id is required",
        );
    };
    bot.wait_for_delivered(update_id, wait.timeout())
        .await
        .map_or_else(|e| timed_out(&e), |attempt| ok(&value(&attempt)))
}

/// `GET /idle/wait?timeout_ms=5000`: no update pending or in flight.
pub(super) async fn wait_idle(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    Query(wait): Query<Wait>,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    bot.wait_until_idle(wait.timeout())
        .await
        .map_or_else(|e| timed_out(&e), |()| ok(&json!(true)))
}

/// `GET /long_poll/wait?timeout_ms=5000`: a getUpdates is parked in a long poll.
pub(super) async fn wait_long_poll(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    Query(wait): Query<Wait>,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    bot.wait_for_long_poll(wait.timeout())
        .await
        .map_or_else(|e| timed_out(&e), |()| ok(&json!(true)))
}

/// `GET /webhook_info`.
pub(super) async fn webhook_info(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    ok(&bot.webhook_info())
}

/// `GET /state`: the bot, its queue and its `update_id`s.
pub(super) async fn state(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    ok(&json!({
        "bot_user": bot.bot_user(),
        "next_update_id": bot.next_update_id(),
        "pending_update_count": bot.pending_update_count(),
        "dropped_update_count": bot.dropped_update_count(),
        "long_polls_waiting": bot.long_polls_waiting(),
        "waits_waiting": bot.waits_waiting(),
    }))
}

/// `GET /messages/{chat_id}/{message_id}`: a message the emulator keeps.
pub(super) async fn message(
    State(shared): State<Arc<Shared>>,
    Path((token, chat_id, message_id)): Path<(String, i64, i64)>,
) -> Response {
    let bot = try_response!(bot_or_401(&shared, &token));
    match bot.message(chat_id, message_id) {
        Some(message) => ok(&message),
        None => problem(StatusCode::NOT_FOUND, "Not Found: no such message"),
    }
}

/// `GET /_emulator/timing`: the emulator's clock.
pub(super) async fn timing(State(shared): State<Arc<Shared>>) -> Response {
    let timing = &shared.timing;
    let secs = |d: Duration| d.as_secs_f64();
    ok(&json!({
        "scale": timing.scale,
        "webhook_timeout_s": secs(timing.webhook_timeout),
        "retry_cap_min_s": secs(timing.retry_cap_min),
        "retry_cap_max_s": secs(timing.retry_cap_max),
        "max_retry_after_s": secs(timing.max_retry_after),
        "expiry": timing.expiry,
    }))
}

/// `GET /file/bot{token}/{file_path}`: the bytes of a file (as Telegram's download route).
pub(super) async fn download(
    State(shared): State<Arc<Shared>>,
    Path((bot_token, path)): Path<(String, String)>,
) -> Response {
    let Some(token) = bot_token.strip_prefix("bot") else {
        return problem(StatusCode::NOT_FOUND, "Not Found");
    };
    let bot = try_response!(bot_or_401(&shared, token));
    match bot.file_by_path(&path) {
        Some((bytes, mime)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                mime.unwrap_or_else(|| "application/octet-stream".to_owned()),
            )],
            bytes,
        )
            .into_response(),
        None => problem(StatusCode::NOT_FOUND, "Not Found"),
    }
}
