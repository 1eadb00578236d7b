#![doc = include_str!("../README.md")]

use lambda_http::{Body, Request, Response};
use telehook_core::{OnTimeout, RequestHead, Webhook};

/// Why [`run`] refused to start, or the Lambda runtime stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LambdaError {
    /// `OnTimeout::Return` answers before the handler ends, and Lambda freezes the instance as
    /// soon as the response is sent: the rest of the handler would not run.
    #[error(
        "on_timeout = Return cannot work on AWS Lambda: the instance is frozen once the response is sent, \
         so the handler would stop half-way; use OnTimeout::Throw (the default) and a timeout below the function's own"
    )]
    ReturnOnTimeout,
    /// The Lambda runtime failed.
    #[error("the Lambda runtime failed: {0}")]
    Runtime(lambda_http::Error),
}

/// Serves `webhook` as this Lambda function's handler, behind a Function URL, API Gateway
/// (REST v1 or HTTP v2) or an Application Load Balancer.
///
/// Refuses [`OnTimeout::Return`] before starting. An [`OnTimeout::Custom`] callback must not
/// choose `Return` either (it cannot be checked in advance).
pub async fn run(webhook: Webhook) -> Result<(), LambdaError> {
    if matches!(webhook.on_timeout(), OnTimeout::Return) {
        return Err(LambdaError::ReturnOnTimeout);
    }
    lambda_http::run(lambda_http::service_fn(move |request: Request| {
        let webhook = webhook.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&webhook, request).await) }
    }))
    .await
    .map_err(LambdaError::Runtime)
}

/// Handles one Lambda HTTP request (base64 bodies are already decoded by `lambda_http`).
pub async fn handle(webhook: &Webhook, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let head = RequestHead::from_http(&parts.method, &parts.headers);
    let response = webhook.handle(head, body).await;
    let (status, headers, body, _error) = response.into_parts();
    let body = if body.is_empty() {
        Body::Empty
    } else {
        // The dispatcher answers JSON or plain text: both UTF-8.
        match String::from_utf8(body.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(e) => Body::Binary(e.into_bytes()),
        }
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}
