//! The answers of the Bot API: success, failure, and the faults that answer otherwise.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

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
    pub(crate) fn from_outcome(outcome: &Result<Success, Fail>) -> Self {
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
