//! The Bot API over HTTP: `/bot{token}/{method}`, and the one place every call is executed
//! and recorded, whether it came over HTTP or as a webhook reply.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use serde_json::json;

use crate::answer::{Answer, Fail, Success};
use crate::methods;
use crate::model::{CallOutcome, Fault, RecordedCall, Route};
use crate::params::{self, Input};
use crate::state::{BotCell, Shared};

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
        let fail = Fail::new(413, "Request Entity Too Large");
        let answer = Answer::from_outcome(&Err(fail.clone()));
        refused(&shared, &bot, &method, fail);
        return answer;
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let input = match params::parse(parts.uri.query(), content_type, body).await {
        Ok(input) => input,
        Err(fail) => {
            let answer = Answer::from_outcome(&Err(fail.clone()));
            refused(&shared, &bot, &method, fail);
            return answer;
        }
    };
    execute(&shared, &bot, &method, input, Route::Http).await
}

/// Records a call refused before its parameters could be read.
fn refused(shared: &Shared, bot: &BotCell, method: &str, fail: Fail) {
    let name = methods::canonical(method).unwrap_or(method).to_owned();
    let outcome = CallOutcome::Error {
        error_code: fail.error_code,
        description: fail.description,
    };
    record(shared, bot, name, Input::default(), Route::Http, outcome);
}

/// Executes and records one call; a webhook reply's answer is thrown away by the caller.
pub(crate) async fn execute(
    shared: &Arc<Shared>,
    bot: &Arc<BotCell>,
    method: &str,
    input: Input,
    route: Route,
) -> Answer {
    let known = methods::canonical(method);
    let name = known.unwrap_or(method).to_owned();
    if matches!(route, Route::WebhookReply { .. })
        && telehook_core::is_ignored_in_webhook_reply(method)
    {
        tracing::debug!(
            bot_id = bot.id,
            method,
            "webhook reply ignored, as Telegram does"
        );
        record(shared, bot, name, input, route, CallOutcome::Ignored);
        return Answer::Json(StatusCode::OK, json!({ "ok": true, "result": true }));
    }
    let fault = bot.state().take_fault(&name);
    let outcome = match fault {
        Some(Fault::DropConnection) => {
            tracing::debug!(bot_id = bot.id, method = %name, "fault: dropping the connection");
            record(shared, bot, name, input, route, CallOutcome::Dropped);
            return Answer::Drop;
        }
        Some(Fault::BadGateway) => {
            tracing::debug!(bot_id = bot.id, method = %name, "fault: 502 Bad Gateway");
            let outcome = CallOutcome::Error {
                error_code: 502,
                description: "Bad Gateway".to_owned(),
            };
            record(shared, bot, name, input, route, outcome);
            return Answer::BadGateway;
        }
        Some(Fault::Hang) => {
            tracing::debug!(bot_id = bot.id, method = %name, "fault: hanging");
            let http = matches!(route, Route::Http);
            record(shared, bot, name, input, route, CallOutcome::Hung);
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
            run(shared, bot, known, &input).await
        }
        None => run(shared, bot, known, &input).await,
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
    record(shared, bot, name, input, route, recorded);
    answer
}

async fn run(
    shared: &Arc<Shared>,
    bot: &Arc<BotCell>,
    known: Option<&'static str>,
    input: &Input,
) -> Result<Success, Fail> {
    match known {
        Some(method) => methods::call(shared, bot, method, input).await,
        None => Err(Fail::new(404, "Not Found: method not found")),
    }
}

fn record(
    shared: &Shared,
    bot: &BotCell,
    method: String,
    input: Input,
    route: Route,
    outcome: CallOutcome,
) {
    let uploads = input.uploads();
    tracing::debug!(bot_id = bot.id, method = %method, ?route, "call recorded");
    bot.state().record_call(
        RecordedCall {
            seq: 0,
            method,
            params: input.params,
            uploads,
            route,
            outcome,
        },
        &shared.limits,
    );
    bot.bump();
}
