//! [`WebhookResponse`]: the framework-neutral answer to one webhook request.

use bytes::Bytes;
use http::StatusCode;
use http::header::{ALLOW, CONTENT_TYPE, HeaderMap, HeaderValue};

use super::error::{Rejection, WebhookError};

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const APPLICATION_JSON: &str = "application/json";

/// The answer to one webhook request, framework-neutral: status, headers, body, and why it is
/// not a success (a [`Rejection`] before the handler ran, a [`WebhookError`] after) for
/// frameworks that have an error channel.
#[derive(Debug, Clone)]
pub struct WebhookResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    error: Option<WebhookError>,
    rejection: Option<Rejection>,
}

impl WebhookResponse {
    /// `200` with an empty body: handled, or given up.
    pub(super) fn ok() -> Self {
        Self {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            error: None,
            rejection: None,
        }
    }

    fn text(status: StatusCode, text: impl Into<Bytes>) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
        Self {
            status,
            headers,
            body: text.into(),
            error: None,
            rejection: None,
        }
    }

    /// `200` with a webhook reply (JSON with `method`) as the body.
    pub(super) fn json(body: Bytes) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(APPLICATION_JSON));
        Self {
            status: StatusCode::OK,
            headers,
            body,
            error: None,
            rejection: None,
        }
    }

    /// The refusal of a request that did not reach the handler.
    pub(super) fn rejected(rejection: Rejection) -> Self {
        let text = match rejection.body_text() {
            std::borrow::Cow::Borrowed(text) => Bytes::from_static(text.as_bytes()),
            std::borrow::Cow::Owned(text) => Bytes::from(text),
        };
        let mut response = Self::text(rejection.status(), text);
        if rejection == Rejection::MethodNotAllowed {
            response
                .headers
                .insert(ALLOW, HeaderValue::from_static("POST"));
        }
        response.rejection = Some(rejection);
        response
    }

    /// The failure answer for a run that went wrong.
    pub(super) fn failed(error: WebhookError) -> Self {
        let mut response = Self::text(
            error.status(),
            Bytes::from_static(error.body_text().as_bytes()),
        );
        response.error = Some(error);
        response
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers to send (`Content-Type`, `Allow`); `Content-Length` is the framework's job.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body: empty, a webhook reply (JSON), or a short plain-text reason.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The error behind a failure answer (`5xx`), for frameworks with an error channel.
    pub fn error(&self) -> Option<&WebhookError> {
        self.error.as_ref()
    }

    /// Why the request was refused before the handler ran (`4xx`), if it was.
    pub fn rejection(&self) -> Option<&Rejection> {
        self.rejection.as_ref()
    }

    /// Splits the response into its parts.
    pub fn into_parts(self) -> (StatusCode, HeaderMap, Bytes, Option<WebhookError>) {
        (self.status, self.headers, self.body, self.error)
    }

    /// An `http::Response`; the error or the rejection, if any, rides along in its extensions.
    pub fn into_http(self) -> http::Response<http_body_util::Full<Bytes>> {
        let mut response = http::Response::new(http_body_util::Full::new(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        if let Some(error) = self.error {
            response.extensions_mut().insert(error);
        }
        if let Some(rejection) = self.rejection {
            response.extensions_mut().insert(rejection);
        }
        response
    }
}
