//! The Bot API over HTTP: `/bot{token}/{method}`, and the one place every call is executed
//! and recorded, whether it came over HTTP or as a webhook reply.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::methods;
use crate::model::{CallOutcome, Fault, RecordedCall, Route};
use crate::state::{BotCell, Shared};

/// A Bot API error answer.
#[derive(Debug, Clone)]
pub(crate) struct Fail {
    pub(crate) error_code: u16,
    pub(crate) description: String,
    pub(crate) retry_after: Option<u64>,
}

impl Fail {
    pub(crate) fn new(error_code: u16, description: impl Into<String>) -> Self {
        Self {
            error_code,
            description: description.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(what: &str) -> Self {
        Self::new(400, format!("Bad Request: {what}"))
    }
}

/// A successful answer: `result` and, for a few methods, Telegram's `description`.
#[derive(Debug, Clone)]
pub(crate) struct Success {
    pub(crate) result: Value,
    pub(crate) description: Option<&'static str>,
}

impl From<Value> for Success {
    fn from(result: Value) -> Self {
        Self {
            result,
            description: None,
        }
    }
}

/// What to send back for one call.
#[derive(Debug)]
pub(crate) enum Answer {
    Json(StatusCode, Value),
    /// Close the connection without an answer.
    Drop,
    /// nginx's `502 Bad Gateway` page, as Telegram's front-end answers while the Bot API
    /// servers restart.
    BadGateway,
}

/// The page Telegram's front-end (nginx) serves with a 502.
const BAD_GATEWAY_PAGE: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n";

impl Answer {
    fn from_outcome(outcome: &Result<Success, Fail>) -> Self {
        match outcome {
            Ok(success) => {
                let mut body = json!({ "ok": true, "result": success.result });
                if let Some(description) = success.description {
                    body["description"] = json!(description);
                }
                Self::Json(StatusCode::OK, body)
            }
            Err(fail) => Self::Json(
                StatusCode::from_u16(fail.error_code).unwrap_or(StatusCode::BAD_REQUEST),
                error_body(fail),
            ),
        }
    }
}

fn error_body(fail: &Fail) -> Value {
    let mut body =
        json!({ "ok": false, "error_code": fail.error_code, "description": fail.description });
    if let Some(retry_after) = fail.retry_after {
        body["parameters"] = json!({ "retry_after": retry_after });
    }
    body
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Self::Json(status, body) => {
                let mut response = (status, body.to_string()).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            Self::Drop => {
                let broken = futures_util::stream::once(async {
                    Err::<Bytes, std::io::Error>(std::io::Error::other(
                        "connection dropped by a fault",
                    ))
                });
                Response::new(Body::from_stream(broken))
            }
            Self::BadGateway => (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                BAD_GATEWAY_PAGE,
            )
                .into_response(),
        }
    }
}

/// Serves `/bot{token}/{method}` (any HTTP method, params in the query, a JSON body or a
/// form-encoded body).
pub(crate) async fn serve_bot_api(State(shared): State<Arc<Shared>>, request: Request) -> Answer {
    let (parts, body) = request.into_parts();
    let Some((token, method)) = parts
        .uri
        .path()
        .strip_prefix("/bot")
        .and_then(|rest| rest.split_once('/'))
    else {
        return Answer::from_outcome(&Err(Fail::new(404, "Not Found")));
    };
    let Some(bot) = shared.bot(token) else {
        return Answer::from_outcome(&Err(Fail::new(401, "Unauthorized")));
    };
    let method = method.to_owned();
    let Ok(body) = axum::body::to_bytes(body, shared.limits.max_body_bytes).await else {
        return Answer::from_outcome(&Err(Fail::new(413, "Request Entity Too Large")));
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let params = match parse_params(parts.uri.query(), content_type, &body) {
        Ok(params) => params,
        Err(fail) => return Answer::from_outcome(&Err(fail)),
    };
    execute(&shared, &bot, &method, params, Route::Http).await
}

/// Parameters from the query string and the body, as Telegram accepts them.
pub(crate) fn parse_params(
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, Fail> {
    let mut params = Map::new();
    if let Some(query) = query {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| Fail::bad_request("can't parse query string"))?;
        params.extend(pairs.into_iter().map(|(k, v)| (k, Value::String(v))));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(params);
    }
    let content_type = content_type.unwrap_or("").to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| Fail::bad_request("can't parse form data"))?;
        params.extend(pairs.into_iter().map(|(k, v)| (k, Value::String(v))));
    } else if content_type.starts_with("multipart/") {
        return Err(Fail::bad_request(
            "multipart/form-data is not supported by the telehook emulator; send JSON",
        ));
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => params.extend(object),
            Ok(_) | Err(_) => return Err(Fail::bad_request("can't parse JSON object")),
        }
    }
    Ok(params)
}

