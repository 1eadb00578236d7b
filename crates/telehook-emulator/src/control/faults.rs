//! `/_emulator/{token}/faults` and `/_emulator/{token}/next_update_id`: the faults and the
//! `update_id` jump of the Rust API, over HTTP.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{handle, ok, parse_body, problem};
use crate::model::Fault;
use crate::state::Shared;

/// A [`Fault`] as JSON: `{"type":"too_many_requests","retry_after":3600}`, `{"type":"error",
/// "error_code":403,"description":"Forbidden: bot was blocked by the user"}`, `{"type":"delay",
/// "ms":500}`, `{"type":"drop_connection"}`, `{"type":"bad_gateway"}`, `{"type":"hang"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum FaultSpec {
    TooManyRequests {
        retry_after: u64,
    },
    Error {
        error_code: u16,
        description: String,
    },
    Delay {
        ms: u64,
    },
    DropConnection,
    BadGateway,
    Hang,
}

impl From<FaultSpec> for Fault {
    fn from(spec: FaultSpec) -> Self {
        match spec {
            FaultSpec::TooManyRequests { retry_after } => Self::TooManyRequests { retry_after },
            FaultSpec::Error {
                error_code,
                description,
            } => Self::Error {
                error_code,
                description,
            },
            FaultSpec::Delay { ms } => Self::Delay(Duration::from_millis(ms)),
            FaultSpec::DropConnection => Self::DropConnection,
            FaultSpec::BadGateway => Self::BadGateway,
            FaultSpec::Hang => Self::Hang,
        }
    }
}

impl From<&Fault> for FaultSpec {
    fn from(fault: &Fault) -> Self {
        match fault {
            Fault::TooManyRequests { retry_after } => Self::TooManyRequests {
                retry_after: *retry_after,
            },
            Fault::Error {
                error_code,
                description,
            } => Self::Error {
                error_code: *error_code,
                description: description.clone(),
            },
            Fault::Delay(delay) => Self::Delay {
                ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            },
            Fault::DropConnection => Self::DropConnection,
            Fault::BadGateway => Self::BadGateway,
            Fault::Hang => Self::Hang,
        }
    }
}

/// Body of `POST /faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFault {
    /// Case-insensitive; `*` (the default) is any method.
    #[serde(default = "any_method")]
    method: String,
    #[serde(default = "one")]
    times: usize,
    fault: FaultSpec,
}

fn any_method() -> String {
    "*".to_owned()
}

const fn one() -> usize {
    1
}

/// `POST /faults {"method":"getUpdates","times":2,"fault":{"type":"bad_gateway"}}`.
pub(crate) async fn plan(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let bot = match handle(&shared, &token) {
        Ok(bot) => bot,
        Err(problem) => return problem.into_response(),
    };
    let plan: PlanFault = match parse_body(&body) {
        Ok(plan) => plan,
        Err(problem) => return problem.into_response(),
    };
    if let FaultSpec::Error { error_code, .. } = &plan.fault
        && !(400..=599).contains(error_code)
    {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!(
                "Bad Request: a fault's error_code must be from 400 to 599 (a Bot API error), not {error_code}"
            ),
        );
    }
    bot.inject_fault(&plan.method, plan.times, plan.fault.into());
    planned(&bot)
}

/// `GET /faults`: the faults still planned, in the order they are used.
pub(crate) async fn list(State(shared): State<Arc<Shared>>, Path(token): Path<String>) -> Response {
    match handle(&shared, &token) {
        Ok(bot) => planned(&bot),
        Err(problem) => problem.into_response(),
    }
}

/// `DELETE /faults`.
pub(crate) async fn clear(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
) -> Response {
    match handle(&shared, &token) {
        Ok(bot) => {
            bot.clear_faults();
            ok(&json!(true))
        }
        Err(problem) => problem.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NextUpdateId {
    update_id: u64,
}

/// `GET /next_update_id`: `{"update_id": N}`, the id the next update gets.
pub(crate) async fn next_update_id(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
) -> Response {
    match handle(&shared, &token) {
        Ok(bot) => ok(&json!({ "update_id": bot.next_update_id() })),
        Err(problem) => problem.into_response(),
    }
}

/// `POST /next_update_id {"update_id": 5}`: the jump; answers `{"previous": N}`.
pub(crate) async fn set_next_update_id(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let bot = match handle(&shared, &token) {
        Ok(bot) => bot,
        Err(problem) => return problem.into_response(),
    };
    let next: NextUpdateId = match parse_body(&body) {
        Ok(next) => next,
        Err(problem) => return problem.into_response(),
    };
    match bot.set_next_update_id(next.update_id) {
        Ok(previous) => ok(&json!({ "previous": previous, "update_id": next.update_id })),
        Err(error) => problem(StatusCode::BAD_REQUEST, &format!("Bad Request: {error}")),
    }
}

fn planned(bot: &crate::handle::BotHandle) -> Response {
    let faults: Vec<_> = bot
        .planned_faults()
        .iter()
        .map(|p| json!({ "method": p.method, "remaining": p.remaining, "fault": FaultSpec::from(&p.fault) }))
        .collect();
    ok(&json!(faults))
}
