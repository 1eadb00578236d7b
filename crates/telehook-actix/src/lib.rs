#![doc = include_str!("../README.md")]

use std::fmt;

use actix_web::body::BoxBody;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Resource, ResponseError, web};
use futures_util::StreamExt as _;
use http_body::Frame;
use http_body_util::StreamBody;
use telehook_core::http::HeaderMap;
use telehook_core::{Bytes, RequestHead, Webhook, WebhookError};

/// A resource that serves `webhook` at `path` for every method (the dispatcher answers `405`
/// to anything but `POST`, with `Allow: POST`). Register it with `App::service` or
/// `ServiceConfig::service`, beside your own resources and `app_data`.
pub fn webhook_service(path: &str, webhook: Webhook) -> Resource {
    web::resource(path).route(web::route().to(
        move |request: HttpRequest, payload: web::Payload| {
            let webhook = webhook.clone();
            async move { handle(&webhook, &request, payload).await }
        },
    ))
}

/// Handles one request from inside an actix-web handler of your own, for when the webhook is
/// one step of a larger route. The body is streamed to the dispatcher, which applies its own
/// limit; a failure comes back as `Err` so it reaches actix-web's error channel.
pub async fn handle(
    webhook: &Webhook,
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, WebhookResponseError> {
    let head = RequestHead::new(request.method().as_str(), |name| {
        request.headers().get(name).map(|value| value.as_bytes())
    });
    let body = StreamBody::new(payload.map(|chunk| chunk.map(Frame::data)));
    let (status, headers, body, error) = webhook.handle(head, body).await.into_parts();
    let status = status.as_u16();
    match error {
        None => Ok(build(status, &headers, body)),
        Some(error) => Err(WebhookResponseError {
            error,
            status,
            headers,
            body,
        }),
    }
}

/// A failure answer of the dispatcher (timeout, handler failure, redelivery store, overload)
/// as an actix-web error: middleware and loggers see it through `ServiceResponse::response()`
/// `.error()`, and the client gets exactly the status, headers and body the dispatcher chose.
pub struct WebhookResponseError {
    error: WebhookError,
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl WebhookResponseError {
    /// What went wrong, as the dispatcher reported it.
    pub fn webhook_error(&self) -> &WebhookError {
        &self.error
    }
}

impl fmt::Debug for WebhookResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookResponseError")
            .field("error", &self.error)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for WebhookResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for WebhookResponseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl ResponseError for WebhookResponseError {
    fn status_code(&self) -> StatusCode {
        actix_status(self.status)
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        build(self.status, &self.headers, self.body.clone())
    }
}

/// Converts at the edge: actix-web is on `http` 0.2, the dispatcher on `http` 1.
fn actix_status(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn build(status: u16, headers: &HeaderMap, body: Bytes) -> HttpResponse {
    let mut response = HttpResponse::build(actix_status(status));
    for (name, value) in headers {
        response.append_header((name.as_str(), value.as_bytes()));
    }
    response.body(body)
}