/// Executes and records one call; a webhook reply's answer is thrown away by the caller.
pub(crate) async fn execute(
    shared: &Arc<Shared>,
    bot: &Arc<BotCell>,
    method: &str,
    params: Map<String, Value>,
    route: Route,
) -> Answer {
    let known = methods::canonical(method);
    let name = known.unwrap_or(method).to_owned();
    if matches!(route, Route::WebhookReply { .. }) && is_ignored_in_webhook_reply(method) {
        tracing::debug!(
            bot_id = bot.id,
            method,
            "webhook reply ignored, as Telegram does"
        );
        record(shared, bot, name, params, route, CallOutcome::Ignored);
        return Answer::Json(StatusCode::OK, json!({ "ok": true, "result": true }));
    }
    let fault = bot.state().take_fault(&name);
    let outcome = match fault {
        Some(Fault::DropConnection) => {
            tracing::debug!(bot_id = bot.id, method = %name, "fault: dropping the connection");
            record(shared, bot, name, params, route, CallOutcome::Dropped);
            return Answer::Drop;
        }
        Some(Fault::BadGateway) => {
            tracing::debug!(bot_id = bot.id, method = %name, "fault: 502 Bad Gateway");
            let outcome = CallOutcome::Error {
                error_code: 502,
                description: "Bad Gateway".to_owned(),
            };
            record(shared, bot, name, params, route, outcome);
            return Answer::BadGateway;
        }
        Some(Fault::Hang) => {
            tracing::debug!(bot_id = bot.id, method = %name, "fault: hanging");
            let http = matches!(route, Route::Http);
            record(shared, bot, name, params, route, CallOutcome::Hung);
            if !http {
                // Nobody waits for a webhook reply's answer: there is nothing to hold.
                return Answer::Drop;
            }
            let mut shutdown = shared.shutdown.subscribe();
            let _ = shutdown.wait_for(|stop| *stop).await;
            return Answer::Drop;
        }
        Some(Fault::TooManyRequests { retry_after }) => Err(Fail {
            error_code: 429,
            description: format!("Too Many Requests: retry after {retry_after}"),
            retry_after: Some(retry_after),
        }),
        Some(Fault::Error {
            error_code,
            description,
        }) => Err(Fail::new(error_code, description)),
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            run(shared, bot, known, &params).await
        }
        None => run(shared, bot, known, &params).await,
    };
    let answer = Answer::from_outcome(&outcome);
    let recorded = match outcome {
        Ok(success) => CallOutcome::Ok {
            result: success.result,
        },
        Err(fail) => CallOutcome::Error {
            error_code: fail.error_code,
            description: fail.description,
        },
    };
    record(shared, bot, name, params, route, recorded);
    answer
}

async fn run(
    shared: &Arc<Shared>,
    bot: &Arc<BotCell>,
    known: Option<&'static str>,
    params: &Map<String, Value>,
) -> Result<Success, Fail> {
    match known {
        Some(method) => methods::call(shared, bot, method, params).await,
        None => Err(Fail::new(404, "Not Found: method not found")),
    }
}

fn record(
    shared: &Shared,
    bot: &BotCell,
    method: String,
    params: Map<String, Value>,
    route: Route,
    outcome: CallOutcome,
) {
    tracing::debug!(bot_id = bot.id, method = %method, ?route, "call recorded");
    bot.state().record_call(
        RecordedCall {
            seq: 0,
            method,
            params,
            route,
            outcome,
        },
        &shared.limits,
    );
    bot.bump();
}

/// True if Telegram ignores `method` in a webhook reply (names are case-insensitive).
pub(crate) fn is_ignored_in_webhook_reply(method: &str) -> bool {
    method
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("get"))
        || ["setWebhook", "deleteWebhook", "close", "logOut"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method))
}
