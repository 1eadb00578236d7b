//! What the dispatcher reads before the body: [`RequestHead`] and its checks, and the
//! [`InvocationDeadline`] a platform adapter attaches to a request.

use std::time::Instant;

use http::header::{HeaderMap, HeaderValue};
use subtle::ConstantTimeEq as _;

use super::error::Rejection;
use super::source::SourceAllowlist;

/// The header Telegram sends the `secret_token` in (lower case, as `http` names headers;
/// header names are case-insensitive). Set with `setWebhook`'s `secret_token`:
/// <https://core.telegram.org/bots/api#setwebhook>.
pub const SECRET_TOKEN_HEADER: &str = "x-telegram-bot-api-secret-token";

/// A request extension an adapter inserts when its platform ends the invocation at a fixed
/// instant (AWS Lambda, say): the dispatcher's effective timeout becomes
/// `min(configured timeout, deadline − now)`, so the handler is answered for (`503` by
/// default) before the platform kills the invocation. Put the deadline a safety margin before
/// the platform's own, so the answer still has time to leave.
///
/// The handler sees the effective deadline as [`Context::deadline`](crate::Context::deadline);
/// every other extension the adapter inserted is readable with
/// [`Context::extension`](crate::Context::extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InvocationDeadline(pub Instant);

/// What the dispatcher needs from a request before it reads the body: the method, a few
/// headers and, for a [`SourceAllowlist`], the peer's address. Adapters build it from their
/// own request type.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a str,
    secret_token: Option<&'a [u8]>,
    content_length: Option<&'a [u8]>,
    x_forwarded_for: Option<&'a [u8]>,
    forwarded: Option<&'a [u8]>,
    /// Every header, when built from `http` types: forwarding headers may come in several lines.
    headers: Option<&'a HeaderMap>,
    pub(super) peer: Option<std::net::IpAddr>,
}

impl<'a> RequestHead<'a> {
    /// Builds the head from the method and a case-insensitive header lookup (called with
    /// lower-case names).
    pub fn new(method: &'a str, header: impl Fn(&str) -> Option<&'a [u8]>) -> Self {
        Self {
            method,
            secret_token: header(SECRET_TOKEN_HEADER),
            content_length: header("content-length"),
            x_forwarded_for: header("x-forwarded-for"),
            forwarded: header("forwarded"),
            headers: None,
            peer: None,
        }
    }

    /// The direct peer's address (the connection's remote address), for a
    /// [`SourceAllowlist`]. A [`PeerAddr`](super::PeerAddr) request extension does the same
    /// for [`Webhook::handle_with_extensions`](super::Webhook::handle_with_extensions).
    #[must_use]
    pub fn with_peer(mut self, peer: std::net::SocketAddr) -> Self {
        self.peer = Some(peer.ip());
        self
    }

    /// Builds the head from `http` types.
    pub fn from_http(method: &'a http::Method, headers: &'a HeaderMap) -> Self {
        let mut head = Self::new(method.as_str(), |name| {
            headers.get(name).map(HeaderValue::as_bytes)
        });
        head.headers = Some(headers);
        head
    }

    /// Whether the allowlist admits the request: the source check, before the secret's.
    fn source_admitted(&self, allowlist: &SourceAllowlist) -> bool {
        let header = allowlist.forwarded_header();
        match self.headers {
            Some(headers) => allowlist.admits(
                self.peer,
                headers
                    .get_all(header.name())
                    .iter()
                    .map(HeaderValue::as_bytes),
            ),
            None => {
                let line = match header {
                    super::ForwardedHeader::XForwardedFor => self.x_forwarded_for,
                    super::ForwardedHeader::Forwarded => self.forwarded,
                };
                allowlist.admits(self.peer, line.into_iter())
            }
        }
    }

    /// The `X-Telegram-Bot-Api-Secret-Token` header's value, if the request has one.
    pub(crate) fn secret_token(&self) -> Option<&'a [u8]> {
        self.secret_token
    }

    /// The contract's checks, in its order: method, then secret, then declared length.
    pub(super) fn check(
        &self,
        secret_token: Option<&[u8]>,
        max_body_bytes: usize,
        allowlist: Option<&SourceAllowlist>,
    ) -> Result<(), Rejection> {
        if self.method != "POST" {
            return Err(Rejection::MethodNotAllowed);
        }
        if let Some(allowlist) = allowlist
            && !self.source_admitted(allowlist)
        {
            tracing::warn!(
                peer = ?self.peer,
                "webhook request refused: not from an allowed source address"
            );
            return Err(Rejection::ForbiddenSource);
        }
        if let Some(expected) = secret_token {
            let given = self.secret_token.unwrap_or_default();
            // `ct_eq` on slices of unequal length returns false at once, which reveals only the
            // length; the comparison of equal lengths takes the same time wherever they differ.
            if !bool::from(given.ct_eq(expected)) {
                tracing::warn!(
                    header_present = self.secret_token.is_some(),
                    "webhook request refused: missing or wrong {SECRET_TOKEN_HEADER} header"
                );
                return Err(Rejection::WrongSecretToken);
            }
        }
        if let Some(length) = self.content_length {
            let length = std::str::from_utf8(length)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            match length {
                Some(n) if n > max_body_bytes as u64 => {
                    return Err(too_large(max_body_bytes));
                }
                Some(_) => {}
                None => return Err(Rejection::InvalidContentLength),
            }
        }
        Ok(())
    }
}

/// The `413` rejection, logged.
pub(super) fn too_large(limit: usize) -> Rejection {
    tracing::warn!(
        limit,
        "webhook request refused: body larger than max_body_bytes"
    );
    Rejection::PayloadTooLarge { limit }
}

impl super::Webhook {
    /// The configured `secret_token`, for [`Bots`](crate::Bots)' routing.
    pub(crate) fn secret_token_bytes(&self) -> Option<&[u8]> {
        self.inner.secret_token.as_deref()
    }

    /// The answer to a request refused before any webhook was chosen ([`Bots`](crate::Bots)),
    /// counted like the webhook's own refusals.
    pub(crate) fn refusal(rejection: Rejection) -> super::WebhookResponse {
        super::telemetry::refused(&rejection);
        super::WebhookResponse::rejected(rejection)
    }
}
