//! Extractors that never reject: what they could not read becomes a [`RelayError`], so every
//! refusal is the relay's JSON error object (axum's own rejections are plain text).

use std::convert::Infallible;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query};
use http::request::Parts;

use crate::channel::ChannelName;
use crate::error::RelayError;

/// The channel named by the path, or why the path names none (not UTF-8, not a valid name).
/// Extracting never fails, so the handler answers with [`RelayError`]'s JSON body.
pub(crate) struct ChannelPath(pub(crate) Result<ChannelName, RelayError>);

impl<S: Send + Sync> FromRequestParts<S> for ChannelPath {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        if let Some(bad) = bad_percent_escape(parts.uri.path()) {
            return Ok(Self(Err(RelayError::BadPath(format!(
                "{bad:?} is not a percent-escape (write a literal % as %25)"
            )))));
        }
        let result = match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(name)) => ChannelName::parse(&name).map_err(RelayError::from),
            Err(rejection) => Err(RelayError::BadPath(rejection.body_text())),
        };
        Ok(Self(result))
    }
}

/// The first `%` of `path` not followed by two hex digits ([RFC 3986 §2.1]
/// (https://www.rfc-editor.org/rfc/rfc3986#section-2.1)), with what follows it: a decoder
/// would keep it as a literal `%`, so `/a%zz` and `/a%25zz` would name one channel.
fn bad_percent_escape(path: &str) -> Option<&str> {
    let bytes = path.as_bytes();
    let at = (0..bytes.len()).find(|&i| {
        bytes[i] == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })?;
    let end = (at + 3).min(path.len());
    Some(path.get(at..end).unwrap_or("%"))
}

/// The query string as decoded pairs, or why it could not be decoded.
pub(crate) type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The decoded pairs, or a 400.
pub(crate) fn query_pairs(query: QueryPairs) -> Result<Vec<(String, String)>, RelayError> {
    query
        .map(|Query(pairs)| pairs)
        .map_err(|e| RelayError::BadParameter {
            name: "query",
            reason: e.body_text(),
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_percent_sign_must_start_an_escape() {
        for ok in ["/a", "/a%25b", "/caf%C3%A9", "/%2e%2E"] {
            assert_eq!(super::bad_percent_escape(ok), None, "{ok}");
        }
        for (bad, found) in [
            ("/a%zz", "%zz"),
            ("/%", "%"),
            ("/a%2", "%2"),
            ("/a%g1x", "%g1"),
        ] {
            assert_eq!(super::bad_percent_escape(bad), Some(found), "{bad}");
        }
    }
}
