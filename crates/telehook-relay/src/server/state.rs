//! State shared by every request of one relay, and who may read or write a channel.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::channel::ChannelName;
use crate::config::RelayConfig;
use crate::error::RelayError;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

/// State shared by all requests of one relay.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: RelayConfig,
    pub(crate) limiter: Option<RateLimiter>,
    pub(crate) shutdown: watch::Sender<bool>,
}

/// Which side of a channel a request wants.
#[derive(Clone, Copy)]
pub(crate) enum Access {
    Read,
    Write,
}

impl Shared {
    /// Checks the token presented for `channel` against the access file.
    pub(crate) fn authorize(
        &self,
        channel: &ChannelName,
        access: Access,
        presented: Option<&str>,
    ) -> Result<(), RelayError> {
        let config = &self.config.access;
        let Some(tokens) = config.channels.get(channel.as_str()) else {
            return if config.allow_unlisted {
                Ok(())
            } else {
                Err(RelayError::Forbidden)
            };
        };
        let (expected, kind) = match access {
            Access::Read => (&tokens.read_token, "read"),
            Access::Write => (&tokens.write_token, "write"),
        };
        match (expected, presented) {
            (None, _) => Ok(()),
            (Some(expected), Some(given))
                if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) =>
            {
                Ok(())
            }
            _ => Err(RelayError::Unauthorized { kind }),
        }
    }

    /// The client's IP: the peer address, or the first `X-Forwarded-For` entry when trusted.
    pub(crate) fn client_ip(&self, req: &Request) -> Option<IpAddr> {
        if self.config.trust_forwarded_for
            && let Some(ip) = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return Some(ip);
        }
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    }
}

/// The token in `Authorization: Bearer …`. The scheme name is case-insensitive
/// ([RFC 9110 §11.1](https://www.rfc-editor.org/rfc/rfc9110#section-11.1)).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim_start();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A response with a JSON body.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for (value, token) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER  abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearerabc", None),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer(&headers), token, "{value:?}");
        }
    }
}
