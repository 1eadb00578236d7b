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
        let result = match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(name)) => ChannelName::parse(&name).map_err(RelayError::from),
            Err(rejection) => Err(RelayError::BadPath(rejection.body_text())),
        };
        Ok(Self(result))
    }
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
