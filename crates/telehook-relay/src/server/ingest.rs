//! `POST /{channel}`: read the body in bounded size and time, merge query parameters, store.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};

use super::extract::{ChannelPath, QueryPairs, query_pairs};
use super::state::{Access, Shared, bearer};
use crate::error::RelayError;
use crate::store::NewUpdate;

/// Header carrying the channel's count after a POST.
pub const TOTAL_UPDATES_HEADER: &str = "x-total-updates";
/// Header Telegram sends with the webhook's `secret_token`; accepted as a write token. The
/// same constant as the webhook adapters use.
pub use telehook_core::SECRET_TOKEN_HEADER;

/// `POST /{channel}` and `POST /{channel}/pushUpdates`.
pub(crate) async fn push_update(
    State(shared): State<Arc<Shared>>,
    channel: ChannelPath,
    query: QueryPairs,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RelayError> {
    let channel = channel.0?;
    let token = headers
        .get(SECRET_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| bearer(&headers));
    shared.authorize(&channel, Access::Write, token)?;
    let pairs = query_pairs(query)?;
    let limit = shared.config.max_body_bytes;
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > limit as u64)
    {
        return Err(RelayError::BodyTooLarge { limit });
    }
    let time_limit = shared.config.body_read_timeout;
    let bytes = tokio::time::timeout(time_limit, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| RelayError::BodyTimeout { limit: time_limit })?
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return RelayError::BodyTooLarge { limit };
                }
                source = err.source();
            }
            RelayError::BodyRead(e)
        })?;
    let update = update_json(&bytes, pairs)?;
    let update_id = update.update_id;
    let appended = shared.store.append(channel.clone(), update).await?;
    if appended.duplicate {
        tracing::info!(%channel, update_id, seq = appended.seq, "redelivered update acknowledged, not stored again");
    } else {
        tracing::debug!(%channel, update_id, seq = appended.seq, "update stored");
    }
    let mut response = "OK".into_response();
    response
        .headers_mut()
        .insert(TOTAL_UPDATES_HEADER, HeaderValue::from(appended.seq));
    Ok(response)
}

/// Validates the body as JSON and merges the query parameters into it; returns compact JSON
/// and the top-level `update_id`, if any.
pub(crate) fn update_json(
    body: &[u8],
    pairs: Vec<(String, String)>,
) -> Result<NewUpdate, RelayError> {
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(RelayError::BadJson)?;
    let update_id = value.get("update_id").and_then(serde_json::Value::as_i64);
    if pairs.is_empty() {
        // from_slice accepted it, so it is UTF-8.
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let json = if text.contains(['\n', '\r']) {
            value.to_string()
        } else {
            text.to_owned()
        };
        return Ok(NewUpdate { json, update_id });
    }
    let object = value.as_object_mut().ok_or(RelayError::NotAnObject)?;
    for (key, val) in pairs {
        object.insert(key, serde_json::Value::String(val));
    }
    Ok(NewUpdate {
        json: value.to_string(),
        update_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_merged_into_the_object() {
        let update = update_json(br#"{"a":1}"#, vec![("b".into(), "x y".into())]).unwrap();
        assert_eq!(update.json, r#"{"a":1,"b":"x y"}"#);
        assert_eq!(update.update_id, None);
    }

    #[test]
    fn compact_bodies_are_stored_as_sent_with_their_update_id() {
        let update = update_json(br#" {"z":1,"update_id":2} "#, vec![]).unwrap();
        assert_eq!(update.json, r#"{"z":1,"update_id":2}"#);
        assert_eq!(update.update_id, Some(2));
    }

    #[test]
    fn parameters_cannot_merge_into_a_non_object() {
        assert!(matches!(
            update_json(b"[1]", vec![("a".into(), "b".into())]),
            Err(RelayError::NotAnObject)
        ));
    }
}
